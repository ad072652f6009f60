//! Perplexity over a set of texts, teacher-forced (one prefill of each text, logits at every
//! position): the accuracy check of a quantized checkpoint against its source on real text.

use crate::dist::SingleRank;
use crate::llm::Llm;
use crate::{DType, Result};

/// Summed next-token negative log-likelihood (nats) and the tokens it covers.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Nll {
    pub nll: f64,
    pub tokens: usize,
}

impl Nll {
    /// `exp(mean NLL)`.
    pub fn perplexity(&self) -> f64 {
        (self.nll / self.tokens.max(1) as f64).exp()
    }
    pub fn add(&mut self, o: Nll) {
        self.nll += o.nll;
        self.tokens += o.tokens;
    }
}

/// `-log p(ids[i + 1] | ids[..=i])` summed over `i`, from logits `[n, vocab]` (log-softmax in f64).
pub fn nll_of_logits(logits: &[f32], vocab: usize, ids: &[u32]) -> Nll {
    let mut out = Nll::default();
    for (i, next) in ids.iter().skip(1).enumerate() {
        let row = &logits[i * vocab..(i + 1) * vocab];
        let m = row.iter().fold(f32::NEG_INFINITY, |a, &b| a.max(b)) as f64;
        let lse = m + row.iter().map(|&x| (x as f64 - m).exp()).sum::<f64>().ln();
        out.nll += lse - row[*next as usize] as f64;
        out.tokens += 1;
    }
    out
}

/// The NLL of `ids` under `llm` (one prefill; `ids` must fit the KV cache).
pub fn score_ids(llm: &mut Llm, ids: &[u32]) -> Result<Nll> {
    if ids.len() < 2 {
        return Ok(Nll::default());
    }
    let logits = llm.logits_all(ids, None, &SingleRank)?.to_cpu()?.to_dtype(DType::F32)?;
    let vocab = logits.dim(1);
    if let Some(t) = ids.iter().find(|&&t| t as usize >= vocab) {
        return Err(crate::Error::Request(format!("token id {t} is outside the vocabulary ({vocab})")));
    }
    Ok(nll_of_logits(logits.f32s()?, vocab, ids))
}
