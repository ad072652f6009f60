//! CUDA-graph decode: the forward of a plain decode step (one new token per sequence), captured
//! once per batch-size bucket ([`bucket_sizes`]: 1, 2, 4, 8, 16, 32, ... up to the engine's
//! `max_batch_size`) and replayed
//! with one launch, instead of ~300 kernel launches and their stream-ordered allocations.
//!
//! - **Inputs** live in one persistent device buffer, written before each replay by one async
//!   copy from pinned host memory (int32, `mb` = largest bucket):
//!   `[tokens mb | positions mb | token_seq mb | slots mb | bt_offsets mb | block tables cap]`.
//!   The [`DeviceBatch`] handed to the model is made of views into it, so every kernel argument
//!   of the captured step is a fixed pointer. A batch of `n` rows runs in the smallest bucket
//!   `b >= n`; rows `n..b` are padding: token 0 at position 0, slot -1 (the KV write skips it),
//!   attending to sequence 0's first key. Rows never mix, so the real rows are exact.
//! - **Memory.** The buffers the step allocates come from an arena per bucket (sized from the
//!   warm-up's peak), so the graph holds plain pointers and no allocation nodes (what does not
//!   fit becomes one, freed inside the graph); the logits are copied into a persistent
//!   `[mb, vocab]` buffer (inside the graph), and each replay returns a fresh copy of its rows.
//! - **Capture** happens the first time a bucket is used, or for all buckets at start
//!   ([`DecodeGraphs::capture_all`], what `serve` and `bench` do): that step runs eagerly (the
//!   warm-up: kernels loaded, lazy uploads done) and is the step's result; then the same forward
//!   is captured (nothing executes). Any failure logs one warning and turns graphs off: every later
//!   step runs eagerly. `LlmOptions::cuda_graphs = false` (`--no-cuda-graphs`) turns them off.
//! - **Short contexts.** The captured attention plans its split-K for the longest context a
//!   replay may hold; where a bucket's rows x KV heads leave the GPU idle (small batches: that
//!   is when the decode kernel splits keys), a second graph per bucket is captured for contexts
//!   of at most [`SHORT_CONTEXT`] keys, where the kernel never splits (no combine kernel, no
//!   empty split blocks), and steps whose longest context fits replay it.
//! - **Not captured:** prefill and mixed steps, tensor parallelism (a model whose forward touches
//!   another GPU, or a multi-process launch), MoE batches beyond `ops::MOE_PAIRS_MAX / top_k`
//!   rows (their routing is read back to the host; smaller ones route on the device), RoPE that
//!   depends on the sequence length (dynamic NTK, LongRoPE), all-logits verification.

use std::sync::Arc;

use trtllm_kernels::{Arena, DevBuf, Gpu, Graph, Pinned};

/// Longest context of the short-context graphs: below the decode kernel's split threshold.
pub const SHORT_CONTEXT: usize = trtllm_kernels::launch::GQA_MIN_SPLIT_KEYS;

use crate::batch::{DeviceBatch, ForwardBatch, KvCache, KvLayer, SeqMeta, SeqStep};
use crate::config::rope::RopeScaling;
use crate::dist::Communicator;
use crate::model::CausalLM;
use crate::{ops, ops::cuda::dev_err, Error, Result, Tensor};

/// The persistent inputs: one device buffer, its views, the pinned staging.
struct GraphInputs {
    buf: Arc<DevBuf>,
    dev: Arc<DeviceBatch>,
    staging: Pinned,
}

/// A step's logits: replayed through `graphs` when they take this batch, else the model's own
/// forward.
pub(super) fn forward_step(
    graphs: Option<&mut DecodeGraphs>,
    model: &dyn CausalLM,
    batch: &ForwardBatch,
    kv: &mut KvCache,
) -> Result<Tensor> {
    if let Some(g) = graphs {
        if let Some(logits) = g.forward(model, batch, kv, &crate::dist::SingleRank)? {
            return Ok(logits);
        }
    }
    model.forward(batch, kv, &crate::dist::SingleRank, None)
}

/// Batch sizes captured for `max_batch` rows: 1, 2, 4, 8, then every 16 up to 128 and every 32
/// beyond (a step runs in the smallest bucket that holds it, so padding stays under ~20%), and
/// `max_batch` itself.
pub fn bucket_sizes(max_batch: usize) -> Vec<usize> {
    let mut b = vec![];
    let mut n = 1;
    while n < max_batch {
        b.push(n);
        n = match n {
            ..8 => n * 2,
            8..128 => (n + 16) & !15,
            _ => n + 32,
        };
    }
    b.push(max_batch.max(1));
    b
}

/// Captured decode steps of one model + KV cache (see the module docs).
pub struct DecodeGraphs {
    gpu: Arc<Gpu>,
    buckets: Vec<usize>,
    /// Block-table entries the input buffer holds (a step needing more runs eagerly).
    table_cap: usize,
    /// Longest sequence a replay can hold: the captured attention plans its key splits for it.
    max_context: usize,
    block_size: usize,
    vocab: usize,
    /// Positions must stay below this (learned position embeddings).
    max_pos: Option<usize>,
    io: Option<GraphInputs>,
    /// `[mb, vocab]` logits of the last replay, with (vocab, dtype).
    out: Option<(DevBuf, usize, crate::DType)>,
    /// Slot `2 * bucket` the full-context graph, `2 * bucket + 1` the short-context one.
    graphs: Vec<Option<Graph>>,
    /// Buckets that get a short-context graph (rows x KV heads below twice the SMs).
    short: Vec<bool>,
    /// Model and KV cache the graphs were captured for (their addresses).
    key: (usize, u64),
    /// The first eager decode step showed that the model runs on this GPU alone.
    probed: bool,
    /// Why graphs are off for good.
    off: Option<String>,
}

fn kv_key(kv: &mut KvCache) -> u64 {
    match kv.layer(0) {
        Ok(KvLayer::Cuda { k, .. }) => k.ptr(0),
        _ => 0,
    }
}

fn put(h: &mut [u8], i: usize, v: i32) {
    h[4 * i..4 * i + 4].copy_from_slice(&v.to_le_bytes());
}

impl DecodeGraphs {
    /// Graphs for `model` decoding into `kv` with up to `max_batch` sequences of `max_seq_len`;
    /// `None` (and a debug line saying why) where they do not apply.
    pub fn new(
        model: &dyn CausalLM,
        kv: &KvCache,
        max_batch: usize,
        max_seq_len: usize,
        enabled: bool,
    ) -> Option<Self> {
        let cfg = model.config();
        let ropes = std::iter::once(&cfg.rope).chain(cfg.rope_local.as_ref());
        let why = if !enabled {
            "turned off (LlmOptions::cuda_graphs, `--no-cuda-graphs`)"
        } else if !kv.is_cuda() || max_batch == 0 {
            return None;
        } else if matches!(crate::dist::DistEnv::from_env(), Ok(Some(_))) {
            "multi-process tensor parallelism"
        } else if cfg.num_experts > 0 && !crate::layers::moe_pairs_fit(cfg) {
            "MoE routing reads the router logits on the host (TRTLLM_MOE_PAIRS=0, or a router the device kernel does not take)"
        } else if ropes
            .into_iter()
            .any(|r| matches!(r.scaling, RopeScaling::Dynamic { .. } | RopeScaling::LongRope { .. }))
        {
            "RoPE frequencies depend on the sequence length"
        } else {
            ""
        };
        if !why.is_empty() {
            tracing::debug!("CUDA graphs off: {why}");
            return None;
        }
        let gpu = kv.gpu()?;
        // MoE decode routes on the device up to `MOE_PAIRS_MAX` pairs: larger batches run eagerly.
        let max_batch = match cfg.num_experts {
            0 => max_batch,
            _ => max_batch.min(ops::MOE_PAIRS_MAX / cfg.num_experts_per_tok.max(1)),
        };
        if max_batch == 0 {
            return None;
        }
        let buckets = bucket_sizes(max_batch);
        let per_seq = max_seq_len.max(1).div_ceil(kv.block_size);
        let table_cap = (max_batch * per_seq).max(kv.num_blocks).min(1 << 22);
        let kv_heads = cfg.num_key_value_heads.max(1);
        let short = buckets
            .iter()
            .map(|&b| b * kv_heads < 2 * gpu.num_sms as usize && max_seq_len > SHORT_CONTEXT)
            .collect();
        Some(DecodeGraphs {
            gpu,
            graphs: buckets.iter().flat_map(|_| [None, None]).collect(),
            short,
            buckets,
            table_cap,
            max_context: max_seq_len.max(1),
            block_size: kv.block_size,
            vocab: cfg.vocab_size,
            max_pos: cfg.arch.no_rope.then_some(cfg.max_position_embeddings),
            io: None,
            out: None,
            key: (0, 0),
            probed: false,
            off: None,
        })
    }

    /// The batch-size buckets (captured lazily, at first use).
    pub fn buckets(&self) -> &[usize] {
        &self.buckets
    }

    /// Buckets captured so far.
    pub fn captured(&self) -> Vec<usize> {
        self.buckets
            .iter()
            .zip(self.graphs.chunks(2))
            .filter(|(_, g)| g[0].is_some())
            .map(|(&b, _)| b)
            .collect()
    }

    /// Why graphs were turned off, if they were.
    pub fn off_reason(&self) -> Option<&str> {
        self.off.as_deref()
    }

    fn turn_off(&mut self, why: String) {
        tracing::warn!("CUDA graphs off, decoding eagerly: {why}");
        self.graphs.iter_mut().for_each(|g| *g = None);
        self.off = Some(why);
    }

    /// The graph slot of `batch` when it is a plain decode step that fits, else `None`: the
    /// smallest bucket `b >= rows`, its short-context graph where the step's contexts fit one.
    fn bucket(&self, batch: &ForwardBatch) -> Option<usize> {
        let n = batch.seqs.len();
        let plain = n > 0
            && !batch.all_logits
            && batch.logits_per_seq.iter().all(|&n| n <= 1)
            && batch.device.is_none()
            && batch.block_size == self.block_size
            && batch.num_tokens() == n
            && batch.seqs.iter().enumerate().all(|(i, s)| s.q_len == 1 && s.q_start == i)
            && batch.tokens.iter().all(|&t| (t as usize) < self.vocab)
            && batch.positions.iter().all(|&p| p < self.max_pos.unwrap_or(i32::MAX as usize))
            && batch.seqs.iter().map(|s| s.block_table.len()).sum::<usize>() <= self.table_cap
            && batch.max_context_len() <= self.max_context;
        if !plain {
            return None;
        }
        let bi = self.buckets.iter().position(|&b| b >= n)?;
        Some(2 * bi + usize::from(self.short[bi] && batch.max_context_len() <= SHORT_CONTEXT))
    }

    /// Run `batch` through a graph when it is a plain decode step: logits `[n, vocab]`, as
    /// `model.forward` gives them. `Ok(None)`: not for graphs, the caller runs it eagerly.
    pub fn forward(
        &mut self,
        model: &dyn CausalLM,
        batch: &ForwardBatch,
        kv: &mut KvCache,
        comm: &dyn Communicator,
    ) -> Result<Option<Tensor>> {
        if self.off.is_some() || comm.tp_size() != 1 {
            return Ok(None);
        }
        let Some(slot) = self.bucket(batch) else { return Ok(None) };
        let key = (model as *const dyn CausalLM as *const () as usize, kv_key(kv));
        if key != self.key {
            self.graphs.iter_mut().for_each(|g| *g = None);
            self.key = key;
            self.probed = false;
        }
        if !self.probed {
            // One eager step first: a model that also runs on other GPUs (tensor parallelism
            // in this process) must never see the padded batch or be captured.
            let others: Vec<_> =
                crate::device::open_gpus().into_iter().filter(|g| !Arc::ptr_eq(g, &self.gpu)).collect();
            let before: Vec<u64> = others.iter().map(|g| g.enqueue_count()).collect();
            let logits = model.forward(batch, kv, comm, None)?;
            if others.iter().zip(&before).any(|(g, &c)| g.enqueue_count() != c) {
                self.off = Some("the model runs on several GPUs".into());
                tracing::debug!("CUDA graphs off: the model runs on several GPUs");
            }
            self.probed = true;
            return Ok(Some(logits));
        }
        let (n, b) = (batch.seqs.len(), self.buckets[slot / 2]);
        if let Err(e) = self.stage(batch, b) {
            self.turn_off(format!("staging the step's inputs: {e}"));
            return Ok(None);
        }
        if let Some(graph) = self.graphs[slot].as_mut() {
            if let Err(e) = graph.launch() {
                self.turn_off(format!("replaying the {b}-row step: {e}"));
                return Ok(None);
            }
            let (out, vocab, dtype) =
                self.out.as_ref().ok_or_else(|| Error::Device("no graph output".into()))?;
            let row = vocab * dtype.size_in_bytes();
            let rows = out.copy_range(0, n * row).map_err(dev_err)?;
            return Ok(Some(Tensor::from_devbuf(rows, &[n, *vocab], *dtype)?));
        }
        self.warm_up_and_capture(model, kv, comm, slot, n)
    }

    /// Capture every bucket now (as vLLM does at start) instead of at each bucket's first use
    /// inside a timed or served run. Probes first with a one-token step at position 0 of block 0,
    /// which must be free (nothing cached yet: a sequence writes a slot before it reads it).
    /// Returns the buckets captured; graphs that cannot apply stay off as before.
    pub fn capture_all(&mut self, model: &dyn CausalLM, kv: &mut KvCache) -> Result<Vec<usize>> {
        let one = [SeqStep { tokens: &[0], start_pos: 0, block_table: &[0] }];
        let probe = ForwardBatch::new(&one, self.block_size, false)?;
        self.forward(model, &probe, kv, &crate::dist::SingleRank)?;
        for slot in 0..self.graphs.len() {
            if self.off.is_some() || !self.probed {
                break;
            }
            if self.graphs[slot].is_some() || (slot % 2 == 1 && !self.short[slot / 2]) {
                continue;
            }
            let empty = ForwardBatch { block_size: self.block_size, ..Default::default() };
            if let Err(e) = self.stage(&empty, self.buckets[slot / 2]) {
                self.turn_off(format!("staging the step's inputs: {e}"));
                break;
            }
            self.warm_up_and_capture(model, kv, &crate::dist::SingleRank, slot, 1)?;
        }
        Ok(self.captured())
    }

    /// Write `batch` (padded to `b` rows) into the persistent inputs.
    fn stage(&mut self, batch: &ForwardBatch, b: usize) -> Result<()> {
        let mb = *self.buckets.last().unwrap_or(&1);
        if self.io.is_none() {
            let bytes = (5 * mb + self.table_cap) * 4;
            let buf = Arc::new(DevBuf::zeros(&self.gpu, bytes).map_err(dev_err)?);
            let view = |at: usize, len: usize| DevBuf::view(&buf, at * 4, len * 4).map_err(dev_err);
            let dev = DeviceBatch {
                tokens: Some(view(0, mb)?),
                positions: view(mb, mb)?,
                token_seq: view(2 * mb, mb)?,
                slots: view(3 * mb, mb)?,
                bt_offsets: view(4 * mb, mb)?,
                block_tables: view(5 * mb, self.table_cap)?,
            };
            let staging = Pinned::new(&self.gpu, bytes).map_err(dev_err)?;
            self.io = Some(GraphInputs { dev: Arc::new(dev), buf, staging });
        }
        let io = self.io.as_mut().ok_or_else(|| Error::Device("no graph inputs".into()))?;
        let h = io.staging.host_mut().map_err(dev_err)?;
        let mut at = 5 * mb;
        for i in 0..b {
            let real = batch.seqs.get(i);
            put(h, i, real.map_or(0, |_| batch.tokens[i] as i32));
            put(h, mb + i, real.map_or(0, |_| batch.positions[i] as i32));
            put(h, 2 * mb + i, i as i32);
            put(h, 3 * mb + i, real.map_or(-1, |_| batch.slot_mapping[i] as i32));
            put(h, 4 * mb + i, real.map_or(0, |_| (at - 5 * mb) as i32));
            if let Some(s) = real {
                for &blk in &s.block_table {
                    put(h, at, blk as i32);
                    at += 1;
                }
            }
        }
        io.staging.copy_to(&io.buf, 0, at * 4).map_err(dev_err)
    }

    /// First use of graph `slot`: run the padded step eagerly (its result is returned), then
    /// capture it. A failed capture turns graphs off (the step's result stands); a failed
    /// warm-up too (`None`: the caller runs the step eagerly, as it would have).
    fn warm_up_and_capture(
        &mut self,
        model: &dyn CausalLM,
        kv: &mut KvCache,
        comm: &dyn Communicator,
        slot: usize,
        n: usize,
    ) -> Result<Option<Tensor>> {
        let b = self.buckets[slot / 2];
        let context = if slot % 2 == 1 { SHORT_CONTEXT } else { self.max_context };
        let io = self.io.as_ref().ok_or_else(|| Error::Device("no graph inputs".into()))?;
        let template = ForwardBatch {
            tokens: vec![0; b],
            positions: vec![0; b],
            token_seq: (0..b).collect(),
            seqs: (0..b)
                .map(|i| SeqMeta { block_table: vec![], q_start: i, q_len: 1, context_len: context })
                .collect(),
            slot_mapping: vec![0; b],
            block_size: self.block_size,
            all_logits: false,
            logits_per_seq: vec![],
            device: Some(io.dev.clone()),
        };
        let (res, peak) = self.gpu.peak_alloc(|| model.forward(&template, kv, comm, None));
        let logits = match res {
            Ok(l) => l,
            Err(e) => {
                self.turn_off(format!("the padded {b}-row step failed: {e}"));
                return Ok(None);
            }
        };
        let (rows, vocab) = logits.dims2("decode graph")?;
        let dtype = logits.dtype();
        let row = vocab * dtype.size_in_bytes();
        if rows != b || logits.devbuf().is_none() {
            self.turn_off(format!("the step gave {:?} logits on {:?}", logits.shape(), logits.device()));
            return logits.narrow0(0, n.min(rows)).map(Some);
        }
        if self.out.is_none() {
            let mb = *self.buckets.last().unwrap_or(&1);
            self.out = Some((DevBuf::alloc(&self.gpu, mb * row).map_err(dev_err)?, vocab, dtype));
        }
        let same = matches!(&self.out, Some((_, v, d)) if *v == vocab && *d == dtype);
        let out = self.out.as_ref().map(|(o, _, _)| o).filter(|_| same);
        let Some(out) = out else {
            self.turn_off("the logits changed shape between buckets".into());
            return logits.narrow0(0, n).map(Some);
        };
        // The step's buffers: an arena with room for twice the warm-up's peak (first fit can
        // fragment; whatever does not fit becomes a graph allocation node instead).
        let arena = match Arena::new(&self.gpu, 2 * peak + (1 << 20)) {
            Ok(a) => a,
            Err(e) => {
                self.turn_off(format!("allocating the {b}-row step's arena: {e}"));
                return logits.narrow0(0, n).map(Some);
            }
        };
        let captured = self.gpu.capture(Some(arena), || {
            let l = model.forward(&template, kv, comm, None).map_err(|e| e.to_string())?;
            let (src, off) = l.devbuf().ok_or("the captured logits are not on the GPU")?;
            out.copy_from(0, src, off, b * row).map_err(|e| e.to_string())
        });
        match captured {
            Ok(graph) => self.graphs[slot] = Some(graph),
            Err(e) => self.turn_off(format!("capturing the {b}-row decode step: {e}")),
        }
        logits.narrow0(0, n).map(Some)
    }
}
