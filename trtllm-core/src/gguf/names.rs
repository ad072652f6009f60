//! GGUF tensor names -> Hugging Face names (per architecture: `super::arch`), and the transforms
//! llama.cpp's converter applied that must be undone: the rotary row permutation of q/k (llama
//! architecture only), the fused qkv order of GPT-NeoX and Falcon, and the `1 + w` of Gemma's
//! RMSNorm weights.

pub use super::arch::{Arch, HfLayout, SUPPORTED};
pub use super::rows::{group_qkv, permute_rope, ungroup_qkv, unpermute_rope};

/// What to do to a tensor's values on the way from GGUF to HF.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Transform {
    None,
    /// Undo llama.cpp's q/k row permutation with this many heads.
    UnpermuteRope {
        heads: usize,
    },
    /// Fused qkv rows: GGUF's q, k, v contiguous -> HF's per-KV-group order
    /// ([`group_qkv`]).
    GroupQkv {
        heads: usize,
        kv_heads: usize,
    },
    /// Gemma norms: the GGUF holds `1 + w`, HF holds `w`.
    SubtractOne,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Mapped {
    pub hf_name: String,
    pub transform: Transform,
}

/// Map one GGUF tensor name. `heads` / `kv_heads` size the q / k un-permutation (llama) and
/// the fused qkv regrouping (GPT-NeoX, Falcon). The error says why a name is not mapped.
pub fn map_tensor(arch: Arch, name: &str, heads: usize, kv_heads: usize) -> Result<Mapped, String> {
    let (stem, kind) = name
        .rsplit_once('.')
        .filter(|(_, k)| *k == "weight" || *k == "bias")
        .ok_or_else(|| format!("tensor `{name}`: expected a name ending in .weight or .bias"))?;
    let l = arch.hf_layout();
    let (hf_stem, part) = match stem {
        "token_embd" => (l.embed.to_string(), stem),
        "output_norm" => (l.norm.to_string(), stem),
        "output" => (l.head.to_string(), stem),
        "rope_freqs" => {
            return Err(format!(
                "tensor `{name}`: precomputed RoPE frequency factors (Llama 3.1-style rope scaling) are not supported"
            ))
        }
        _ => {
            let unknown = || format!("tensor `{name}`: no Hugging Face name for it in a {} model", arch.gguf_name());
            let rest = stem.strip_prefix("blk.").ok_or_else(unknown)?;
            let (layer, part) = rest.split_once('.').ok_or_else(unknown)?;
            let layer: usize = layer.parse().map_err(|_| unknown())?;
            let hf = l.parts.iter().find(|(g, _)| *g == part).ok_or_else(unknown)?.1;
            (format!("{}.{layer}.{hf}", l.layers), part)
        }
    };
    let transform = match (arch, part) {
        (Arch::Llama, "attn_q") => Transform::UnpermuteRope { heads },
        (Arch::Llama, "attn_k") => Transform::UnpermuteRope { heads: kv_heads },
        (a, "attn_qkv") if a.grouped_qkv() => Transform::GroupQkv { heads, kv_heads },
        (Arch::Gemma3, p) if p.ends_with("norm") && kind == "weight" => Transform::SubtractOne,
        _ => Transform::None,
    };
    Ok(Mapped { hf_name: format!("{hf_stem}.{kind}"), transform })
}

/// The GGUF name of a Hugging Face tensor name (the inverse of [`map_tensor`]) and the
/// transform that maps it back, or `None` when the name has no GGUF counterpart.
pub fn gguf_name(arch: Arch, hf: &str, heads: usize, kv_heads: usize) -> Option<(String, Transform)> {
    let (stem, kind) = hf.rsplit_once('.').filter(|(_, k)| *k == "weight" || *k == "bias")?;
    let l = arch.hf_layout();
    let g = match stem {
        s if s == l.embed => "token_embd".to_string(),
        s if s == l.norm => "output_norm".to_string(),
        s if s == l.head => "output".to_string(),
        _ => {
            let (layer, part) = stem.strip_prefix(l.layers)?.strip_prefix('.')?.split_once('.')?;
            let layer: usize = layer.parse().ok()?;
            let p = l.parts.iter().find(|(_, h)| *h == part)?.0;
            format!("blk.{layer}.{p}")
        }
    };
    let name = format!("{g}.{kind}");
    let m = map_tensor(arch, &name, heads, kv_heads).ok().filter(|m| m.hf_name == hf)?;
    Some((name, m.transform))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        let m = |a, n| map_tensor(a, n, 4, 2).expect(n);
        assert_eq!(m(Arch::Llama, "token_embd.weight").hf_name, "model.embed_tokens.weight");
        assert_eq!(m(Arch::Llama, "output.weight").hf_name, "lm_head.weight");
        assert_eq!(m(Arch::Llama, "output_norm.weight").hf_name, "model.norm.weight");
        assert_eq!(
            m(Arch::Llama, "blk.3.attn_q.weight"),
            Mapped {
                hf_name: "model.layers.3.self_attn.q_proj.weight".into(),
                transform: Transform::UnpermuteRope { heads: 4 }
            }
        );
        assert_eq!(m(Arch::Llama, "blk.3.attn_k.weight").transform, Transform::UnpermuteRope { heads: 2 });
        assert_eq!(
            m(Arch::Qwen2, "blk.0.attn_q.bias"),
            Mapped { hf_name: "model.layers.0.self_attn.q_proj.bias".into(), transform: Transform::None }
        );
        assert_eq!(
            m(Arch::Qwen2, "blk.1.ffn_norm.weight").hf_name,
            "model.layers.1.post_attention_layernorm.weight"
        );
        assert_eq!(
            m(Arch::Gemma3, "blk.1.ffn_norm.weight").hf_name,
            "model.layers.1.pre_feedforward_layernorm.weight"
        );
        let g = m(Arch::Gemma3, "blk.2.post_ffw_norm.weight");
        assert_eq!(g.hf_name, "model.layers.2.post_feedforward_layernorm.weight");
        assert_eq!(g.transform, Transform::SubtractOne);
        assert_eq!(
            m(Arch::Gemma3, "blk.2.attn_k_norm.weight").hf_name,
            "model.layers.2.self_attn.k_norm.weight"
        );
        assert_eq!(m(Arch::Gemma3, "output_norm.weight").transform, Transform::SubtractOne);
        assert_eq!(m(Arch::Gemma3, "blk.0.attn_q.weight").transform, Transform::None);
        let q = m(Arch::GptNeoX, "blk.1.attn_qkv.bias");
        assert_eq!(q.hf_name, "gpt_neox.layers.1.attention.query_key_value.bias");
        assert_eq!(q.transform, Transform::GroupQkv { heads: 4, kv_heads: 2 });
        assert_eq!(m(Arch::GptNeoX, "output.weight").hf_name, "embed_out.weight");
        assert_eq!(m(Arch::Falcon, "blk.0.attn_norm_2.bias").hf_name, "transformer.h.0.ln_mlp.bias");
        assert_eq!(m(Arch::Falcon, "blk.0.attn_norm.weight").hf_name, "transformer.h.0.ln_attn.weight");
        assert_eq!(
            m(Arch::FalconOneNorm, "blk.0.attn_norm.weight").hf_name,
            "transformer.h.0.input_layernorm.weight"
        );
        assert_eq!(m(Arch::Starcoder2, "blk.0.ffn_up.bias").hf_name, "model.layers.0.mlp.c_fc.bias");
        assert_eq!(m(Arch::CommandR, "blk.0.attn_q.weight").transform, Transform::None);
        assert_eq!(
            m(Arch::Olmo2, "blk.0.post_ffw_norm.weight").hf_name,
            "model.layers.0.post_feedforward_layernorm.weight"
        );
        for bad in [
            "blk.x.attn_q.weight",
            "blk.0.nonsense.weight",
            "foo",
            "rope_freqs.weight",
            "blk.0.post_ffw_norm.weight",
        ] {
            let e = map_tensor(Arch::Llama, bad, 4, 2).expect_err(bad);
            assert!(e.contains(bad), "{e}");
        }
        for (arch, bad) in [
            (Arch::FalconOneNorm, "blk.0.attn_norm_2.weight"),
            (Arch::GptNeoX, "blk.0.attn_q.weight"),
            (Arch::Olmo2, "blk.0.attn_norm.weight"),
        ] {
            let e = map_tensor(arch, bad, 4, 2).expect_err(bad);
            assert!(e.contains(bad) && e.contains(arch.gguf_name()), "{e}");
        }
    }

    #[test]
    fn gguf_names_invert_map_tensor() {
        let all = [
            Arch::Llama,
            Arch::Qwen2,
            Arch::Gemma3,
            Arch::GptNeoX,
            Arch::Starcoder2,
            Arch::Falcon,
            Arch::FalconOneNorm,
            Arch::CommandR,
            Arch::Olmo2,
        ];
        for arch in all {
            let parts = arch.hf_layout().parts.iter().map(|(g, _)| format!("blk.7.{g}.weight"));
            let fixed = ["token_embd.weight", "output.weight", "output_norm.weight", "output_norm.bias"];
            for n in fixed.iter().map(|s| s.to_string()).chain(parts) {
                let m = map_tensor(arch, &n, 4, 2).expect(&n);
                assert_eq!(gguf_name(arch, &m.hf_name, 4, 2), Some((n.clone(), m.transform)), "{arch:?} {n}");
            }
        }
        assert_eq!(gguf_name(Arch::Llama, "model.layers.0.post_feedforward_layernorm.weight", 4, 2), None);
        assert_eq!(gguf_name(Arch::Llama, "model.layers.0.self_attn.rotary_emb.inv_freq", 4, 2), None);
        assert_eq!(gguf_name(Arch::Llama, "model.layers.x.mlp.up_proj.weight", 4, 2), None);
        assert_eq!(gguf_name(Arch::GptNeoX, "model.layers.0.mlp.up_proj.weight", 4, 2), None);
    }
}
