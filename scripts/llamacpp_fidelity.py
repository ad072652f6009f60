#!/usr/bin/env python3
"""llama.cpp's own agreement between two GGUF files of the same weights (issue 19): 30 greedy
tokens on five prompts with llama-cpp-python, the first differing token per prompt; with --top1,
the top-1 agreement over 256 teacher-forced tokens (the first three lines of
data/summarize/documents.jsonl, as tests/tests/gguf_native.rs scores ours).
usage: <llama-cpp-python venv>/bin/python scripts/llamacpp_fidelity.py [--top1] A.gguf B.gguf"""
import os
import sys
from llama_cpp import Llama

if sys.argv[1] == "--top1":
    import numpy as np
    doc = os.path.join(os.path.dirname(__file__), "..", "data", "summarize", "documents.jsonl")
    text = "\n".join(open(doc).read().splitlines()[:3])
    def argmaxes(path):
        m = Llama(model_path=path, n_threads=2, n_ctx=512, logits_all=True, verbose=False)
        toks = m.tokenize(text.encode(), add_bos=False)[:256]
        m.eval(toks)
        return np.asarray(m.scores[: len(toks)]).argmax(axis=1)
    a, b = argmaxes(sys.argv[2]), argmaxes(sys.argv[3])
    agree = int((a == b).sum())
    print(f"llama.cpp: top-1 agreement {agree}/{len(a)} = {100 * agree / len(a):.1f}% ({sys.argv[2]} vs {sys.argv[3]})")
    sys.exit(0)
prompts = ["Born in north-east France, Soyer trained as a", "The capital of France is",
           "def fibonacci(n):", "Water boils at a temperature of", "Once upon a time, in a small village,"]
def gen(path):
    m = Llama(model_path=path, n_threads=2, n_ctx=256, verbose=False)
    out = []
    for p in prompts:
        toks = m.tokenize(p.encode(), add_bos=False)
        ids = []
        for t in m.generate(toks, temp=0.0, top_k=1, top_p=1.0, repeat_penalty=1.0):
            ids.append(t)
            if len(ids) == 30: break
        out.append(ids)
    return out
a, b = gen(sys.argv[1]), gen(sys.argv[2])
same = 0
for p, x, y in zip(prompts, a, b):
    n = next((i for i, (u, v) in enumerate(zip(x, y)) if u != v), 30)
    same += n == 30
    print(f"| llama.cpp | {p} | {'identical' if n == 30 else f'first {n} of 30 tokens identical'} |")
print(f"llama.cpp: {same} of {len(prompts)} greedy 30-token continuations identical ({sys.argv[1]} vs {sys.argv[2]})")
