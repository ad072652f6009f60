"""Hostile clients: slow headers, idle sockets, too many connections, oversized or slow bodies and
headers, foreign Host values and non-JSON POSTs on a keyless server, oversized prompts, an empty
--api-key. Every refusal is an OpenAI-style JSON error; `/health` stays fast throughout."""

import socket
import threading
import time

import pytest
import requests

from conftest import Server

C = "/v1/completions"


def check_error(r, status):
    assert r.status_code == status, (r.status_code, r.text)
    e = r.json()["error"]
    assert isinstance(e["message"], str) and e["message"] and "type" in e
    return e


def host_port(server):
    host, port = server.url.removeprefix("http://").split(":")
    return host, int(port)


def raw(server, data=b"", timeout=10):
    s = socket.create_connection(host_port(server), timeout=timeout)
    if data:
        s.sendall(data)
    return s


def read_all(s, limit_s):
    """What the server sends within `limit_s`, and whether it closed the socket by then."""
    s.settimeout(limit_s)
    out = b""
    try:
        while chunk := s.recv(65536):
            out += chunk
    except ConnectionResetError:
        pass
    except socket.timeout:
        return out, False
    return out, True


@pytest.fixture(scope="module")
def tight():
    s = Server("--header-timeout", "2", "--body-timeout", "2", "--max-body-bytes", "4096", "--max-connections", "200")
    yield s
    assert s.stop() == 0, "".join(s.lines)


def test_keyless_server_says_so_and_refuses_foreign_hosts_and_non_json(server):
    assert any("no API key set" in line for line in server.lines), "".join(server.lines)
    _, port = host_port(server)
    e = check_error(requests.get(server.url + "/health", headers={"Host": "evil.example"}, timeout=10), 403)
    assert "evil.example" in e["message"] and "--api-key" in e["message"]
    check_error(requests.post(server.url + C, json={"prompt": "x"}, headers={"Host": f"rebind.example:{port}"}, timeout=10), 403)
    for ok in (f"localhost:{port}", f"127.0.0.1:{port}", "[::1]"):
        assert requests.get(server.url + "/health", headers={"Host": ok}, timeout=10).status_code == 200, ok
    # A cross-origin "simple" POST (text/plain, form) or one with no type: 415.
    for ct in ("text/plain", "application/x-www-form-urlencoded", None):
        headers = {"Content-Type": ct} if ct else {}
        r = requests.post(server.url + C, data=b'{"prompt": "x", "max_tokens": 1}', headers=headers, timeout=10)
        check_error(r, 415)
    ok = requests.post(server.url + C, data=b'{"prompt": "x", "max_tokens": 1}',
                       headers={"Content-Type": "application/json; charset=utf-8"}, timeout=30)
    assert ok.status_code == 200, ok.text


def test_a_keyed_server_answers_any_host(strict_server):
    r = requests.get(strict_server.url + "/v1/models", headers={"Host": "box.example", "Authorization": "Bearer sekret"}, timeout=10)
    assert r.status_code == 200, r.text
    assert not any("no API key set" in line for line in strict_server.lines)


def test_empty_api_key_is_an_error():
    with pytest.raises(RuntimeError, match="--api-key is empty"):
        Server("--api-key", "")


def test_oversized_bodies_and_headers_are_json_413_and_431(tight):
    big = b'{"prompt": "' + b"a" * 5000 + b'"}'
    e = check_error(requests.post(tight.url + C, data=big, headers={"Content-Type": "application/json"}, timeout=10), 413)
    assert "--max-body-bytes" in e["message"]
    # Chunked, no Content-Length: refused once the limit is crossed.
    chunks = (b"x" * 1000 for _ in range(10))
    check_error(requests.post(tight.url + C, data=chunks, headers={"Content-Type": "application/json"}, timeout=10), 413)
    check_error(requests.get(tight.url + "/health", headers={"X-Big": "v" * 70_000}, timeout=10), 431)
    assert requests.get(tight.url + "/health", timeout=10).status_code == 200


def test_a_slow_body_is_408(tight):
    s = raw(tight, b"POST /v1/completions HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
                   b"Content-Length: 100\r\n\r\n{\"prompt\"")
    t = time.time()
    out, closed = read_all(s, 10)
    assert closed and out.startswith(b"HTTP/1.1 408"), out[:200]
    assert b'"error"' in out and time.time() - t < 6


def test_a_prompt_longer_than_the_context_can_hold_is_refused_before_tokenizing(server):
    t = time.time()
    e = check_error(requests.post(server.url + C, json={"prompt": "word " * 400_000, "max_tokens": 1}, timeout=30), 400)
    assert e["param"] == "prompt" and "bytes" in e["message"], e
    check_error(requests.post(server.url + "/tokenize", json={"prompt": "word " * 400_000}, timeout=30), 400)
    check_error(requests.post(server.url + "/v1/chat/completions",
                              json={"messages": [{"role": "user", "content": "word " * 400_000}]}, timeout=30), 400)
    assert time.time() - t < 10


def test_slow_header_and_idle_connections_do_not_starve_health(tight):
    """80 slow-header connections (a byte every 0.25 s, never finishing the head) and 80 idle
    sockets: every /health meanwhile answers within 1 s, and the server closes the slow and idle
    ones at the header timeout (2 s)."""
    n = 80
    slow = [raw(tight, b"POST /v1/completions HTTP/1.1\r\nHost: 127.0.0.1\r\n") for _ in range(n)]
    idle = [raw(tight) for _ in range(n)]
    opened = time.time()
    stop = threading.Event()
    closed_at = {}

    def dribble():
        while not stop.is_set():
            for i, s in enumerate(slow):
                if i in closed_at:
                    continue
                try:
                    s.sendall(b"X")
                except OSError:
                    closed_at[i] = time.time() - opened
            time.sleep(0.25)

    t = threading.Thread(target=dribble, daemon=True)
    t.start()
    worst, polls = 0.0, 0
    try:
        while time.time() - opened < 5:
            t0 = time.time()
            r = requests.get(tight.url + "/health", timeout=5)
            dt = time.time() - t0
            assert r.status_code == 200, r.text
            worst, polls = max(worst, dt), polls + 1
            time.sleep(0.1)
    finally:
        stop.set()
        t.join(5)
    print(f"slow-client: {n} slow-header + {n} idle connections; /health answered {polls} times, worst {worst * 1000:.0f} ms")
    assert polls >= 20 and worst < 1.0, (polls, worst)
    # By now (5 s) the server has closed every one of them (header timeout 2 s).
    assert all(read_all(s, 1)[1] for s in slow), "slow-header connections must be closed by the server"
    assert all(read_all(s, 1) == (b"", True) for s in idle), "idle sockets must be closed by the server"
    for s in slow + idle:
        s.close()


def test_connections_over_the_cap_get_503_with_retry_after():
    s = Server("--max-connections", "8", "--header-timeout", "2")
    try:
        held = [raw(s) for _ in range(8)]
        time.sleep(0.3)
        extra = raw(s, b"GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        out, closed = read_all(extra, 5)
        out = out.decode()
        assert closed
        assert out.startswith("HTTP/1.1 503"), out
        head, body = out.split("\r\n\r\n", 1)
        assert "retry-after: 1" in head.lower() and '"error"' in body, out
        for h in held:
            h.close()
        deadline = time.time() + 5
        while True:
            try:
                if requests.get(s.url + "/health", timeout=2).status_code == 200:
                    break
            except requests.ConnectionError:
                pass
            assert time.time() < deadline, "the cap did not free up after the connections closed"
            time.sleep(0.1)
    finally:
        assert s.stop() == 0, "".join(s.lines)
