"""`trtllm chat` driven through a pipe gives the text the server gives for the same messages
(greedy), keeps the history, and `/reset` forgets it; `trtllm run` reads prompts from stdin and
`--input-file`, and `--stop` cuts a continuation at the stop text."""

import subprocess

import requests

from conftest import BIN, FIXTURE


def server_answer(server, messages, max_tokens=12):
    r = requests.post(server.url + "/v1/chat/completions", json={"messages": messages, "max_tokens": max_tokens, "temperature": 0.0}, timeout=60)
    assert r.status_code == 200, r.text
    return r.json()["choices"][0]["message"]["content"]


def chat_cli(stdin, *extra):
    cmd = [str(BIN), "chat", str(FIXTURE), "--device", "cpu", "--temperature", "0", "--max-tokens", "12", *extra]
    p = subprocess.run(cmd, input=stdin, capture_output=True, text=True, timeout=120)
    assert p.returncode == 0, p.stderr
    return p.stdout


def test_chat_through_a_pipe_matches_the_server(server):
    a1 = server_answer(server, [{"role": "user", "content": "hello"}])
    a2 = server_answer(server, [{"role": "user", "content": "hello"}, {"role": "assistant", "content": a1}, {"role": "user", "content": "tell me more"}])
    assert chat_cli("hello\ntell me more\n") == f"{a1}\n{a2}\n"
    # /reset forgets the first exchange: the second "hello" is answered as the first was.
    assert chat_cli("hello\n/reset\nhello\n/exit\nignored\n") == f"{a1}\n{a1}\n"
    s = server_answer(server, [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "hi"}])
    assert chat_cli("hi\n", "--system", "Be brief.") == f"{s}\n"


def run_cli(*args, stdin=None):
    cmd = [str(BIN), "run", "--model", str(FIXTURE), "--device", "cpu", "--max-output-len", "10", *args]
    p = subprocess.run(cmd, input=stdin, capture_output=True, text=True, timeout=120)
    assert p.returncode == 0, p.stderr
    return p.stdout


def test_run_reads_stdin_and_files_and_stops(tmp_path):
    flags = run_cli("--input-text", "The quick", "--input-text", "brown fox")
    assert run_cli(stdin="The quick\n\nbrown fox\n") == flags
    f = tmp_path / "prompts.txt"
    f.write_text("The quick\nbrown fox\n")
    assert run_cli("--input-file", str(f)) == flags
    one = run_cli("--input-text", "The quick").rstrip("\n")
    assert len(one) > 4, one
    stop = one[3:5]
    cut = one[: one.index(stop)]
    assert run_cli("--input-text", "The quick", "--stop", stop) == cut + "\n"
    assert run_cli("--input-text", "The quick", "--stop", stop, "--streaming") == cut + "\n"
