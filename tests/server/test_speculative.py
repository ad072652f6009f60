"""Speculative decoding under `trtllm serve` (prompt lookup, and a self-draft model): concurrent
greedy, seeded, logprob, stop-string and `n` requests give exactly what the plain server gives,
/metrics counts drafts, acceptance and tokens per step, every KV block comes back, and bad
speculative flags are startup errors naming the flag."""

import subprocess
import threading

import openai
import pytest

from conftest import BIN, FIXTURE, Server

PROMPTS = ["alpha beta gamma alpha beta gamma alpha beta", "one two three four one two three", "zeta", "eta theta eta theta eta"]
REQUESTS = [
    dict(max_tokens=24, temperature=0, extra_body={"ignore_eos": True}),
    dict(max_tokens=20, temperature=0.8, seed=5, extra_body={"ignore_eos": True, "top_k": 50}),
    dict(max_tokens=16, temperature=0, logprobs=2, extra_body={"ignore_eos": True}),
    dict(max_tokens=20, temperature=0.7, seed=11, n=2, frequency_penalty=0.5, extra_body={"ignore_eos": True}),
    # Under a grammar a sequence decodes without drafts, in the same batches as the others.
    dict(max_tokens=30, temperature=1.0, seed=2, extra_body={"guided_regex": "[a-z]{5,9}"}),
]


def outputs(url):
    """Every (prompt, request) pair at once, 16 requests in flight: texts and logprobs."""
    client = openai.OpenAI(base_url=url + "/v1", api_key="unused", max_retries=0, timeout=120)
    jobs = [(p, r) for p in PROMPTS for r in REQUESTS]
    res, errors = [None] * len(jobs), []

    def one(i):
        p, r = jobs[i]
        try:
            c = client.completions.create(model="llama", prompt=p, **r)
            lps = [ch.logprobs.token_logprobs if ch.logprobs else None for ch in c.choices]
            res[i] = ([ch.text for ch in c.choices], lps, c.usage.completion_tokens)
        except Exception as e:  # noqa: BLE001 - reported below
            errors.append(repr(e))

    threads = [threading.Thread(target=one, args=(i,)) for i in range(len(jobs))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(300)
    assert not errors, errors[:3]
    return res


@pytest.fixture(scope="module")
def plain():
    s = Server("--max-batch-size", "16", "--kv-blocks", "64", "--kv-block-size", "4")
    yield outputs(s.url)
    assert s.stop() == 0, "".join(s.lines)


@pytest.mark.parametrize(
    "flags",
    [
        ["--speculative-method", "ngram", "--num-speculative-tokens", "4", "--prompt-lookup-min", "1"],
        ["--speculative-model", str(FIXTURE), "--num-speculative-tokens", "3"],
    ],
    ids=["ngram", "self-draft"],
)
def test_speculative_matches_plain(plain, flags):
    s = Server("--max-batch-size", "16", "--kv-blocks", "64", "--kv-block-size", "4", *flags)
    try:
        assert any("speculative decoding" in line for line in s.lines), "".join(s.lines)
        got = outputs(s.url)
        for (texts, lps, n), (ptexts, plps, pn) in zip(got, plain):
            assert texts == ptexts and n == pn
            for a, b in zip(lps, plps):
                if a is not None:
                    assert len(a) == len(b) and all(abs(x - y) < 1e-3 for x, y in zip(a, b))
        m = s.wait_idle()
        drafts = m["trtllm_spec_decode_num_draft_tokens_total"]
        accepted = m["trtllm_spec_decode_num_accepted_tokens_total"]
        assert drafts > 0 and 0 < accepted <= drafts, m
        assert m["trtllm_spec_decode_acceptance_rate"] == pytest.approx(accepted / drafts)
        steps, emitted = m["trtllm_spec_decode_num_drafts_total"], m["trtllm_spec_decode_num_emitted_tokens_total"]
        assert m["trtllm_spec_decode_tokens_per_step"] == pytest.approx(emitted / steps) and emitted > steps
        if "--speculative-model" in flags:
            # Greedy, a self-draft proposes exactly what the target decodes.
            client = openai.OpenAI(base_url=s.url + "/v1", api_key="unused", max_retries=0, timeout=120)
            client.completions.create(model="llama", prompt=PROMPTS[2], **REQUESTS[0])
            m2 = s.wait_idle()
            d = m2["trtllm_spec_decode_num_draft_tokens_total"] - drafts
            a = m2["trtllm_spec_decode_num_accepted_tokens_total"] - accepted
            assert d > 0 and a / d > 0.9, (a, d)
    finally:
        assert s.stop() == 0, "".join(s.lines)


@pytest.mark.parametrize(
    "flags, message",
    [
        (["--num-speculative-tokens", "0"], "--num-speculative-tokens"),
        (["--speculative-method", "draft"], "--speculative-model"),
        (["--prompt-lookup-min", "5", "--prompt-lookup-max", "3"], "--prompt-lookup-min"),
        (["--speculative-model", "/nonexistent-draft"], "--speculative-model"),
    ],
)
def test_bad_speculative_flags_are_errors(flags, message):
    cmd = [str(BIN), "serve", "--model", str(FIXTURE), "--device", "cpu", "--port", "0", *flags]
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=60)
    assert r.returncode != 0
    assert message in r.stderr, r.stderr
