"""Shutdown under load: at the drain deadline each stream still running ends with an error event
and `[DONE]` and the exit code is 3; a second signal exits at once (128 + its number)."""

import json
import signal
import socket
import threading
import time

import requests

from conftest import Server

C = "/v1/completions"


def start_streams(s, n):
    """`n` long streams at one sequence at a time; returns (threads, results, first-chunk event)."""
    results, first = {}, threading.Event()

    def one(i):
        body = {"prompt": f"cut me {i}", "max_tokens": 240, "temperature": 0, "stream": True, "ignore_eos": True}
        events = []
        try:
            with requests.post(s.url + C, json=body, stream=True, timeout=120) as r:
                results[i] = {"status": r.status_code}
                for line in r.iter_lines():
                    if line.startswith(b"data: "):
                        events.append(line[6:].decode())
                        first.set()
        except requests.RequestException as e:
            results.setdefault(i, {})["exception"] = repr(e)
        results.setdefault(i, {})["events"] = events

    threads = [threading.Thread(target=one, args=(i,), daemon=True) for i in range(n)]
    for t in threads:
        t.start()
    return threads, results, first


def test_drain_deadline_ends_streams_with_an_error_and_done():
    # A deadline of 0 s: whatever runs or waits when the signal comes is cut (48 streams of 240
    # tokens one at a time are far from done when the first chunk arrives).
    s = Server("--drain-timeout", "0", "--max-num-seqs", "1", "--max-queue", "64")
    threads, results, first = start_streams(s, 48)
    try:
        assert first.wait(60), "no first chunk"
        deadline = time.time() + 30
        while sum("status" in r for r in list(results.values())) < 48 and time.time() < deadline:
            time.sleep(0.01)
        t0 = time.time()
        code = s.stop(timeout=30)
        elapsed = time.time() - t0
        for t in threads:
            t.join(30)
    finally:
        if s.proc.poll() is None:
            s.proc.kill()
    log = "".join(s.lines)
    assert code == 3, log
    assert elapsed < 10, elapsed
    assert "drain timeout" in log, log
    cut = 0
    for i, r in results.items():
        ev = r["events"]
        assert r.get("status") == 200 and "exception" not in r, (i, r)
        assert ev and ev[-1] == "[DONE]", (i, ev[-3:])
        if len(ev) >= 2 and '"error"' in ev[-2]:
            err = json.loads(ev[-2])["error"]
            assert err["type"] == "server_error" and "drain timeout" in err["message"], err
            cut += 1
    assert cut >= 1, "no stream was running at the deadline"


def test_a_second_signal_exits_at_once():
    s = Server("--drain-timeout", "120", "--body-timeout", "120")
    try:
        # A request whose body never arrives keeps the drain waiting.
        host, port = s.url.removeprefix("http://").split(":")
        sock = socket.create_connection((host, int(port)), timeout=10)
        sock.sendall(b"POST /v1/completions HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
                     b"Content-Length: 100\r\n\r\n{")
        time.sleep(0.3)
        s.proc.send_signal(signal.SIGTERM)
        time.sleep(1.0)
        assert s.proc.poll() is None, "the drain did not wait for the request in flight: " + "".join(s.lines)
        t0 = time.time()
        s.proc.send_signal(signal.SIGINT)
        code = s.proc.wait(10)
        assert code == 130 and time.time() - t0 < 5, (code, "".join(s.lines))
        assert any("second signal" in line for line in s.lines), "".join(s.lines)
        sock.close()
    finally:
        if s.proc.poll() is None:
            s.proc.kill()
