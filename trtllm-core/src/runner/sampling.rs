//! Sampling a step's rows: one function ([`trtllm_kernels::sample_ref`] is its definition and the
//! CPU implementation; `sample_*` in kernels/cuda/sampling_batched.cu is the GPU one, one launch
//! for all rows). Penalties, temperature, top-k, top-p, min-p, seeds (Philox, counter = index of
//! the token being generated) and top-n logprobs; only ids and the requested logprobs reach the
//! host. Both give the same token for the same row, so a seeded request samples the same text on
//! either device.
//!
//! Penalties on the GPU read per-sequence token state kept on the device ([`DeviceSampler`]): a
//! slot of `counts [slots, vocab]` (output-token counts) and `prompt_mask [slots, vocab]`, filled
//! when a sequence first samples and bumped after each step (`sample_count_tokens`).

use std::collections::HashMap;
use std::sync::Arc;

use trtllm_kernels::launch::{self, DevPtr, SampleArgs, SampleCsr, SampleLogprobs, TokenState};
use trtllm_kernels::sample_ref::{self, SampleParams};
use trtllm_kernels::{DevBuf, Dt, Gpu};

use super::logits::TokenLogprob;
use super::model_runner::{SampleInput, Sampled};
use crate::device::dev_err;
use crate::{Error, Result, Tensor};

/// The kernel parameters of one row (`slot` < 0: no device token state).
pub(super) fn row_params(x: &SampleInput<'_>, slot: i32) -> SampleParams {
    let p = x.params;
    SampleParams {
        seed: x.sampler.seed(),
        counter: x.output.len() as u64,
        temperature: p.temperature,
        top_p: p.top_p,
        min_p: p.min_p,
        repetition_penalty: p.repetition_penalty,
        presence_penalty: p.presence_penalty,
        frequency_penalty: p.frequency_penalty,
        top_k: p.top_k.min(i32::MAX as usize) as i32,
        slot,
        logprobs: p.logprobs.map_or(-1, |k| k.min(sample_ref::MAX_TOP) as i32),
        pad: 0,
    }
}

/// A padding row: greedy, no state, no logprobs (rows that do not sample this step).
fn idle_params() -> SampleParams {
    SampleParams {
        seed: 0,
        counter: 0,
        temperature: 0.0,
        top_p: 1.0,
        min_p: 0.0,
        repetition_penalty: 1.0,
        presence_penalty: 0.0,
        frequency_penalty: 0.0,
        top_k: 0,
        slot: -1,
        logprobs: -1,
        pad: 0,
    }
}

fn to_sampled(token: i32, logprob: Option<f32>, top: &[(i32, f32)], want: Option<usize>) -> Sampled {
    let logprob = want.map(|k| TokenLogprob {
        token: token as u32,
        logprob: logprob.unwrap_or(f32::NEG_INFINITY),
        top: top.iter().take(k).filter(|t| t.0 >= 0).map(|&(i, l)| (i as u32, l)).collect(),
    });
    Sampled { token: token as u32, logprob }
}

/// One host row (f32 logits) sampled by the CPU implementation.
pub(super) fn sample_host_row(row: &[f32], x: &SampleInput<'_>) -> Sampled {
    let vocab = row.len();
    let penalized = x.params.has_penalties();
    let state = penalized.then(|| {
        let mut counts = vec![0i32; vocab];
        let mut mask = vec![0u8; vocab];
        let ids = |v: &[u32]| v.iter().map(|&t| t as i32).collect::<Vec<_>>();
        sample_ref::slot_init(&mut counts, &mut mask, &ids(x.prompt), &ids(x.output));
        (counts, mask)
    });
    let params = row_params(x, if penalized { 0 } else { -1 });
    let s = sample_ref::sample(&sample_ref::Row {
        logits: row,
        params: &params,
        counts: state.as_ref().map(|s| s.0.as_slice()),
        prompt_mask: state.as_ref().map(|s| s.1.as_slice()),
        bias_ids: &[],
        bias: &[],
    });
    to_sampled(s.token, s.logprob, &s.top, x.params.logprobs)
}

/// Device state of the GPU sampler: token-state slots of the sequences that use penalties, and
/// the scratch the kernel needs.
pub(super) struct DeviceSampler {
    gpu: Arc<Gpu>,
    vocab: usize,
    slots: usize,
    /// `counts [slots, vocab]` i32 and `prompt_mask [slots, vocab]` u8, made on first use.
    state: Option<(DevBuf, DevBuf)>,
    slot_of: HashMap<u64, i32>,
    free: Vec<i32>,
    workspace: Option<DevBuf>,
}

fn upload(gpu: &Arc<Gpu>, bytes: &[u8]) -> Result<DevBuf> {
    // A zero-length upload still needs a valid pointer for the launch's argument checks.
    let b = if bytes.is_empty() { &[0u8; 4][..] } else { bytes };
    DevBuf::upload(gpu, b).map_err(dev_err)
}

/// `v` on the GPU (one zero when empty: see [`upload`]).
fn upload_ids(gpu: &Arc<Gpu>, v: &[i32]) -> Result<DevBuf> {
    if v.is_empty() {
        return upload(gpu, &[]);
    }
    crate::device::upload_i32(gpu, v)
}

impl DeviceSampler {
    /// Token-state slots for up to `slots` sequences with penalties at once.
    pub(super) fn new(gpu: Arc<Gpu>, vocab: usize, slots: usize) -> Self {
        let slots = slots.max(1);
        DeviceSampler {
            gpu,
            vocab,
            slots,
            state: None,
            slot_of: HashMap::new(),
            free: (0..slots as i32).rev().collect(),
            workspace: None,
        }
    }

    /// The sequence ended: its slot is free again.
    pub(super) fn release(&mut self, seq: u64) {
        if let Some(s) = self.slot_of.remove(&seq) {
            self.free.push(s);
        }
    }

    fn token_state(&self) -> Option<TokenState<'_>> {
        let (c, m) = self.state.as_ref()?;
        Some(TokenState { counts: DevPtr::new(c, 0), prompt_mask: DevPtr::new(m, 0), slots: self.slots })
    }

    /// Slots for the rows that need token state; new ones are filled from their sequences.
    fn assign_slots(&mut self, rows: &[(u64, Option<&SampleInput<'_>>)]) -> Result<Vec<i32>> {
        let mut out = vec![-1; rows.len()];
        let mut fresh: Vec<(i32, &SampleInput<'_>)> = vec![];
        for (r, (seq, x)) in rows.iter().enumerate() {
            let Some(x) = x.filter(|x| x.params.has_penalties()) else { continue };
            let slot = match self.slot_of.get(seq) {
                Some(&s) => s,
                None => {
                    let s = self.free.pop().ok_or_else(|| {
                        Error::Msg(format!(
                            "sampler: more than {} sequences with penalties at once",
                            self.slots
                        ))
                    })?;
                    self.slot_of.insert(*seq, s);
                    fresh.push((s, x));
                    s
                }
            };
            out[r] = slot;
        }
        if fresh.is_empty() {
            return Ok(out);
        }
        if self.state.is_none() {
            let n = self.slots * self.vocab;
            let counts = DevBuf::zeros(&self.gpu, n * 4).map_err(dev_err)?;
            let mask = DevBuf::zeros(&self.gpu, n).map_err(dev_err)?;
            self.state = Some((counts, mask));
        }
        let csr = |lists: Vec<&[u32]>| {
            let mut offsets = vec![0i32];
            let mut ids = vec![];
            for l in lists {
                ids.extend(l.iter().map(|&t| t as i32));
                offsets.push(ids.len() as i32);
            }
            (offsets, ids)
        };
        let (po, pi) = csr(fresh.iter().map(|f| f.1.prompt).collect());
        let (oo, oi) = csr(fresh.iter().map(|f| f.1.output).collect());
        let (pn, on) = (pi.len(), oi.len());
        let g = &self.gpu;
        let slots = upload_ids(g, &fresh.iter().map(|f| f.0).collect::<Vec<_>>())?;
        let [po, pi, oo, oi] = [po, pi, oo, oi].map(|v| upload_ids(g, &v));
        let (po, pi, oo, oi) = (po?, pi?, oo?, oi?);
        let prompt =
            SampleCsr { offsets: DevPtr::new(&po, 0), ids: DevPtr::new(&pi, 0), vals: None, nnz: pn };
        let output =
            SampleCsr { offsets: DevPtr::new(&oo, 0), ids: DevPtr::new(&oi, 0), vals: None, nnz: on };
        let state = self.token_state().ok_or_else(|| Error::Msg("sampler: no token state".into()))?;
        launch::sample_slots_init(
            g,
            &state,
            self.vocab,
            DevPtr::new(&slots, 0),
            fresh.len(),
            &prompt,
            Some(&output),
        )
        .map_err(dev_err)?;
        Ok(out)
    }

    /// Sample every row of `logits` (`[rows, vocab]` on this GPU); `rows[r]` is the row's
    /// sequence and how it samples (`None`: it does not sample this step; its id is unused).
    pub(super) fn sample(
        &mut self,
        logits: &Tensor,
        rows: &[(u64, Option<&SampleInput<'_>>)],
    ) -> Result<Vec<Option<Sampled>>> {
        let n = rows.len();
        let (buf, off) =
            logits.devbuf().ok_or_else(|| Error::Device("sampler: logits are not on the GPU".into()))?;
        let dt = match logits.dtype() {
            crate::DType::F32 => Dt::F32,
            crate::DType::BF16 => Dt::BF16,
            d => return Err(Error::DType { op: "sample", dtype: d }),
        };
        if logits.dim(0) != n || logits.dim(1) != self.vocab {
            return Err(Error::Msg(format!(
                "sampler: logits {:?} for {n} rows of {}",
                logits.shape(),
                self.vocab
            )));
        }
        let slots = self.assign_slots(rows)?;
        let params: Vec<SampleParams> = rows
            .iter()
            .zip(&slots)
            .map(|((_, x), &slot)| x.map_or_else(idle_params, |x| row_params(x, slot)))
            .collect();
        let g = self.gpu.clone();
        let pbuf = upload(&g, &SampleParams::as_bytes(&params))?;
        let need = launch::sample_workspace_bytes(n, self.vocab).max(4);
        if self.workspace.as_ref().is_none_or(|w| w.len() < need) {
            self.workspace = Some(DevBuf::alloc(&g, need).map_err(dev_err)?);
        }
        let tokens = DevBuf::alloc(&g, n * 4).map_err(dev_err)?;
        let top = rows.iter().filter_map(|r| r.1.and_then(|x| x.params.logprobs)).max();
        let lp = match top {
            Some(k) => {
                let stride = k.clamp(1, sample_ref::MAX_TOP);
                let chosen = DevBuf::alloc(&g, n * 4).map_err(dev_err)?;
                let ids = DevBuf::alloc(&g, n * stride * 4).map_err(dev_err)?;
                let lps = DevBuf::alloc(&g, n * stride * 4).map_err(dev_err)?;
                Some((chosen, ids, lps, stride))
            }
            None => None,
        };
        let ws = self.workspace.as_ref().ok_or_else(|| Error::Msg("sampler: no workspace".into()))?;
        let has_state = slots.iter().any(|&s| s >= 0);
        let state = if has_state { self.token_state() } else { None };
        launch::sample(
            &g,
            &SampleArgs {
                logits: DevPtr::new(buf, off),
                dt,
                rows: n,
                vocab: self.vocab,
                params: DevPtr::new(&pbuf, 0),
                state,
                bias: None,
                workspace: DevPtr::new(ws, 0),
                tokens: DevPtr::new(&tokens, 0),
                logprobs: lp.as_ref().map(|(c, i, l, s)| SampleLogprobs {
                    chosen: DevPtr::new(c, 0),
                    top: Some((DevPtr::new(i, 0), DevPtr::new(l, 0))),
                    top_stride: *s,
                }),
            },
        )
        .map_err(dev_err)?;
        if let Some(st) = self.token_state().filter(|_| has_state) {
            launch::sample_count_tokens(
                &g,
                &st,
                self.vocab,
                DevPtr::new(&pbuf, 0),
                DevPtr::new(&tokens, 0),
                n,
            )
            .map_err(dev_err)?;
        }
        let ids = ints(&tokens.download(0, n * 4).map_err(dev_err)?);
        let host_lp = match &lp {
            Some((c, i, l, s)) => Some((
                floats(&c.download(0, n * 4).map_err(dev_err)?),
                ints(&i.download(0, n * s * 4).map_err(dev_err)?),
                floats(&l.download(0, n * s * 4).map_err(dev_err)?),
                *s,
            )),
            None => None,
        };
        Ok(rows
            .iter()
            .enumerate()
            .map(|(r, (_, x))| {
                let x = (*x)?;
                let want = x.params.logprobs;
                Some(match (&host_lp, want) {
                    (Some((c, ti, tl, s)), Some(_)) => {
                        let top: Vec<(i32, f32)> = (0..*s).map(|j| (ti[r * s + j], tl[r * s + j])).collect();
                        to_sampled(ids[r], Some(c[r]), &top, want)
                    }
                    _ => to_sampled(ids[r], None, &[], None),
                })
            })
            .collect())
    }
}

fn ints(b: &[u8]) -> Vec<i32> {
    b.chunks_exact(4).map(|c| i32::from_le_bytes([c[0], c[1], c[2], c[3]])).collect()
}

fn floats(b: &[u8]) -> Vec<f32> {
    b.chunks_exact(4).map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]])).collect()
}
