"""The hostile-input corpus (issue 23), generated: model directories, safetensors, GGUF files,
engine build configs and command lines that an attacker or a broken download would hand trtllm.

`cases(work, fixture)` writes every input under `work` and returns the cases; `run.py` runs
them (generated in a process of their own, so the runner stays small and the peak RSS it
reads is each case's). A case is (name, argv after the binary, expect, check) with expect
"error" (must be refused cleanly) or "ok" (must succeed; then `check`, if given, lists paths
that must be absent, directories that must exist and text the output must hold)."""

import json
import os
import shutil
import struct
from pathlib import Path

# ---- GGUF writer (v3): enough to build small, valid files and break them one field at a time.
U8, I8, U16, I16, U32, I32, F32, BOOL, STR, ARR, U64, I64, F64 = range(13)


def gstr(s):
    b = s.encode() if isinstance(s, str) else s
    return struct.pack("<Q", len(b)) + b


def gval(t, v):
    if isinstance(v, bytes) and t not in (STR, ARR):
        return v  # an unknown type: raw bytes after the type id
    if t == STR:
        return gstr(v)
    if t == ARR:
        et, items = v
        return struct.pack("<IQ", et, len(items)) + b"".join(gval(et, x) for x in items)
    fmt = {U8: "B", I8: "b", U16: "H", I16: "h", U32: "I", I32: "i", F32: "f", BOOL: "?", U64: "Q", I64: "q", F64: "d"}[t]
    return struct.pack("<" + fmt, v)


def gguf(kvs, tensors, version=3, tensor_count=None, kv_count=None, align=32):
    """kvs: [(key, type, value)]; tensors: [(name, dims, ggml_type, data bytes)]."""
    head = b"GGUF" + struct.pack("<IQQ", version, len(tensors) if tensor_count is None else tensor_count,
                                 len(kvs) if kv_count is None else kv_count)
    head += b"".join(gstr(k) + struct.pack("<I", t) + gval(t, v) for k, t, v in kvs)
    off, data = 0, b""
    for name, dims, ty, blob in tensors:
        head += gstr(name) + struct.pack("<I", len(dims)) + b"".join(struct.pack("<Q", d) for d in dims)
        head += struct.pack("<IQ", ty, off)
        data += blob + b"\0" * (-len(blob) % align)
        off = len(data)
    head += b"\0" * (-len(head) % align)
    return head + data


def gguf_llama(over=None, drop=(), extra_tensors=()):
    """A one-layer llama with a SentencePiece vocabulary, f32 weights; `over` replaces metadata."""
    h, ff, heads, kv, hd = 16, 32, 2, 1, 8
    toks = ["<unk>", "<s>", "</s>"] + [f"<0x{b:02X}>" for b in range(256)] + ["\u2581", "a", "b", "\u2581a"]
    n = len(toks)
    kvs = {
        "general.architecture": (STR, "llama"),
        "llama.context_length": (U32, 64),
        "llama.embedding_length": (U32, h),
        "llama.block_count": (U32, 1),
        "llama.feed_forward_length": (U32, ff),
        "llama.attention.head_count": (U32, heads),
        "llama.attention.head_count_kv": (U32, kv),
        "llama.attention.layer_norm_rms_epsilon": (F32, 1e-6),
        "llama.rope.freq_base": (F32, 10000.0),
        "tokenizer.ggml.model": (STR, "llama"),
        "tokenizer.ggml.tokens": (ARR, (STR, toks)),
        "tokenizer.ggml.scores": (ARR, (F32, [-float(i) for i in range(n)])),
        "tokenizer.ggml.token_type": (ARR, (I32, [3] * 3 + [6] * 256 + [1] * (n - 259))),
        "tokenizer.ggml.bos_token_id": (U32, 1),
        "tokenizer.ggml.eos_token_id": (U32, 2),
    }
    kvs.update(over or {})
    for k in drop:
        kvs.pop(k, None)
    f = lambda k: struct.pack(f"<{k}f", *([0.01] * k))
    t = [("token_embd.weight", [h, n], 0, f(h * n)), ("output_norm.weight", [h], 0, f(h)),
         ("output.weight", [h, n], 0, f(h * n)), ("blk.0.attn_norm.weight", [h], 0, f(h)),
         ("blk.0.ffn_norm.weight", [h], 0, f(h)), ("blk.0.attn_q.weight", [h, heads * hd], 0, f(h * heads * hd)),
         ("blk.0.attn_k.weight", [h, kv * hd], 0, f(h * kv * hd)), ("blk.0.attn_v.weight", [h, kv * hd], 0, f(h * kv * hd)),
         ("blk.0.attn_output.weight", [heads * hd, h], 0, f(h * heads * hd)),
         ("blk.0.ffn_gate.weight", [h, ff], 0, f(h * ff)), ("blk.0.ffn_up.weight", [h, ff], 0, f(h * ff)),
         ("blk.0.ffn_down.weight", [ff, h], 0, f(h * ff))]
    return [(k, ty, v) for k, (ty, v) in kvs.items()], t + list(extra_tensors)


# ---- safetensors
def st_bytes(header, data=b"", length=None):
    h = header if isinstance(header, bytes) else json.dumps(header).encode()
    return struct.pack("<Q", len(h) if length is None else length) + h + data


def copy_model(src, dst):
    shutil.copytree(src, dst)
    return dst


def edit_config(d, **changes):
    p = d / "config.json"
    c = json.loads(p.read_text())
    for k, v in changes.items():
        if v is DROP:
            c.pop(k, None)
        else:
            c[k] = v
    p.write_text(json.dumps(c))


DROP = object()


def cases(work: Path, fixtures: Path):
    work.mkdir(parents=True, exist_ok=True)
    out = []
    llama = fixtures / "llama"

    def model(name, src=llama, **cfg):
        d = copy_model(src, work / name)
        if cfg:
            edit_config(d, **cfg)
        return d

    def loads(name, d, expect="error", paths=("weights", "run", "convert")):
        """The same directory through each load path."""
        if "weights" in paths:
            out.append((f"{name} [weights]", ["weights", "--model", str(d)], expect, None))
        if "run" in paths:
            out.append((f"{name} [run]", ["run", "--model", str(d), "--device", "cpu", "--input-text", "hi",
                                           "--max-output-len", "2"], expect, None))
        if "convert" in paths:
            out.append((f"{name} [convert]", ["convert", "--model-dir", str(d), "--output-dir", str(work / (name + ".ckpt"))],
                        expect, None))

    # 1. One integer in config.json.
    for key, val in [("num_hidden_layers", 10**9), ("num_hidden_layers", 10**6), ("num_hidden_layers", 0),
                     ("hidden_size", 10**9), ("hidden_size", 0), ("intermediate_size", 10**12),
                     ("vocab_size", 10**12), ("vocab_size", 0), ("num_attention_heads", 10**6),
                     ("num_attention_heads", 0), ("num_key_value_heads", 0), ("num_key_value_heads", 3),
                     ("head_dim", 10**9), ("max_position_embeddings", 0), ("max_position_embeddings", 10**15),
                     ("num_hidden_layers", -1), ("hidden_size", 1.5), ("vocab_size", "many"),
                     ("rms_norm_eps", "tiny"), ("hidden_act", "swish-42")]:
        loads(f"config {key}={val}", model(f"cfg-{key}-{val}", **{key: val}))
    # 2. Values that make the math meaningless.
    def rope(style, **kw):
        """RoPE settings in both spellings: transformers 5 `rope_parameters`, older `rope_scaling`."""
        if style == "parameters":
            return {"rope_parameters": {"rope_theta": 10000.0, **kw}, "rope_scaling": DROP}
        return {"rope_parameters": DROP, "rope_theta": 10000.0, "rope_scaling": kw}

    rope_cases = []
    for style in ("parameters", "scaling"):
        rope_cases += [
            (f"rope {style} linear factor 0", rope(style, rope_type="linear", factor=0.0)),
            (f"rope {style} yarn factor -2", rope(style, rope_type="yarn", factor=-2.0, original_max_position_embeddings=64)),
            (f"rope {style} llama3 low==high", rope(style, rope_type="llama3", factor=8.0, low_freq_factor=2.0,
                                                     high_freq_factor=2.0, original_max_position_embeddings=64)),
            (f"rope {style} dynamic factor -1", rope(style, rope_type="dynamic", factor=-1.0)),
            (f"rope {style} unknown type", rope(style, rope_type="warp-drive", factor=2.0)),
        ]
    for name, cfg in rope_cases + [
        ("rope_theta=0", {"rope_theta": 0.0, "rope_parameters": DROP}),
        ("rope_theta=-1", {"rope_theta": -1.0, "rope_parameters": DROP}),
        ("rope_parameters rope_theta=0", {"rope_parameters": {"rope_theta": 0.0, "rope_type": "default"}}),
        ("sliding_window=0", {"sliding_window": 0, "use_sliding_window": True}),
        ("architectures empty", {"architectures": []}),
        ("architectures unknown", {"architectures": ["SkynetForCausalLM"]}),
    ]:
        loads(f"config {name}", model(f"cfg-{name.replace(' ', '_')}", **cfg), paths=("weights", "run"))
    moe = fixtures / "mixtral"
    if moe.is_dir():
        loads("mixtral num_local_experts=1e6", model("moe-experts", src=moe, num_local_experts=10**6), paths=("weights", "run"))
        loads("mixtral experts_per_tok > experts", model("moe-topk", src=moe, num_experts_per_tok=64), paths=("weights", "run"))
    # config.json that is not a config.
    for name, text in [("not json", b"{\"architectures\": [\"LlamaForCausalLM\""), ("array", b"[1, 2, 3]"),
                       ("deep nesting", b"[" * 100_000 + b"]" * 100_000), ("empty", b""),
                       ("20 MB string", b'{"architectures": ["' + b"A" * (20 << 20) + b'"]}')]:
        d = model(f"cfgtext-{name.replace(' ', '_')}")
        (d / "config.json").write_bytes(text)
        loads(f"config.json {name}", d, paths=("weights", "run"))

    # 3. safetensors files.
    good = (llama / "model.safetensors").read_bytes()
    hlen = struct.unpack("<Q", good[:8])[0]
    header = json.loads(good[8:8 + hlen])
    first = next(k for k in header if k != "__metadata__")

    def st_case(name, blob):
        d = model(f"st-{name.replace(' ', '_')}")
        (d / "model.safetensors").write_bytes(blob)
        loads(f"safetensors {name}", d, paths=("weights", "run"))

    st_case("truncated to half", good[: len(good) // 2])
    st_case("truncated in header", good[: 8 + hlen // 2])
    st_case("empty file", b"")
    st_case("header length 2^63", struct.pack("<Q", 1 << 63) + good[8:])
    st_case("header length past the end", struct.pack("<Q", len(good)) + good[8:])
    st_case("header not json", st_bytes(b"{not json" + b" " * 64, b""))
    # Valid, only padded: must load without the header costing its size many times over.
    d = model("st-60MB-header")
    (d / "model.safetensors").write_bytes(st_bytes(json.dumps(header).encode() + b" " * (60 << 20), good[8 + hlen:]))
    loads("safetensors 60 MB header (valid)", d, expect="ok", paths=("weights", "run"))
    for label, tweak in [("offsets reversed", {"data_offsets": [16, 0]}),
                         ("offsets past the end", {"data_offsets": [0, 1 << 40]}),
                         ("unknown dtype", {"dtype": "F9"}),
                         ("shape mismatch", {"shape": [3, 3]}),
                         ("shape overflow", {"shape": [1 << 62, 1 << 62]}),
                         ("negative dim", {"shape": [-1, 4]})]:
        h = json.loads(json.dumps(header))
        h[first].update(tweak)
        st_case(label, st_bytes(h, good[8 + hlen:]))
    d = model("st-fifo")
    os.remove(d / "model.safetensors")
    os.mkfifo(d / "model.safetensors")
    loads("safetensors is a FIFO", d, paths=("weights", "run"))
    d = model("st-dir")
    os.remove(d / "model.safetensors")
    (d / "model.safetensors").mkdir()
    loads("safetensors is a directory", d, paths=("weights", "run"))
    d = model("st-index-missing-shard")
    (d / "model.safetensors.index.json").write_text(json.dumps({"weight_map": {first: "model-00002.safetensors"}}))
    loads("index names a missing shard", d, paths=("weights", "run"))
    d = model("st-index-bad")
    (d / "model.safetensors.index.json").write_text(json.dumps({"weight_map": [1, 2]}))
    loads("index weight_map not an object", d, paths=("weights", "run"))
    d = model("st-no-lm-head", tie_word_embeddings=False)
    h = {k: v for k, v in header.items() if k != "lm_head.weight"}
    (d / "model.safetensors").write_bytes(st_bytes(h, good[8 + hlen:]))
    out.append(("untied model without lm_head [weights]", ["weights", "--model", str(d)], "error", None))

    # 4. tokenizer files.
    for name, text in [("not json", b"{"), ("empty object", b"{}"), ("wrong model type", b'{"model": {"type": "Nope"}}')]:
        d = model(f"tok-{name.replace(' ', '_')}")
        (d / "tokenizer.json").write_bytes(text)
        out.append((f"tokenizer.json {name} [run]", ["run", "--model", str(d), "--device", "cpu", "--input-text", "hi",
                                                      "--max-output-len", "2"], "error", None))

    # 5. GGUF files (convert --gguf).
    def gg_case(name, blob, expect="error"):
        p = work / f"gg-{name.replace(' ', '_').replace('/', '_')}.gguf"
        p.write_bytes(blob)
        out.append((f"gguf {name}", ["convert", "--gguf", str(p), "--output-dir", str(work / (p.stem + ".hf"))], expect, None))

    kv, t = gguf_llama()
    gg_case("valid (control)", gguf(kv, t), "ok")
    for key, ty, val in [("llama.block_count", U32, 10**9), ("llama.block_count", U32, 0),
                         ("llama.embedding_length", U32, 10**9), ("llama.attention.head_count", U32, 0),
                         ("llama.attention.head_count_kv", U32, 3), ("llama.context_length", U64, 10**15),
                         ("llama.context_length", U32, 0), ("llama.feed_forward_length", U64, 1 << 62),
                         ("llama.rope.freq_base", F32, 0.0), ("llama.rope.freq_base", F32, -5.0),
                         ("llama.block_count", STR, "many"), ("tokenizer.ggml.bos_token_id", U32, 10**9),
                         ("tokenizer.ggml.tokens", ARR, (STR, [])), ("tokenizer.ggml.model", STR, "quantum"),
                         ("general.architecture", STR, "skynet")]:
        kv, t = gguf_llama({key: (ty, val)})
        gg_case(f"{key}={val if not isinstance(val, tuple) else 'empty'}", gguf(kv, t))
    kv, t = gguf_llama(drop=("llama.embedding_length",))
    gg_case("no embedding_length", gguf(kv, t))
    kv, t = gguf_llama()
    blob = gguf(kv, t)
    gg_case("bad magic", b"GGUX" + blob[4:])
    gg_case("version 1", gguf(kv, t, version=1))
    gg_case("version 99", gguf(kv, t, version=99))
    gg_case("tensor count 2^63", gguf(kv, t, tensor_count=1 << 63))
    gg_case("kv count 2^63", gguf(kv, t, kv_count=1 << 63))
    gg_case("truncated", blob[: len(blob) // 3])
    gg_case("empty", b"")
    gg_case("string length 2^63", blob[:24] + struct.pack("<Q", 1 << 63) + blob[32:])
    big_arr = [(k, ty, v) for k, ty, v in kv] + [("x.arr", ARR, (U8, []))]
    b2 = gguf(big_arr, t)
    i = b2.index(gstr("x.arr")) + len(gstr("x.arr")) + 4 + 4
    gg_case("array length 2^63", b2[:i] + struct.pack("<Q", 1 << 63) + b2[i + 8:])
    gg_case("unknown value type", gguf(kv + [("x.bad", 77, b"\0" * 8)], t))
    gg_case("tensor dims overflow", gguf(kv, t + [("blk.9.x", [1 << 40, 1 << 40], 0, b"")]))
    gg_case("tensor 9 dims", gguf(kv, t + [("blk.9.y", [1] * 9, 0, b"\0" * 4)]))
    gg_case("tensor unknown type", gguf(kv, t + [("blk.9.z", [4], 99, b"\0" * 16)]))
    gg_case("tensor past the end", gguf(kv, [(n, d, ty, b[:8]) for n, d, ty, b in t]))
    gg_case("alignment 0", gguf(kv + [("general.alignment", U32, 0)], t))
    gg_case("alignment 3", gguf(kv + [("general.alignment", U32, 3)], t))

    # 6. Engine build_config.json (an engine built from the fixture, one field changed).
    ckpt, eng = work / "engine-src.ckpt", work / "engine-src.engine"
    out.append(("engine: convert fixture (setup)", ["convert", "--model-dir", str(llama), "--output-dir", str(ckpt)], "ok", None))
    out.append(("engine: build fixture (setup)", ["build", "--checkpoint-dir", str(ckpt), "--output-dir", str(eng)], "ok", None))
    for key, val in [("kv_block_size", 0), ("max_seq_len", 10**12), ("max_batch_size", 10**9),
                     ("max_num_tokens", 0), ("max_input_len", -1), ("kv_block_size", "big")]:
        out.append((f"build_config {key}={val} [run]", ["@engine", str(eng), key, json.dumps(val)], "error", None))

    # 7. Command lines.
    m = str(llama)
    for flags in [["--kv-block-size", "0"], ["--kv-blocks", str(10**12)], ["--max-batch-size", str(10**9)],
                  ["--max-model-len", str(10**12)], ["--max-num-tokens", "0"], ["--kv-blocks", "0"],
                  ["--api-key", ""], ["--max-connections", "0"], ["--header-timeout", "0"], ["--body-timeout", "0"],
                  ["--max-body-bytes", "0"], ["--port", "70000"], ["--gpu-memory-utilization", "nan"],
                  ["--chat-template", str(work / "no-such-template.jinja")], ["--tp-size", "0"]]:
        out.append((f"serve {' '.join(flags) or '(empty)'}", ["serve", "--model", m, "--device", "cpu", "--port", "0", *flags],
                    "error", None))
    out.append(("run --max-output-len 0 (control)", ["run", "--model", m, "--device", "cpu", "--input-text", "hi",
                                                   "--max-output-len", "0"], "ok", None))
    for flags in [["--max-output-len", str(10**12)], ["--input-text", "word " * 2000],
                  ["--top-p", "0"], ["--temperature", "-1"], ["--kv-block-size", "0"]]:
        argv = ["run", "--model", m, "--device", "cpu"] + (["--input-text", "hi"] if "--input-text" not in flags else [])
        out.append((f"run {flags[0]} {flags[1][:12]}", argv + flags, "error", None))

    # 8. A convert killed mid-way left its temporary directory: the next run removes it.
    dest = work / "stale.ckpt"
    stale = work / "stale.ckpt.tmp-4194305"
    (stale / "partial").mkdir(parents=True)
    (stale / "partial" / "rank0.safetensors").write_bytes(b"\0" * 4096)

    out.append(("convert removes a dead run's temp dir", ["convert", "--model-dir", m, "--output-dir", str(dest)], "ok",
                {"absent": [str(stale)], "dirs": [str(dest)], "output": "removed " + str(stale)}))
    return out


if __name__ == "__main__":
    # corpus.py WORK FIXTURES CASES.json: write the inputs under WORK and the case list.
    import sys
    cs = cases(Path(sys.argv[1]), Path(sys.argv[2]))
    Path(sys.argv[3]).write_text(json.dumps([{"name": n, "argv": a, "expect": e, "check": c} for n, a, e, c in cs]))
