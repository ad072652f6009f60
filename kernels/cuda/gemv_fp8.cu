// W8A16 decode GEMV: y[m, n] = x[m, k] @ W[n, k]^T with bf16 x and y, W in FP8 E4M3 (one byte
// per weight, torch.float8_e4m3fn) and f32 scales, m <= 8. Built like gemv.cu: one warp per
// output row, 16-byte weight loads (16 weights each; L1 bypassed, 256 B fetched into L2),
// FP8_U loads in flight per lane, x staged in shared memory when it fits, f32 accumulation,
// warp-shuffle reduction, PDL (the weights' first chunks are prefetched before the wait).
//
// Scale layouts (kernels/src/quant_ref.rs ScaleLayout), chosen by the entry point:
// - _row: scale[row * ss] (ss = 1: per output channel, scale[n]; ss = 0: per tensor, scale[0]);
// - _blk: 128 x 128 blocks, scale[(row / 128) * ss + kc / 128] with ss = ceil(k / 128)
//   (DeepSeek-V3 / Qwen3-FP8 weight_scale_inv).
//
// Dequantization in registers without conversion instructions: an E4M3 byte's 7 exponent and
// mantissa bits, moved into a bf16's exponent low bits and mantissa high bits, make a bf16 of
// value e4m3 * 2^-120 (subnormals included), and bf16 -> f32 is a shift. The 2^120 is folded
// into each 16-weight chunk's partial sum (acc = fma(chunk_sum, 2^120 * block scale, acc)), so
// acc is in true units. Products below 2^-126 (|w * x| < 2^-6 before scaling) are f32
// subnormals, exact to 2^-149 * 2^120 = 2^-29 absolute, far below bf16 output precision for any
// dot product that is not itself ~1e-6. The NaN codes (0x7f / 0xff) decode to +-480, not NaN:
// checkpoints hold none.
//
// Launch (host-checked): k % 16 == 0, W and x 16-byte aligned, grid ceil(n / warps), 32 * warps
// threads, dynamic shared memory m * k * 2 bytes for the staging entry points.

#define FP8_U 4
#define TWO_POW_120 __uint_as_float(0x7b800000u)

// Weight load: read-only, not kept in L1, 256 B fetched into L2 (gemv.cu's ldw<1>).
__device__ __forceinline__ uint4 ldw_fp8(const uint4* p) {
    uint4 r;
    asm volatile("ld.global.nc.L1::no_allocate.L2::256B.v4.u32 {%0,%1,%2,%3}, [%4];"
                 : "=r"(r.x), "=r"(r.y), "=r"(r.z), "=r"(r.w) : "l"(p));
    return r;
}

// fp8x4_raw (4 E4M3 bytes -> 4 floats of value e4m3 * 2^-120): common.cuh.

// Before the PDL wait: each lane asks L2 for its first FP8_U 16-byte chunks of the row.
__device__ __forceinline__ void prefetch_row_fp8(const unsigned char* w_row, int k, int lane) {
    const uint4* wr = (const uint4*)w_row;
    int kv = k >> 4;
#pragma unroll
    for (int u = 0; u < FP8_U; u++) {
        int c = lane + 32 * u;
        if (c < kv) asm volatile("prefetch.global.L2 [%0];" :: "l"(wr + c));
    }
}

// x rows staged in shared memory once per block (XS) or read from global memory.
template <bool XS>
__device__ __forceinline__ const bf16* stage_x_fp8(const bf16* x, int m, int k) {
    extern __shared__ __align__(16) unsigned char xs_fp8_smem[];
    if (!XS) return x;
    const uint4* xv = (const uint4*)x;
    for (int i = threadIdx.x; i < m * k / 8; i += blockDim.x) ((uint4*)xs_fp8_smem)[i] = __ldg(xv + i);
    __syncthreads();
    return (const bf16*)xs_fp8_smem;
}

// acc[i] += this lane's share of dot(x[i], W[row]) for i < m, in true units. Lane l reads the
// 16-byte chunks l, l + 32, ... (chunk c = k-elements 16c .. 16c + 15); FP8_U in flight.
// BLK: srow points at the row's 128 x 128 block scales (chunk c is in k-block c / 8).
template <bool BLK, bool XS>
__device__ __forceinline__ void row_dot_fp8(const bf16* xs, const unsigned char* w_row, const float* srow,
                                            int m, int k, int lane, float* acc) {
    const uint4* wr = (const uint4*)w_row;
    const int kv = k >> 4;
    for (int c0 = lane; c0 < kv; c0 += 32 * FP8_U) {
        uint4 wv[FP8_U];
#pragma unroll
        for (int u = 0; u < FP8_U; u++) {
            int c = c0 + 32 * u;
            wv[u] = c < kv ? ldw_fp8(wr + c) : make_uint4(0u, 0u, 0u, 0u);
        }
#pragma unroll
        for (int u = 0; u < FP8_U; u++) {
            int c = c0 + 32 * u;
            if (c >= kv) break;
            const float cs = BLK ? __ldg(srow + (c >> 3)) * TWO_POW_120 : TWO_POW_120;
            float wf[16];
            fp8x4_raw(wv[u].x, wf);
            fp8x4_raw(wv[u].y, wf + 4);
            fp8x4_raw(wv[u].z, wf + 8);
            fp8x4_raw(wv[u].w, wf + 12);
#pragma unroll
            for (int i = 0; i < 8; i++) {
                if (i < m) {
                    const uint4* xr = (const uint4*)(xs + (long)i * k) + 2 * c;
                    float xf[16];
                    unpack(XS ? xr[0] : __ldg(xr), xf, (const bf16*)nullptr);
                    unpack(XS ? xr[1] : __ldg(xr + 1), xf + 8, (const bf16*)nullptr);
                    float s = 0.f;
#pragma unroll
                    for (int j = 0; j < 16; j++) s = fmaf(wf[j], xf[j], s);
                    acc[i] = fmaf(s, cs, acc[i]);
                }
            }
        }
    }
}

// The scale pointer of row `row`: the row's scale (row layout) or its block-scale row.
template <bool BLK>
__device__ __forceinline__ const float* row_scale_ptr(const float* scale, int row, int ss) {
    return BLK ? scale + (long)(row >> 7) * ss : scale + (long)row * ss;
}

template <bool BLK, bool XS>
__device__ void gemv_fp8_impl(const bf16* x, const unsigned char* w, const float* scale, bf16* y, int m, int n,
                              int k, int ss) {
    int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
    int row = blockIdx.x * (blockDim.x >> 5) + warp;
    if (row < n) prefetch_row_fp8(w + (long)row * k, k, lane);
    pdl_start();
    const bf16* xs = stage_x_fp8<XS>(x, m, k);
    if (row >= n) return;
    float acc[8];
#pragma unroll
    for (int i = 0; i < 8; i++) acc[i] = 0.f;
    const float* sp = row_scale_ptr<BLK>(scale, row, ss);
    row_dot_fp8<BLK, XS>(xs, w + (long)row * k, sp, m, k, lane, acc);
    const float rs = BLK ? 1.f : __ldg(sp);
#pragma unroll
    for (int i = 0; i < 8; i++) {
        if (i < m) {
            float s = warp_sum(acc[i]);
            if (lane == 0) y[(long)i * n + row] = from_f<bf16>(s * rs);
        }
    }
}

// Gated MLP first half: y[m, inter] = act(x @ gate^T) * (x @ up^T), W = [gate; up] of shape
// [2 * inter, k] with the scales of that concatenated matrix (block layout: inter % 128 == 0,
// host-checked, so the up rows' blocks are the up matrix's own). Gate and up are rounded to
// bf16 before the activation, as gemv_fp8 + gated_act would store them.
template <bool BLK, bool XS>
__device__ void gemv_fp8_gated_impl(const bf16* x, const unsigned char* w, const float* scale, bf16* y, int m,
                                    int inter, int k, int ss, int kind) {
    int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
    int col = blockIdx.x * (blockDim.x >> 5) + warp;
    if (col < inter) prefetch_row_fp8(w + (long)col * k, k, lane);
    pdl_start();
    const bf16* xs = stage_x_fp8<XS>(x, m, k);
    if (col >= inter) return;
    float g[8], u[8];
#pragma unroll
    for (int i = 0; i < 8; i++) g[i] = u[i] = 0.f;
    const float* sg = row_scale_ptr<BLK>(scale, col, ss);
    const float* su = row_scale_ptr<BLK>(scale, inter + col, ss);
    row_dot_fp8<BLK, XS>(xs, w + (long)col * k, sg, m, k, lane, g);
    row_dot_fp8<BLK, XS>(xs, w + ((long)inter + col) * k, su, m, k, lane, u);
    const float rg = BLK ? 1.f : __ldg(sg), ru = BLK ? 1.f : __ldg(su);
#pragma unroll
    for (int i = 0; i < 8; i++) {
        if (i < m) {
            float gs = to_f(from_f<bf16>(warp_sum(g[i]) * rg)), us = to_f(from_f<bf16>(warp_sum(u[i]) * ru));
            if (lane == 0) y[(long)i * inter + col] = from_f<bf16>(act(gs, kind) * us);
        }
    }
}

// ---- launchers (the plain names stage x in shared memory; the _gx twins read it from global)
#define GEMV_FP8_ENTRY(name, BLK, XS)                                                                     \
    extern "C" __global__ void name(const bf16* x, const unsigned char* w, const float* scale, bf16* y, int m, \
                                    int n, int k, int ss) {                                               \
        gemv_fp8_impl<BLK, XS>(x, w, scale, y, m, n, k, ss);                                              \
    }
GEMV_FP8_ENTRY(gemv_fp8_row, false, true)
GEMV_FP8_ENTRY(gemv_fp8_row_gx, false, false)
GEMV_FP8_ENTRY(gemv_fp8_blk, true, true)
GEMV_FP8_ENTRY(gemv_fp8_blk_gx, true, false)
#define GEMV_FP8_GATED_ENTRY(name, BLK, XS)                                                               \
    extern "C" __global__ void name(const bf16* x, const unsigned char* w, const float* scale, bf16* y, int m, \
                                    int inter, int k, int ss, int kind) {                                 \
        gemv_fp8_gated_impl<BLK, XS>(x, w, scale, y, m, inter, k, ss, kind);                              \
    }
GEMV_FP8_GATED_ENTRY(gemv_fp8_gated_row, false, true)
GEMV_FP8_GATED_ENTRY(gemv_fp8_gated_row_gx, false, false)
GEMV_FP8_GATED_ENTRY(gemv_fp8_gated_blk, true, true)
GEMV_FP8_GATED_ENTRY(gemv_fp8_gated_blk_gx, true, false)
