//! Request sets for `trtllm bench --mode throughput --dataset FILE`: a JSON-lines file of prompts,
//! or a ShareGPT-format JSON file (as vLLM's `benchmark_serving` reads it).
//!
//! - **JSONL**: one object per line, `{"prompt": "text"}` or `{"prompt_ids": [ids]}`, with an
//!   optional `"output_len"` (or `"max_tokens"`; default: `--output-len`).
//! - **ShareGPT**: a JSON array of `{"conversations": [{"from": "human", "value": ...},
//!   {"from": "gpt", "value": ...}, ...]}`; the first human turn is the prompt and the token count
//!   of the reply after it the output length. Pairs with a prompt or reply under 4 tokens, a
//!   prompt over 1024 or a total over 2048 tokens are skipped (vLLM's filter).

use std::path::Path;

use serde_json::Value;
use trtllm::text::Tokenizer;

/// One request: prompt ids and how many tokens it generates.
pub struct BenchRequest {
    pub prompt: Vec<u32>,
    pub output_len: usize,
}

/// At most `limit` requests from `path`, tokenized with `tok`; `default_out` where a JSONL line
/// names no output length. Errors name the file and the line or entry.
pub fn load(
    path: &Path,
    tok: &Tokenizer,
    limit: usize,
    default_out: usize,
) -> anyhow::Result<Vec<BenchRequest>> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| anyhow::anyhow!("reading the dataset {}: {e}", path.display()))?;
    let out = if text.trim_start().starts_with('[') {
        sharegpt(path, &text, tok, limit)?
    } else {
        jsonl(path, &text, tok, limit, default_out)?
    };
    if out.is_empty() {
        anyhow::bail!("the dataset {} holds no usable request", path.display());
    }
    Ok(out)
}

fn jsonl(
    path: &Path,
    text: &str,
    tok: &Tokenizer,
    limit: usize,
    default_out: usize,
) -> anyhow::Result<Vec<BenchRequest>> {
    let mut out = vec![];
    for (i, line) in text.lines().enumerate().filter(|(_, l)| !l.trim().is_empty()) {
        if out.len() >= limit {
            break;
        }
        let at = || format!("{} line {}", path.display(), i + 1);
        let v: Value = serde_json::from_str(line).map_err(|e| anyhow::anyhow!("{}: {e}", at()))?;
        let prompt = match (v.get("prompt"), v.get("prompt_ids")) {
            (Some(Value::String(s)), _) => tok.encode(s).map_err(|e| anyhow::anyhow!("{}: {e}", at()))?,
            (_, Some(Value::Array(a))) => a
                .iter()
                .map(|x| x.as_u64().filter(|&t| t <= u32::MAX as u64).map(|t| t as u32))
                .collect::<Option<Vec<u32>>>()
                .ok_or_else(|| anyhow::anyhow!("{}: prompt_ids must be token ids", at()))?,
            _ => anyhow::bail!("{}: expected \"prompt\" (text) or \"prompt_ids\" (ids)", at()),
        };
        let output_len = match v.get("output_len").or_else(|| v.get("max_tokens")) {
            None => default_out,
            Some(x) => x
                .as_u64()
                .filter(|&n| n > 0 && n <= 1 << 20)
                .ok_or_else(|| anyhow::anyhow!("{}: output_len must be a positive integer", at()))?
                as usize,
        };
        if prompt.is_empty() {
            anyhow::bail!("{}: empty prompt", at());
        }
        out.push(BenchRequest { prompt, output_len });
    }
    Ok(out)
}

fn sharegpt(path: &Path, text: &str, tok: &Tokenizer, limit: usize) -> anyhow::Result<Vec<BenchRequest>> {
    let v: Value = serde_json::from_str(text).map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
    let entries = v.as_array().ok_or_else(|| anyhow::anyhow!("{}: expected a JSON array", path.display()))?;
    let mut out = vec![];
    for (i, e) in entries.iter().enumerate() {
        if out.len() >= limit {
            break;
        }
        let Some(turns) = e.get("conversations").and_then(Value::as_array) else {
            anyhow::bail!("{} entry {i}: no \"conversations\" array", path.display());
        };
        let role = |t: &Value| {
            t.get("from").or_else(|| t.get("role")).and_then(Value::as_str).unwrap_or("").to_string()
        };
        let value = |t: &Value| {
            t.get("value").or_else(|| t.get("content")).and_then(Value::as_str).map(str::to_string)
        };
        let Some(h) = turns.iter().position(|t| matches!(role(t).as_str(), "human" | "user")) else {
            continue;
        };
        let (Some(q), Some(a)) = (turns.get(h).and_then(value), turns.get(h + 1).and_then(value)) else {
            continue;
        };
        let prompt = tok.encode(&q).map_err(|e| anyhow::anyhow!("{} entry {i}: {e}", path.display()))?;
        let reply =
            tok.encode_raw(&a).map_err(|e| anyhow::anyhow!("{} entry {i}: {e}", path.display()))?.len();
        if prompt.len() < 4 || reply < 4 || prompt.len() > 1024 || prompt.len() + reply > 2048 {
            continue;
        }
        out.push(BenchRequest { prompt, output_len: reply });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tok() -> Tokenizer {
        Tokenizer::from_dir(&Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/llama"))
            .expect("tokenizer")
    }

    fn write(name: &str, text: &str) -> std::path::PathBuf {
        let p = std::env::temp_dir().join(format!("trtllm-ds-{}-{name}", std::process::id()));
        std::fs::write(&p, text).expect("write");
        p
    }

    #[test]
    fn jsonl_takes_text_ids_and_output_lengths() {
        let p = write("a.jsonl", "{\"prompt\": \"alpha beta\", \"output_len\": 5}\n\n{\"prompt_ids\": [5, 6, 7]}\n{\"prompt\": \"x\"}\n");
        let r = load(&p, &tok(), 2, 9).expect("load");
        assert_eq!(r.len(), 2, "--num-requests caps the set");
        assert_eq!((r[0].output_len, r[1].output_len), (5, 9));
        assert_eq!(r[1].prompt, vec![5, 6, 7]);
        assert!(!r[0].prompt.is_empty());
        let bad = write("b.jsonl", "{\"prompt\": 3}\n");
        let e = load(&bad, &tok(), 8, 9).err().expect("refused").to_string();
        assert!(e.contains("line 1") && e.contains("prompt"), "{e}");
    }

    #[test]
    fn sharegpt_takes_the_first_exchange_and_filters_short_ones() {
        let long = "the quick brown fox jumps over the lazy dog ".repeat(3);
        let text = format!(
            "[{{\"conversations\": [{{\"from\": \"human\", \"value\": \"{long}\"}}, {{\"from\": \"gpt\", \"value\": \"{long}\"}}]}},\
              {{\"conversations\": [{{\"from\": \"human\", \"value\": \"hi\"}}, {{\"from\": \"gpt\", \"value\": \"{long}\"}}]}}]"
        );
        let p = write("s.json", &text);
        let r = load(&p, &tok(), 10, 1).expect("load");
        assert_eq!(r.len(), 1, "the 1-token prompt is filtered");
        assert!(r[0].output_len >= 4 && r[0].prompt.len() >= 4);
    }
}
