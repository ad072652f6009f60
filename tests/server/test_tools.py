"""Tool calling through the official `openai` client with a Qwen2.5 chat template
(`templates/qwen2.5.jinja`, Hermes-style `<tool_call>` output): `tools` reach the template,
a named / `required` `tool_choice` is enforced by a grammar and parsed into `tool_calls`, the
round trip tools -> tool_calls -> tool message -> answer renders and answers, and streamed
tool-call deltas reassemble into the same kind of call. The tiny Llama fixture (random weights)
is copied with a 4096-token context: the Qwen tools preamble does not fit its 256."""

import json
import shutil
from pathlib import Path

import jsonschema
import openai
import pytest

from conftest import FIXTURE, Server

TEMPLATE = Path(__file__).parent / "templates" / "qwen2.5.jinja"
WEATHER = {
    "type": "object",
    "properties": {"city": {"type": "string", "pattern": "^[A-Z][a-z]{2,8}$"}, "unit": {"enum": ["c", "f"]}},
    "required": ["city", "unit"],
    "additionalProperties": False,
}
TIME = {"type": "object", "properties": {"tz": {"enum": ["UTC", "CET"]}}, "required": ["tz"], "additionalProperties": False}
TOOLS = [
    {"type": "function", "function": {"name": "get_weather", "description": "Weather in a city", "parameters": WEATHER}},
    {"type": "function", "function": {"name": "get_time", "description": "The time", "parameters": TIME}},
]
SCHEMAS = {"get_weather": WEATHER, "get_time": TIME}
ASK = [{"role": "user", "content": "Weather in Paris?"}]


@pytest.fixture(scope="module")
def tserver(tmp_path_factory):
    model = tmp_path_factory.mktemp("long") / "llama"
    shutil.copytree(FIXTURE, model)
    cfg = json.loads((model / "config.json").read_text())
    cfg["max_position_embeddings"] = 4096
    (model / "config.json").write_text(json.dumps(cfg))
    s = Server("--chat-template", str(TEMPLATE), "--max-batch-size", "8", "--max-seq-len", "2048", "--kv-blocks", "600", model=model)
    yield s
    assert s.stop() == 0, "".join(s.lines)


@pytest.fixture(scope="module")
def client(tserver):
    return openai.OpenAI(base_url=tserver.url + "/v1", api_key="unused", max_retries=0, timeout=300)


def chat(client, messages, **kw):
    args = {"model": "llama", "messages": messages, "max_tokens": 120, "temperature": 1.0, "seed": 7, **kw}
    return client.chat.completions.create(**args)


def test_round_trip_named_call_then_answer(client):
    plain = chat(client, ASK, max_tokens=1)
    r = chat(client, ASK, tools=TOOLS, tool_choice={"type": "function", "function": {"name": "get_weather"}})
    assert r.usage.prompt_tokens > plain.usage.prompt_tokens + 100, "tools reach the chat template"
    c = r.choices[0]
    assert c.finish_reason == "tool_calls", c
    (call,) = c.message.tool_calls
    assert call.type == "function" and call.function.name == "get_weather" and call.id
    args = json.loads(call.function.arguments)
    jsonschema.validate(args, WEATHER)
    history = ASK + [
        c.message.model_dump(exclude_none=True),
        {"role": "tool", "tool_call_id": call.id, "content": json.dumps({"temp_c": 21})},
    ]
    r2 = chat(client, history, tools=TOOLS, tool_choice="none")
    # The call and its result are in the prompt: more tokens than the question alone.
    assert r2.usage.prompt_tokens > plain.usage.prompt_tokens + len(call.function.arguments)
    assert r2.choices[0].message.tool_calls is None
    assert isinstance(r2.choices[0].message.content, str) and r2.choices[0].finish_reason in ("stop", "length")
    r3 = chat(client, history, tools=TOOLS, tool_choice="auto")
    assert r3.usage.prompt_tokens > r2.usage.prompt_tokens, "auto offers the tools, none does not"


def test_required_picks_one_of_the_tools(client):
    for seed in range(4):
        r = client.chat.completions.create(model="llama", messages=ASK, tools=TOOLS, tool_choice="required", max_tokens=120, temperature=1.0, seed=seed, n=2)
        for c in r.choices:
            assert c.finish_reason == "tool_calls"
            (call,) = c.message.tool_calls
            jsonschema.validate(json.loads(call.function.arguments), SCHEMAS[call.function.name])


def test_streamed_tool_call_deltas_reassemble(client):
    stream = chat(client, ASK, tools=TOOLS, tool_choice={"type": "function", "function": {"name": "get_time"}}, stream=True)
    calls, finish, content = {}, None, ""
    for chunk in stream:
        for ch in chunk.choices:
            content += ch.delta.content or ""
            for d in ch.delta.tool_calls or []:
                c = calls.setdefault(d.index, {"id": None, "name": "", "arguments": ""})
                c["id"] = d.id or c["id"]
                if d.function:
                    c["name"] += d.function.name or ""
                    c["arguments"] += d.function.arguments or ""
            finish = ch.finish_reason or finish
    assert finish == "tool_calls" and "<tool_call>" not in content
    assert list(calls) == [0] and calls[0]["id"] and calls[0]["name"] == "get_time"
    jsonschema.validate(json.loads(calls[0]["arguments"]), TIME)


def test_auto_without_a_call_is_plain_content(client):
    r = chat(client, ASK, tools=TOOLS, max_tokens=20, temperature=0.0)
    c = r.choices[0]
    # A random model does not write `<tool_call>`: its text is the content.
    assert c.message.tool_calls is None and isinstance(c.message.content, str)
    assert c.finish_reason in ("stop", "length")
