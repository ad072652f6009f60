#!/usr/bin/env python3
"""Generate the tiny quantized Llama fixtures under tests/fixtures/quant/.

One random bf16 Llama (hidden 128, intermediate 256, 4 heads x 64, 2 KV heads, 2 layers, vocab
384) is quantized in each real checkpoint layout; every linear of the decoder layers is
quantized, embeddings / norms / lm_head stay bf16 (as the formats do):

| fixture | quantization_config | tensors per linear |
|---|---|---|
| fp8_tensor  | compressed-tensors, weights strategy tensor, static input scales | weight F8_E4M3, weight_scale bf16 [1], input_scale bf16 [1] |
| fp8_channel | compressed-tensors, weights strategy channel, dynamic per-token  | weight F8_E4M3, weight_scale bf16 [out, 1] |
| fbgemm_fp8  | fbgemm_fp8                                                       | weight F8_E4M3, weight_scale f32 [out, 1], input_scale_ub f32 [1] |
| fp8_block   | fp8, weight_block_size [128, 128] (DeepSeek-V3 / Qwen3-FP8)       | weight F8_E4M3, weight_scale_inv f32 [ceil(out/128), ceil(in/128)] |
| awq         | awq, gemm, group 128, zero points (AutoAWQ packing)              | qweight i32 [in, out/8], qzeros i32 [in/128, out/8], scales f16 [in/128, out] |
| gptq        | gptq, desc_act false, sym, group 128, checkpoint_format gptq (v1) | qweight i32 [in/8, out], qzeros i32 [in/128, out/8], scales f16 [in/128, out], g_idx i32 [in] |

Scales: FP8 amax / 448 per tensor / row / 128x128 block; INT4 round-to-nearest per group of 128
(AWQ asymmetric min/max, GPTQ symmetric with zero 8, stored as 7), each group's range clipped by
the ratio in 1.0 .. 0.5 with the least squared round-trip error (no calibration data).

`reference.safetensors` (the tests/fixtures/README.md format) is computed by HF transformers
from the *dequantized* model: each weight rebuilt in f32 exactly as its format defines
(FP8: `q.float() * scale`; INT4: `(q - z) * s`), so an engine that loads the quantized
checkpoint must reproduce it to f32 rounding. It also holds `source.logits` / `source.greedy`:
the unquantized bf16 model's, for the accuracy bounds (KL(bf16 || quantized)).

Usage:
    .venv-fixtures/bin/python scripts/make_quant_fixtures.py [--out tests/fixtures/quant]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import struct
import sys
from pathlib import Path

os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["TRANSFORMERS_OFFLINE"] = "1"

import torch  # noqa: E402
import transformers  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
import hf_reference  # noqa: E402

transformers.logging.set_verbosity_error()

REPO = Path(__file__).resolve().parent.parent
SEED = 4321
STD = 0.08
PROMPT = [109, 277, 235, 177, 125, 58, 215, 213, 168, 120, 246, 11, 305, 172, 283, 204, 172, 99, 252, 126]
LINEARS = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")
F8 = torch.float8_e4m3fn
AWQ_ORDER = [0, 2, 4, 6, 1, 3, 5, 7]
GROUP = 128

CONFIG = dict(
    vocab_size=384,
    hidden_size=128,
    intermediate_size=256,
    num_hidden_layers=2,
    num_attention_heads=4,
    num_key_value_heads=2,
    head_dim=64,
    max_position_embeddings=256,
    rms_norm_eps=1e-6,
    pad_token_id=0,
    bos_token_id=1,
    eos_token_id=2,
    tie_word_embeddings=False,
)


def source_model():
    model = transformers.LlamaForCausalLM(transformers.LlamaConfig(**CONFIG)).eval()
    g = torch.Generator().manual_seed(SEED)
    with torch.no_grad():
        for name, p in sorted(model.named_parameters(), key=lambda kv: kv[0]):
            noise = torch.randn(p.shape, generator=g)
            p.copy_(1.0 + 0.1 * noise if p.dim() == 1 else STD * noise)
            p.copy_(p.to(torch.bfloat16).float())  # the bf16 model
    return model


def i32(x: torch.Tensor) -> torch.Tensor:
    x = x & 0xFFFFFFFF
    return torch.where(x >= 2**31, x - 2**32, x).to(torch.int32)


def f8(w: torch.Tensor, s: torch.Tensor) -> torch.Tensor:
    return (w / s).clamp(-448, 448).to(F8)


def fp8_scaled(w, s_stored, expand):
    """Quantize with the stored scale (its dtype's value), return (codes, dequantized)."""
    s = expand(s_stored.float())
    q = f8(w, s)
    return q, q.float() * s


def q_fp8(w, kind, scale_dtype):
    out, inp = w.shape
    if kind == "tensor":
        s = (w.abs().amax() / 448).reshape(1).to(scale_dtype)
        q, d = fp8_scaled(w, s, lambda s: s)
        return {"weight": q, "weight_scale": s}, d
    if kind == "channel":
        s = (w.abs().amax(1, keepdim=True) / 448).to(scale_dtype)
        q, d = fp8_scaled(w, s, lambda s: s)
        return {"weight": q, "weight_scale": s}, d
    # 128 x 128 blocks
    br, bc = -(-out // 128), -(-inp // 128)
    pad = torch.zeros(br * 128, bc * 128)
    pad[:out, :inp] = w.abs()
    s = (pad.reshape(br, 128, bc, 128).amax((1, 3)) / 448).to(scale_dtype)

    def expand(s):
        return s.repeat_interleave(128, 0).repeat_interleave(128, 1)[:out, :inp]

    q, d = fp8_scaled(w, s, expand)
    return {"weight": q, "weight_scale_inv": s}, d


def pack_awq(x: torch.Tensor) -> torch.Tensor:
    """[r, n] codes -> [r, n/8] int32, AutoAWQ's interleaved nibble order along n."""
    r, n = x.shape
    x = x.reshape(r, n // 8, 8).long()
    out = torch.zeros(r, n // 8, dtype=torch.long)
    for i, o in enumerate(AWQ_ORDER):
        out |= x[:, :, o] << (4 * i)
    return i32(out)


def pack_rows(x: torch.Tensor) -> torch.Tensor:
    """[r, n] codes -> [r, n/8] int32, natural nibble order along n (GPTQ qzeros)."""
    r, n = x.shape
    x = x.reshape(r, n // 8, 8).long()
    out = torch.zeros(r, n // 8, dtype=torch.long)
    for i in range(8):
        out |= x[:, :, i] << (4 * i)
    return i32(out)


def best_clip(wg, fake):
    """Per group, the clipping ratio of the range (1.0 .. 0.5) whose round trip has the least
    squared error: AutoAWQ's weight-only clip search, without activations."""
    best, err = torch.ones(wg.shape[:-1]), torch.full(wg.shape[:-1], float("inf"))
    for r in [1.0 - 0.025 * i for i in range(21)]:
        e = ((fake(wg, torch.full(wg.shape[:-1], r)) - wg) ** 2).sum(-1)
        better = e < err
        best, err = torch.where(better, r, best), torch.where(better, e, err)
    return best


def awq_params(wg, ratio):
    mx, mn = wg.amax(-1) * ratio, wg.amin(-1) * ratio
    s = ((mx - mn).clamp(min=1e-5) / 15).to(torch.float16)
    z = torch.round(-mn / s.float()).clamp(0, 15)
    return s, z


def awq_fake(wg, ratio):
    s, z = awq_params(wg, ratio)
    sf = s.float()[..., None]
    return ((torch.round(wg / sf) + z[..., None]).clamp(0, 15) - z[..., None]) * sf


def q_awq(w):
    out, inp = w.shape
    wg = w.reshape(out, inp // GROUP, GROUP)
    ratio = best_clip(wg, awq_fake)
    mx, mn = wg.amax(-1) * ratio, wg.amin(-1) * ratio
    s = ((mx - mn).clamp(min=1e-5) / 15).to(torch.float16)
    sf = s.float()
    z = torch.round(-mn / sf).clamp(0, 15)
    q = (torch.round(wg / sf[..., None]) + z[..., None]).clamp(0, 15)
    d = ((q - z[..., None]) * sf[..., None]).reshape(out, inp)
    q = q.reshape(out, inp).long()
    return {
        "qweight": pack_awq(q.t().contiguous()),
        "qzeros": pack_awq(z.long().t().contiguous()),
        "scales": s.t().contiguous(),
    }, d


def gptq_fake(wg, ratio):
    s = (2 * wg.abs().amax(-1) * ratio / 15).clamp(min=1e-5).to(torch.float16).float()[..., None]
    return ((torch.round(wg / s) + 8).clamp(0, 15) - 8) * s


def q_gptq(w):
    out, inp = w.shape
    wg = w.reshape(out, inp // GROUP, GROUP)
    ratio = best_clip(wg, gptq_fake)
    s = (2 * wg.abs().amax(-1) * ratio / 15).clamp(min=1e-5).to(torch.float16)
    sf = s.float()
    q = (torch.round(wg / sf[..., None]) + 8).clamp(0, 15)
    d = ((q - 8) * sf[..., None]).reshape(out, inp)
    q = q.reshape(out, inp).long()
    qt = q.t().reshape(inp // 8, 8, out)  # word w, nibble i = element (col, 8w + i)
    qweight = torch.zeros(inp // 8, out, dtype=torch.long)
    for i in range(8):
        qweight |= qt[:, i, :] << (4 * i)
    zeros = torch.full((inp // GROUP, out), 8 - 1, dtype=torch.long)  # v1 stores z - 1
    return {
        "qweight": i32(qweight),
        "qzeros": pack_rows(zeros),
        "scales": s.t().contiguous(),
        "g_idx": (torch.arange(inp) // GROUP).to(torch.int32),
    }, d


CT_ARGS = dict(num_bits=8, type="float", symmetric=True, group_size=None, block_structure=None, actorder=None)


def ct_config(strategy, static_input):
    act = dict(CT_ARGS, strategy="tensor" if static_input else "token", dynamic=not static_input)
    return {
        "quant_method": "compressed-tensors",
        "format": "float-quantized",
        "quantization_status": "compressed",
        "kv_cache_scheme": None,
        "config_groups": {
            "group_0": {
                "targets": ["Linear"],
                "weights": dict(CT_ARGS, strategy=strategy, dynamic=False),
                "input_activations": act,
                "output_activations": None,
            }
        },
        "ignore": ["lm_head"],
    }


FORMATS = {
    "fp8_tensor": (ct_config("tensor", True), lambda w: q_fp8(w, "tensor", torch.bfloat16), 0.01),
    "fp8_channel": (ct_config("channel", False), lambda w: q_fp8(w, "channel", torch.bfloat16), 0.01),
    "fbgemm_fp8": (
        {"quant_method": "fbgemm_fp8", "activation_scale_ub": 1200.0, "modules_to_not_convert": ["lm_head"]},
        lambda w: q_fp8(w, "channel", torch.float32),
        0.01,
    ),
    "fp8_block": (
        {"quant_method": "fp8", "fmt": "e4m3", "activation_scheme": "dynamic", "weight_block_size": [128, 128]},
        lambda w: q_fp8(w, "block", torch.float32),
        0.01,
    ),
    "awq": (
        {"quant_method": "awq", "bits": 4, "group_size": GROUP, "version": "gemm", "zero_point": True,
         "modules_to_not_convert": None},
        q_awq,
        0.05,
    ),
    "gptq": (
        {"quant_method": "gptq", "bits": 4, "group_size": GROUP, "desc_act": False, "sym": True,
         "static_groups": False, "true_sequential": True, "damp_percent": 0.01, "checkpoint_format": "gptq"},
        q_gptq,
        0.05,
    ),
}

ST = {torch.float32: "F32", torch.int32: "I32", torch.bfloat16: "BF16", torch.float16: "F16", F8: "F8_E4M3"}


def save(path: Path, tensors: dict, meta: dict) -> None:
    """Deterministic safetensors (sorted header and tensors), as hf_reference.save_reference."""
    header = {"__metadata__": {k: str(v) for k, v in sorted(meta.items())}}
    blobs, off = [], 0
    for name in sorted(tensors):
        t = tensors[name].detach().contiguous()
        data = t.view(torch.uint8).numpy().tobytes()
        header[name] = {"dtype": ST[t.dtype], "shape": list(t.shape), "data_offsets": [off, off + len(data)]}
        blobs.append(data)
        off += len(data)
    h = json.dumps(header, separators=(",", ":"), sort_keys=True).encode()
    h += b" " * ((8 - len(h) % 8) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(h)) + h + b"".join(blobs))


def kl(p_logits, q_logits) -> float:
    lp, lq = p_logits.log_softmax(-1), q_logits.log_softmax(-1)
    return float((lp.exp() * (lp - lq)).sum(-1).mean())


@torch.no_grad()
def make(name: str, out: Path, src, src_ref) -> None:
    qcfg, quantize, bound = FORMATS[name]
    d = out / name
    shutil.rmtree(d, ignore_errors=True)
    d.mkdir(parents=True)
    tensors, deq = {}, {}
    for pname, p in src.state_dict().items():
        mod, leaf = pname.rsplit(".", 1)
        if leaf == "weight" and mod.split(".")[-1] in LINEARS:
            stored, w = quantize(p.float())
            for k, v in stored.items():
                tensors[f"{mod}.{k}"] = v
            deq[pname] = w
            if name == "fp8_tensor":
                tensors[f"{mod}.input_scale"] = torch.tensor([0.05], dtype=torch.bfloat16)
            if name == "fbgemm_fp8":
                tensors[f"{mod}.input_scale_ub"] = torch.tensor([1200.0])
        else:
            tensors[pname] = p.to(torch.bfloat16)
    save(d / "model.safetensors", tensors, {"format": "pt"})
    cfg = src.config.to_dict()
    cfg.update(architectures=["LlamaForCausalLM"], torch_dtype="bfloat16", quantization_config=qcfg)
    cfg.pop("dtype", None)
    (d / "config.json").write_text(json.dumps(cfg, indent=2, sort_keys=True) + "\n")
    for f in ("tokenizer.json", "tokenizer_config.json", "generation_config.json"):
        shutil.copy(REPO / "tests/fixtures/llama" / f, d / f)

    model = source_model()
    model.load_state_dict({**src.state_dict(), **deq})
    ids = torch.tensor(PROMPT)
    ref, meta = hf_reference.compute_reference(model, ids, greedy=16, seed=SEED)
    ref["source.logits"] = src_ref["logits"]
    ref["source.greedy"] = src_ref["greedy"]
    k = kl(src_ref["logits"], ref["logits"])
    same = int((ref["greedy"] == src_ref["greedy"]).sum())
    meta.update(fixture=name, reference="dequantized model", kl_source_vs_dequantized=f"{k:.6g}",
                greedy_same_as_source=f"{same}/16", init_std=STD)
    hf_reference.save_reference(str(d / "reference.safetensors"), ref, meta)
    size = sum(f.stat().st_size for f in d.iterdir()) // 1024
    print(f"{name:12} KL(bf16 || dequantized) = {k:.5f} (bound {bound}), greedy {same}/16 as bf16, "
          f"margin {meta['greedy_min_margin']}, {size} KiB")
    assert k <= bound, f"{name}: KL {k} above the test bound {bound}"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", default=str(REPO / "tests/fixtures/quant"))
    ap.add_argument("--only", nargs="*", default=list(FORMATS))
    a = ap.parse_args()
    torch.manual_seed(SEED)
    src = source_model()
    src_ref, _ = hf_reference.compute_reference(src, torch.tensor(PROMPT), greedy=16, seed=SEED)
    lg = src_ref["logits"]
    print(f"bf16 source: logits std {float(lg.std()):.3f}, greedy {src_ref['greedy'].tolist()}")
    # The unquantized bf16 source, for `convert --quantize` tests.
    d = Path(a.out) / "bf16"
    shutil.rmtree(d, ignore_errors=True)
    d.mkdir(parents=True)
    save(d / "model.safetensors", {k: v.to(torch.bfloat16) for k, v in src.state_dict().items()}, {"format": "pt"})
    cfg = src.config.to_dict()
    cfg.update(architectures=["LlamaForCausalLM"], torch_dtype="bfloat16")
    cfg.pop("dtype", None)
    (d / "config.json").write_text(json.dumps(cfg, indent=2, sort_keys=True) + "\n")
    for f in ("tokenizer.json", "tokenizer_config.json", "generation_config.json"):
        shutil.copy(REPO / "tests/fixtures/llama" / f, d / f)
    for name in a.only:
        make(name, Path(a.out), src, src_ref)
    return 0


if __name__ == "__main__":
    sys.exit(main())
