"""A corpus of malformed requests: each gets the right status and an OpenAI-style JSON error
(naming the field where there is one), and the server keeps serving. Plus 401 and 429."""

import json
import threading

import pytest
import requests

C, CHAT = "/v1/completions", "/v1/chat/completions"
OK_MSGS = [{"role": "user", "content": "hi"}]

CORPUS = [
    # (path, body: dict | bytes, status, param or None)
    (C, b'{"prompt": "x",', 400, None),
    (C, b"", 400, None),
    (C, b"[1, 2]", 400, None),
    (C, b"null", 400, None),
    (C, b"\xff\xfe\x00", 400, None),
    (C, b"[" * 5000, 400, None),
    (C, {}, 400, "prompt"),
    (C, {"prompt": 5}, 400, "prompt"),
    (C, {"prompt": []}, 400, "prompt"),
    (C, {"prompt": [1, "a"]}, 400, "prompt"),
    (C, {"prompt": [99999]}, 400, "prompt"),
    (C, {"prompt": list(range(3, 303))}, 400, "prompt"),
    (C, {"prompt": "x", "max_tokens": "many"}, 400, "max_tokens"),
    (C, {"prompt": "x", "max_tokens": 0}, 400, "max_tokens"),
    (C, {"prompt": "x", "max_tokens": -3}, 400, "max_tokens"),
    (C, {"prompt": "x", "max_tokens": 100000}, 400, "max_tokens"),
    (C, {"prompt": "x", "temperature": -1}, 400, "temperature"),
    (C, {"prompt": "x", "temperature": 3}, 400, "temperature"),
    (C, {"prompt": "x", "temperature": "hot"}, 400, "temperature"),
    (C, {"prompt": "x", "top_p": 0}, 400, "top_p"),
    (C, {"prompt": "x", "top_p": 1.5}, 400, "top_p"),
    (C, {"prompt": "x", "n": 0}, 400, "n"),
    (C, {"prompt": "x", "n": 1000}, 400, "n"),
    (C, {"prompt": "x", "logprobs": 50}, 400, "logprobs"),
    (C, {"prompt": "x", "stop": 5}, 400, "stop"),
    (C, {"prompt": "x", "stop": [""]}, 400, "stop"),
    (C, {"prompt": "x", "stop": ["a"] * 20}, 400, "stop"),
    (C, {"prompt": "x", "presence_penalty": 3}, 400, "presence_penalty"),
    (C, {"prompt": "x", "frequency_penalty": -9}, 400, "frequency_penalty"),
    (C, {"prompt": "x", "repetition_penalty": 0}, 400, "repetition_penalty"),
    (C, {"prompt": "x", "seed": -1}, 400, "seed"),
    (C, {"prompt": "x", "echo": True}, 400, "echo"),
    (C, {"prompt": "x", "best_of": 3}, 400, "best_of"),
    (C, {"prompt": "x", "logit_bias": {"5": 10}}, 400, "logit_bias"),
    (C, {"prompt": "x", "stream_options": {"include_usage": True}}, 400, "stream_options"),
    (C, {"prompt": "x", "stream": "yes"}, 400, "stream"),
    (C, {"prompt": "x", "model": "gpt-4"}, 404, "model"),
    (CHAT, {}, 400, "messages"),
    (CHAT, {"messages": []}, 400, "messages"),
    (CHAT, {"messages": "hi"}, 400, "messages"),
    (CHAT, {"messages": [{"content": "x"}]}, 400, "messages[0].role"),
    (CHAT, {"messages": [{"role": "wizard", "content": "x"}]}, 400, "messages[0].role"),
    (CHAT, {"messages": [{"role": "user", "content": 5}]}, 400, "messages[0].content"),
    (CHAT, {"messages": [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": "x"}}]}]}, 400, "messages[0].content[0]"),
    (CHAT, {"messages": OK_MSGS, "top_logprobs": 3}, 400, "top_logprobs"),
    (CHAT, {"messages": OK_MSGS, "logprobs": True, "top_logprobs": 99}, 400, "top_logprobs"),
    (CHAT, {"messages": OK_MSGS, "max_completion_tokens": 0}, 400, "max_completion_tokens"),
    (CHAT, {"messages": [{"role": "user", "content": "word " * 400}]}, 400, "prompt"),
    (CHAT, {"messages": OK_MSGS, "model": "nope"}, 404, "model"),
    ("/v1/nothing", {}, 404, None),
]


def check_error(r, status, param):
    assert r.status_code == status, (r.status_code, r.text)
    assert r.headers["content-type"].startswith("application/json")
    err = r.json()["error"]
    assert isinstance(err["message"], str) and err["message"] and isinstance(err["type"], str)
    if param is not None:
        assert err["param"] == param, err


@pytest.mark.parametrize("path,body,status,param", CORPUS, ids=[f"{i}" for i in range(len(CORPUS))])
def test_malformed(server, path, body, status, param):
    data = body if isinstance(body, bytes) else json.dumps(body).encode()
    r = requests.post(server.url + path, data=data, headers={"Content-Type": "application/json"}, timeout=30)
    check_error(r, status, param)


def test_still_serving_after_the_corpus(server):
    r = requests.get(server.url + "/v1/completions", timeout=10)
    check_error(r, 405, None)
    assert requests.get(server.url + "/health", timeout=10).json() == {"status": "ok"}
    r = requests.post(server.url + C, json={"prompt": "still here", "max_tokens": 3, "ignore_eos": True}, timeout=30)
    assert r.status_code == 200 and r.json()["usage"]["completion_tokens"] == 3
    m = server.wait_idle()
    assert m['trtllm_requests_total{outcome="rejected"}'] > 0


def test_api_key(strict_server):
    url = strict_server.url
    body = {"prompt": "k", "max_tokens": 2}
    check_error(requests.post(url + C, json=body, timeout=30), 401, None)
    check_error(requests.post(url + C, json=body, headers={"Authorization": "Bearer wrong"}, timeout=30), 401, None)
    check_error(requests.get(url + "/v1/models", timeout=30), 401, None)
    ok = requests.post(url + C, json=body, headers={"Authorization": "Bearer sekret"}, timeout=30)
    assert ok.status_code == 200, ok.text
    assert requests.get(url + "/health", timeout=10).status_code == 200
    assert requests.get(url + "/metrics", timeout=10).status_code == 200


def test_queue_full_is_429(strict_server):
    url, statuses, bodies = strict_server.url, [], []
    lock = threading.Lock()

    def one():
        r = requests.post(url + C, json={"prompt": "busy", "max_tokens": 150, "ignore_eos": True},
                          headers={"Authorization": "Bearer sekret"}, timeout=120)
        with lock:
            statuses.append(r.status_code)
            bodies.append(r)

    threads = [threading.Thread(target=one) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(150)
    assert 200 in statuses and 429 in statuses, statuses
    for r in bodies:
        if r.status_code == 429:
            check_error(r, 429, None)
            assert r.json()["error"]["code"] == "queue_full"
            assert r.headers.get("Retry-After") == "1"
    strict_server.wait_idle()
