// W4A16 decode GEMV for group-quantized INT4 weights (AWQ / GPTQ converted on the host by
// kernels/src/quant_ref/int4.rs): y[m, n] = x[m, k] @ W[n, k]^T, bf16 x and y, m <= 8.
//
// Engine layout (the only one; AWQ's and GPTQ's are repacked into it):
// - q: u32 [n, k / 8]. Word j of row r holds W[r, 8j .. 8j + 8): element 8j + i in bits
//   4i .. 4i + 3 (lowest nibble first, no interleave), an unsigned code 0..15;
// - s: f16 or bf16 [n, k / G] (entry point suffix _f16s / _bf16s), G = 1 << gshift >= 32;
// - z: u8 [n, k / G], zero points 0..15;
// - W[r, c] = (code(r, c) - z[r, c / G]) * s[r, c / G].
//
// Built like gemv.cu: one warp per output row, 16-byte weight loads (32 weights = 4 words, all
// in one group since G >= 32), INT4_U of them in flight per lane, x staged in shared memory when
// it fits, PDL. A code becomes a float without a conversion instruction: (code | 0x4b000000) is
// the float 2^23 + code, and subtracting 2^23 + z leaves code - z exactly. Each 32-weight chunk's
// partial sum is scaled once: acc = fma(sum((code - z) * x), s, acc).
//
// Launch (host-checked): k % G == 0, q and x 16-byte aligned, grid ceil(n / warps), 32 * warps
// threads, dynamic shared memory m * k * 2 bytes for the staging entry points.

#define INT4_U 4
struct f16s { unsigned short x; };
__device__ __forceinline__ float to_f(f16s v) {
    float f;
    asm("cvt.f32.f16 %0, %1;" : "=f"(f) : "h"(v.x));
    return f;
}

__device__ __forceinline__ uint4 ldw_int4(const uint4* p) {
    uint4 r;
    asm volatile("ld.global.nc.L1::no_allocate.L2::256B.v4.u32 {%0,%1,%2,%3}, [%4];"
                 : "=r"(r.x), "=r"(r.y), "=r"(r.z), "=r"(r.w) : "l"(p));
    return r;
}

__device__ __forceinline__ void prefetch_row_int4(const unsigned int* q_row, int k, int lane) {
    const uint4* wr = (const uint4*)q_row;
    int kv = k >> 5;
#pragma unroll
    for (int u = 0; u < INT4_U; u++) {
        int c = lane + 32 * u;
        if (c < kv) asm volatile("prefetch.global.L2 [%0];" :: "l"(wr + c));
    }
}

template <bool XS>
__device__ __forceinline__ const bf16* stage_x_int4(const bf16* x, int m, int k) {
    extern __shared__ __align__(16) unsigned char xs_int4_smem[];
    if (!XS) return x;
    const uint4* xv = (const uint4*)x;
    for (int i = threadIdx.x; i < m * k / 8; i += blockDim.x) ((uint4*)xs_int4_smem)[i] = __ldg(xv + i);
    __syncthreads();
    return (const bf16*)xs_int4_smem;
}

// 8 codes of one word minus the zero point (zf = 2^23 + z), as floats.
__device__ __forceinline__ void int4x8(unsigned int q, float zf, float* o) {
#pragma unroll
    for (int i = 0; i < 8; i++) o[i] = __uint_as_float(((q >> (4 * i)) & 0xfu) | 0x4b000000u) - zf;
}

// acc[i] += this lane's share of dot(x[i], W[row]). Chunk c = k-elements 32c .. 32c + 31, in
// group (32c) >> gshift.
template <typename S, bool XS>
__device__ __forceinline__ void row_dot_int4(const bf16* xs, const unsigned int* q_row, const S* s_row,
                                             const unsigned char* z_row, int m, int k, int gshift, int lane,
                                             float* acc) {
    const uint4* wr = (const uint4*)q_row;
    const int kv = k >> 5;
    for (int c0 = lane; c0 < kv; c0 += 32 * INT4_U) {
        uint4 wv[INT4_U];
#pragma unroll
        for (int u = 0; u < INT4_U; u++) {
            int c = c0 + 32 * u;
            wv[u] = c < kv ? ldw_int4(wr + c) : make_uint4(0u, 0u, 0u, 0u);
        }
#pragma unroll
        for (int u = 0; u < INT4_U; u++) {
            int c = c0 + 32 * u;
            if (c >= kv) break;
            const int g = (c << 5) >> gshift;
            const float sc = to_f(s_row[g]);
            const float zf = 8388608.f + (float)z_row[g];
            float wf[32];
            int4x8(wv[u].x, zf, wf);
            int4x8(wv[u].y, zf, wf + 8);
            int4x8(wv[u].z, zf, wf + 16);
            int4x8(wv[u].w, zf, wf + 24);
#pragma unroll
            for (int i = 0; i < 8; i++) {
                if (i < m) {
                    const uint4* xr = (const uint4*)(xs + (long)i * k) + 4 * c;
                    float s = 0.f;
#pragma unroll
                    for (int h = 0; h < 4; h++) {
                        float xf[8];
                        unpack(XS ? xr[h] : __ldg(xr + h), xf, (const bf16*)nullptr);
#pragma unroll
                        for (int j = 0; j < 8; j++) s = fmaf(wf[8 * h + j], xf[j], s);
                    }
                    acc[i] = fmaf(s, sc, acc[i]);
                }
            }
        }
    }
}

template <typename S, bool XS>
__device__ void gemv_int4_impl(const bf16* x, const unsigned int* q, const S* s, const unsigned char* z, bf16* y,
                               int m, int n, int k, int gshift) {
    int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
    int row = blockIdx.x * (blockDim.x >> 5) + warp;
    const unsigned int* q_row = q + (long)row * (k >> 3);
    if (row < n) prefetch_row_int4(q_row, k, lane);
    pdl_start();
    const bf16* xs = stage_x_int4<XS>(x, m, k);
    if (row >= n) return;
    const long groups = k >> gshift;
    float acc[8];
#pragma unroll
    for (int i = 0; i < 8; i++) acc[i] = 0.f;
    row_dot_int4<S, XS>(xs, q_row, s + row * groups, z + row * groups, m, k, gshift, lane, acc);
#pragma unroll
    for (int i = 0; i < 8; i++) {
        if (i < m) {
            float v = warp_sum(acc[i]);
            if (lane == 0) y[(long)i * n + row] = from_f<bf16>(v);
        }
    }
}

// ---- launchers (the plain names stage x in shared memory; the _gx twins read it from global)
#define GEMV_INT4_ENTRY(name, S, XS)                                                                      \
    extern "C" __global__ void name(const bf16* x, const unsigned int* q, const S* s, const unsigned char* z, \
                                    bf16* y, int m, int n, int k, int gshift) {                           \
        gemv_int4_impl<S, XS>(x, q, s, z, y, m, n, k, gshift);                                            \
    }
GEMV_INT4_ENTRY(gemv_int4_f16s, f16s, true)
GEMV_INT4_ENTRY(gemv_int4_f16s_gx, f16s, false)
GEMV_INT4_ENTRY(gemv_int4_bf16s, bf16, true)
GEMV_INT4_ENTRY(gemv_int4_bf16s_gx, bf16, false)

// ---- W[n, k] -> bf16 (prefill: dequantize, then the bf16 GEMM). One thread per word (8
// weights, grid-stride); group g (any multiple of 8 dividing k).
template <typename S>
__device__ __forceinline__ void int4_dequant_impl(const unsigned int* q, const S* s, const unsigned char* z,
                                                  bf16* out, int n, int k, int g) {
    long wpr = k >> 3;
    for (long i = (long)blockIdx.x * blockDim.x + threadIdx.x; i < (long)n * wpr; i += (long)gridDim.x * blockDim.x) {
        long r = i / wpr;
        int c0 = (int)(i - r * wpr) * 8;
        long gi = r * (k / g) + c0 / g;
        float sc = to_f(s[gi]), zf = (float)z[gi];
        unsigned int w = q[i];
#pragma unroll
        for (int j = 0; j < 8; j++) out[r * k + c0 + j] = from_f<bf16>(((float)((w >> (4 * j)) & 0xfu) - zf) * sc);
    }
}
extern "C" __global__ void int4_dequant_f16s(const unsigned int* q, const f16s* s, const unsigned char* z, bf16* out,
                                             int n, int k, int g) {
    int4_dequant_impl<f16s>(q, s, z, out, n, k, g);
}
extern "C" __global__ void int4_dequant_bf16s(const unsigned int* q, const bf16* s, const unsigned char* z, bf16* out,
                                              int n, int k, int g) {
    int4_dequant_impl<bf16>(q, s, z, out, n, k, g);
}
