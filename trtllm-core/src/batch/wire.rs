//! A `ForwardBatch` as bytes, for the leader of a multi-process launch to hand each step to its
//! workers: what `ForwardBatch::new` takes (each sequence's start position, tokens and block
//! table; the block size; which logits) and nothing derived, so the receiver rebuilds the batch
//! through the same checks.
//!
//! Layout, all little-endian u32: block_size, all_logits, sequences, logits_per_seq entries; per
//! sequence: start position, token count, table length, the tokens, the table; then the
//! logits_per_seq entries.

use super::{ForwardBatch, SeqStep};
use crate::{Error, Result};

fn bad(what: &str) -> Error {
    Error::Parallel(format!("a step from the leader is malformed: {what}"))
}

impl ForwardBatch {
    /// This batch's wire form (see the module docs). Fails on counts beyond u32.
    pub fn encode(&self) -> Result<Vec<u8>> {
        let u = |v: usize| u32::try_from(v).map_err(|_| bad(&format!("{v} does not fit in u32")));
        let mut w: Vec<u32> = vec![
            u(self.block_size)?,
            self.all_logits as u32,
            u(self.seqs.len())?,
            u(self.logits_per_seq.len())?,
        ];
        for s in &self.seqs {
            let toks = &self.tokens[s.q_start..s.q_start + s.q_len];
            w.extend([u(self.positions[s.q_start])?, u(toks.len())?, u(s.block_table.len())?]);
            w.extend_from_slice(toks);
            w.extend_from_slice(&s.block_table);
        }
        for &n in &self.logits_per_seq {
            w.push(u(n)?);
        }
        Ok(w.iter().flat_map(|v| v.to_le_bytes()).collect())
    }

    /// The batch `encode` wrote, rebuilt by [`ForwardBatch::new`].
    pub fn decode(bytes: &[u8]) -> Result<ForwardBatch> {
        if !bytes.len().is_multiple_of(4) {
            return Err(bad("length not a multiple of 4"));
        }
        let w: Vec<u32> =
            bytes.chunks_exact(4).map(|c| u32::from_le_bytes([c[0], c[1], c[2], c[3]])).collect();
        let mut at = 0usize;
        let mut take = |n: usize| -> Result<&[u32]> {
            let s = w
                .get(at..at.checked_add(n).ok_or_else(|| bad("count overflow"))?)
                .ok_or_else(|| bad("truncated"))?;
            at += n;
            Ok(s)
        };
        let head = take(4)?;
        let (block_size, all_logits, nseq, nlps) =
            (head[0] as usize, head[1] != 0, head[2] as usize, head[3] as usize);
        let mut parts = Vec::with_capacity(nseq.min(w.len()));
        for _ in 0..nseq {
            let h = take(3)?;
            let (start, ntok, ntab) = (h[0] as usize, h[1] as usize, h[2] as usize);
            parts.push((start, take(ntok)?.to_vec(), take(ntab)?.to_vec()));
        }
        let lps: Vec<usize> = take(nlps)?.iter().map(|&n| n as usize).collect();
        if at != w.len() {
            return Err(bad("trailing bytes"));
        }
        let steps: Vec<SeqStep<'_>> = parts
            .iter()
            .map(|(start, toks, table)| SeqStep { tokens: toks, start_pos: *start, block_table: table })
            .collect();
        let mut b = ForwardBatch::new(&steps, block_size, all_logits)?;
        b.logits_per_seq = lps;
        Ok(b)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_bad_bytes() {
        let toks: [&[u32]; 3] = [&[5, 6, 7], &[9], &[1, 2]];
        let tables: [&[u32]; 3] = [&[4, 0], &[7, 8, 3], &[2]];
        let steps: Vec<SeqStep<'_>> = (0..3)
            .map(|i| SeqStep { tokens: toks[i], start_pos: [0, 9, 1][i], block_table: tables[i] })
            .collect();
        let mut b = ForwardBatch::new(&steps, 4, false).expect("batch");
        b.logits_per_seq = vec![2, 1, 1];
        let bytes = b.encode().expect("encode");
        let back = ForwardBatch::decode(&bytes).expect("decode");
        assert_eq!(format!("{back:?}"), format!("{b:?}"));
        for cut in [1, 4, bytes.len() - 4] {
            assert!(ForwardBatch::decode(&bytes[..bytes.len() - cut]).is_err(), "cut {cut}");
        }
        let mut long = bytes.clone();
        long.extend([0; 4]);
        assert!(ForwardBatch::decode(&long).is_err());
        let mut huge = bytes;
        huge[8..12].copy_from_slice(&u32::MAX.to_le_bytes()); // sequences
        assert!(ForwardBatch::decode(&huge).is_err());
    }
}
