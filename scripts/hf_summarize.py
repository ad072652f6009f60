#!/usr/bin/env python3
"""HF transformers' summaries of a `trtllm summarize` dataset, for `--hf-outputs`.

Builds every prompt exactly as trtllm does (trtllm-core/src/eval/summarize.rs):

  * the model has a chat template: one user message
    "Summarize the following text in one sentence:\\n\\n{document}", rendered with
    add_generation_prompt=True and encoded as rendered (add_special_tokens=False);
  * otherwise: "{document}\\n\\nTL;DR:" encoded with the tokenizer's special tokens.

Greedy generation (do_sample=False, num_beams=1), stopping at the model's EOS ids or after
--max-output-len new tokens; the new tokens are decoded with skip_special_tokens=True and
stripped. Writes a JSON list of {"id", "output"}.

Usage:
    hf_summarize.py --model DIR --dataset data/summarize --output hf.json
                    [--max-docs N] [--max-output-len 64] [--dtype float32] [--device cpu]
"""

from __future__ import annotations

import argparse
import glob
import json
import os
import sys

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

import torch  # noqa: E402
import transformers  # noqa: E402

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from hf_reference import load_model  # noqa: E402

INSTRUCTION = "Summarize the following text in one sentence:\n\n"
TLDR_SUFFIX = "\n\nTL;DR:"


def dataset_file(path: str) -> str:
    if not os.path.isdir(path):
        return path
    found = sorted(glob.glob(os.path.join(path, "*.jsonl")))
    if len(found) != 1:
        raise SystemExit(f"{path}: expected one *.jsonl file, found {len(found)}")
    return found[0]


def load_dataset(path: str) -> list[dict]:
    docs = []
    with open(dataset_file(path), encoding="utf-8") as f:
        for line in f:
            if line.strip():
                docs.append(json.loads(line))
    return docs


def prompt_ids(tok, document: str) -> list[int]:
    if tok.chat_template:
        messages = [{"role": "user", "content": INSTRUCTION + document}]
        text = tok.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
        return tok(text, add_special_tokens=False)["input_ids"]
    return tok(document + TLDR_SUFFIX)["input_ids"]


@torch.no_grad()
def summarize(model, tok, ids: list[int], max_new: int) -> str:
    device = next(model.parameters()).device
    x = torch.tensor([ids], device=device)
    gen = model.generation_config
    eos = gen.eos_token_id if gen.eos_token_id is not None else model.config.eos_token_id
    cfg = transformers.GenerationConfig(
        max_new_tokens=max_new,
        do_sample=False,
        num_beams=1,
        eos_token_id=eos,
        pad_token_id=gen.pad_token_id if gen.pad_token_id is not None else eos,
    )
    out = model.generate(x, attention_mask=torch.ones_like(x), generation_config=cfg)
    return tok.decode(out[0, len(ids):], skip_special_tokens=True).strip()


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", required=True, help="HF model directory")
    ap.add_argument("--dataset", default="data/summarize", help="JSONL file, or a directory holding one")
    ap.add_argument("--output", required=True, help="JSON list of {id, output}")
    ap.add_argument("--max-docs", type=int, default=0)
    ap.add_argument("--max-output-len", type=int, default=64)
    ap.add_argument("--dtype", default="float32", choices=["float32", "bfloat16", "float16"])
    ap.add_argument("--device", default="cpu")
    args = ap.parse_args(argv)

    docs = load_dataset(args.dataset)
    if args.max_docs:
        docs = docs[: args.max_docs]
    tok = transformers.AutoTokenizer.from_pretrained(args.model)
    model = load_model(args.model, args.dtype, args.device)
    results = []
    for i, d in enumerate(docs):
        text = summarize(model, tok, prompt_ids(tok, d["document"]), args.max_output_len)
        results.append({"id": str(d["id"]), "output": text})
        print(f"[{i + 1}/{len(docs)}] {d['id']}: {text}", file=sys.stderr)
    with open(args.output, "w", encoding="utf-8") as f:
        json.dump(results, f, indent=2, ensure_ascii=False)
        f.write("\n")
    print(f"wrote {args.output}: {len(results)} summaries ({args.dtype}, {'chat template' if tok.chat_template else 'TL;DR'})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
