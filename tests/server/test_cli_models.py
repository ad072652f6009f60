"""Models given positionally or by HF id (resolved offline in an HF cache layout), and
`serve --chat-template FILE`."""

import os
import subprocess

import requests

from conftest import BIN, FIXTURE, Server

RUN = ["--device", "cpu", "--input-text", "Once upon a time", "--max-output-len", "6", "--ignore-eos"]


def run(args, env=None):
    return subprocess.run([str(BIN), "run", *args], capture_output=True, timeout=120, env=env)


def hf_home(tmp_path):
    """An HF cache holding the fixture as `Org/Tiny` (refs/main -> snapshot rev1)."""
    repo = tmp_path / "hub" / "models--Org--Tiny"
    snap = repo / "snapshots" / "rev1"
    snap.mkdir(parents=True)
    for f in FIXTURE.iterdir():
        (snap / f.name).symlink_to(f)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text("rev1")
    env = {k: v for k, v in os.environ.items() if k not in ("HF_HUB_CACHE", "RUST_LOG")}
    env["HF_HOME"] = str(tmp_path)
    return env


def test_positional_and_hf_id_give_the_same_output(tmp_path):
    ref = run(["--model", str(FIXTURE), *RUN])
    assert ref.returncode == 0, ref.stderr
    pos = run([str(FIXTURE), *RUN])
    assert pos.returncode == 0 and pos.stdout == ref.stdout, pos.stderr
    env = hf_home(tmp_path)
    by_id = run(["--model", "Org/Tiny", *RUN], env=env)
    assert by_id.returncode == 0 and by_id.stdout == ref.stdout, by_id.stderr
    by_id_pos = run(["Org/Tiny", *RUN], env=env)
    assert by_id_pos.returncode == 0 and by_id_pos.stdout == ref.stdout, by_id_pos.stderr


def test_missing_hf_id_is_a_clear_error(tmp_path):
    r = run(["Org/Absent", *RUN], env=hf_home(tmp_path))
    err = r.stderr.decode()
    assert r.returncode != 0 and "models--Org--Absent" in err and "never downloads" in err, err


def test_serve_positional_hf_id_and_chat_template(tmp_path):
    tmpl = tmp_path / "t.jinja"
    tmpl.write_text("{% for m in messages %}[{{ m.role }}]{{ m.content }}{% endfor %}{% if add_generation_prompt %}[assistant]{% endif %}")
    env = hf_home(tmp_path)
    s = Server("--chat-template", str(tmpl), model=None, positional="Org/Tiny", env=env)
    try:
        assert [m["id"] for m in requests.get(s.url + "/v1/models", timeout=10).json()["data"]] == ["Org/Tiny"]
        t = requests.post(s.url + "/tokenize", json={"messages": [{"role": "user", "content": "hi"}]}, timeout=10).json()
        want = requests.post(s.url + "/tokenize", json={"prompt": "[user]hi[assistant]", "add_special_tokens": False}, timeout=10).json()
        assert t["tokens"] == want["tokens"]
    finally:
        assert s.stop() == 0, "".join(s.lines)
