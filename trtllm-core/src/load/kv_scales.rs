//! A checkpoint's FP8 KV-cache scales: `model.layers.{i}.self_attn.k_scale` / `v_scale`, one
//! scalar per layer, as compressed-tensors checkpoints with a `kv_cache_scheme` (and vLLM /
//! TensorRT-LLM FP8 exports) store them. An FP8 cache (`--kv-cache-dtype fp8`) uses them where
//! the checkpoint has them; without them every scale is 1 (vLLM's default).

use std::path::Path;

use crate::batch::{Fp8Kv, KvCache, KvCacheDtype};
use crate::weights::SafetensorsFiles;
use crate::{Error, Result};

fn names(layer: usize) -> [String; 2] {
    ["k_scale", "v_scale"].map(|s| format!("model.layers.{layer}.self_attn.{s}"))
}

/// The per-layer scales of the safetensors in `dir` (`None`: a directory without safetensors,
/// or whose checkpoint has no KV scales). Every layer or none: a partial set, a non-scalar, or
/// a scale that is not positive and finite is an error naming the tensor.
pub fn checkpoint_kv_scales(dir: &Path, num_layers: usize) -> Result<Option<Vec<Fp8Kv>>> {
    let has_st = std::fs::read_dir(dir)
        .map(|d| d.flatten().any(|e| e.path().extension().is_some_and(|x| x == "safetensors")))
        .unwrap_or(false);
    if !has_st {
        return Ok(None);
    }
    let files = SafetensorsFiles::open_dir(dir)?;
    if !names(0).iter().any(|n| files.contains(n)) {
        return Ok(None);
    }
    let read = |name: &str| -> Result<f32> {
        if !files.contains(name) {
            return Err(Error::Msg(format!(
                "{}: the checkpoint has FP8 KV scales but not {name}",
                dir.display()
            )));
        }
        let t = files.read(name)?.to_dtype(crate::DType::F32)?;
        match t.f32s()? {
            [v] if v.is_finite() && *v > 0.0 => Ok(*v),
            v => Err(Error::Msg(format!(
                "{}: {name} must be one positive finite scalar, found {} values",
                dir.display(),
                v.len()
            ))),
        }
    };
    (0..num_layers)
        .map(|l| {
            let [k, v] = names(l);
            Ok(Fp8Kv { k_scale: read(&k)?, v_scale: read(&v)? })
        })
        .collect::<Result<Vec<_>>>()
        .map(Some)
}

/// Give an FP8 `kv` the scales of the checkpoint in `dir`, if it has them; true when it did.
/// `ranks` > 1 (tensor or pipeline parallel): the ranks' own caches would not get them, so a
/// checkpoint with scales is refused there.
pub fn apply_checkpoint_kv_scales(dir: &Path, kv: &mut KvCache, ranks: usize) -> Result<bool> {
    if kv.kv_dtype() != KvCacheDtype::Fp8 {
        return Ok(false);
    }
    let Some(scales) = checkpoint_kv_scales(dir, kv.layout.num_layers)? else { return Ok(false) };
    if ranks > 1 {
        return Err(Error::Msg(format!(
            "{}: the checkpoint's FP8 KV scales are not supported with tensor or pipeline parallelism yet; \
             use --kv-cache-dtype auto",
            dir.display()
        )));
    }
    kv.set_fp8_scales(&scales)?;
    Ok(true)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::batch::KvLayout;
    use crate::weights::write_safetensors;
    use crate::Tensor;

    fn scalar(v: f32) -> Tensor {
        Tensor::from_f32(vec![v], &[]).expect("scalar")
    }

    #[test]
    fn checkpoint_scales_reach_an_fp8_cache() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let layout = KvLayout { num_layers: 2, kv_heads: 1, head_dim: 8, values: true };
        let mut kv = KvCache::new_stage(layout, 4, 2, 0..2, KvCacheDtype::Fp8).expect("cache");
        // No safetensors, then safetensors without scales: unit scales stay.
        assert!(!apply_checkpoint_kv_scales(tmp.path(), &mut kv, 1).expect("empty dir"));
        let st = tmp.path().join("model.safetensors");
        write_safetensors(&st, &[("model.norm.weight".into(), scalar(1.0))], None).expect("write");
        assert!(!apply_checkpoint_kv_scales(tmp.path(), &mut kv, 1).expect("no scales"));
        let mut ts: Vec<(String, Tensor)> = vec![];
        for l in 0..2 {
            let [k, v] = names(l);
            ts.push((k, scalar(0.5 + l as f32)));
            ts.push((v, scalar(0.25)));
        }
        write_safetensors(&st, &ts[..3], None).expect("write partial");
        let e = checkpoint_kv_scales(tmp.path(), 2).expect_err("layer 1 has no v_scale");
        assert!(e.to_string().contains("model.layers.1.self_attn.v_scale"), "{e}");
        write_safetensors(&st, &ts, None).expect("write");
        assert!(apply_checkpoint_kv_scales(tmp.path(), &mut kv, 1).expect("scales"));
        assert_eq!(kv.layer(1).expect("layer").fp8(), Some(Fp8Kv { k_scale: 1.5, v_scale: 0.25 }));
        let e = apply_checkpoint_kv_scales(tmp.path(), &mut kv, 2).expect_err("two ranks");
        assert!(e.to_string().contains("parallelism"), "{e}");
        let mut auto = KvCache::new(layout, 4, 2).expect("cache");
        assert!(!apply_checkpoint_kv_scales(tmp.path(), &mut auto, 1).expect("bf16 cache ignores scales"));
        ts[0].1 = scalar(-1.0);
        write_safetensors(&st, &ts, None).expect("write");
        let e = checkpoint_kv_scales(tmp.path(), 2).expect_err("negative");
        assert!(e.to_string().contains("positive"), "{e}");
    }
}
