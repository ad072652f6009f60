"""Run the hostile-input corpus (corpus.py) against the trtllm binary, each case under an
address-space cap (`prlimit --as`), and print the result table. Fails (exit 1) on any panic,
abort, hang (> 20 s), peak RSS over 1 GiB, or a hostile input accepted.

    python3 tests/hostile/run.py [--bin target/debug/trtllm] [--work DIR] [--keep]
"""

import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
HANG_S = 20
AS_CAP = 4 << 30  # address space: room for the mmaps and thread stacks, not for a runaway allocation
RSS_CAP_KB = 1 << 20  # 1 GiB


def run_one(argv, env):
    """(returncode or None on hang, output, peak RSS in KiB, seconds)."""
    cmd = (["prlimit", f"--as={AS_CAP}", "--"] if shutil.which("prlimit") else []) + argv
    t0 = time.time()
    p = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                         env=env, start_new_session=True)
    out = b""
    os.set_blocking(p.stdout.fileno(), False)
    rss, code = 0, None
    while True:
        chunk = p.stdout.read()
        if chunk:
            out += chunk[: max(0, 200_000 - len(out))]
        pid, status, ru = os.wait4(p.pid, os.WNOHANG)
        if pid:
            rss = ru.ru_maxrss
            code = os.waitstatus_to_exitcode(status)
            break
        if time.time() - t0 > HANG_S:
            os.killpg(p.pid, signal.SIGKILL)
            _, _, ru = os.wait4(p.pid, 0)
            rss = ru.ru_maxrss
            break
        time.sleep(0.02)
    try:
        rest = p.stdout.read()
        if rest:
            out += rest[: max(0, 200_000 - len(out))]
    except (OSError, ValueError):
        pass
    p.returncode = code if code is not None else -9
    return code, out.decode(errors="replace"), rss, time.time() - t0


def classify(expect, code, out, rss):
    if code is None:
        return "hang"
    if "panicked at" in out or code == 101:
        return "panic"
    if code < 0 or code >= 128 or "memory allocation of" in out:
        return "abort"
    if rss > RSS_CAP_KB:
        return "blow-up"
    if expect == "error":
        return "clean error" if code != 0 and "error" in out.lower() else ("accepted" if code == 0 else "unclear error")
    return "ok" if code == 0 else "failed"


def engine_case(work, eng, key, val):
    """A copy of the engine dir with one build_config.json field changed; the argv that runs it."""
    d = work / f"engine-{key}-{len(list(work.glob('engine-*')))}"
    if d.exists():
        shutil.rmtree(d)
    shutil.copytree(eng, d)
    bc = d / "build_config.json"
    c = json.loads(bc.read_text())
    c[key] = json.loads(val)
    bc.write_text(json.dumps(c))
    return ["run", "--engine-dir", str(d), "--tokenizer-dir", str(ROOT / "tests" / "fixtures" / "llama"),
            "--device", "cpu", "--input-text", "hi", "--max-output-len", "2"]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--bin", default=os.environ.get("TRTLLM_BIN", str(ROOT / "target" / "debug" / "trtllm")))
    ap.add_argument("--work", default=None)
    ap.add_argument("--keep", action="store_true")
    ap.add_argument("-v", "--verbose", action="store_true")
    a = ap.parse_args()
    work = Path(a.work) if a.work else Path(tempfile.mkdtemp(prefix="trtllm-hostile-"))
    if work.exists() and a.work:
        shutil.rmtree(work)
    env = {**os.environ, "RUST_BACKTRACE": "0", "TRTLLM_NUM_THREADS": "2"}
    env.pop("TRTLLM_API_KEY", None)
    t_all = time.time()
    try:
        listing = work / "cases.json"
        work.mkdir(parents=True, exist_ok=True)
        subprocess.run([sys.executable, str(Path(__file__).with_name("corpus.py")), str(work / "inputs"),
                        str(ROOT / "tests" / "fixtures"), str(listing)], check=True)
        cases = [(c["name"], c["argv"], c["expect"], c["check"]) for c in json.loads(listing.read_text())]
        counts, bad = {}, []
        for name, argv, expect, check in cases:
            if argv[0] == "@engine":
                argv = engine_case(work, Path(argv[1]), argv[2], argv[3])
            code, out, rss, secs = run_one([a.bin] + argv, env)
            kind = classify(expect, code, out, rss)
            if kind == "ok" and check and not (all(not Path(p).exists() for p in check["absent"])
                                               and all(Path(p).is_dir() for p in check["dirs"])
                                               and check["output"] in out):
                kind = "failed"
            counts[kind] = counts.get(kind, 0) + 1
            last = next((l for l in reversed(out.strip().splitlines()) if l.strip()), "")[:160]
            if kind not in ("clean error", "ok"):
                bad.append((name, kind, code, rss, secs, out[-1500:]))
            if a.verbose or kind not in ("clean error", "ok"):
                print(f"{kind:>13}  {secs:5.1f}s {rss // 1024:5d} MiB  {name}: {last}")
    finally:
        if not a.keep:
            shutil.rmtree(work, ignore_errors=True)
    n = len(cases)
    cols = ["clean error", "ok", "panic", "abort", "hang", "blow-up", "accepted", "unclear error", "failed"]
    print(f"\nhostile corpus: {n} cases in {time.time() - t_all:.0f} s (address space cap {AS_CAP >> 30} GiB, "
          f"hang > {HANG_S} s, blow-up RSS > 1 GiB)")
    print("| cases | clean errors | ok (controls) | panics | aborts | hangs | blow-ups | accepted | other failures |")
    print("|---|---|---|---|---|---|---|---|---|")
    c = lambda k: counts.get(k, 0)
    print(f"| {n} | {c('clean error')} | {c('ok')} | {c('panic')} | {c('abort')} | {c('hang')} | {c('blow-up')} "
          f"| {c('accepted')} | {c('unclear error') + c('failed')} |")
    for name, kind, code, rss, secs, out in bad:
        print(f"\n--- {kind}: {name} (exit {code}, {rss // 1024} MiB, {secs:.1f} s)\n{out}")
    if bad:
        print(f"\nhostile corpus: {len(bad)} failing case(s)", file=sys.stderr)
        sys.exit(1)
    print("hostile corpus: ok")


if __name__ == "__main__":
    main()
