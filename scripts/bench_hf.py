#!/usr/bin/env python3
"""HF transformers peer for `trtllm bench`: batch-1 decode tok/s (eager, and static cache +
torch.compile) and TTFT, on the same checkpoint, in bf16 on the GPU.

usage: bench_hf.py --model DIR [--input-len 16] [--output-len 128] [--ttft-len 2048] [--modes eager,compiled,compiled_manual]
Prints one JSON line per mode: {"mode", "decode_tok_s", "tpot_ms", "ttft_ms", "ttft_len"}.
"""
import argparse
import json
import os
import time

os.environ.setdefault("HF_HUB_OFFLINE", "1")
import torch
from transformers import AutoModelForCausalLM


def timed_generate(model, ids, n):
    torch.cuda.synchronize()
    t = time.perf_counter()
    out = model.generate(ids, max_new_tokens=n, min_new_tokens=n, do_sample=False, num_beams=1, eos_token_id=None,
                         pad_token_id=0)
    torch.cuda.synchronize()
    assert out.shape[1] == ids.shape[1] + n
    return time.perf_counter() - t


def static_compiled_decode(model, ids, n, fwd):
    """Greedy decode with a static KV cache and a compiled one-token step (the gpt-fast pattern
    from the transformers docs): prefill eagerly, then `fwd` per token; each replayed CUDA graph
    gets its step marked and its output copied before the next replay overwrites it."""
    from transformers import StaticCache
    cache = StaticCache(config=model.config, max_cache_len=ids.shape[1] + n + 8)
    pos = torch.arange(ids.shape[1], device=ids.device)
    logits = model(ids, past_key_values=cache, cache_position=pos, use_cache=True).logits
    tok = logits[:, -1].argmax(-1, keepdim=True)
    out = [tok]
    for i in range(n - 1):
        p = torch.tensor([ids.shape[1] + i], device=ids.device)
        torch.compiler.cudagraph_mark_step_begin()
        logits = fwd(tok, past_key_values=cache, cache_position=p, position_ids=p[None], use_cache=True).logits
        tok = logits[:, -1].argmax(-1, keepdim=True).clone()
        out.append(tok)
    return torch.cat(out, 1)


def timed_static(model, ids, n, fwd):
    torch.cuda.synchronize()
    t = time.perf_counter()
    out = static_compiled_decode(model, ids, n, fwd)
    torch.cuda.synchronize()
    assert out.shape[1] == n
    return time.perf_counter() - t


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", required=True)
    ap.add_argument("--input-len", type=int, default=16)
    ap.add_argument("--output-len", type=int, default=128)
    ap.add_argument("--ttft-len", type=int, default=2048)
    ap.add_argument("--modes", default="eager,compiled,compiled_manual")
    a = ap.parse_args()
    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_pretrained(a.model, dtype=torch.bfloat16).cuda().eval()
    vocab = model.config.vocab_size
    ids = torch.randint(3, min(vocab, 30000), (1, a.input_len), device="cuda")
    for mode in a.modes.split(","):
        t_mode = time.perf_counter()
        try:
            if mode == "compiled":
                # Static KV cache + torch.compile (CUDA graphs via reduce-overhead), compiled by
                # generate() itself: transformers compiles the decoding forward when the cache is
                # static and marks the CUDA-graph steps. Wrapping model.forward in torch.compile by
                # hand failed on the H100 (2026-11-27, transformers 5.17): "accessing tensor output
                # of CUDAGraphs that has been overwritten by a subsequent run".
                model.generation_config.cache_implementation = "static"
                try:
                    from transformers import CompileConfig
                    model.generation_config.compile_config = CompileConfig(fullgraph=True, mode="reduce-overhead")
                except ImportError:
                    pass
            if mode == "compiled_manual":
                # Fallback when generate() cannot compile: our own static-cache loop around
                # torch.compile(model.forward, reduce-overhead).
                fwd = torch.compile(model.forward, mode="reduce-overhead", fullgraph=True)
                with torch.no_grad():
                    for _ in range(3):
                        timed_static(model, ids, a.output_len, fwd)  # warm-up, compilation, graph capture
                    one = min(timed_static(model, ids, 1, fwd) for _ in range(3))
                    full = sorted(timed_static(model, ids, a.output_len, fwd) for _ in range(3))[1]
                tpot = (full - one) / (a.output_len - 1)
                print(json.dumps({"mode": mode, "decode_tok_s": 1.0 / tpot, "tpot_ms": tpot * 1e3, "ttft_ms": None,
                                  "ttft_len": a.ttft_len, "mode_s": time.perf_counter() - t_mode}), flush=True)
                continue
            with torch.no_grad():
                for _ in range(2 if mode == "compiled" else 1):
                    timed_generate(model, ids, a.output_len)  # warm-up (and compilation)
                one = min(timed_generate(model, ids, 1) for _ in range(3))  # prefill + first token
                full = sorted(timed_generate(model, ids, a.output_len) for _ in range(3))[1]
                tpot = (full - one) / (a.output_len - 1)
                ttft = None
                if mode == "eager" and a.ttft_len:
                    long = torch.randint(3, min(vocab, 30000), (1, a.ttft_len), device="cuda")
                    model(long)
                    torch.cuda.synchronize()
                    ts = []
                    for _ in range(3):
                        t = time.perf_counter()
                        model(long)
                        torch.cuda.synchronize()
                        ts.append(time.perf_counter() - t)
                    ttft = sorted(ts)[1] * 1e3
            print(json.dumps({"mode": mode, "decode_tok_s": 1.0 / tpot, "tpot_ms": tpot * 1e3, "ttft_ms": ttft,
                              "ttft_len": a.ttft_len, "mode_s": time.perf_counter() - t_mode}), flush=True)
        except Exception as e:  # report, don't lose the other modes' numbers
            print(json.dumps({"mode": mode, "error": f"{type(e).__name__}: {e}"[:500],
                              "mode_s": time.perf_counter() - t_mode}), flush=True)


if __name__ == "__main__":
    main()
