"""`trtllm bench` flags: latency mode samples with the sampling flags (seeded, reproducible),
and each mode refuses the other mode's flags by name."""

import json
import subprocess

from conftest import BIN, FIXTURE

BASE = ["bench", "--model", str(FIXTURE), "--device", "cpu", "--input-len", "8", "--output-len", "10",
        "--runs", "1", "--warmup", "0", "--json"]
SAMPLED = ["--temperature", "0.8", "--top-p", "0.9", "--top-k", "20", "--repetition-penalty", "1.1"]


def bench(*args):
    return subprocess.run([str(BIN), *BASE, *args], capture_output=True, timeout=120)


def tokens(r):
    assert r.returncode == 0, r.stderr.decode()
    return json.loads(r.stdout)["token_ids"]


def test_latency_mode_samples_with_the_flags_and_the_seed():
    greedy = tokens(bench())
    a = tokens(bench(*SAMPLED, "--seed", "5"))
    b = tokens(bench(*SAMPLED, "--seed", "5"))
    c = tokens(bench(*SAMPLED, "--seed", "6"))
    assert a == b, "one seed, one text"
    assert a != greedy or c != greedy, "sampling flags were ignored"
    assert a != c, "the seed was ignored"
    r = bench(*SAMPLED)
    assert json.loads(r.stdout)["temperature"] == 0.800000011920929


def test_each_mode_refuses_the_other_modes_flags():
    r = bench("--num-requests", "8", "--kv-blocks", "16")
    err = r.stderr.decode()
    assert r.returncode != 0 and "--num-requests, --kv-blocks apply to --mode throughput only" in err, err
    r = subprocess.run([str(BIN), "bench", "--model", str(FIXTURE), "--device", "cpu", "--mode", "throughput",
                        "--batch-size", "4"], capture_output=True, timeout=120)
    err = r.stderr.decode()
    assert r.returncode != 0 and "--batch-size apply to --mode latency only" in err, err


def test_invalid_sampling_flags_are_refused():
    r = bench("--temperature=-1")
    assert r.returncode != 0 and "temperature" in r.stderr.decode(), r.stderr.decode()
