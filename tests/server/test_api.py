"""/tokenize, /detokenize (vLLM shapes) and /v1/embeddings (official `openai` client)."""

import base64
import json
import math
import struct

import openai
import pytest
import requests

from test_errors import check_error

HIDDEN = 64  # tests/fixtures/llama/config.json


@pytest.fixture(scope="module")
def client(server):
    return openai.OpenAI(base_url=server.url + "/v1", api_key="unused", max_retries=0, timeout=60)


def post(server, path, body):
    return requests.post(server.url + path, json=body, timeout=30)


def test_tokenize_detokenize_round_trip(server):
    r = post(server, "/tokenize", {"model": "llama", "prompt": "The quick brown fox"})
    assert r.status_code == 200, r.text
    t = r.json()
    assert set(t) == {"count", "max_model_len", "tokens"}
    assert t["count"] == len(t["tokens"]) > 0 and t["max_model_len"] > 0
    # The same ids a completion of this prompt counts.
    c = post(server, "/v1/completions", {"prompt": "The quick brown fox", "max_tokens": 1}).json()
    assert c["usage"]["prompt_tokens"] == t["count"]
    raw = post(server, "/tokenize", {"prompt": "The quick brown fox", "add_special_tokens": False}).json()
    assert raw["count"] <= t["count"]
    d = post(server, "/detokenize", {"model": "llama", "tokens": raw["tokens"]})
    assert d.status_code == 200 and set(d.json()) == {"prompt"}
    assert "quick brown fox" in d.json()["prompt"]
    strs = post(server, "/tokenize", {"prompt": "hi there", "return_token_strs": True}).json()
    assert len(strs["token_strs"]) == strs["count"]


def test_tokenize_messages_matches_chat_prompt_tokens(server):
    msgs = [{"role": "user", "content": "hello"}]
    t = post(server, "/tokenize", {"messages": msgs}).json()
    c = post(server, "/v1/chat/completions", {"messages": msgs, "max_tokens": 1}).json()
    assert t["count"] == c["usage"]["prompt_tokens"]
    # chat_template_kwargs reach the template (the fixture's ignores unknown variables).
    k = post(server, "/v1/chat/completions", {"messages": msgs, "max_tokens": 1, "chat_template_kwargs": {"enable_thinking": False}})
    assert k.status_code == 200 and k.json()["usage"]["prompt_tokens"] == t["count"], k.text


def test_unknown_field_is_ignored_with_a_warning(server):
    r = post(server, "/v1/completions", {"prompt": "x", "max_tokens": 1, "frobnicate": 1})
    assert r.status_code == 200, r.text
    assert any("frobnicate" in l and "WARN" in l for l in server.lines)


BAD = [
    ("/tokenize", {}, "prompt"),
    ("/tokenize", {"prompt": 5}, "prompt"),
    ("/tokenize", {"prompt": "x", "messages": [{"role": "user", "content": "x"}]}, "messages"),
    ("/tokenize", {"messages": "x"}, "messages"),
    ("/tokenize", {"prompt": "x", "add_special_tokens": "yes"}, "add_special_tokens"),
    ("/tokenize", {"prompt": "x", "continue_final_message": True}, "continue_final_message"),
    ("/detokenize", {}, "tokens"),
    ("/detokenize", {"tokens": [1, 99999]}, "tokens[1]"),
    ("/detokenize", {"tokens": [-1]}, "tokens[0]"),
    ("/detokenize", {"tokens": "abc"}, "tokens"),
    ("/v1/completions", {"prompt": "x", "guided_decoding_backend": "xgrammar"}, "guided_decoding_backend"),
    ("/v1/completions", {"prompt": "x", "min_tokens": 3}, "min_tokens"),
    ("/v1/completions", {"prompt": "x", "tools": []}, "tools"),
    ("/v1/chat/completions", {"messages": [{"role": "user", "content": "x"}], "tools": [{"type": "function"}]}, "tools[0].function"),
    ("/v1/chat/completions", {"messages": [{"role": "user", "content": "x"}], "tool_choice": "required"}, "tool_choice"),
    ("/v1/chat/completions", {"messages": [{"role": "user", "content": "x"}], "guided_json": 5}, "guided_json"),
    ("/v1/completions", {"prompt": "x", "guided_regex": "(unclosed"}, "guided_regex"),
    ("/v1/completions", {"prompt": "x", "response_format": {"type": "json_schema", "json_schema": {"name": "x", "schema": {"type": "nope"}}}}, "response_format"),
    ("/v1/completions", {"prompt": "x", "guided_regex": "a", "guided_choice": ["b"]}, "guided_choice"),
    ("/v1/embeddings", {}, "input"),
    ("/v1/embeddings", {"input": []}, "input"),
    ("/v1/embeddings", {"input": 5}, "input"),
    ("/v1/embeddings", {"input": [99999]}, "input"),
    ("/v1/embeddings", {"input": "x", "dimensions": 7}, "dimensions"),
    ("/v1/embeddings", {"input": "x", "encoding_format": "int8"}, "encoding_format"),
    ("/v1/embeddings", {"input": "x", "pooling": "cls"}, "pooling"),
    ("/v1/embeddings", {"input": "x", "truncate_prompt_tokens": 4}, "truncate_prompt_tokens"),
]


@pytest.mark.parametrize("path,body,param", BAD, ids=[str(i) for i in range(len(BAD))])
def test_bad_requests_name_the_field(server, path, body, param):
    check_error(post(server, path, body), 400, param)


def norm(v):
    return math.sqrt(sum(x * x for x in v))


def test_embeddings(client, server):
    r = client.embeddings.create(model="llama", input=["The quick brown fox", "The quick brown fox", "Once upon a time"])
    e = [d.embedding for d in r.data]
    assert [d.index for d in r.data] == [0, 1, 2]
    assert all(len(v) == HIDDEN for v in e)
    assert e[0] == e[1] and e[0] != e[2]
    assert all(abs(norm(v) - 1) < 1e-4 for v in e)
    assert r.usage.prompt_tokens > 0 and r.usage.total_tokens == r.usage.prompt_tokens
    # Token ids give the same vector as the text they encode.
    ids = requests.post(server.url + "/tokenize", json={"prompt": "The quick brown fox"}, timeout=30).json()["tokens"]
    by_ids = client.embeddings.create(model="llama", input=[ids]).data[0].embedding
    assert max(abs(a - b) for a, b in zip(by_ids, e[0])) < 1e-5
    # Mean pooling differs from last-token pooling, and is also unit norm.
    mean = client.embeddings.create(model="llama", input="The quick brown fox", extra_body={"pooling": "mean"}).data[0].embedding
    assert mean != e[0] and abs(norm(mean) - 1) < 1e-4
    # base64: little-endian f32 of the same vector.
    r = requests.post(server.url + "/v1/embeddings", json={"input": "Once upon a time", "encoding_format": "base64",
                                                           "dimensions": HIDDEN}, timeout=30)
    assert r.status_code == 200, r.text
    raw = base64.b64decode(r.json()["data"][0]["embedding"])
    vec = struct.unpack(f"<{HIDDEN}f", raw)
    assert max(abs(a - b) for a, b in zip(vec, e[2])) < 1e-6
    # The openai client's default (base64 decoded by numpy or struct) also round-trips.
    server.wait_idle()


def log_lines(server, needle, want=1, timeout=10):
    import time
    deadline = time.time() + timeout
    while True:
        lines = [l for l in server.lines if "request finished" in l and f"id={needle} " in l]
        if len(lines) >= want or time.time() > deadline:
            return lines
        time.sleep(0.05)


def test_request_log_one_line_per_request(client, server):
    ids = []
    for i in range(3):
        ids.append(client.completions.create(model="llama", prompt=f"log {i}", max_tokens=3).id)
    ids.append(client.chat.completions.create(model="llama", messages=[{"role": "user", "content": "x"}], max_tokens=2).id)
    chunks = list(client.completions.create(model="llama", prompt="stream log", max_tokens=4, stream=True))
    ids.append(chunks[0].id)
    ids.append(requests.post(server.url + "/v1/embeddings", json={"input": "log"}, timeout=30).json()["id"])
    for rid in ids:
        lines = log_lines(server, rid)
        assert len(lines) == 1, (rid, lines)
        line = lines[0]
        assert "INFO" in line and ('status="ok"' in line or "status=ok" in line), line
        assert "prompt_tokens=" in line and "completion_tokens=" in line and "total_ms=" in line, line
        if not rid.startswith("embd-"):
            assert "ttft_ms=Some(" in line, line
    assert len(set(ids)) == len(ids)
    before = sum("request rejected" in l for l in server.lines)
    requests.post(server.url + "/v1/completions", json={"prompt": "x", "temperature": 9}, timeout=30)
    import time
    time.sleep(0.2)
    assert sum("request rejected" in l for l in server.lines) == before + 1


def test_startup_block_and_metrics_label(server):
    block = [l for l in server.lines if "config: " in l]
    for key in ("model: ", "served model name: llama", "max-num-seqs: 32", "KV cache: 48 blocks", "chat template: "):
        assert any(key in l for l in block), (key, block)
    text = requests.get(server.url + "/metrics", timeout=10).text
    samples = [l for l in text.splitlines() if l and not l.startswith("#")]
    assert samples and all('model_name="llama"' in l for l in samples), samples[:3]
