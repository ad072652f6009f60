"""Structured outputs through the official `openai` client on the tiny Llama fixture (random
weights: whatever the grammar allows, the model picks at random, so every output exercises the
mask): 200 random JSON schemas from a seeded generator plus a few real-world ones, all sent at
once (one batch), every output validated with `jsonschema`; `n` > 1, streaming, regex, choice
and Lark grammars through vLLM's fields and `structured_outputs`.

The fixture's context is 256 tokens, so the generated schemas bound every document's size
(enums, patterns of bounded length, integer ranges, `maxItems`, closed objects): a
`finish_reason` of `length` would be a truncated document, and fails the test."""

import json
import random
import re
from concurrent.futures import ThreadPoolExecutor

import jsonschema
import openai
import pytest

from conftest import Server

MAX_TOKENS = 215


@pytest.fixture(scope="module")
def sserver():
    s = Server("--max-batch-size", "32", "--kv-blocks", "600", "--max-queue", "512")
    yield s
    assert s.stop() == 0, "".join(s.lines)


@pytest.fixture(scope="module")
def client(sserver):
    return openai.OpenAI(base_url=sserver.url + "/v1", api_key="unused", max_retries=0, timeout=600)


def scalar(rng):
    k = rng.randrange(7)
    if k == 0:
        return {"type": "string", "enum": rng.sample(["red", "green", "blue", "a b", 'q"t', "x\\y"], rng.randint(1, 4))}
    if k == 1:
        return {"type": "string", "pattern": "^[a-z]{1,%d}$" % rng.randint(1, 6)}
    if k == 2:
        lo = rng.randint(-50, 50)
        return {"type": "integer", "minimum": lo, "maximum": lo + rng.randint(0, 500)}
    if k == 3:
        return {"type": "boolean"}
    if k == 4:
        return {"type": "null"}
    if k == 5:
        return {"enum": [1, "two", None, True][: rng.randint(1, 4)]}
    return {"const": rng.choice(["fixed", 7, False])}


def value(rng, depth):
    k = rng.randrange(6 if depth < 2 else 4)
    if k < 3:
        return scalar(rng)
    if k == 3:
        return {"type": "array", "items": scalar(rng), "minItems": rng.randint(0, 1), "maxItems": rng.randint(1, 3)}
    if k == 4:
        return obj(rng, depth + 1, rng.randint(1, 3))
    return {"anyOf": [scalar(rng), scalar(rng)]}


def obj(rng, depth, n):
    props = {f"k{i}": value(rng, depth) for i in range(n)}
    req = sorted(rng.sample(list(props), rng.randint(0, n)))
    return {"type": "object", "properties": props, "required": req, "additionalProperties": False}


def random_schemas(count, seed=18):
    rng = random.Random(seed)
    return [obj(rng, 0, rng.randint(1, 4)) for _ in range(count)]


REAL = [
    {  # OpenAI's structured-outputs example, bounded
        "type": "object",
        "properties": {
            "name": {"type": "string", "pattern": "^[A-Za-z ]{1,12}$"},
            "date": {"type": "string", "pattern": "^[0-9]{4}-[0-9]{2}-[0-9]{2}$"},
            "participants": {"type": "array", "items": {"type": "string", "pattern": "^[A-Z][a-z]{1,6}$"}, "maxItems": 3},
        },
        "required": ["name", "date", "participants"],
        "additionalProperties": False,
    },
    {  # an address with $defs / $ref
        "$defs": {"zip": {"type": "string", "pattern": "^[0-9]{5}$"}},
        "type": "object",
        "properties": {
            "street": {"type": "string", "pattern": "^[0-9]{1,4} [A-Z][a-z]{1,8}$"},
            "zip": {"$ref": "#/$defs/zip"},
            "country": {"enum": ["US", "DE", "FR"]},
        },
        "required": ["street", "zip", "country"],
        "additionalProperties": False,
    },
    {  # a tool-call-shaped object
        "type": "object",
        "properties": {
            "name": {"const": "get_weather"},
            "arguments": {
                "type": "object",
                "properties": {"city": {"type": "string", "pattern": "^[A-Z][a-z]{2,8}$"}, "unit": {"enum": ["c", "f"]}},
                "required": ["city", "unit"],
                "additionalProperties": False,
            },
        },
        "required": ["name", "arguments"],
        "additionalProperties": False,
    },
    {  # an array at the top
        "type": "array",
        "items": {"type": "object", "properties": {"id": {"type": "integer", "minimum": 0, "maximum": 999}}, "required": ["id"], "additionalProperties": False},
        "minItems": 1,
        "maxItems": 4,
    },
]


def ask(client, schema, i):
    r = client.chat.completions.create(
        model="llama",
        messages=[{"role": "user", "content": f"Give JSON number {i}."}],
        max_tokens=MAX_TOKENS,
        temperature=1.0,
        seed=i,
        response_format={"type": "json_schema", "json_schema": {"name": f"s{i}", "schema": schema, "strict": True}},
    )
    return r.choices[0]


def test_200_random_and_real_schemas_validate(client):
    schemas = random_schemas(200) + REAL
    with ThreadPoolExecutor(64) as pool:
        outs = list(pool.map(lambda a: ask(client, *a), [(s, i) for i, s in enumerate(schemas)]))
    bad = []
    for i, (schema, c) in enumerate(zip(schemas, outs)):
        try:
            assert c.finish_reason == "stop", f"finish_reason {c.finish_reason}"
            jsonschema.validate(json.loads(c.message.content), schema)
        except Exception as e:  # collect every failure, then report them together
            bad.append(f"schema {i}: {e}\n  schema: {json.dumps(schema)}\n  output: {c.message.content!r}")
    assert not bad, f"{len(bad)} of {len(schemas)} outputs invalid:\n" + "\n".join(bad[:5])


def test_n_choices_and_json_object(client):
    schema = REAL[2]
    r = client.chat.completions.create(
        model="llama", messages=[{"role": "user", "content": "weather?"}], max_tokens=MAX_TOKENS, n=4, temperature=1.0, seed=3,
        extra_body={"guided_json": schema},
    )
    assert len(r.choices) == 4
    for c in r.choices:
        jsonschema.validate(json.loads(c.message.content), schema)
    r = client.completions.create(model="llama", prompt="an object:", max_tokens=MAX_TOKENS, temperature=0.0, extra_body={"response_format": {"type": "json_object"}})
    # json_object allows any object, so a random model may not close it within the budget.
    if r.choices[0].finish_reason == "stop":
        assert isinstance(json.loads(r.choices[0].text), dict)
    else:
        assert r.choices[0].text.startswith("{")


def test_streamed_output_validates(client):
    schema = REAL[0]
    stream = client.chat.completions.create(
        model="llama", messages=[{"role": "user", "content": "meeting"}], max_tokens=MAX_TOKENS, temperature=1.0, seed=5,
        stream=True, response_format={"type": "json_schema", "json_schema": {"name": "m", "schema": schema}},
    )
    parts, finish = [], None
    for ch in stream:
        for c in ch.choices:
            parts.append(c.delta.content or "")
            finish = c.finish_reason or finish
    assert finish == "stop"
    jsonschema.validate(json.loads("".join(parts)), schema)


def test_regex_choice_and_lark(client):
    for seed in range(6):
        r = client.completions.create(model="llama", prompt="x", max_tokens=40, temperature=1.0, seed=seed, extra_body={"guided_regex": r"[0-9]{3}-[a-c]{2,4}"})
        assert re.fullmatch(r"[0-9]{3}-[a-c]{2,4}", r.choices[0].text), r.choices[0].text
        assert r.choices[0].finish_reason == "stop"
        r = client.completions.create(model="llama", prompt="x", max_tokens=40, temperature=1.0, seed=seed, extra_body={"guided_choice": ["yes", "no", "maybe so"]})
        assert r.choices[0].text in ("yes", "no", "maybe so")
        r = client.chat.completions.create(model="llama", messages=[{"role": "user", "content": "sum"}], max_tokens=60, temperature=1.0, seed=seed,
                                           extra_body={"guided_grammar": 'start: num ("+" num){0,3}\nnum: /[1-9][0-9]?/'})
        assert re.fullmatch(r"[1-9][0-9]?(\+[1-9][0-9]?){0,3}", r.choices[0].message.content), r.choices[0].message.content
        r = client.completions.create(model="llama", prompt="x", max_tokens=40, temperature=1.0, seed=seed, extra_body={"structured_outputs": {"choice": ["alpha", "beta"]}})
        assert r.choices[0].text in ("alpha", "beta")


def test_unconstrained_requests_in_the_same_batch_are_untouched(client, sserver):
    # Greedy text of a plain request is the same alone and beside constrained ones.
    plain = dict(model="llama", prompt="The quick brown fox", max_tokens=24, temperature=0.0)
    alone = client.completions.create(**plain).choices[0].text
    with ThreadPoolExecutor(8) as pool:
        futs = [pool.submit(client.completions.create, **plain)] + [
            pool.submit(client.completions.create, model="llama", prompt="x", max_tokens=40, temperature=1.0, seed=s, extra_body={"guided_regex": "[a-z]{5,9}"}) for s in range(7)
        ]
        mixed = futs[0].result().choices[0].text
        for f in futs[1:]:
            assert re.fullmatch("[a-z]{5,9}", f.result().choices[0].text)
    assert mixed == alone
