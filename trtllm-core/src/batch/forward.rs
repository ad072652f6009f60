//! `ForwardBatch`: the one input of every forward — prefill, decode or both mixed. Tokens of
//! all sequences are packed (no padding) with their positions, the sequence each belongs to,
//! per-sequence block tables, and the cache slot each token's K/V is written to (the
//! vLLM / TensorRT-LLM representation).

use crate::{Error, Result};

#[derive(Clone, Debug)]
pub struct SeqMeta {
    /// Physical KV blocks of this sequence, in order.
    pub block_table: Vec<u32>,
    /// First packed token of this sequence in the batch.
    pub q_start: usize,
    /// Tokens of this sequence in the batch.
    pub q_len: usize,
    /// Tokens in the cache once this step is written (past + this step).
    pub context_len: usize,
}

#[derive(Clone, Debug, Default)]
pub struct ForwardBatch {
    pub tokens: Vec<u32>,
    pub positions: Vec<usize>,
    /// For each token, the index of its sequence in `seqs`.
    pub token_seq: Vec<usize>,
    pub seqs: Vec<SeqMeta>,
    pub slot_mapping: Vec<usize>,
    pub block_size: usize,
    /// Return logits for every token (verification) instead of each sequence's last one.
    pub all_logits: bool,
    /// Logit rows per sequence, its last tokens (speculative verification: the K draft tokens
    /// and the token before them); empty or a missing entry: 1, the last token only.
    pub logits_per_seq: Vec<usize>,
    /// The batch metadata already in device memory (persistent buffers of a CUDA-graph decode
    /// step, token ids included); `None`: the forward uploads it.
    pub device: Option<std::sync::Arc<DeviceBatch>>,
}

/// One sequence's part of a step: its new tokens, the position of the first, its blocks.
pub struct SeqStep<'a> {
    pub tokens: &'a [u32],
    pub start_pos: usize,
    pub block_table: &'a [u32],
}

impl ForwardBatch {
    pub fn new(steps: &[SeqStep<'_>], block_size: usize, all_logits: bool) -> Result<Self> {
        let mut b = ForwardBatch::default();
        b.refill(steps, block_size, all_logits)?;
        Ok(b)
    }

    /// This batch rebuilt for `steps`, in the buffers it already has (a runner keeps one batch
    /// across steps: no allocation per step or per sequence once the buffers have grown).
    pub fn refill(&mut self, steps: &[SeqStep<'_>], block_size: usize, all_logits: bool) -> Result<()> {
        self.block_size = block_size;
        self.all_logits = all_logits;
        self.device = None;
        self.tokens.clear();
        self.positions.clear();
        self.token_seq.clear();
        self.slot_mapping.clear();
        self.logits_per_seq.clear();
        self.seqs.truncate(steps.len());
        for (si, s) in steps.iter().enumerate() {
            if s.tokens.is_empty() {
                return Err(Error::Request(format!("sequence {si} has no tokens in this step")));
            }
            let context_len = s.start_pos + s.tokens.len();
            if context_len > s.block_table.len() * block_size {
                return Err(Error::KvCache(format!(
                    "sequence {si} needs {context_len} slots but has {} blocks of {block_size}",
                    s.block_table.len()
                )));
            }
            if si == self.seqs.len() {
                self.seqs.push(SeqMeta { block_table: vec![], q_start: 0, q_len: 0, context_len: 0 });
            }
            let m = &mut self.seqs[si];
            (m.q_start, m.q_len, m.context_len) = (self.tokens.len(), s.tokens.len(), context_len);
            m.block_table.clear();
            m.block_table.extend_from_slice(s.block_table);
            for (i, &tok) in s.tokens.iter().enumerate() {
                let p = s.start_pos + i;
                self.tokens.push(tok);
                self.positions.push(p);
                self.token_seq.push(si);
                self.slot_mapping.push(s.block_table[p / block_size] as usize * block_size + p % block_size);
            }
        }
        Ok(())
    }

    pub fn num_tokens(&self) -> usize {
        self.tokens.len()
    }

    /// Rows of the hidden state whose logits are computed.
    pub fn logit_rows(&self) -> Vec<usize> {
        if self.all_logits {
            return (0..self.num_tokens()).collect();
        }
        let mut rows = Vec::with_capacity(self.seqs.len());
        for (i, s) in self.seqs.iter().enumerate() {
            let n = self.logits_per_seq.get(i).copied().unwrap_or(1).clamp(1, s.q_len);
            rows.extend(s.q_start + s.q_len - n..s.q_start + s.q_len);
        }
        rows
    }

    /// The sequences in at most `n` contiguous groups of about equal token counts, each a batch
    /// of its own (the micro-batches of a pipeline step). Concatenating the groups' logits rows
    /// in order gives this batch's rows. No device metadata is carried over.
    pub fn split_seqs(&self, n: usize) -> Vec<ForwardBatch> {
        if self.seqs.is_empty() {
            return vec![ForwardBatch { device: None, ..self.clone() }];
        }
        let n = n.clamp(1, self.seqs.len());
        let total = self.num_tokens();
        let mut groups: Vec<std::ops::Range<usize>> = Vec::with_capacity(n);
        let mut start = 0;
        for (i, sq) in self.seqs.iter().enumerate() {
            let done = groups.len();
            if done + 1 == n {
                break;
            }
            // close group `done` at its share of the tokens, or when every later group needs
            // one of the sequences that are left
            let (seqs_left, groups_left) = (self.seqs.len() - i - 1, n - done - 1);
            if (sq.q_start + sq.q_len) * n >= total * (done + 1) || seqs_left == groups_left {
                groups.push(start..i + 1);
                start = i + 1;
            }
        }
        groups.push(start..self.seqs.len());
        groups
            .into_iter()
            .map(|g| {
                let (first, last) = (&self.seqs[g.start], &self.seqs[g.end - 1]);
                let (lo, hi) = (first.q_start, last.q_start + last.q_len);
                ForwardBatch {
                    tokens: self.tokens[lo..hi].to_vec(),
                    positions: self.positions[lo..hi].to_vec(),
                    token_seq: self.token_seq[lo..hi].iter().map(|&s| s - g.start).collect(),
                    seqs: self.seqs[g.clone()]
                        .iter()
                        .map(|s| SeqMeta { q_start: s.q_start - lo, ..s.clone() })
                        .collect(),
                    slot_mapping: self.slot_mapping[lo..hi].to_vec(),
                    block_size: self.block_size,
                    all_logits: self.all_logits,
                    logits_per_seq: self
                        .logits_per_seq
                        .get(g.clone())
                        .map(<[usize]>::to_vec)
                        .unwrap_or_default(),
                    device: None,
                }
            })
            .collect()
    }

    /// The longest context in the batch (drives dynamic / LongRoPE scaling).
    pub fn max_context_len(&self) -> usize {
        self.seqs.iter().map(|s| s.context_len).max().unwrap_or(0)
    }
}

/// The batch metadata the GPU kernels read, uploaded once per forward as int32 arrays.
pub struct DeviceBatch {
    pub positions: trtllm_kernels::DevBuf,
    pub token_seq: trtllm_kernels::DevBuf,
    pub slots: trtllm_kernels::DevBuf,
    /// Every sequence's block table, concatenated.
    pub block_tables: trtllm_kernels::DevBuf,
    /// Start of each sequence's table in `block_tables`.
    pub bt_offsets: trtllm_kernels::DevBuf,
    /// The token ids, when the embedding reads them from the device (CUDA-graph decode).
    pub tokens: Option<trtllm_kernels::DevBuf>,
}

impl std::fmt::Debug for DeviceBatch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "DeviceBatch({} position bytes, tokens on device: {})",
            self.positions.len(),
            self.tokens.is_some()
        )
    }
}

impl ForwardBatch {
    pub fn to_device(&self, gpu: &std::sync::Arc<trtllm_kernels::Gpu>) -> Result<DeviceBatch> {
        let up = |v: Vec<i32>| crate::device::upload_i32(gpu, &v);
        let mut tables = vec![];
        let mut offsets = vec![];
        for s in &self.seqs {
            offsets.push(tables.len() as i32);
            tables.extend(s.block_table.iter().map(|&b| b as i32));
        }
        Ok(DeviceBatch {
            positions: up(self.positions.iter().map(|&p| p as i32).collect())?,
            token_seq: up(self.token_seq.iter().map(|&s| s as i32).collect())?,
            slots: up(self.slot_mapping.iter().map(|&s| s as i32).collect())?,
            block_tables: up(tables)?,
            bt_offsets: up(offsets)?,
            tokens: None,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn steps<'a>(toks: &'a [Vec<u32>], tables: &'a [Vec<u32>]) -> Vec<SeqStep<'a>> {
        toks.iter()
            .zip(tables)
            .enumerate()
            .map(|(i, (t, b))| SeqStep { tokens: t, start_pos: 2 * i, block_table: b })
            .collect()
    }

    /// A batch refilled for a larger, then a smaller, then a larger step equals one built fresh.
    #[test]
    fn refill_equals_new() {
        let toks: Vec<Vec<u32>> =
            [3usize, 1, 1, 5].iter().map(|&n| (0..n as u32).map(|t| t + 7).collect()).collect();
        let tables: Vec<Vec<u32>> = (0..4u32).map(|i| vec![i * 3, i * 3 + 1, i * 3 + 2]).collect();
        let mut b = ForwardBatch::new(&steps(&toks[..1], &tables[..1]), 4, true).expect("batch");
        b.logits_per_seq = vec![2];
        for n in [4, 2, 3] {
            b.refill(&steps(&toks[..n], &tables[..n]), 4, false).expect("refill");
            let fresh = ForwardBatch::new(&steps(&toks[..n], &tables[..n]), 4, false).expect("batch");
            assert_eq!(format!("{b:?}"), format!("{fresh:?}"), "{n} sequences");
        }
        let bad = [SeqStep { tokens: &[1, 2, 3, 4, 5], start_pos: 8, block_table: &[0, 1] }];
        assert!(b.refill(&bad, 4, false).is_err());
    }
}
