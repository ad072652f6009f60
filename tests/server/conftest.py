"""Starts `trtllm serve` on the tiny Llama fixture (CPU, 127.0.0.1, an ephemeral port) for the
server tests, and stops it with SIGTERM at the end (which must drain and exit 0)."""

import atexit
import os
import re
import signal
import subprocess
import threading
import time
from pathlib import Path

import pytest
import requests

ROOT = Path(__file__).resolve().parents[2]
FIXTURE = ROOT / "tests" / "fixtures" / "llama"
BIN = Path(os.environ.get("TRTLLM_BIN", ROOT / "target" / "debug" / "trtllm"))
STARTUP_S = 60
_STARTED = []


@atexit.register
def _kill_leftovers():
    for p in _STARTED:
        if p.poll() is None:
            p.kill()


class Server:
    def __init__(self, *extra, model=FIXTURE, positional=None, env=None):
        where = ["--model", str(model)] if model is not None else [str(positional)]
        self.cmd = [str(BIN), "serve", *where, "--device", "cpu", "--host", "127.0.0.1", "--port", "0", *extra]
        self.proc = subprocess.Popen(self.cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env)
        _STARTED.append(self.proc)
        self.lines = []
        ready = threading.Event()

        def pump():
            for line in self.proc.stdout:
                self.lines.append(line)
                m = re.search(r"listening on (http://127\.0\.0\.1:\d+)", line)
                if m:
                    self.url = m.group(1)
                    ready.set()
            ready.set()

        threading.Thread(target=pump, daemon=True).start()
        if not ready.wait(STARTUP_S) or not hasattr(self, "url"):
            self.proc.kill()
            raise RuntimeError("server did not start:\n" + "".join(self.lines))

    def stop(self, timeout=30):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            raise

    def metrics(self):
        text = requests.get(self.url + "/metrics", timeout=10).text
        out = {}
        for line in text.splitlines():
            if line and not line.startswith("#"):
                name, value = line.rsplit(" ", 1)
                # Every sample carries the model_name label; keys are the names without it.
                label = re.search(r'model_name="[^"]*",?', name)
                assert label, f"no model_name label: {line}"
                name = name.replace(label.group(0), "").replace("{}", "")
                out[name] = float(value)
        return out

    def wait_idle(self, timeout=30):
        """Until nothing runs or waits and every KV block is free; returns the metrics."""
        deadline = time.time() + timeout
        while True:
            m = self.metrics()
            idle = m["trtllm_num_requests_running"] == 0 and m["trtllm_num_requests_waiting"] == 0 and m["trtllm_queue_length"] == 0
            if idle and m["trtllm_kv_blocks_free"] == m["trtllm_kv_blocks_total"]:
                return m
            if time.time() > deadline:
                raise AssertionError(f"server not idle after {timeout}s: {m}")
            time.sleep(0.05)


@pytest.fixture(scope="session")
def server():
    # 48 KV blocks of 16 for up to 32 sequences: the load test also exercises preemption.
    s = Server("--max-batch-size", "32", "--max-num-tokens", "256", "--kv-blocks", "48", "--max-queue", "512")
    yield s
    assert s.stop() == 0, "".join(s.lines)


@pytest.fixture(scope="session")
def strict_server():
    """An API key, one sequence at a time and a queue of one: 401 and 429 paths."""
    s = Server("--api-key", "sekret", "--max-batch-size", "1", "--max-queue", "1")
    yield s
    assert s.stop() == 0, "".join(s.lines)
