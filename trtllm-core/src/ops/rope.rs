//! Rotary position embedding, HF's `rotate_half` (NeoX) layout: in each head the first
//! `rotary_dim / 2` dims pair with the next `rotary_dim / 2`; dims past `rotary_dim` pass through.

use crate::{Error, Result};

/// cos/sin tables `[positions.len(), rotary_dim / 2]`, computed as HF does: the angle
/// `pos * inv_freq` rounded to f32, then cos/sin times the attention scaling.
pub fn rope_tables(positions: &[usize], inv_freq: &[f32], scaling: f32) -> (Vec<f32>, Vec<f32>) {
    let _t = super::cpu::prof::scope(|| "rope_tables".to_string());
    // Every layer of a step asks for the same tables (same positions and frequencies): keep
    // the last ones per thread and hand out copies (a copy is ~50x cheaper than the f64 trig).
    type Last = Option<(Vec<usize>, Vec<f32>, u32, Vec<f32>, Vec<f32>)>;
    thread_local! {
        static LAST: std::cell::RefCell<Last> = const { std::cell::RefCell::new(None) };
    }
    let hit = LAST.with(|l| match &*l.borrow() {
        Some((p, f, s, c, si)) if p == positions && f == inv_freq && *s == scaling.to_bits() => {
            Some((c.clone(), si.clone()))
        }
        _ => None,
    });
    if let Some(t) = hit {
        return t;
    }
    let (cos, sin) = compute_tables(positions, inv_freq, scaling);
    LAST.with(|l| {
        *l.borrow_mut() =
            Some((positions.to_vec(), inv_freq.to_vec(), scaling.to_bits(), cos.clone(), sin.clone()))
    });
    (cos, sin)
}

fn compute_tables(positions: &[usize], inv_freq: &[f32], scaling: f32) -> (Vec<f32>, Vec<f32>) {
    let half = inv_freq.len();
    let mut cos = Vec::with_capacity(positions.len() * half);
    let mut sin = Vec::with_capacity(positions.len() * half);
    for &p in positions {
        for &f in inv_freq {
            let angle = (p as f32 * f) as f64;
            cos.push(angle.cos() as f32 * scaling);
            sin.push(angle.sin() as f32 * scaling);
        }
    }
    (cos, sin)
}

/// Rotate `x` `[t, heads * head_dim]` in place with tables from `rope_tables`.
pub fn apply_rope(x: &mut [f32], heads: usize, head_dim: usize, cos: &[f32], sin: &[f32]) -> Result<()> {
    let _t = super::cpu::prof::scope(|| "apply_rope".to_string());
    let width = heads * head_dim;
    if width == 0 || !x.len().is_multiple_of(width) {
        return Err(Error::shape("apply_rope", format!("{} elements, row width {width}", x.len())));
    }
    let t = x.len() / width;
    let half = cos.len() / t.max(1);
    if cos.len() != t * half || 2 * half > head_dim {
        return Err(Error::shape(
            "apply_rope",
            format!("tables for {} rows, x has {t}", cos.len() / half.max(1)),
        ));
    }
    for (ti, row) in x.chunks_exact_mut(width).enumerate() {
        let (c, s) = (&cos[ti * half..(ti + 1) * half], &sin[ti * half..(ti + 1) * half]);
        for head in row.chunks_exact_mut(head_dim) {
            for i in 0..half {
                let (x1, x2) = (head[i], head[i + half]);
                head[i] = x1 * c[i] - x2 * s[i];
                head[i + half] = x2 * c[i] + x1 * s[i];
            }
        }
    }
    Ok(())
}
