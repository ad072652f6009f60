//! Portable scalar kernels (any architecture): the fallback tier of `super`'s dispatchers, and
//! the dot product other scalar kernels use.

// Register arrays are indexed by const loop counters on purpose (they unroll into registers).
#![allow(clippy::needless_range_loop)]

/// Dot product with 8 partial sums (vectorizable without reassociation).
#[inline]
pub fn dot(a: &[f32], b: &[f32]) -> f32 {
    let mut acc = [0f32; 8];
    let (ca, cb) = (a.chunks_exact(8), b.chunks_exact(8));
    let (ra, rb) = (ca.remainder(), cb.remainder());
    for (x, y) in ca.zip(cb) {
        for i in 0..8 {
            acc[i] += x[i] * y[i];
        }
    }
    let mut s = (acc[0] + acc[4]) + (acc[1] + acc[5]) + ((acc[2] + acc[6]) + (acc[3] + acc[7]));
    for (x, y) in ra.iter().zip(rb) {
        s += x * y;
    }
    s
}

/// `out[i] = w[i] * (x[i] * r)`, over the shortest of the three slices.
pub fn scale_mul(out: &mut [f32], x: &[f32], w: &[f32], r: f32) {
    for ((o, v), g) in out.iter_mut().zip(x).zip(w) {
        *o = g * (v * r);
    }
}

/// `x[i] = exp(x[i] - max)` (libm `exp`), returning the sum of the results.
pub fn exp_shift_sum(x: &mut [f32], max: f32) -> f32 {
    let mut s = 0.0;
    for v in x.iter_mut() {
        *v = (*v - max).exp();
        s += *v;
    }
    s
}

/// `out[i] = silu(g[i]) * u[i]` (libm `exp`), over the shortest of the three slices.
pub fn silu_mul(out: &mut [f32], g: &[f32], u: &[f32]) {
    for ((o, &a), &b) in out.iter_mut().zip(g).zip(u) {
        *o = a / (1.0 + (-a).exp()) * b;
    }
}
