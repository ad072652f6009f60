//! GGUF tensor names -> Hugging Face names, and the transforms llama.cpp's converter applied
//! that must be undone: the rotary row permutation of q/k (llama architecture only) and the
//! `1 + w` of Gemma's RMSNorm weights.

/// The GGUF architectures this importer handles (`general.architecture`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Arch {
    Llama,
    Qwen2,
    Gemma3,
}

impl Arch {
    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "llama" => Arch::Llama,
            "qwen2" => Arch::Qwen2,
            "gemma3" => Arch::Gemma3,
            _ => return None,
        })
    }

    /// `general.architecture` spelling, the prefix of its metadata keys.
    pub fn gguf_name(self) -> &'static str {
        match self {
            Arch::Llama => "llama",
            Arch::Qwen2 => "qwen2",
            Arch::Gemma3 => "gemma3",
        }
    }
}

/// What to do to a tensor's values on the way from GGUF to HF.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Transform {
    None,
    /// Undo llama.cpp's q/k row permutation with this many heads.
    UnpermuteRope {
        heads: usize,
    },
    /// Gemma norms: the GGUF holds `1 + w`, HF holds `w`.
    SubtractOne,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Mapped {
    pub hf_name: String,
    pub transform: Transform,
}

/// The HF name of a per-layer tensor part (`attn_q` ...), or `None` if unknown.
fn layer_part(arch: Arch, part: &str) -> Option<&'static str> {
    Some(match (part, arch) {
        ("attn_q", _) => "self_attn.q_proj",
        ("attn_k", _) => "self_attn.k_proj",
        ("attn_v", _) => "self_attn.v_proj",
        ("attn_output", _) => "self_attn.o_proj",
        ("ffn_gate", _) => "mlp.gate_proj",
        ("ffn_up", _) => "mlp.up_proj",
        ("ffn_down", _) => "mlp.down_proj",
        ("attn_norm", _) => "input_layernorm",
        ("ffn_norm", Arch::Gemma3) => "pre_feedforward_layernorm",
        ("ffn_norm", _) => "post_attention_layernorm",
        ("post_attention_norm", Arch::Gemma3) => "post_attention_layernorm",
        ("post_ffw_norm", Arch::Gemma3) => "post_feedforward_layernorm",
        ("attn_q_norm", _) => "self_attn.q_norm",
        ("attn_k_norm", _) => "self_attn.k_norm",
        _ => return None,
    })
}

/// Map one GGUF tensor name. `heads` / `kv_heads` size the q / k un-permutation (llama only).
/// The error says why a name is not mapped.
pub fn map_tensor(arch: Arch, name: &str, heads: usize, kv_heads: usize) -> Result<Mapped, String> {
    let (stem, kind) = name
        .rsplit_once('.')
        .filter(|(_, k)| *k == "weight" || *k == "bias")
        .ok_or_else(|| format!("tensor `{name}`: expected a name ending in .weight or .bias"))?;
    let (hf_stem, part) = match stem {
        "token_embd" => ("model.embed_tokens".to_string(), stem),
        "output_norm" => ("model.norm".to_string(), stem),
        "output" => ("lm_head".to_string(), stem),
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
            let hf = layer_part(arch, part).ok_or_else(unknown)?;
            (format!("model.layers.{layer}.{hf}"), part)
        }
    };
    let transform = match (arch, part) {
        (Arch::Llama, "attn_q") => Transform::UnpermuteRope { heads },
        (Arch::Llama, "attn_k") => Transform::UnpermuteRope { heads: kv_heads },
        (Arch::Gemma3, p) if p.ends_with("norm") && kind == "weight" => Transform::SubtractOne,
        _ => Transform::None,
    };
    Ok(Mapped { hf_name: format!("{hf_stem}.{kind}"), transform })
}

/// Every per-layer part `layer_part` names (the inverse map searches them).
const PARTS: [&str; 13] = [
    "attn_q",
    "attn_k",
    "attn_v",
    "attn_output",
    "ffn_gate",
    "ffn_up",
    "ffn_down",
    "attn_norm",
    "ffn_norm",
    "post_attention_norm",
    "post_ffw_norm",
    "attn_q_norm",
    "attn_k_norm",
];

/// The GGUF name of a Hugging Face tensor name (the inverse of [`map_tensor`]) and the
/// transform that maps it back, or `None` when the name has no GGUF counterpart.
pub fn gguf_name(arch: Arch, hf: &str, heads: usize, kv_heads: usize) -> Option<(String, Transform)> {
    let (stem, kind) = hf.rsplit_once('.').filter(|(_, k)| *k == "weight" || *k == "bias")?;
    let g = match stem {
        "model.embed_tokens" => "token_embd".to_string(),
        "model.norm" => "output_norm".to_string(),
        "lm_head" => "output".to_string(),
        _ => {
            let (layer, part) = stem.strip_prefix("model.layers.")?.split_once('.')?;
            let layer: usize = layer.parse().ok()?;
            let p = PARTS.iter().find(|p| layer_part(arch, p) == Some(part))?;
            format!("blk.{layer}.{p}")
        }
    };
    let name = format!("{g}.{kind}");
    let m = map_tensor(arch, &name, heads, kv_heads).ok().filter(|m| m.hf_name == hf)?;
    Some((name, m.transform))
}

/// llama.cpp's `permute` of q/k rows (the inverse of [`unpermute_rope`]): within each head, HF
/// row `j * (rows / heads / 2) + i` becomes GGUF row `2 i + j`.
pub fn permute_rope<T: Copy + Default>(
    data: &[T],
    rows: usize,
    cols: usize,
    heads: usize,
) -> Result<Vec<T>, String> {
    if heads == 0 || !rows.is_multiple_of(2 * heads) || data.len() != rows * cols {
        return Err(format!(
            "cannot permute {rows} rows of {cols} for {heads} heads (rows must be a multiple of 2 * heads)"
        ));
    }
    let head_dim = rows / heads;
    let half = head_dim / 2;
    let mut out = vec![T::default(); data.len()];
    for h in 0..heads {
        for i in 0..half {
            for j in 0..2 {
                let dst = (h * head_dim + 2 * i + j) * cols;
                let src = (h * head_dim + j * half + i) * cols;
                out[dst..dst + cols].copy_from_slice(&data[src..src + cols]);
            }
        }
    }
    Ok(out)
}

/// Undo llama.cpp's `permute` of q/k rows: within each head of `rows / heads` rows, GGUF row
/// `2 i + j` is HF row `j * (rows / heads / 2) + i` (GGUF interleaves the two rotary halves).
/// `data` is `rows` rows of `cols` values (a bias has `cols == 1`).
pub fn unpermute_rope<T: Copy + Default>(
    data: &[T],
    rows: usize,
    cols: usize,
    heads: usize,
) -> Result<Vec<T>, String> {
    if heads == 0 || !rows.is_multiple_of(2 * heads) || data.len() != rows * cols {
        return Err(format!("cannot un-permute {rows} rows of {cols} for {heads} heads (rows must be a multiple of 2 * heads)"));
    }
    let head_dim = rows / heads;
    let half = head_dim / 2;
    let mut out = vec![T::default(); data.len()];
    for h in 0..heads {
        for i in 0..half {
            for j in 0..2 {
                let src = (h * head_dim + 2 * i + j) * cols;
                let dst = (h * head_dim + j * half + i) * cols;
                out[dst..dst + cols].copy_from_slice(&data[src..src + cols]);
            }
        }
    }
    Ok(out)
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
    }

    #[test]
    fn gguf_names_invert_map_tensor() {
        for arch in [Arch::Llama, Arch::Qwen2, Arch::Gemma3] {
            for n in [
                "token_embd.weight",
                "output.weight",
                "output_norm.weight",
                "blk.7.attn_q.weight",
                "blk.0.attn_k.bias",
                "blk.2.ffn_down.weight",
                "blk.1.ffn_norm.weight",
                "blk.3.attn_k_norm.weight",
            ] {
                let m = map_tensor(arch, n, 4, 2).expect(n);
                assert_eq!(
                    gguf_name(arch, &m.hf_name, 4, 2),
                    Some((n.to_string(), m.transform)),
                    "{arch:?} {n}"
                );
            }
        }
        assert_eq!(gguf_name(Arch::Llama, "model.layers.0.post_feedforward_layernorm.weight", 4, 2), None);
        assert_eq!(gguf_name(Arch::Llama, "model.layers.0.self_attn.rotary_emb.inv_freq", 4, 2), None);
        assert_eq!(gguf_name(Arch::Llama, "model.layers.x.mlp.up_proj.weight", 4, 2), None);
    }

    /// llama.cpp's forward permutation, written from its definition, must be undone exactly.
    #[test]
    fn unpermute_inverts_llama_cpp_permute() {
        let (heads, head_dim, cols) = (3, 8, 5);
        let rows = heads * head_dim;
        let hf: Vec<f32> = (0..rows * cols).map(|x| x as f32).collect();
        // permute: reshape(heads, 2, head_dim / 2, cols).swapaxes(1, 2)
        let mut gguf = vec![0f32; hf.len()];
        for h in 0..heads {
            for two in 0..2 {
                for i in 0..head_dim / 2 {
                    let src = (h * head_dim + two * head_dim / 2 + i) * cols;
                    let dst = (h * head_dim + i * 2 + two) * cols;
                    gguf[dst..dst + cols].copy_from_slice(&hf[src..src + cols]);
                }
            }
        }
        assert_ne!(gguf, hf);
        assert_eq!(unpermute_rope(&gguf, rows, cols, heads).expect("unpermute"), hf);
        assert_eq!(permute_rope(&hf, rows, cols, heads).expect("permute"), gguf);
        assert!(unpermute_rope(&gguf, rows, cols, 5).is_err());
    }
}
