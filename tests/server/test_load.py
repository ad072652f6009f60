"""Concurrency and lifecycle: 64 concurrent streams (greedy outputs identical to the same
requests run alone, every KV block free afterwards), a client that disconnects mid-stream
(its request is cancelled and its blocks freed), and SIGTERM draining a stream in flight."""

import json
import threading

import openai
import requests

from conftest import Server

PROMPTS = ["alpha beta", "gamma delta epsilon", "zeta", "eta theta iota kappa"]


def test_64_concurrent_streams(server):
    client = openai.OpenAI(base_url=server.url + "/v1", api_key="unused", max_retries=0, timeout=120)
    kw = dict(model="llama", max_tokens=32, temperature=0, extra_body={"ignore_eos": True})
    alone = [client.completions.create(prompt=p, **kw).choices[0].text for p in PROMPTS]
    before = server.metrics()
    results, errors = [None] * 64, []

    def one(i):
        try:
            chunks = list(client.completions.create(prompt=PROMPTS[i % 4], stream=True, stream_options={"include_usage": True}, **kw))
            assert chunks[-1].usage.completion_tokens == 32
            results[i] = "".join(c.choices[0].text for c in chunks if c.choices)
        except Exception as e:  # noqa: BLE001 - reported below
            errors.append(repr(e))

    threads = [threading.Thread(target=one, args=(i,)) for i in range(64)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(300)
    assert not errors, errors[:3]
    for i, text in enumerate(results):
        assert text == alone[i % 4], f"stream {i} differs from the same request alone"
    m = server.wait_idle()
    assert m["trtllm_kv_blocks_free"] == m["trtllm_kv_blocks_total"]
    assert m['trtllm_requests_total{outcome="ok"}'] - before['trtllm_requests_total{outcome="ok"}'] == 64
    assert m["trtllm_generation_tokens_total"] - before["trtllm_generation_tokens_total"] >= 64 * 32
    assert m["trtllm_time_to_first_token_seconds_count"] > before["trtllm_time_to_first_token_seconds_count"]
    print(f"preemptions so far: {m['trtllm_preemptions_total']:.0f}, prefix-cache hit tokens: {m['trtllm_prefix_cache_hits_total']:.0f}")


def test_disconnect_mid_stream_frees_blocks(server):
    before = server.metrics()
    body = {"prompt": "a long one", "max_tokens": 200, "temperature": 0, "stream": True, "ignore_eos": True}
    r = requests.post(server.url + "/v1/completions", json=body, stream=True, timeout=60)
    assert r.status_code == 200
    seen = 0
    for line in r.iter_lines():
        if line.startswith(b"data: "):
            seen += 1
            if seen == 3:
                break
    r.close()  # the client goes away mid-stream
    m = server.wait_idle()
    assert m['trtllm_requests_total{outcome="aborted"}'] == before['trtllm_requests_total{outcome="aborted"}'] + 1
    # It did not run to the end.
    assert m["trtllm_generation_tokens_total"] - before["trtllm_generation_tokens_total"] < 200


def test_sigterm_drains_in_flight_streams():
    s = Server()
    got, first = {}, threading.Event()

    def stream():
        body = {"prompt": "drain me", "max_tokens": 240, "temperature": 0, "stream": True, "ignore_eos": True,
                "stream_options": {"include_usage": True}}
        events = []
        with requests.post(s.url + "/v1/completions", json=body, stream=True, timeout=120) as r:
            for line in r.iter_lines():
                if line.startswith(b"data: "):
                    events.append(line[6:].decode())
                    first.set()
        got["events"] = events
        first.set()

    t = threading.Thread(target=stream)
    t.start()
    try:
        assert first.wait(60), "no first chunk"
        code = s.stop(timeout=60)
        t.join(60)
    finally:
        if s.proc.poll() is None:
            s.proc.kill()
    assert code == 0, "".join(s.lines)
    events = got["events"]
    assert events[-1] == "[DONE]"
    assert json.loads(events[-2])["usage"]["completion_tokens"] == 240, "the stream was cut short"
    assert any("draining" in line for line in s.lines), "".join(s.lines)


def test_return_token_ids_times_every_token(server):
    """vLLM's `return_token_ids`: every streamed chunk carries its token ids (a token whose text is
    still empty gets its own chunk), their concatenation equals the non-streamed ids, and there is
    one id per generated token."""
    body = {"prompt": "alpha beta", "max_tokens": 24, "temperature": 0, "ignore_eos": True, "return_token_ids": True}
    whole = requests.post(server.url + "/v1/completions", json=body, timeout=60).json()
    ids = whole["choices"][0]["token_ids"]
    assert len(ids) == 24 and whole["usage"]["completion_tokens"] == 24
    r = requests.post(server.url + "/v1/completions", json={**body, "stream": True}, stream=True, timeout=60)
    streamed = []
    for line in r.iter_lines():
        if line.startswith(b"data: ") and line != b"data: [DONE]":
            for c in json.loads(line[6:]).get("choices", []):
                assert "token_ids" in c
                streamed.extend(c["token_ids"])
    assert streamed == ids
