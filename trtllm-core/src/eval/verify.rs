//! `trtllm verify`: run a reference dump's prompt (`scripts/hf_reference.py`, format in
//! `tests/fixtures/README.md`) through the engine with hidden-state capture and compare stage by
//! stage — embedding, every layer's output, the final norm, the logits — by NMSE, the logits also
//! by KL(ref || ours), and the greedy continuation token by token. The report names the first
//! stage whose NMSE exceeds the threshold: where a model author starts looking.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::io::Read as _;
use std::path::{Path, PathBuf};

use crate::llm::Llm;

use crate::dist::SingleRank;
use crate::runner::SamplingParams;
use crate::weights::SafetensorsFiles;
use crate::{Error, Result, Tensor};

/// A reference dump: its tensors and string metadata.
pub struct Reference {
    pub path: PathBuf,
    pub files: SafetensorsFiles,
    pub metadata: BTreeMap<String, String>,
}

impl Reference {
    pub fn open(path: &Path) -> Result<Self> {
        let files = SafetensorsFiles::open_files(&[path.to_path_buf()])?;
        // The header again, for `__metadata__` (the loader keeps tensors only).
        let mut f = std::fs::File::open(path).map_err(|e| Error::io(path, e))?;
        let mut len = [0u8; 8];
        f.read_exact(&mut len).map_err(|e| Error::io(path, e))?;
        let n = u64::from_le_bytes(len) as usize;
        let mut header = vec![0u8; n];
        f.read_exact(&mut header).map_err(|e| Error::io(path, e))?;
        let v: serde_json::Value =
            serde_json::from_slice(&header).map_err(|source| Error::Json { path: path.into(), source })?;
        let metadata = v
            .get("__metadata__")
            .and_then(|m| m.as_object())
            .map(|m| m.iter().filter_map(|(k, v)| Some((k.clone(), v.as_str()?.to_string()))).collect())
            .unwrap_or_default();
        Ok(Reference { path: path.to_path_buf(), files, metadata })
    }

    pub fn meta(&self, key: &str) -> Option<&str> {
        self.metadata.get(key).map(String::as_str)
    }

    pub fn contains(&self, name: &str) -> bool {
        self.files.contains(name)
    }

    fn tensor(&self, name: &str) -> Result<Tensor> {
        if !self.files.contains(name) {
            return Err(Error::checkpoint(
                &self.path,
                format!("no tensor `{name}` (not a hf_reference.py dump?)"),
            ));
        }
        self.files.read(name)
    }

    /// Token ids stored as int32 (`input_ids`, `greedy`).
    pub fn ids(&self, name: &str) -> Result<Vec<u32>> {
        let t = self.tensor(name)?;
        let v = t.i32s().map_err(|_| {
            Error::checkpoint(&self.path, format!("`{name}` must be int32, is {}", t.dtype()))
        })?;
        v.iter()
            .map(|&x| {
                u32::try_from(x)
                    .map_err(|_| Error::checkpoint(&self.path, format!("`{name}` holds negative id {x}")))
            })
            .collect()
    }

    pub fn floats(&self, name: &str) -> Result<(Vec<usize>, Vec<f32>)> {
        let t = self.tensor(name)?;
        Ok((t.shape().to_vec(), t.to_f32_vec()?))
    }
}

/// Normalized mean squared error: sum (a - b)^2 / sum b^2 (b the reference). Non-finite output
/// gives infinity.
pub fn nmse(ours: &[f32], reference: &[f32]) -> f64 {
    let mut num = 0.0f64;
    let mut den = 0.0f64;
    for (&a, &b) in ours.iter().zip(reference) {
        num += (a as f64 - b as f64).powi(2);
        den += (b as f64).powi(2);
    }
    if num.is_nan() {
        return f64::INFINITY;
    }
    num / den.max(1e-30)
}

fn log_softmax(row: &[f32]) -> Vec<f64> {
    let max = row.iter().fold(f64::NEG_INFINITY, |m, &x| m.max(x as f64));
    let lse = max + row.iter().map(|&x| (x as f64 - max).exp()).sum::<f64>().ln();
    row.iter().map(|&x| x as f64 - lse).collect()
}

/// KL(softmax(ref) || softmax(ours)) of every row of `[rows, vocab]` logits, in nats.
pub fn kl_rows(ours: &[f32], reference: &[f32], vocab: usize) -> Vec<f64> {
    ours.chunks(vocab.max(1))
        .zip(reference.chunks(vocab.max(1)))
        .map(|(q, p)| {
            let (lq, lp) = (log_softmax(q), log_softmax(p));
            let kl: f64 = lp
                .iter()
                .zip(&lq)
                .map(|(&a, &b)| if a == f64::NEG_INFINITY { 0.0 } else { a.exp() * (a - b) })
                .sum();
            if kl.is_nan() {
                f64::INFINITY
            } else {
                kl.max(0.0)
            }
        })
        .collect()
}

#[derive(Clone, Copy, Debug)]
pub struct VerifyOptions {
    pub nmse_threshold: f64,
    /// Mean KL(ref || ours) over positions, nats.
    pub kl_threshold: f64,
    /// Compare the greedy continuation (when the reference has one).
    pub greedy: bool,
}

impl Default for VerifyOptions {
    fn default() -> Self {
        VerifyOptions { nmse_threshold: 1e-6, kl_threshold: 1e-4, greedy: true }
    }
}

/// `x <= limit`, false for NaN.
fn within(x: f64, limit: f64) -> bool {
    x <= limit
}

/// A compared stage of the forward.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Stage {
    Embedding,
    Layer(usize),
    FinalNorm,
    Logits,
}

impl std::fmt::Display for Stage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Stage::Embedding => f.write_str("embedding"),
            Stage::Layer(i) => write!(f, "layer {i}"),
            Stage::FinalNorm => f.write_str("final norm"),
            Stage::Logits => f.write_str("logits"),
        }
    }
}

#[derive(Clone, Debug)]
pub struct StageRow {
    pub stage: Stage,
    /// The reference tensor it was compared with.
    pub reference: String,
    pub nmse: f64,
    pub max_abs: f64,
}

#[derive(Clone, Debug)]
pub struct GreedyCheck {
    pub ours: Vec<u32>,
    pub reference: Vec<u32>,
    /// Index of the first differing token.
    pub first_mismatch: Option<usize>,
}

#[derive(Clone, Debug)]
pub struct VerifyReport {
    pub rows: Vec<StageRow>,
    pub kl_mean: f64,
    pub kl_max: f64,
    pub greedy: Option<GreedyCheck>,
    /// Stages the reference had nothing to compare with (e.g. no `final_norm_input`).
    pub notes: Vec<String>,
    pub opts: VerifyOptions,
}

impl VerifyReport {
    /// The first stage whose NMSE exceeds the threshold.
    pub fn first_divergence(&self) -> Option<&StageRow> {
        self.rows.iter().find(|r| !within(r.nmse, self.opts.nmse_threshold))
    }
    pub fn logits_nmse(&self) -> Option<f64> {
        self.rows.iter().find(|r| r.stage == Stage::Logits).map(|r| r.nmse)
    }
    pub fn kl_ok(&self) -> bool {
        within(self.kl_mean, self.opts.kl_threshold)
    }
    pub fn greedy_ok(&self) -> bool {
        self.greedy.as_ref().is_none_or(|g| g.first_mismatch.is_none())
    }
    pub fn passed(&self) -> bool {
        self.first_divergence().is_none() && self.kl_ok() && self.greedy_ok()
    }

    /// The per-stage table and the verdict lines.
    pub fn render(&self) -> String {
        let t = self.opts.nmse_threshold;
        let mut s =
            format!("{:<12} {:<18} {:>12} {:>12}  status\n", "stage", "reference", "NMSE", "max |diff|");
        for r in &self.rows {
            let status = if within(r.nmse, t) { "ok" } else { "DIVERGES" };
            let _ = writeln!(
                s,
                "{:<12} {:<18} {:>12.3e} {:>12.3e}  {status}",
                r.stage.to_string(),
                r.reference,
                r.nmse,
                r.max_abs
            );
        }
        for n in &self.notes {
            let _ = writeln!(s, "note: {n}");
        }
        let mark = |ok: bool| if ok { "ok" } else { "FAIL" };
        if let Some(e) = self.logits_nmse() {
            let _ = writeln!(s, "logits: NMSE {e:.3e} (threshold {t:.0e}) {}", mark(within(e, t)));
        }
        let _ = writeln!(
            s,
            "logits: KL(ref || ours) mean {:.3e} max {:.3e} nats over positions (threshold {:.0e}) {}",
            self.kl_mean,
            self.kl_max,
            self.opts.kl_threshold,
            mark(self.kl_ok())
        );
        match &self.greedy {
            None => s.push_str("greedy: not compared\n"),
            Some(g) => {
                let n = g.reference.len();
                let _ = match g.first_mismatch {
                    None => writeln!(s, "greedy: {n}/{n} tokens match ok"),
                    Some(i) => {
                        let tok = |v: &[u32]| v.get(i).map_or("none".to_string(), u32::to_string);
                        writeln!(
                            s,
                            "greedy: differs at token {i} of {n} (ours {}, reference {}) FAIL",
                            tok(&g.ours),
                            tok(&g.reference)
                        )
                    }
                };
            }
        }
        match self.first_divergence() {
            Some(r) => {
                let _ = writeln!(
                    s,
                    "first divergence: {} (NMSE {:.3e} > {t:.0e} vs `{}`)",
                    r.stage, r.nmse, r.reference
                );
            }
            None => s.push_str("first divergence: none\n"),
        }
        s.push_str(if self.passed() { "PASS\n" } else { "FAIL\n" });
        s
    }
}

fn compare(stage: Stage, ours: &Tensor, refs: &Reference, name: &str) -> Result<StageRow> {
    let (shape, want) = refs.floats(name)?;
    if ours.shape() != shape.as_slice() {
        return Err(Error::checkpoint(
            &refs.path,
            format!(
                "`{name}` has shape {shape:?}, the engine's {stage} output {:?} (a dump of another model?)",
                ours.shape()
            ),
        ));
    }
    let got = ours.to_f32_vec()?;
    let max_abs = got.iter().zip(&want).fold(0.0f64, |m, (&a, &b)| {
        let d = (a as f64 - b as f64).abs();
        if d.is_nan() {
            f64::INFINITY
        } else {
            m.max(d)
        }
    });
    Ok(StageRow { stage, reference: name.to_string(), nmse: nmse(&got, &want), max_abs })
}

/// Run `refs` through `llm` and compare. Errors are about the inputs (missing tensors, shapes
/// that do not fit the model); a diverging model is a report that did not pass.
pub fn verify(llm: &mut Llm, refs: &Reference, opts: &VerifyOptions) -> Result<VerifyReport> {
    let ids = refs.ids("input_ids")?;
    if ids.is_empty() {
        return Err(Error::checkpoint(&refs.path, "`input_ids` is empty"));
    }
    let mut hidden = vec![];
    let logits = llm.logits_all(&ids, Some(&mut hidden), &SingleRank)?;
    let layers = llm.model().config().num_hidden_layers;
    if let Some(l) = refs.meta("num_layers").and_then(|v| v.parse::<usize>().ok()).filter(|&l| l != layers) {
        return Err(Error::checkpoint(
            &refs.path,
            format!("dump of a {l}-layer model; this model has {layers}"),
        ));
    }
    if hidden.len() != layers + 2 {
        return Err(Error::Msg(format!(
            "the model captured {} hidden states, expected {} (embedding, {layers} layers, final norm)",
            hidden.len(),
            layers + 2
        )));
    }
    let mut rows = vec![compare(Stage::Embedding, &hidden[0], refs, "hidden.0")?];
    let mut notes = vec![];
    for i in 0..layers {
        let name = if i + 1 < layers { format!("hidden.{}", i + 1) } else { "final_norm_input".to_string() };
        if refs.contains(&name) {
            rows.push(compare(Stage::Layer(i), &hidden[i + 1], refs, &name)?);
        } else if refs.meta("last_hidden_is_normed") == Some("false") {
            rows.push(compare(Stage::Layer(i), &hidden[i + 1], refs, &format!("hidden.{layers}"))?);
        } else {
            notes.push(format!("layer {i}: no `{name}` in the reference; not compared"));
        }
    }
    match refs.meta("last_hidden_is_normed") {
        Some("true") => rows.push(compare(Stage::FinalNorm, &hidden[layers + 1], refs, &format!("hidden.{layers}"))?),
        other => notes.push(format!(
            "final norm: the reference's `hidden.{layers}` is not the final norm's output (last_hidden_is_normed = {}); not compared",
            other.unwrap_or("absent")
        )),
    }
    let logits_row = compare(Stage::Logits, &logits, refs, "logits")?;
    let vocab = logits.dim(1);
    let kl = kl_rows(&logits.to_f32_vec()?, &refs.floats("logits")?.1, vocab);
    rows.push(logits_row);
    let kl_mean = kl.iter().sum::<f64>() / kl.len().max(1) as f64;
    let kl_max = kl.iter().copied().fold(0.0, f64::max);

    let greedy = if opts.greedy && refs.contains("greedy") {
        let want = refs.ids("greedy")?;
        let params = SamplingParams { max_new_tokens: want.len(), ignore_eos: true, ..Default::default() };
        let got = llm.generate_ids(vec![ids.clone()], &params, &mut |_, _| {})?;
        let ours = got.into_iter().next().map(|g| g.token_ids).unwrap_or_default();
        let mut first_mismatch = (0..want.len()).find(|&i| ours.get(i) != want.get(i));
        if first_mismatch.is_some()
            && refs.contains("greedy_recompute")
            && refs.ids("greedy_recompute")? == ours
        {
            notes.push("greedy: equals the reference's full-recompute greedy (`greedy_recompute`), not its cached one".into());
            first_mismatch = None;
        }
        if let Some(m) = refs.meta("greedy_min_margin") {
            notes.push(format!("greedy: the reference's smallest top-1/top-2 logit margin is {m}"));
        }
        Some(GreedyCheck { ours, reference: want, first_mismatch })
    } else {
        None
    };
    Ok(VerifyReport { rows, kl_mean, kl_max, greedy, notes, opts: *opts })
}
