"""`trtllm serve` as a multi-process launch on the CPU (WORLD_SIZE=2, tensor parallel over the TCP
mesh): rank 0 serves HTTP and leads, rank 1 only follows its steps. Concurrent greedy, seeded
and logprob requests give the texts a one-process server gives; both processes exit 0 when
rank 0 drains."""

import os
import socket
import subprocess

from conftest import BIN, FIXTURE, Server
from test_speculative import outputs


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_leader_and_worker_match_one_process():
    flags = ("--max-batch-size", "16", "--kv-blocks", "64", "--kv-block-size", "4")
    plain = Server(*flags)
    want = outputs(plain.url)
    assert plain.stop() == 0

    port = str(free_port())
    env = lambda r: {**os.environ, "RANK": str(r), "WORLD_SIZE": "2", "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": port}
    worker = subprocess.Popen(
        [str(BIN), "serve", "--model", str(FIXTURE), "--device", "cpu", "--port", "0", *flags],
        env=env(1),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        leader = Server(*flags, env=env(0))
        got = outputs(leader.url)
        assert leader.stop() == 0
        assert worker.wait(30) == 0, worker.stdout.read()
    finally:
        if worker.poll() is None:
            worker.kill()
    assert len(got) == len(want)
    for (t1, lp1, n1), (t2, lp2, n2) in zip(got, want):
        assert t1 == t2 and n1 == n2
        for a, b in zip(lp1, lp2):
            if a is not None:
                assert all(abs(x - y) <= 1e-3 for x, y in zip(a, b)), (a, b)
