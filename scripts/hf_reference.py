#!/usr/bin/env python3
"""Compute a HuggingFace-transformers reference for a model directory.

Produces a ``reference.safetensors`` file in the format described in
``tests/fixtures/README.md``:

    input_ids          int32   [T]
    logits             float32 [T, vocab]      one forward over input_ids
    hidden.{i}         float32 [T, hidden]     i = 0..=num_layers (HF output_hidden_states)
    final_norm_input   float32 [T, hidden]     input of the final norm (if found)
    greedy             int32   [N]             greedy continuation (exactly N tokens, EOS ignored)
    prefix.input_ids / prefix.logits           optional, see --prefix-len

plus string metadata (architecture, transformers_version, torch_version, seed, ...).

Usage:
    hf_reference.py --model DIR (--input-ids "1,2,3" | --input-text TEXT) --output REF.safetensors
                    [--dtype float32|bfloat16|float16] [--greedy N] [--device cpu|cuda]

The reference is always computed with attn_implementation="eager", model.eval(), torch.no_grad().
Output tensors are always stored as float32 (the compute dtype is recorded in metadata["dtype"]).
"""

from __future__ import annotations

import argparse
import json
import os
import struct
import sys
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

import torch  # noqa: E402
import transformers  # noqa: E402

DTYPES = {
    "float32": torch.float32,
    "bfloat16": torch.bfloat16,
    "float16": torch.float16,
}

# Attribute paths (relative to the top-level model) of the final norm, tried in order.
FINAL_NORM_PATHS = [
    "model.norm",
    "model.language_model.norm",
    "language_model.model.norm",
    "transformer.ln_f",
    "model.final_layernorm",
    "model.decoder.final_layer_norm",
    "gpt_neox.final_layer_norm",
]


def model_class_for(config) -> type:
    """Pick the model class from config.architectures (falls back to AutoModelForCausalLM)."""
    for name in getattr(config, "architectures", None) or []:
        cls = getattr(transformers, name, None)
        if cls is not None:
            return cls
    return transformers.AutoModelForCausalLM


def load_model(model_dir: str, dtype: str = "float32", device: str = "cpu"):
    config = transformers.AutoConfig.from_pretrained(model_dir)
    cls = model_class_for(config)
    model = cls.from_pretrained(model_dir, dtype=DTYPES[dtype], attn_implementation="eager")
    model.to(device)
    model.eval()
    return model


def text_config(model):
    cfg = model.config
    if hasattr(cfg, "get_text_config"):
        return cfg.get_text_config()
    return cfg


def num_layers(model) -> int:
    cfg = text_config(model)
    for key in ("num_hidden_layers", "n_layer", "num_layers"):
        v = getattr(cfg, key, None)
        if v is not None:
            return int(v)
    raise ValueError("cannot determine number of layers")


def find_final_norm(model):
    for path in FINAL_NORM_PATHS:
        try:
            return path, model.get_submodule(path)
        except AttributeError:
            continue
    return None, None


def reset_rope_state(model) -> None:
    """Reset the state HF's dynamic-NTK rotary embedding keeps between forwards.

    HF's "dynamic" RoPE recomputes inv_freq when a forward sees a longer sequence than any before and keeps
    it (max_seq_len_cached), so results depend on what ran earlier in the process. Every reference phase
    (logits forward, generate, recompute, prefix forward) starts from the freshly-loaded state instead."""
    for m in model.modules():
        if hasattr(m, "original_inv_freq") and hasattr(m, "max_seq_len_cached") and hasattr(m, "original_max_seq_len"):
            m.register_buffer("inv_freq", m.original_inv_freq.clone(), persistent=False)
            m.max_seq_len_cached = m.original_max_seq_len


def _first_tensor(x):
    if isinstance(x, torch.Tensor):
        return x
    if isinstance(x, (tuple, list)) and x:
        return _first_tensor(x[0])
    return None


@torch.no_grad()
def forward_with_hidden(model, input_ids: torch.Tensor) -> dict[str, Any]:
    """One forward over input_ids [T]; returns logits, hidden states, final norm input/output."""
    reset_rope_state(model)
    device = next(model.parameters()).device
    ids = input_ids.to(device=device, dtype=torch.long)[None]
    captured: dict[str, torch.Tensor] = {}
    norm_path, norm = find_final_norm(model)
    handles = []
    if norm is not None:

        def pre_hook(_mod, args, kwargs=None):
            t = _first_tensor(args) if args else _first_tensor(list((kwargs or {}).values()))
            captured.setdefault("in", t.detach().clone())

        def post_hook(_mod, _args, out):
            captured.setdefault("out", _first_tensor(out).detach().clone())

        handles.append(norm.register_forward_pre_hook(pre_hook))
        handles.append(norm.register_forward_hook(post_hook))
    try:
        out = model(input_ids=ids, attention_mask=torch.ones_like(ids), output_hidden_states=True, use_cache=False)
    finally:
        for h in handles:
            h.remove()
    hidden = out.hidden_states
    if hidden is None:
        raise RuntimeError("model did not return hidden_states")
    res = {
        "logits": out.logits[0].float().cpu(),
        "hidden": [h[0].float().cpu() for h in hidden],
        "norm_path": norm_path,
    }
    if "in" in captured:
        res["final_norm_input"] = captured["in"][0].float().cpu()
    if "out" in captured:
        res["final_norm_output"] = captured["out"][0].float().cpu()
    return res


@torch.no_grad()
def greedy_generate(model, input_ids: torch.Tensor, n: int) -> torch.Tensor:
    """HF generate(), greedy, exactly n new tokens: EOS is disabled (not suppressed), so it is pure argmax."""
    reset_rope_state(model)
    device = next(model.parameters()).device
    ids = input_ids.to(device=device, dtype=torch.long)[None]
    gen_cfg = transformers.GenerationConfig(
        max_new_tokens=n,
        min_new_tokens=None,
        do_sample=False,
        num_beams=1,
        eos_token_id=None,
        pad_token_id=0,
    )
    saved = model.generation_config
    # Make sure no model-level default (eos, repetition penalty, ...) leaks in.
    model.generation_config = transformers.GenerationConfig(pad_token_id=0, eos_token_id=None)
    try:
        out = model.generate(ids, attention_mask=torch.ones_like(ids), generation_config=gen_cfg)
    finally:
        model.generation_config = saved
    new = out[0, ids.shape[1]:].cpu()
    if new.numel() != n:
        raise RuntimeError(f"generate produced {new.numel()} tokens, expected {n}")
    return new


@torch.no_grad()
def greedy_recompute(model, input_ids: torch.Tensor, n: int) -> tuple[torch.Tensor, list[float]]:
    """Greedy decoding by full re-forward at each step (no KV cache) -- used as a sanity cross-check.

    Also returns the top1-top2 logit margin at every step."""
    reset_rope_state(model)
    device = next(model.parameters()).device
    ids = input_ids.to(device=device, dtype=torch.long)[None]
    new, margins = [], []
    for _ in range(n):
        logits = model(input_ids=ids, attention_mask=torch.ones_like(ids), use_cache=False).logits
        top2 = logits[0, -1].float().topk(2).values
        margins.append(float(top2[0] - top2[1]))
        nxt = int(logits[0, -1].float().argmax())
        new.append(nxt)
        ids = torch.cat([ids, torch.tensor([[nxt]], device=device)], dim=1)
    return torch.tensor(new), margins


def compute_reference(
    model,
    input_ids: torch.Tensor,
    greedy: int = 16,
    seed: int | str = "",
    dtype: str = "float32",
    prefix_len: int | None = None,
    extra_metadata: dict[str, str] | None = None,
) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """Returns (tensors, metadata) in the reference.safetensors format."""
    input_ids = torch.as_tensor(input_ids, dtype=torch.long).flatten()
    fw = forward_with_hidden(model, input_ids)
    L = num_layers(model)
    if len(fw["hidden"]) != L + 1:
        raise RuntimeError(f"expected {L + 1} hidden states, got {len(fw['hidden'])}")

    tensors: dict[str, torch.Tensor] = {
        "input_ids": input_ids.to(torch.int32),
        "logits": fw["logits"].contiguous(),
    }
    for i, h in enumerate(fw["hidden"]):
        tensors[f"hidden.{i}"] = h.contiguous()

    last = fw["hidden"][-1]
    last_is_normed = "unknown"
    if "final_norm_input" in fw:
        tensors["final_norm_input"] = fw["final_norm_input"].contiguous()
        if torch.equal(last, fw["final_norm_output"]):
            last_is_normed = "true"
        elif torch.equal(last, fw["final_norm_input"]):
            last_is_normed = "false"

    meta = {
        "format": "trtllm-reference-v1",
        "architecture": ",".join(getattr(model.config, "architectures", None) or [type(model).__name__]),
        "model_type": str(getattr(model.config, "model_type", "")),
        "transformers_version": transformers.__version__,
        "torch_version": torch.__version__,
        "seed": str(seed),
        "dtype": dtype,
        "attn_implementation": "eager",
        "num_layers": str(L),
        "seq_len": str(input_ids.numel()),
        "vocab_size": str(tensors["logits"].shape[-1]),
        "last_hidden_is_normed": last_is_normed,
        "final_norm_module": str(fw["norm_path"]),
    }

    if greedy and greedy > 0:
        g = greedy_generate(model, input_ids, greedy)
        tensors["greedy"] = g.to(torch.int32)
        meta["greedy_new_tokens"] = str(greedy)
        r, margins = greedy_recompute(model, input_ids, greedy)
        meta["greedy_min_margin"] = f"{min(margins):.6g}"
        meta["greedy_matches_recompute"] = "true" if torch.equal(g, r) else "false"
        if not torch.equal(g, r):
            tensors["greedy_recompute"] = r.to(torch.int32)

    if prefix_len:
        p = input_ids[:prefix_len]
        pf = forward_with_hidden(model, p)
        tensors["prefix.input_ids"] = p.to(torch.int32)
        tensors["prefix.logits"] = pf["logits"].contiguous()
        meta["prefix_len"] = str(prefix_len)

    if extra_metadata:
        meta.update({k: str(v) for k, v in extra_metadata.items()})
    return tensors, meta


_ST_DTYPES = {torch.float32: "F32", torch.int32: "I32", torch.int64: "I64", torch.bfloat16: "BF16", torch.float16: "F16"}


def save_reference(path: str, tensors: dict[str, torch.Tensor], meta: dict[str, str]) -> None:
    """Write a safetensors file byte-for-byte deterministically.

    safetensors' own writer serializes the header through a hash map, so the JSON key order (and hence
    the file bytes) changes from run to run. Here the header is written with sorted keys and tensors are
    laid out in sorted-name order, so regenerating the fixtures gives identical files. The result is a
    standard safetensors file (readable by any safetensors reader)."""
    header: dict[str, Any] = {"__metadata__": {k: str(v) for k, v in sorted(meta.items())}}
    blobs, offset = [], 0
    for name in sorted(tensors):
        t = tensors[name].detach().contiguous().cpu()
        data = t.view(torch.uint8).numpy().tobytes() if t.numel() else b""
        header[name] = {"dtype": _ST_DTYPES[t.dtype], "shape": list(t.shape), "data_offsets": [offset, offset + len(data)]}
        blobs.append(data)
        offset += len(data)
    hjson = json.dumps(header, separators=(",", ":"), sort_keys=True).encode()
    hjson += b" " * ((8 - len(hjson) % 8) % 8)  # align the data section to 8 bytes
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(hjson)))
        f.write(hjson)
        for b in blobs:
            f.write(b)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", required=True, help="HF model directory")
    g = ap.add_mutually_exclusive_group(required=True)
    g.add_argument("--input-ids", help="comma separated token ids, e.g. '1,2,3'")
    g.add_argument("--input-text", help="text, tokenized with the model directory's tokenizer")
    ap.add_argument("--no-special-tokens", action="store_true", help="with --input-text: add_special_tokens=False")
    ap.add_argument("--output", required=True, help="output .safetensors path")
    ap.add_argument("--dtype", default="float32", choices=sorted(DTYPES))
    ap.add_argument("--greedy", type=int, default=16, help="number of greedy tokens (0 to skip)")
    ap.add_argument("--prefix-len", type=int, default=0, help="also store logits of a forward over the first N ids")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--seed", default="", help="recorded in metadata only")
    args = ap.parse_args(argv)

    if args.input_ids is not None:
        ids = [int(x) for x in args.input_ids.replace(" ", "").split(",") if x]
    else:
        tok = transformers.AutoTokenizer.from_pretrained(args.model)
        ids = tok(args.input_text, add_special_tokens=not args.no_special_tokens)["input_ids"]
    if not ids:
        print("empty input", file=sys.stderr)
        return 2

    model = load_model(args.model, args.dtype, args.device)
    tensors, meta = compute_reference(
        model,
        torch.tensor(ids),
        greedy=args.greedy,
        seed=args.seed,
        dtype=args.dtype,
        prefix_len=args.prefix_len or None,
        extra_metadata={"model_dir": os.path.abspath(args.model)},
    )
    save_reference(args.output, tensors, meta)
    print(
        f"wrote {args.output}: T={len(ids)} vocab={meta['vocab_size']} layers={meta['num_layers']} "
        f"last_hidden_is_normed={meta['last_hidden_is_normed']}"
        + (f" greedy={tensors['greedy'].tolist()}" if "greedy" in tensors else "")
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
