//! `trtllm summarize` (TensorRT-LLM's `summarize.py`): summarize a document set greedily and score
//! the summaries with ROUGE against reference summaries and against HF transformers' outputs for
//! the same prompts (`scripts/hf_summarize.py`, which builds its prompts exactly as
//! [`prompt_ids`] does).
//!
//! Dataset: one JSONL file of `{"id", "document", "summary"}` lines (`data/summarize/`). HF
//! outputs: a JSON list of `{"id", "output"}`.

use std::collections::{BTreeMap, HashSet};
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use crate::eval::rouge::{corpus_rouge, CorpusRouge};
use crate::llm::Llm;
use crate::runner::SamplingParams;
use crate::text::{ChatMessage, ChatTemplate, Tokenizer};
use crate::{Error, Result};

/// The user turn when the model has a chat template; the document follows.
pub const INSTRUCTION: &str = "Summarize the following text in one sentence:\n\n";
/// Appended to the document when it has none.
pub const TLDR_SUFFIX: &str = "\n\nTL;DR:";

#[derive(Clone, Debug)]
pub struct Document {
    pub id: String,
    pub document: String,
    pub summary: String,
}

/// The dataset file of `path`: the file itself, or the one `*.jsonl` in a directory.
pub fn dataset_file(path: &Path) -> Result<PathBuf> {
    if !path.is_dir() {
        return Ok(path.to_path_buf());
    }
    let entries = std::fs::read_dir(path).map_err(|e| Error::io(path, e))?;
    let mut found = vec![];
    for e in entries {
        let p = e.map_err(|e| Error::io(path, e))?.path();
        if p.extension().is_some_and(|x| x == "jsonl") {
            found.push(p);
        }
    }
    found.sort();
    match found.len() {
        1 => Ok(found.remove(0)),
        0 => Err(Error::checkpoint(path, "no *.jsonl dataset file in this directory")),
        _ => Err(Error::checkpoint(
            path,
            format!("{} *.jsonl files; pass one with --dataset FILE", found.len()),
        )),
    }
}

fn id_of(v: Option<&serde_json::Value>) -> Option<String> {
    match v? {
        serde_json::Value::String(s) => Some(s.clone()),
        serde_json::Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

/// Read the documents of a JSONL dataset (a file or a directory holding one).
pub fn load_dataset(path: &Path) -> Result<Vec<Document>> {
    let file = dataset_file(path)?;
    let text = crate::error::read_to_string(&file)?;
    let mut docs = vec![];
    let mut seen = HashSet::new();
    for (n, line) in text.lines().enumerate().map(|(i, l)| (i + 1, l.trim())) {
        if line.is_empty() {
            continue;
        }
        let bad = |msg: String| Error::checkpoint(&file, format!("line {n}: {msg}"));
        let v: serde_json::Value =
            serde_json::from_str(line).map_err(|e| bad(format!("invalid JSON: {e}")))?;
        let field = |k: &str| -> Result<String> {
            match v.get(k).and_then(|x| x.as_str()) {
                Some(s) if !s.trim().is_empty() => Ok(s.to_string()),
                Some(_) => Err(bad(format!("field `{k}` is empty"))),
                None => Err(bad(format!("field `{k}` is missing or not a string"))),
            }
        };
        let id =
            id_of(v.get("id")).ok_or_else(|| bad("field `id` is missing or not a string/number".into()))?;
        if !seen.insert(id.clone()) {
            return Err(bad(format!("duplicate id `{id}`")));
        }
        docs.push(Document { id, document: field("document")?, summary: field("summary")? });
    }
    if docs.is_empty() {
        return Err(Error::checkpoint(&file, "no documents"));
    }
    Ok(docs)
}

/// HF's outputs (`scripts/hf_summarize.py`): id -> summary.
pub fn load_hf_outputs(path: &Path) -> Result<BTreeMap<String, String>> {
    let v = crate::error::read_json(path)?;
    let list = v
        .as_array()
        .ok_or_else(|| Error::checkpoint(path, "expected a JSON list of {\"id\", \"output\"}"))?;
    let mut out = BTreeMap::new();
    for (i, item) in list.iter().enumerate() {
        let id = id_of(item.get("id"))
            .ok_or_else(|| Error::checkpoint(path, format!("item {i}: field `id` missing")))?;
        let text = item.get("output").and_then(|x| x.as_str()).ok_or_else(|| {
            Error::checkpoint(path, format!("item {i} (`{id}`): field `output` missing or not a string"))
        })?;
        out.insert(id, text.to_string());
    }
    Ok(out)
}

/// The prompt of one document: the chat template around [`INSTRUCTION`] + document when the
/// model has one (encoded as rendered), else document + [`TLDR_SUFFIX`] (with the tokenizer's
/// own special tokens).
pub fn prompt_ids(tok: &Tokenizer, chat: Option<&ChatTemplate>, document: &str) -> Result<Vec<u32>> {
    match chat {
        Some(t) => tok.encode_raw(&t.render(&[ChatMessage::user(format!("{INSTRUCTION}{document}"))], true)?),
        None => tok.encode(&format!("{document}{TLDR_SUFFIX}")),
    }
}

/// Greedy summaries of `prompts`, `batch_size` sequences at a time, trimmed. `progress(done)`
/// is called after each batch.
pub fn summarize(
    llm: &mut Llm,
    prompts: &[Vec<u32>],
    max_output_len: usize,
    batch_size: usize,
    progress: &mut dyn FnMut(usize),
) -> Result<Vec<String>> {
    Ok(summarize_timed(llm, prompts, max_output_len, batch_size, progress)?.0)
}

/// Where the time of a [`summarize_timed`] call went.
#[derive(Clone, Copy, Debug, Default)]
pub struct SummaryTiming {
    /// The steps up to each batch's first token, and all later steps (`Generation`'s split).
    pub prefill_s: f64,
    pub decode_s: f64,
    /// Tokens generated, and of them those after each sequence's first (made in decode steps).
    pub new_tokens: usize,
    pub decode_tokens: usize,
}

impl SummaryTiming {
    pub fn decode_tok_s(&self) -> f64 {
        self.decode_tokens as f64 / self.decode_s.max(1e-9)
    }
}

/// [`summarize`], with its timing.
pub fn summarize_timed(
    llm: &mut Llm,
    prompts: &[Vec<u32>],
    max_output_len: usize,
    batch_size: usize,
    progress: &mut dyn FnMut(usize),
) -> Result<(Vec<String>, SummaryTiming)> {
    let params = SamplingParams::greedy(max_output_len);
    let mut out = Vec::with_capacity(prompts.len());
    let mut t = SummaryTiming::default();
    for chunk in prompts.chunks(batch_size.max(1)) {
        let gens = llm.generate_ids(chunk.to_vec(), &params, &mut |_, _| {})?;
        if let Some(g) = gens.first() {
            t.prefill_s += g.prefill_time.as_secs_f64();
            t.decode_s += g.decode_time.as_secs_f64();
        }
        for g in gens {
            t.new_tokens += g.token_ids.len();
            t.decode_tokens += g.token_ids.len().saturating_sub(1);
            out.push(llm.tokenizer()?.decode(&g.token_ids, true)?.trim().to_string());
        }
        progress(out.len());
    }
    Ok((out, t))
}

/// ROUGE of our summaries against the references and, when given, HF's outputs.
#[derive(Clone, Debug)]
pub struct SummaryScores {
    pub vs_references: CorpusRouge,
    pub vs_hf: Option<CorpusRouge>,
    pub hf_vs_references: Option<CorpusRouge>,
    /// Documents whose summary equals HF's exactly.
    pub exact_hf: Option<usize>,
}

pub fn score(
    docs: &[Document],
    ours: &[String],
    hf: Option<&BTreeMap<String, String>>,
    hf_file: &Path,
) -> Result<SummaryScores> {
    let vs_references = corpus_rouge(ours.iter().zip(docs).map(|(o, d)| (o.as_str(), d.summary.as_str())));
    let (mut vs_hf, mut hf_vs_references, mut exact_hf) = (None, None, None);
    if let Some(hf) = hf {
        let mut theirs = Vec::with_capacity(docs.len());
        for d in docs {
            let t = hf
                .get(&d.id)
                .ok_or_else(|| Error::checkpoint(hf_file, format!("no output for document `{}`", d.id)))?;
            theirs.push(t.trim());
        }
        vs_hf = Some(corpus_rouge(ours.iter().map(String::as_str).zip(theirs.iter().copied())));
        hf_vs_references =
            Some(corpus_rouge(theirs.iter().copied().zip(docs.iter().map(|d| d.summary.as_str()))));
        exact_hf = Some(ours.iter().zip(&theirs).filter(|(a, b)| a.as_str() == **b).count());
    }
    Ok(SummaryScores { vs_references, vs_hf, hf_vs_references, exact_hf })
}

impl SummaryScores {
    /// ROUGE-1 that the threshold applies to: vs HF when HF outputs were given, else vs the
    /// references.
    pub fn gate(&self) -> (f64, &'static str) {
        match &self.vs_hf {
            Some(h) => (h.rouge1, "ROUGE-1 vs HF"),
            None => (self.vs_references.rouge1, "ROUGE-1 vs references"),
        }
    }

    pub fn render(&self) -> String {
        let mut s = format!("{:<24} {:>8} {:>8} {:>8}\n", "", "ROUGE-1", "ROUGE-2", "ROUGE-L");
        let mut row = |name: &str, r: &CorpusRouge| {
            let _ = writeln!(s, "{name:<24} {:>8.2} {:>8.2} {:>8.2}", r.rouge1, r.rouge2, r.rouge_l);
        };
        row("trtllm vs references", &self.vs_references);
        if let Some(r) = &self.vs_hf {
            row("trtllm vs HF", r);
        }
        if let Some(r) = &self.hf_vs_references {
            row("HF vs references", r);
        }
        if let Some(n) = self.exact_hf {
            let _ = writeln!(s, "identical to HF: {n} of {} summaries", self.vs_references.n);
        }
        s
    }
}
