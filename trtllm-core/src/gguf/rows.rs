//! Row reorderings between llama.cpp's tensor layouts and Hugging Face's: the rotary row
//! permutation of q/k (llama architecture) and the order of a fused qkv projection (GPT-NeoX,
//! Falcon). Each works on whole rows of `cols` values, so it serves weights, biases
//! (`cols == 1`) and rows of quantized blocks (`cols` = a row's bytes).

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

/// The fused qkv rows' HF order for `heads` query heads in `kv` KV groups of `rows / (heads +
/// 2 kv)` rows each: per group, its `heads / kv` q heads, then its k head, then its v head.
/// Returns, for each GGUF row (all q heads, then all k, then all v), the HF row it holds.
fn qkv_order(rows: usize, heads: usize, kv: usize) -> Result<Vec<usize>, String> {
    let slots = heads + 2 * kv;
    if kv == 0 || !heads.is_multiple_of(kv) || !rows.is_multiple_of(slots) {
        return Err(format!(
            "cannot reorder {rows} fused qkv rows for {heads} heads in {kv} KV groups (rows must be a multiple of heads + 2 * kv_heads)"
        ));
    }
    let (hd, r) = (rows / slots, heads / kv);
    let at = |g: usize, slot: usize, d: usize| (g * (r + 2) + slot) * hd + d;
    let mut order = Vec::with_capacity(rows);
    order.extend((0..heads).flat_map(|h| (0..hd).map(move |d| at(h / r, h % r, d))));
    order.extend((0..kv).flat_map(|g| (0..hd).map(move |d| at(g, r, d))));
    order.extend((0..kv).flat_map(|g| (0..hd).map(move |d| at(g, r + 1, d))));
    Ok(order)
}

/// GGUF fused qkv rows (q, k, v contiguous) -> HF's grouped order (see [`qkv_order`]).
pub fn group_qkv<T: Copy + Default>(
    data: &[T],
    rows: usize,
    cols: usize,
    heads: usize,
    kv: usize,
) -> Result<Vec<T>, String> {
    move_qkv_rows(data, rows, cols, heads, kv, true)
}

/// HF's grouped fused qkv rows -> GGUF's q, k, v contiguous (the inverse of [`group_qkv`]).
pub fn ungroup_qkv<T: Copy + Default>(
    data: &[T],
    rows: usize,
    cols: usize,
    heads: usize,
    kv: usize,
) -> Result<Vec<T>, String> {
    move_qkv_rows(data, rows, cols, heads, kv, false)
}

/// Row `g` of the GGUF order is row `order[g]` of HF's: moved to it (`to_hf`) or from it.
fn move_qkv_rows<T: Copy + Default>(
    data: &[T],
    rows: usize,
    cols: usize,
    heads: usize,
    kv: usize,
    to_hf: bool,
) -> Result<Vec<T>, String> {
    let order = qkv_order(rows, heads, kv)?;
    if data.len() != rows * cols {
        return Err(format!("{} values are not {rows} rows of {cols}", data.len()));
    }
    let mut out = vec![T::default(); data.len()];
    for (g, &h) in order.iter().enumerate() {
        let (dst, src) = if to_hf { (h, g) } else { (g, h) };
        out[dst * cols..(dst + 1) * cols].copy_from_slice(&data[src * cols..(src + 1) * cols]);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

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

    /// GPT-NeoX's converter (`reshape(n_head, 3, hd, n_embd)`, then q, k, v of every head
    /// concatenated) and Falcon's (`view(n_head_kv, n_head / n_head_kv + 2, hd, n_embd)`),
    /// written from their definitions, are undone exactly.
    #[test]
    fn group_qkv_inverts_llama_cpp_qkv_reorder() {
        let (hd, cols) = (3, 2);
        for (heads, kv) in [(4, 4), (4, 2), (4, 1), (6, 3)] {
            let r = heads / kv;
            let rows = (heads + 2 * kv) * hd;
            let hf: Vec<u32> = (0..(rows * cols) as u32).collect();
            let row = |g: usize, slot: usize, d: usize| &hf[((g * (r + 2) + slot) * hd + d) * cols..][..cols];
            let mut gguf = vec![];
            for h in 0..heads {
                (0..hd).for_each(|d| gguf.extend_from_slice(row(h / r, h % r, d)));
            }
            for slot in [r, r + 1] {
                for g in 0..kv {
                    (0..hd).for_each(|d| gguf.extend_from_slice(row(g, slot, d)));
                }
            }
            assert_eq!(group_qkv(&gguf, rows, cols, heads, kv).expect("group"), hf, "{heads}/{kv}");
            assert_eq!(ungroup_qkv(&hf, rows, cols, heads, kv).expect("ungroup"), gguf, "{heads}/{kv}");
        }
        assert!(group_qkv(&[0u8; 10], 10, 1, 4, 3).is_err());
        assert!(group_qkv(&[0u8; 12], 12, 1, 4, 2).is_err());
    }
}
