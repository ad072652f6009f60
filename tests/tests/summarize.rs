//! `trtllm summarize`: the committed document set (data/summarize), the prompts (chat template
//! or TL;DR), dataset / HF-output errors that name the file and line, and a run on a fixture.
//! ROUGE itself is unit-tested in trtllm-core (eval/rouge.rs).

use std::path::PathBuf;

use trtllm_core::eval::rouge::tokenize;
use trtllm_core::eval::summarize::{
    load_dataset, load_hf_outputs, prompt_ids, score, summarize, INSTRUCTION,
};
use trtllm_core::llm::Llm;
use trtllm_core::load::LlmOptions;
use trtllm_core::text::{ChatTemplate, Tokenizer};
use trtllm_core::DType;

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn fixture(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("fixtures").join(name)
}

#[test]
fn committed_dataset() {
    let docs = load_dataset(&root().join("data/summarize")).expect("dataset");
    assert!(docs.len() >= 20, "{} documents", docs.len());
    for d in &docs {
        let words = tokenize(&d.document).len();
        assert!((80..=200).contains(&words), "{}: {words} words", d.id);
        let sentences = d.summary.matches(". ").count();
        assert!(sentences == 0 && d.summary.ends_with('.'), "{}: summary is not one sentence", d.id);
    }
}

#[test]
fn prompts() {
    let dir = fixture("llama");
    let tok = Tokenizer::from_dir(&dir).expect("tokenizer");
    let chat =
        ChatTemplate::for_tokenizer(&tok, &dir).expect("template").expect("fixture has a chat template");
    let ids = prompt_ids(&tok, Some(&chat), "Doc.").expect("prompt");
    let want = format!("<s>user\n{INSTRUCTION}Doc.</s>\n<s>assistant\n");
    assert_eq!(ids, tok.encode_raw(&want).expect("encode"));
    assert_eq!(ids[0], 1, "<s> is one special token");
    let ids = prompt_ids(&tok, None, "Doc.").expect("prompt");
    assert_eq!(tok.decode(&ids, false).expect("decode"), "Doc.\n\nTL;DR:");
}

#[test]
fn errors_name_file_and_line() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let f = tmp.path().join("d.jsonl");
    std::fs::write(
        &f,
        "{\"id\": \"a\", \"document\": \"x\", \"summary\": \"y\"}\n\n{\"id\": \"b\", \"summary\": \"y\"}\n",
    )
    .expect("write");
    let e = load_dataset(tmp.path()).expect_err("error").to_string();
    assert!(e.contains("d.jsonl") && e.contains("line 3") && e.contains("`document`"), "{e}");
    std::fs::write(&f, "{\"id\": \"a\", \"document\": \"x\", \"summary\": \"y\"}\n{\"id\": \"a\", \"document\": \"x\", \"summary\": \"y\"}\n").expect("write");
    let e = load_dataset(&f).expect_err("error").to_string();
    assert!(e.contains("line 2") && e.contains("duplicate id `a`"), "{e}");
    std::fs::write(&f, "not json\n").expect("write");
    assert!(load_dataset(&f).expect_err("error").to_string().contains("line 1: invalid JSON"));
    let e = load_dataset(&tmp.path().join("none")).expect_err("error").to_string();
    assert!(e.contains("none"), "{e}");

    let h = tmp.path().join("hf.json");
    std::fs::write(&h, "[{\"id\": \"a\"}]").expect("write");
    let e = load_hf_outputs(&h).expect_err("error").to_string();
    assert!(e.contains("hf.json") && e.contains("`output`"), "{e}");
    std::fs::write(&h, "[{\"id\": \"a\", \"output\": \"z\"}]").expect("write");
    let hf = load_hf_outputs(&h).expect("hf");
    std::fs::write(&f, "{\"id\": \"b\", \"document\": \"x\", \"summary\": \"y\"}\n").expect("write");
    let docs = load_dataset(&f).expect("docs");
    let e = score(&docs, &["y".into()], Some(&hf), &h).expect_err("error").to_string();
    assert!(e.contains("hf.json") && e.contains("`b`"), "{e}");
}

#[test]
fn summarizes_with_a_fixture() {
    trtllm::init();
    let tmp = tempfile::tempdir().expect("tempdir");
    let f = tmp.path().join("d.jsonl");
    let lines = [
        r#"{"id": "1", "document": "The quick brown fox jumps over the lazy dog.", "summary": "A fox jumps over a dog."}"#,
        r#"{"id": "2", "document": "Rust is a systems programming language.", "summary": "Rust is a language."}"#,
        r#"{"id": "3", "document": "Paris is the capital of France.", "summary": "Paris is France's capital."}"#,
    ];
    std::fs::write(&f, lines.join("\n")).expect("write");
    let docs = load_dataset(&f).expect("docs");
    let dir = fixture("llama");
    let mut opts = LlmOptions { kv_block_size: 4, max_batch_size: 2, max_seq_len: 128, ..Default::default() };
    opts.load.dtype = Some(DType::F32);
    let mut llm = Llm::with_options(&dir, opts).expect("load");
    let tok = Tokenizer::from_dir(&dir).expect("tokenizer");
    let chat = ChatTemplate::for_tokenizer(&tok, &dir).expect("template");
    let prompts: Vec<_> =
        docs.iter().map(|d| prompt_ids(&tok, chat.as_ref(), &d.document).expect("prompt")).collect();
    let mut batches = vec![];
    let a = summarize(&mut llm, &prompts, 6, 2, &mut |n| batches.push(n)).expect("summarize");
    assert_eq!(batches, [2, 3]);
    // Batching does not change greedy output.
    let b = summarize(&mut llm, &prompts, 6, 1, &mut |_| {}).expect("summarize");
    assert_eq!(a, b);
    let s = score(&docs, &a, None, std::path::Path::new("")).expect("score");
    assert_eq!(s.vs_references.n, 3);
    assert!(s.vs_hf.is_none() && s.render().contains("trtllm vs references"));
}
