#!/usr/bin/env python3
"""Online load client for `trtllm serve` (standard library only).

Sends --num-requests streaming /v1/completions requests, --concurrency at a time, each with a
random token-id prompt of --input-len tokens and exactly --output-len new tokens (EOS ignored),
and reports requests/s, output tokens/s, TTFT and inter-token latency (mean, p50, p90, p99). It asks
for `return_token_ids`, so every token is timed even where its text is empty (random-weight
checkpoints with a small tokenizer).

    python3 scripts/load_client.py --url http://127.0.0.1:8000 --num-requests 256 \
        --concurrency 32 --input-len 128 --output-len 128

Only loopback URLs are accepted (the test machines have no other traffic to send).
"""

import argparse
import http.client
import json
import random
import statistics
import sys
import threading
import time
import urllib.parse


def one(url, body, headers, timeout):
    u = urllib.parse.urlparse(url)
    conn = http.client.HTTPConnection(u.hostname, u.port, timeout=timeout)
    t0 = time.perf_counter()
    conn.request("POST", "/v1/completions", body=json.dumps(body), headers=headers)
    resp = conn.getresponse()
    if resp.status != 200:
        raise RuntimeError(f"HTTP {resp.status}: {resp.read()[:200]!r}")
    marks, usage = [], None
    for raw in resp:
        line = raw.strip()
        if not line.startswith(b"data: "):
            continue
        data = line[6:]
        if data == b"[DONE]":
            break
        chunk = json.loads(data)
        if chunk.get("usage"):
            usage = chunk["usage"]
        for c in chunk.get("choices") or []:
            # return_token_ids: one mark per token (a chunk may carry several, and a token whose
            # text is still empty has its own chunk); the first token's time is the TTFT.
            now = time.perf_counter()
            marks.extend([now] * max(1, len(c.get("token_ids") or [None])))
    conn.close()
    end = time.perf_counter()
    return {"ttft": marks[0] - t0 if marks else end - t0, "itl": [b - a for a, b in zip(marks, marks[1:])], "e2e": end - t0,
            "tokens": usage["completion_tokens"] if usage else len(marks), "marks": len(marks)}


def pct(v, p):
    v = sorted(v)
    return v[min(len(v) - 1, round((len(v) - 1) * p))] if v else float("nan")


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--url", default="http://127.0.0.1:8000")
    ap.add_argument("--model", default=None)
    ap.add_argument("--num-requests", type=int, default=64)
    ap.add_argument("--concurrency", type=int, default=16)
    ap.add_argument("--input-len", type=int, default=128)
    ap.add_argument("--output-len", type=int, default=128)
    ap.add_argument("--vocab", type=int, default=300, help="prompt ids are drawn from [3, vocab)")
    ap.add_argument("--api-key", default=None)
    ap.add_argument("--timeout", type=float, default=600)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--json", action="store_true")
    ap.add_argument("--temperature", type=float, default=0.0)
    ap.add_argument("--top-p", type=float, default=1.0)
    ap.add_argument("--top-k", type=int, default=0)
    ap.add_argument("--repetition-penalty", type=float, default=1.0)
    a = ap.parse_args()
    sampling = {"temperature": a.temperature, "top_p": a.top_p, "seed": a.seed}
    if a.top_k > 0:
        sampling["top_k"] = a.top_k
    if a.repetition_penalty != 1.0:
        sampling["repetition_penalty"] = a.repetition_penalty
    host = urllib.parse.urlparse(a.url).hostname or ""
    if not (host == "localhost" or host.startswith("127.") or host == "::1"):
        sys.exit(f"--url must be a loopback address, not {host}")
    rng = random.Random(a.seed)
    prompts = [[rng.randrange(3, a.vocab) for _ in range(a.input_len)] for _ in range(a.num_requests)]
    headers = {"Content-Type": "application/json"}
    if a.api_key:
        headers["Authorization"] = f"Bearer {a.api_key}"
    results, errors, lock, next_i = [], [], threading.Lock(), [0]

    def worker():
        while True:
            with lock:
                i = next_i[0]
                if i >= a.num_requests:
                    return
                next_i[0] += 1
            body = {"prompt": prompts[i], "max_tokens": a.output_len, "ignore_eos": True, "stream": True,
                    "stream_options": {"include_usage": True}, "return_token_ids": True, **sampling}
            if a.model:
                body["model"] = a.model
            try:
                r = one(a.url, body, headers, a.timeout)
                with lock:
                    results.append(r)
            except Exception as e:  # noqa: BLE001 - counted and reported
                with lock:
                    errors.append(repr(e))

    t0 = time.perf_counter()
    threads = [threading.Thread(target=worker, daemon=True) for _ in range(a.concurrency)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    wall = time.perf_counter() - t0
    ttft = [r["ttft"] for r in results]
    itl = [x for r in results for x in r["itl"]]
    out_tokens = sum(r["tokens"] for r in results)
    summary = {
        "num_requests": a.num_requests, "concurrency": a.concurrency, "input_len": a.input_len, "output_len": a.output_len,
        "ok": len(results), "errors": len(errors), "wall_s": wall, "requests_per_s": len(results) / wall,
        "output_tokens_per_s": out_tokens / wall, "total_tokens_per_s": (out_tokens + len(results) * a.input_len) / wall,
        "ttft_mean_s": statistics.fmean(ttft) if ttft else None, "ttft_p50_s": pct(ttft, 0.5), "ttft_p99_s": pct(ttft, 0.99),
        "itl_mean_s": statistics.fmean(itl) if itl else None, "itl_p50_s": pct(itl, 0.5), "itl_p90_s": pct(itl, 0.9),
        "itl_p99_s": pct(itl, 0.99), "tokens_marked": sum(r["marks"] for r in results), "temperature": a.temperature,
    }
    if a.json:
        print(json.dumps(summary))
    else:
        for k, v in summary.items():
            print(f"{k:22} {v:.4f}" if isinstance(v, float) else f"{k:22} {v}")
        for e in errors[:5]:
            print("error:", e, file=sys.stderr)
    sys.exit(1 if errors else 0)


if __name__ == "__main__":
    main()
