//! The generic attention task: scores with one dot product per (position, head), softmax, then
//! `P V` as one axpy per (position, head). One body (`task_body!`), instantiated per ISA tier
//! with that tier's `simd` primitives.

use super::super::simd;
use super::Task;

macro_rules! task_body {
    ($name:ident, $($feat:literal)?, $dot:path, $axpy:path, $expsum:path) => {
        /// # Safety
        /// Every pointer in `t` is valid for what the task touches.
        $(#[target_feature(enable = $feat)])?
        pub(super) unsafe fn $name(t: &Task<'_>) {
            // SAFETY: slots come from the checked block table; q/out/scores cover
            // group heads x hd and group x n.
            unsafe {
                let (hd, n) = (t.hd, t.n);
                for jj in 0..n {
                    let kr = t.kc.add(t.slot(t.lo + jj) * t.kvw + t.koff);
                    for g in 0..t.group {
                        let mut d = $dot(t.q.add(g * hd), kr, hd) * t.scale;
                        if let Some(cap) = t.softcap {
                            d = (d / cap).tanh() * cap;
                        }
                        *t.scores.add(g * n + jj) = d;
                    }
                }
                for g in 0..t.group {
                    let row = std::slice::from_raw_parts_mut(t.scores.add(g * n), n);
                    t.softmax(g, row, $expsum);
                    std::ptr::write_bytes(t.out.add(g * hd), 0, hd);
                }
                for jj in 0..n {
                    let vr = t.vc.add(t.slot(t.lo + jj) * t.kvw + t.koff);
                    for g in 0..t.group {
                        $axpy(t.out.add(g * hd), *t.scores.add(g * n + jj), vr, hd);
                    }
                }
            }
        }
    };
}

#[cfg(target_arch = "x86_64")]
task_body!(
    task_avx512,
    "avx512f,avx512bw,avx512vl,fma,f16c",
    simd::avx512::dot,
    simd::avx512::axpy,
    simd::avx512::exp_shift_sum
);
#[cfg(target_arch = "x86_64")]
task_body!(task_avx2, "avx2,fma,f16c", simd::avx2::dot, simd::avx2::axpy, simd::avx2::exp_shift_sum);

/// # Safety
/// Pointers valid for `n` elements.
unsafe fn scalar_dot(a: *const f32, b: *const f32, n: usize) -> f32 {
    // SAFETY: per the contract.
    unsafe { simd::scalar::dot(std::slice::from_raw_parts(a, n), std::slice::from_raw_parts(b, n)) }
}
/// # Safety
/// Pointers valid for `n` elements.
unsafe fn scalar_axpy(y: *mut f32, a: f32, x: *const f32, n: usize) {
    for i in 0..n {
        // SAFETY: per the contract.
        unsafe { *y.add(i) += a * *x.add(i) };
    }
}
/// # Safety
/// `x` valid for `n` elements.
unsafe fn scalar_exp_shift_sum(x: *mut f32, n: usize, max: f32) -> f32 {
    let mut s = 0.0;
    for i in 0..n {
        // SAFETY: per the contract.
        unsafe {
            let e = (*x.add(i) - max).exp();
            *x.add(i) = e;
            s += e;
        }
    }
    s
}
task_body!(task_scalar, , scalar_dot, scalar_axpy, scalar_exp_shift_sum);
