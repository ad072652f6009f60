use super::*;

#[test]
fn row_reorderings_round_trip_and_land_where_the_engine_expects() {
    // 2 KV groups of (2 q, k, v) heads of head_dim 4, a bias-like rank-1 tensor.
    let (kv, r, hd) = (2, 2, 4);
    let rows = kv * (r + 2) * hd;
    let stored: Vec<f32> = (0..rows).map(|i| i as f32).collect();
    let mut spec = WeightSpec {
        name: "qkv.bias".into(),
        sources: vec![Source { name: "qkv.bias".into(), shape: vec![rows] }],
        combine: Combine::Concat0,
        transform: Transform { qkv_grouped: Some((kv, r, hd)), ..Default::default() },
        shape: vec![rows],
        split: TpSplit::Replicate,
        dtype: DType::F32,
        quant: None,
    };
    let t = Tensor::from_f32(stored.clone(), &[rows]).expect("t");
    let e = spec.to_engine(vec![t.clone()]).expect("engine");
    let ev = e.f32s().expect("f32").to_vec();
    // q head 1 (group 0, second q) = stored rows 4..8; k of group 1 = stored rows 24..28.
    assert_eq!(&ev[4..8], &[4.0, 5.0, 6.0, 7.0]);
    assert_eq!(&ev[kv * r * hd + hd..kv * r * hd + 2 * hd], &[24.0, 25.0, 26.0, 27.0]);
    assert_eq!(spec.to_hf(&e).expect("hf")[0].1.f32s().expect("f32"), &stored[..]);
    // Interleaved RoPE over rotary dim 4 of the first 3 heads: dims (0, 2, 1, 3) per head.
    spec.transform = Transform { rope_interleaved: Some((3, hd, 4)), ..Default::default() };
    let e = spec.to_engine(vec![t]).expect("engine");
    let ev = e.f32s().expect("f32").to_vec();
    assert_eq!(&ev[..8], &[0.0, 2.0, 1.0, 3.0, 4.0, 6.0, 5.0, 7.0]);
    assert_eq!(&ev[12..16], &[12.0, 13.0, 14.0, 15.0], "rows after the q/k heads stay");
    assert_eq!(spec.to_hf(&e).expect("hf")[0].1.f32s().expect("f32"), &stored[..]);
}

fn qkv(heads: usize, kv: usize) -> WeightSpec {
    let d = 2;
    let rows = (heads + 2 * kv) * d;
    WeightSpec {
        name: "qkv".into(),
        sources: vec![Source { name: "qkv".into(), shape: vec![rows, 1] }],
        combine: Combine::Concat0,
        transform: Transform::default(),
        shape: vec![rows, 1],
        split: TpSplit::Heads(vec![(heads, d), (kv, d), (kv, d)]),
        dtype: DType::F32,
        quant: None,
    }
}

/// Row r of the fused tensor holds the value r.
fn rows(spec: &WeightSpec, rank: usize, tp: usize) -> Vec<f32> {
    let n = spec.shape[0];
    let t = Tensor::from_f32((0..n).map(|r| r as f32).collect(), &[n, 1]).expect("tensor");
    let s = spec.shard(&t, rank, tp).expect("shard");
    assert_eq!(s.shape(), spec.shard_shape(tp).expect("shape").as_slice());
    let out = s.f32s().expect("f32").to_vec();
    // The row ranges the zero-copy loader uses name exactly these rows.
    let ranges = spec.shard_rows(rank, tp).expect("rows").expect("whole rows");
    let listed: Vec<f32> = ranges.iter().flat_map(|&(a, n)| (a..a + n).map(|r| r as f32)).collect();
    assert_eq!(listed, out);
    out
}

#[test]
fn column_and_replicated_row_ranges_match_the_shard() {
    let mut s = qkv(4, 2);
    s.split = TpSplit::Column(vec![8, 4, 4]);
    for tp in [1, 2, 4] {
        for rank in 0..tp {
            rows(&s, rank, tp);
        }
    }
    s.split = TpSplit::Replicate;
    assert_eq!(rows(&s, 1, 2).len(), 16);
    s.split = TpSplit::Row;
    assert!(s.shard_rows(0, 2).expect("rows").is_none(), "a row split is not whole rows");
    assert_eq!(s.shard_rows(0, 1).expect("rows"), Some(vec![(0, 16)]));
}

#[test]
fn kv_heads_are_duplicated_for_the_query_heads_of_each_rank() {
    // 4 q heads, 1 kv head (rows: q 0..8, k 8..10, v 10..12), tp 2: each rank gets its 2 q
    // heads and the one k/v head.
    let s = qkv(4, 1);
    assert_eq!(rows(&s, 0, 2), [0., 1., 2., 3., 8., 9., 10., 11.]);
    assert_eq!(rows(&s, 1, 2), [4., 5., 6., 7., 8., 9., 10., 11.]);
    // 4 q, 2 kv, tp 4: q head r uses kv head r / 2.
    let s = qkv(4, 2);
    assert_eq!(rows(&s, 1, 4), [2., 3., 8., 9., 12., 13.]);
    assert_eq!(rows(&s, 2, 4), [4., 5., 10., 11., 14., 15.]);
}

#[test]
fn uneven_heads_are_an_error_not_a_silent_drop() {
    let s = qkv(6, 3);
    assert!(s.shard_shape(4).is_err());
    let t = Tensor::zeros(&s.shape);
    assert!(s.shard(&t, 0, 4).is_err());
    let mut row = qkv(4, 4);
    row.split = TpSplit::Row;
    row.shape = vec![8];
    assert!(row.shard_shape(2).is_err(), "a rank-1 tensor has no dim 1 to split");
}
