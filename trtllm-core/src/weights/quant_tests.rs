use half::f16;
use trtllm_kernels::quant_ref::{e4m3_encode, fp8_quantize_weight, ScaleLayout};

use super::*;
use crate::weights::spec::{Combine, Transform};

fn plain(parts: &[(&str, usize)], inp: usize, split: TpSplit) -> WeightSpec {
    let out = parts.iter().map(|p| p.1).sum();
    WeightSpec {
        name: "l.qkv_proj.weight".into(),
        sources: parts
            .iter()
            .map(|(n, r)| Source { name: format!("l.{n}.weight"), shape: vec![*r, inp] })
            .collect(),
        combine: Combine::Concat0,
        transform: Transform::default(),
        shape: vec![out, inp],
        split,
        dtype: DType::F32,
        quant: None,
    }
}

fn w(rows: usize, cols: usize, seed: usize) -> Vec<f32> {
    (0..rows * cols)
        .map(|i| (((i * 7919 + seed * 104729) % 1000) as f32 / 500.0 - 1.0) * (1 + i % 3) as f32)
        .collect()
}

#[test]
fn fp8_parts_dequantize_and_fuse() {
    let spec = plain(&[("q_proj", 4), ("k_proj", 2)], 3, TpSplit::Column(vec![4, 2]));
    let q = quantize_spec(spec, WeightQuant::Fp8(Fp8Scales::Channel)).expect("spec");
    let names: Vec<_> = q.sources.iter().map(|s| (s.name.as_str(), s.shape.clone())).collect();
    assert_eq!(
        names,
        vec![
            ("l.q_proj.weight", vec![4, 3]),
            ("l.q_proj.weight_scale", vec![4, 1]),
            ("l.k_proj.weight", vec![2, 3]),
            ("l.k_proj.weight_scale", vec![2, 1]),
        ]
    );
    assert_eq!(q.source_split(1), "dim 0 (output rows)");
    let (wq, wk) = (w(4, 3, 1), w(2, 3, 2));
    let (cq, sq) = fp8_quantize_weight(&wq, 4, 3, ScaleLayout::Row);
    let (ck, sk) = fp8_quantize_weight(&wk, 2, 3, ScaleLayout::Row);
    let t = |c: Vec<u8>, s: &[usize]| Tensor::from_f8(c, s).expect("t");
    // the k scale is stored [2] (no trailing 1): the same tensor
    let srcs = vec![
        t(cq.clone(), &[4, 3]),
        Tensor::from_f32(sq.clone(), &[4, 1]).expect("t"),
        t(ck.clone(), &[2, 3]),
        Tensor::from_f32(sk.clone(), &[2]).expect("t"),
    ];
    let full = q.to_engine(srcs).expect("engine");
    assert_eq!(full.shape(), &[6, 3]);
    let got = full.f32s().expect("f32");
    for r in 0..6 {
        for c in 0..3 {
            let (code, s) = if r < 4 { (cq[r * 3 + c], sq[r]) } else { (ck[(r - 4) * 3 + c], sk[r - 4]) };
            assert_eq!(got[r * 3 + c], e4m3_decode(code) * s);
        }
    }
    // quantization error is what E4M3 allows: < 2^-4 relative to the row's max
    for (r, row) in wq.chunks(3).enumerate() {
        let amax = row.iter().fold(0f32, |m, v| m.max(v.abs()));
        for c in 0..3 {
            assert!((got[r * 3 + c] - row[c]).abs() <= amax / 16.0, "{r},{c}");
        }
    }
}

#[test]
fn fp8_block_scales_and_errors() {
    let spec = plain(&[("o_proj", 3)], 5, TpSplit::Row);
    let q = quantize_spec(spec, WeightQuant::Fp8(Fp8Scales::Block { rows: 2, cols: 2, inv_name: true }))
        .expect("spec");
    assert_eq!(q.sources[1].name, "l.o_proj.weight_scale_inv");
    assert_eq!(q.sources[1].shape, vec![2, 3]);
    assert_eq!(q.source_split(0), "dim 1 (input columns)");
    assert_eq!(q.source_split(1), "dim 1 (block columns)");
    let codes: Vec<u8> = (0..15).map(|i| e4m3_encode(i as f32 * 0.5)).collect();
    let scales: Vec<f32> = vec![1.0, 2.0, 4.0, 8.0, 16.0, 32.0];
    let out = q
        .to_engine(vec![
            Tensor::from_f8(codes.clone(), &[3, 5]).expect("t"),
            Tensor::from_f32(scales, &[2, 3]).expect("t"),
        ])
        .expect("engine");
    let v = out.f32s().expect("f32");
    // element (2, 4): block (1, 2) -> scale 32; value 14 * 0.5
    assert_eq!(v[2 * 5 + 4], 7.0 * 32.0);
    assert_eq!(v[5 + 2], 3.5 * 2.0);
    // a bf16 weight where FP8 is declared: named error, not garbage
    let e = q
        .to_engine(vec![
            Tensor::from_f32(vec![0.0; 15], &[3, 5]).expect("t"),
            Tensor::from_f32(vec![1.0; 6], &[2, 3]).expect("t"),
        ])
        .expect_err("dtype");
    assert!(e.to_string().contains("l.o_proj.weight") && e.to_string().contains("float8_e4m3fn"), "{e}");
    // FP8 where a plain layer is declared
    let p = plain(&[("o_proj", 3)], 5, TpSplit::Row);
    let e = p.to_engine(vec![Tensor::from_f8(codes, &[3, 5]).expect("t")]).expect_err("f8");
    assert!(e.to_string().contains("not a quantized linear"), "{e}");
}

#[test]
fn awq_and_gptq_parts_dequantize() {
    // n = 8 outputs, k = 16 inputs, group 8; every code 3, zeros 1 (v1 gptq stores 0), scale 0.5
    let (n, k, g) = (8, 16, 8);
    let awq =
        quantize_spec(plain(&[("down_proj", n)], k, TpSplit::Row), WeightQuant::Awq { group: g }).expect("s");
    assert_eq!(awq.source_split(0), "dim 0 (input rows)");
    assert_eq!(awq.source_split(2), "dim 0 (input groups)");
    let fill = |nib: u32| (0..8).fold(0u32, |a, i| a | nib << (4 * i)) as i32;
    let half = |v: f32, len: usize| Tensor::from_f16(vec![f16::from_f32(v); len], &[k / g, n]).expect("t");
    let i32t = |v: i32, s: &[usize]| Tensor::from_i32(vec![v; s.iter().product()], s).expect("t");
    let out = awq
        .to_engine(vec![i32t(fill(3), &[k, n / 8]), i32t(fill(1), &[k / g, n / 8]), half(0.5, (k / g) * n)])
        .expect("awq");
    assert_eq!(out.shape(), &[n, k]);
    assert!(out.f32s().expect("f32").iter().all(|&x| x == 1.0));
    let gptq = quantize_spec(
        plain(&[("gate_proj", n)], k, TpSplit::Column(vec![n])),
        WeightQuant::Gptq { group: g, v1_zero_offset: true },
    )
    .expect("s");
    assert_eq!(gptq.source_split(0), "dim 1 (output columns)");
    assert_eq!(gptq.source_split(3), "replicate");
    let gidx: Vec<i32> = (0..k as i32).map(|c| c / g as i32).collect();
    let srcs = |gidx: Vec<i32>| {
        vec![
            i32t(fill(3), &[k / 8, n]),
            i32t(fill(0), &[k / g, n / 8]),
            half(0.5, (k / g) * n),
            Tensor::from_i32(gidx, &[k]).expect("t"),
        ]
    };
    let out = gptq.to_engine(srcs(gidx.clone())).expect("gptq");
    assert!(out.f32s().expect("f32").iter().all(|&x| x == 1.0));
    let mut bad = gidx;
    bad.swap(0, 15);
    let e = gptq.to_engine(srcs(bad)).expect_err("act order");
    assert!(e.to_string().contains("g_idx") && e.to_string().contains("desc_act"), "{e}");
}

#[test]
fn int4_shapes_must_pack() {
    let e = quantize_spec(plain(&[("o_proj", 8)], 12, TpSplit::Row), WeightQuant::Awq { group: 8 })
        .expect_err("pack");
    assert!(e.to_string().contains("l.o_proj") && e.to_string().contains("group 8"), "{e}");
    assert!(
        same_scale_shape(&[1], &[]) && same_scale_shape(&[4, 1], &[4]) && !same_scale_shape(&[4, 1], &[2, 2])
    );
}
