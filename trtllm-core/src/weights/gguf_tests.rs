//! Which GGUF linears stay in their blocks (`GgufBlocks`): the mode per device / dtype / tensor
//! parallelism / `keep_quantized`, and per fused weight on an in-memory llama GGUF: one GPU
//! block type in every part stays (q/k rows un-permuted as whole rows), mixed types, types
//! without a GPU kernel, rows of partial blocks, 1-D tensors and other modes load dequantized.

use super::{GgufBlocks, GgufWeights, TpSplit, VarBuilder, WeightSource};
use crate::gguf::names::unpermute_rope;
use crate::gguf::{GgmlType, GgufWriter, Value};
use crate::{DType, Device, Mapping};

/// A block of `ty` whose bytes all read `tag` (the test follows bytes, not values).
fn blocks(ty: GgmlType, rows: usize, k: usize, tag: u8) -> Vec<u8> {
    let (per, bytes) = ty.block().expect("block type");
    vec![tag; rows * k / per * bytes]
}

/// Layer 0: q/k/v all Q4_K (rows of 256), gate Q8_0 + up Q4_K (mixed), down Q6_K (no GPU
/// kernel), o Q8_0; a 1-D norm in Q8_0.
fn sample(dir: &tempfile::TempDir) -> std::path::PathBuf {
    let (h, ff, heads, kv, hd) = (256u64, 512u64, 4u64, 2u64, 64u64);
    let mut w = GgufWriter::new();
    w.kv("general.architecture", Value::String("llama".into()))
        .kv("llama.attention.head_count", Value::U32(heads as u32))
        .kv("llama.attention.head_count_kv", Value::U32(kv as u32));
    let q = |w: &mut GgufWriter, n: &str, ty: GgmlType, rows: u64, k: u64, tag: u8| {
        w.tensor(n, &[k, rows], ty, blocks(ty, rows as usize, k as usize, tag));
    };
    // q rows tagged by row so the un-permutation shows.
    let mut qb = vec![];
    for r in 0..heads * hd {
        qb.extend(blocks(GgmlType::Q4K, 1, h as usize, r as u8));
    }
    w.tensor("blk.0.attn_q.weight", &[h, heads * hd], GgmlType::Q4K, qb);
    q(&mut w, "blk.0.attn_k.weight", GgmlType::Q4K, kv * hd, h, 200);
    q(&mut w, "blk.0.attn_v.weight", GgmlType::Q4K, kv * hd, h, 201);
    q(&mut w, "blk.0.attn_output.weight", GgmlType::Q8_0, h, heads * hd, 202);
    q(&mut w, "blk.0.ffn_gate.weight", GgmlType::Q8_0, ff, h, 203);
    q(&mut w, "blk.0.ffn_up.weight", GgmlType::Q4K, ff, h, 204);
    q(&mut w, "blk.0.ffn_down.weight", GgmlType::Q6K, h, ff, 205);
    w.tensor("blk.0.ffn_norm.weight", &[h], GgmlType::Q8_0, blocks(GgmlType::Q8_0, 1, h as usize, 206));
    let p = dir.path().join("s.gguf");
    w.write(&p).expect("write");
    p
}

#[test]
fn the_mode_follows_device_dtype_ranks_and_keep_quantized() {
    use GgufBlocks::*;
    let gpu = Device::Cuda(0);
    assert_eq!(GgufBlocks::choose(gpu, 1, DType::BF16, None), Packed);
    assert_eq!(GgufBlocks::choose(gpu, 1, DType::BF16, Some(true)), Packed);
    assert_eq!(GgufBlocks::choose(gpu, 1, DType::BF16, Some(false)), Dequantize);
    assert_eq!(GgufBlocks::choose(gpu, 1, DType::F32, None), Dequantize);
    assert_eq!(GgufBlocks::choose(gpu, 2, DType::BF16, None), Dequantize);
    assert_eq!(GgufBlocks::choose(Device::Cpu, 1, DType::F32, None), CpuKernels);
    assert_eq!(GgufBlocks::choose(Device::Cpu, 1, DType::F32, Some(true)), Packed);
    assert_eq!(GgufBlocks::choose(Device::Cpu, 1, DType::F32, Some(false)), Dequantize);
    assert_eq!(GgufBlocks::choose(Device::Cpu, 2, DType::F32, None), Dequantize);
}

#[test]
fn fused_weights_of_one_gpu_block_type_stay_packed() {
    let dir = tempfile::tempdir().expect("tmp");
    let path = sample(&dir);
    let mut g = GgufWeights::open(&path, GgufBlocks::Packed).expect("open");
    let one = Mapping::default();
    let vb = VarBuilder::new(&g, one, DType::BF16).pp("model.layers.0");
    let a = vb.pp("self_attn");
    let qkv = a.spec(
        "qkv_proj.weight",
        &["q_proj.weight", "k_proj.weight", "v_proj.weight"],
        &[256 + 128 + 128, 256],
        TpSplit::Heads(vec![(4, 64), (2, 64), (2, 64)]),
    );
    let (ty, bytes) = g.ggml_blocks(&qkv, &one).expect("read").expect("q/k/v all Q4_K: packed");
    assert_eq!(ty, GgmlType::Q4K);
    let rb = 144; // one Q4_K block per 256-value row
    assert_eq!(bytes.len(), 512 * rb);
    let tags: Vec<u8> = (0..256).map(|r| r as u8).collect();
    let want = unpermute_rope(&tags, 256, 1, 4).expect("unpermute");
    let got: Vec<u8> = bytes[..256 * rb].chunks(rb).map(|r| r[0]).collect();
    assert_eq!(got, want, "q rows un-permuted as whole rows");
    assert!(
        bytes[256 * rb..384 * rb].iter().all(|&b| b == 200) && bytes[384 * rb..].iter().all(|&b| b == 201)
    );
    let (packed, layout) = vb.pp("self_attn").get_ggml(&qkv).expect("pack").expect("packed");
    assert_eq!((layout.n, layout.k, packed.dtype()), (512, 256, DType::I32));

    let o = a.spec("o_proj.weight", &["o_proj.weight"], &[256, 256], TpSplit::Row);
    assert_eq!(g.ggml_blocks(&o, &one).expect("read").map(|b| b.0), Some(GgmlType::Q8_0));

    let m = vb.pp("mlp");
    let gate_up = m.spec(
        "gate_up_proj.weight",
        &["gate_proj.weight", "up_proj.weight"],
        &[1024, 256],
        TpSplit::Column(vec![512, 512]),
    );
    assert!(g.ggml_blocks(&gate_up, &one).expect("read").is_none(), "Q8_0 + Q4_K: dequantized");
    let down = m.spec("down_proj.weight", &["down_proj.weight"], &[256, 512], TpSplit::Row);
    assert!(g.ggml_blocks(&down, &one).expect("read").is_none(), "Q6_K has no GPU kernel");
    let norm = vb.spec(
        "post_attention_layernorm.weight",
        &["post_attention_layernorm.weight"],
        &[256],
        TpSplit::Replicate,
    );
    assert!(g.ggml_blocks(&norm, &one).expect("read").is_none(), "1-D");
    // Dequantized: `get` gives the engine dtype, never blocks.
    assert_eq!(g.get(&down, &one).expect("down").dtype(), DType::BF16);

    drop((vb, a, m));
    let tp2 = Mapping::new(2, 1, 0).expect("tp2");
    assert!(g.ggml_blocks(&o, &tp2).expect("read").is_none(), "tensor parallelism: dequantized");
    for mode in [GgufBlocks::CpuKernels, GgufBlocks::Dequantize] {
        g.set_blocks(mode);
        assert!(g.ggml_blocks(&qkv, &one).expect("read").is_none(), "{mode:?}");
    }
}
