"""The server through the official `openai` client: completions, chat, streaming (with a final
usage chunk), stop strings, n > 1, logprobs; and raw SSE through curl."""

import json
import subprocess

import openai
import pytest

from conftest import BIN, FIXTURE

PROMPTS = ["The quick brown fox", "Once upon a time", "In the beginning", "Soyer trained as a"]
GREEDY = dict(temperature=0, extra_body={"ignore_eos": True})


@pytest.fixture(scope="module")
def client(server):
    return openai.OpenAI(base_url=server.url + "/v1", api_key="unused", max_retries=0, timeout=60)


def test_models(client):
    models = client.models.list().data
    assert [m.id for m in models] == ["llama"]


def test_greedy_completion_matches_trtllm_run(client):
    r = client.completions.create(model="llama", prompt=PROMPTS[0], max_tokens=16, **GREEDY)
    c = r.choices[0]
    assert c.finish_reason == "length" and r.usage.completion_tokens == 16
    run = subprocess.run(
        [str(BIN), "run", "--model", str(FIXTURE), "--device", "cpu", "--input-text", PROMPTS[0], "--max-output-len", "16", "--ignore-eos"],
        capture_output=True, timeout=120, check=True,
    )
    # Bytes, not text mode: the output may hold a "\r" that universal newlines would rewrite.
    assert c.text == run.stdout.decode()[:-1], (c.text, run.stdout)


def test_chat(client):
    r = client.chat.completions.create(model="llama", messages=[{"role": "user", "content": "hi"}], max_tokens=8, temperature=0)
    c = r.choices[0]
    assert c.message.role == "assistant" and isinstance(c.message.content, str)
    assert c.finish_reason in ("stop", "length")
    # "<s>user\nhi</s>\n<s>assistant\n" from the fixture's template, no extra BOS.
    assert r.usage.prompt_tokens > 5 and r.usage.total_tokens == r.usage.prompt_tokens + r.usage.completion_tokens


def test_streaming_completion_equals_non_streaming(client):
    full = client.completions.create(model="llama", prompt=PROMPTS[1], max_tokens=20, **GREEDY).choices[0].text
    chunks = list(client.completions.create(model="llama", prompt=PROMPTS[1], max_tokens=20, stream=True,
                                            stream_options={"include_usage": True}, **GREEDY))
    assert "".join(c.choices[0].text for c in chunks if c.choices) == full
    assert chunks[-1].choices == [] and chunks[-1].usage.completion_tokens == 20
    assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] == "length"


def test_streaming_chat(client):
    msgs = [{"role": "system", "content": "be brief"}, {"role": "user", "content": "hello"}]
    full = client.chat.completions.create(model="llama", messages=msgs, max_tokens=12, **GREEDY).choices[0].message.content
    chunks = list(client.chat.completions.create(model="llama", messages=msgs, max_tokens=12, stream=True,
                                                 stream_options={"include_usage": True}, **GREEDY))
    assert chunks[0].choices[0].delta.role == "assistant"
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == full
    assert chunks[-1].usage.completion_tokens == 12


def test_stop_string(client):
    for p in PROMPTS:
        full = client.completions.create(model="llama", prompt=p, max_tokens=24, **GREEDY).choices[0].text
        stop = next((full[i:i + 2] for i in range(3, len(full) - 1) if full[i:i + 2].isascii() and full[i:i + 2].isalpha()), None)
        if stop:
            break
    assert stop, "no usable stop string in the greedy outputs"
    for stream in (False, True):
        r = client.completions.create(model="llama", prompt=p, max_tokens=24, stop=[stop, "@@never@@"], stream=stream, **GREEDY)
        if stream:
            chunks = [c for c in r if c.choices]
            text, reason = "".join(c.choices[0].text for c in chunks), chunks[-1].choices[0].finish_reason
        else:
            text, reason = r.choices[0].text, r.choices[0].finish_reason
        assert (text, reason) == (full[: full.index(stop)], "stop")


def test_n_choices(client):
    r = client.completions.create(model="llama", prompt=PROMPTS[2], max_tokens=10, n=3, temperature=0.9, seed=7, extra_body={"ignore_eos": True})
    assert sorted(c.index for c in r.choices) == [0, 1, 2]
    assert r.usage.completion_tokens == 30
    again = client.completions.create(model="llama", prompt=PROMPTS[2], max_tokens=10, n=3, temperature=0.9, seed=7, extra_body={"ignore_eos": True})
    assert [c.text for c in r.choices] == [c.text for c in again.choices], "seeded sampling must repeat"
    greedy = client.completions.create(model="llama", prompt=PROMPTS[2], max_tokens=10, n=2, **GREEDY)
    assert greedy.choices[0].text == greedy.choices[1].text
    chat = client.chat.completions.create(model="llama", messages=[{"role": "user", "content": "x"}], max_tokens=5, n=2, **GREEDY)
    assert len(chat.choices) == 2 and chat.choices[0].message.content == chat.choices[1].message.content
    # Several prompts x n: choice index = prompt * n + i.
    multi = client.completions.create(model="llama", prompt=PROMPTS[:2], max_tokens=4, n=2, **GREEDY)
    assert sorted(c.index for c in multi.choices) == [0, 1, 2, 3]


def test_logprobs(client):
    r = client.completions.create(model="llama", prompt=PROMPTS[3], max_tokens=6, logprobs=3, **GREEDY)
    lp = r.choices[0].logprobs
    assert len(lp.tokens) == len(lp.token_logprobs) == len(lp.top_logprobs) == 6
    for chosen, top in zip(lp.token_logprobs, lp.top_logprobs):
        assert chosen <= 0 and 1 <= len(top) <= 3
        # Distinct tokens may share a text (byte pieces shown as U+FFFD): a key keeps the best.
        assert abs(chosen - max(top.values())) < 1e-5, "greedy picks the most likely token"
    c = client.chat.completions.create(model="llama", messages=[{"role": "user", "content": "y"}], max_tokens=4,
                                       logprobs=True, top_logprobs=2, **GREEDY)
    content = c.choices[0].logprobs.content
    assert len(content) == 4 and all(len(t.top_logprobs) == 2 and t.logprob <= 0 for t in content)


def test_penalties_and_extensions_accepted(client):
    r = client.completions.create(model="llama", prompt=PROMPTS[0], max_tokens=8, presence_penalty=1.5, frequency_penalty=0.5,
                                  temperature=0, extra_body={"repetition_penalty": 1.3, "top_k": 5, "min_p": 0.05, "ignore_eos": True})
    assert r.usage.completion_tokens == 8


def test_curl_sse(server):
    body = json.dumps({"prompt": PROMPTS[0], "max_tokens": 8, "temperature": 0, "stream": True, "ignore_eos": True,
                       "stream_options": {"include_usage": True}})
    out = subprocess.run(["curl", "-sN", "--max-time", "60", "-H", "Content-Type: application/json", "-d", body, server.url + "/v1/completions"],
                         capture_output=True, text=True, timeout=90, check=True).stdout
    events = [line[len("data: "):] for line in out.splitlines() if line.startswith("data: ")]
    assert events[-1] == "[DONE]"
    chunks = [json.loads(e) for e in events[:-1]]
    assert all(c["object"] == "text_completion" for c in chunks)
    assert chunks[-1]["usage"]["completion_tokens"] == 8
    assert all(line == "" or line.startswith(("data: ", ":")) for line in out.splitlines())
