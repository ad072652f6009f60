// Decode GEMV for weights in ggml's block formats (GGUF files): y[m, n] = x[m, k] @ W[n, k]^T,
// bf16 x and y, m <= 8; and the blocks -> bf16 dequantization prefill runs before the bf16 GEMM.
// CPU twin: kernels/src/quant_ref/ggml.rs.
//
// W is row-major: row r is the k / QK blocks starting at byte r * row_bytes, no padding.
// - Q8_0 (QK 32, 34 bytes): d f16, qs int8[32]; W = d * q. Blocks are 2-byte aligned only
//   (34-byte stride), so they are read as u16s.
// - Q4_K (QK 256, 144 bytes): d f16, dmin f16, scales u8[12] (eight 6-bit scales and mins,
//   ggml's get_scale_min_k4), qs u8[128]. Sub-block j (32 values) reads qs[32 (j / 2) ..][0..32],
//   low nibbles for even j, high for odd; W = d * sc_j * q - dmin * m_j. The stride (144) is a
//   multiple of 16, so with a 16-byte aligned W every qs chunk is two aligned uint4 loads.
//
// One warp per output row; a lane takes one 32-value unit (a Q8_0 block, a Q4_K sub-block) at
// a time, units lane, lane + 32, ... of the row, so every lane has work even when a row holds
// only a few super-blocks. For each unit and each x row: partial = sum(q * x) (and sum(x) for
// Q4_K's min), then acc = fma(partial, scale, acc). x is staged in shared memory when m * k bf16
// fit (the plain entry points; the _gx twins read global memory). Launch (host-checked):
// k % QK == 0, x 16-byte aligned (and W for Q4_K), grid ceil(n / warps), 32 * warps threads.

__device__ __forceinline__ float ggml_half(unsigned short v) {
    float f;
    asm("cvt.f32.f16 %0, %1;" : "=f"(f) : "h"(v));
    return f;
}

template <bool XS>
__device__ __forceinline__ const bf16* stage_x_ggml(const bf16* x, int m, int k) {
    extern __shared__ __align__(16) unsigned char xs_ggml_smem[];
    if (!XS) return x;
    const uint4* xv = (const uint4*)x;
    for (int i = threadIdx.x; i < m * k / 8; i += blockDim.x) ((uint4*)xs_ggml_smem)[i] = __ldg(xv + i);
    __syncthreads();
    return (const bf16*)xs_ggml_smem;
}

// The 32 x values of unit u (elements 32u .. 32u + 31) of x row i, as floats.
template <bool XS>
__device__ __forceinline__ void load_x32(const bf16* xs, int k, int i, int u, float* xf) {
    const uint4* xr = (const uint4*)(xs + (long)i * k) + 4 * u;
#pragma unroll
    for (int h = 0; h < 4; h++) unpack(XS ? xr[h] : __ldg(xr + h), xf + 8 * h, (const bf16*)nullptr);
}

// ---- Q8_0
template <bool XS>
__device__ void gemv_q8_0_impl(const bf16* x, const unsigned char* w, bf16* y, int m, int n, int k) {
    const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
    const int row = blockIdx.x * (blockDim.x >> 5) + warp;
    pdl_start();
    const bf16* xs = stage_x_ggml<XS>(x, m, k);
    if (row >= n) return;
    const int nb = k >> 5;
    const unsigned char* wr = w + (long)row * nb * 34;
    float acc[8];
#pragma unroll
    for (int i = 0; i < 8; i++) acc[i] = 0.f;
    for (int b = lane; b < nb; b += 32) {
        const unsigned short* blk = (const unsigned short*)(wr + (long)b * 34);
        const float d = ggml_half(__ldg(blk));
        float q[32];
#pragma unroll
        for (int j = 0; j < 16; j++) {
            const unsigned short v = __ldg(blk + 1 + j);
            q[2 * j] = (float)(signed char)(v & 0xff);
            q[2 * j + 1] = (float)(signed char)(v >> 8);
        }
#pragma unroll
        for (int i = 0; i < 8; i++) {
            if (i < m) {
                float xf[32];
                load_x32<XS>(xs, k, i, b, xf);
                float s = 0.f;
#pragma unroll
                for (int j = 0; j < 32; j++) s = fmaf(q[j], xf[j], s);
                acc[i] = fmaf(s, d, acc[i]);
            }
        }
    }
#pragma unroll
    for (int i = 0; i < 8; i++) {
        if (i < m) {
            const float v = warp_sum(acc[i]);
            if (lane == 0) y[(long)i * n + row] = from_f<bf16>(v);
        }
    }
}

// ---- Q4_K
// Scale and min of sub-block j (0..8) from the 12 packed bytes (ggml's get_scale_min_k4).
__device__ __forceinline__ void scale_min_k4(int j, const unsigned char* s, float* sc, float* mn) {
    unsigned int a, b;
    if (j < 4) {
        a = s[j] & 63;
        b = s[j + 4] & 63;
    } else {
        a = (s[j + 4] & 0x0f) | ((s[j - 4] >> 6) << 4);
        b = (s[j + 4] >> 4) | ((s[j] >> 6) << 4);
    }
    *sc = (float)a;
    *mn = (float)b;
}

template <bool XS>
__device__ void gemv_q4_k_impl(const bf16* x, const unsigned char* w, bf16* y, int m, int n, int k) {
    const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
    const int row = blockIdx.x * (blockDim.x >> 5) + warp;
    pdl_start();
    const bf16* xs = stage_x_ggml<XS>(x, m, k);
    if (row >= n) return;
    const int nsb = k >> 8;
    const unsigned char* wr = w + (long)row * nsb * 144;
    float acc[8];
#pragma unroll
    for (int i = 0; i < 8; i++) acc[i] = 0.f;
    for (int u = lane; u < nsb * 8; u += 32) {
        const int sb = u >> 3, j = u & 7;
        const unsigned char* blk = wr + (long)sb * 144;
        const unsigned short* hd = (const unsigned short*)blk;
        const float d = ggml_half(__ldg(hd)), dmin = ggml_half(__ldg(hd + 1));
        unsigned char sm[12];
#pragma unroll
        for (int t = 0; t < 12; t++) sm[t] = __ldg(blk + 4 + t);
        float sc, mn;
        scale_min_k4(j, sm, &sc, &mn);
        const float dl = d * sc, ml = dmin * mn;
        const uint4* qv = (const uint4*)(blk + 16 + 32 * (j >> 1));
        const uint4 q0 = __ldg(qv), q1 = __ldg(qv + 1);
        const unsigned int words[8] = {q0.x, q0.y, q0.z, q0.w, q1.x, q1.y, q1.z, q1.w};
        const int shift = (j & 1) * 4;
        float q[32];
#pragma unroll
        for (int t = 0; t < 32; t++) q[t] = (float)((words[t >> 2] >> (8 * (t & 3) + shift)) & 0xfu);
#pragma unroll
        for (int i = 0; i < 8; i++) {
            if (i < m) {
                float xf[32];
                load_x32<XS>(xs, k, i, u, xf);
                float s = 0.f, sx = 0.f;
#pragma unroll
                for (int t = 0; t < 32; t++) {
                    s = fmaf(q[t], xf[t], s);
                    sx += xf[t];
                }
                acc[i] = fmaf(s, dl, acc[i]);
                acc[i] = fmaf(-sx, ml, acc[i]);
            }
        }
    }
#pragma unroll
    for (int i = 0; i < 8; i++) {
        if (i < m) {
            const float v = warp_sum(acc[i]);
            if (lane == 0) y[(long)i * n + row] = from_f<bf16>(v);
        }
    }
}

#define GEMV_GGML_ENTRY(name, impl, XS)                                                              \
    extern "C" __global__ void name(const bf16* x, const unsigned char* w, bf16* y, int m, int n, int k) { \
        impl<XS>(x, w, y, m, n, k);                                                                  \
    }
GEMV_GGML_ENTRY(gemv_q8_0, gemv_q8_0_impl, true)
GEMV_GGML_ENTRY(gemv_q8_0_gx, gemv_q8_0_impl, false)
GEMV_GGML_ENTRY(gemv_q4_k, gemv_q4_k_impl, true)
GEMV_GGML_ENTRY(gemv_q4_k_gx, gemv_q4_k_impl, false)

// ---- blocks -> bf16 [n, k] (prefill). One thread per 32-value unit (grid-stride); units are
// numbered row-major, unit t = (row, u) with u < k / 32.
extern "C" __global__ void ggml_dequant_q8_0(const unsigned char* w, bf16* out, int n, int k) {
    const long units = (long)n * (k >> 5);
    for (long t = (long)blockIdx.x * blockDim.x + threadIdx.x; t < units; t += (long)gridDim.x * blockDim.x) {
        // Q8_0 blocks are exactly the units, in order.
        const unsigned short* blk = (const unsigned short*)(w + t * 34);
        const float d = ggml_half(blk[0]);
        const unsigned char* qs = (const unsigned char*)(blk + 1);
        bf16* o = out + t * 32;
#pragma unroll
        for (int j = 0; j < 32; j++) o[j] = from_f<bf16>(d * (float)(signed char)qs[j]);
    }
}

extern "C" __global__ void ggml_dequant_q4_k(const unsigned char* w, bf16* out, int n, int k) {
    const long units = (long)n * (k >> 5);
    for (long t = (long)blockIdx.x * blockDim.x + threadIdx.x; t < units; t += (long)gridDim.x * blockDim.x) {
        // Super-blocks are consecutive across rows too (k % 256 == 0): unit t is sub-block
        // t % 8 of super-block t / 8.
        const unsigned char* blk = w + (t >> 3) * 144;
        const int j = (int)(t & 7);
        const unsigned short* hd = (const unsigned short*)blk;
        float sc, mn;
        scale_min_k4(j, blk + 4, &sc, &mn);
        const float dl = ggml_half(hd[0]) * sc, ml = ggml_half(hd[1]) * mn;
        const unsigned char* qs = blk + 16 + 32 * (j >> 1);
        const int shift = (j & 1) * 4;
        bf16* o = out + t * 32;
#pragma unroll
        for (int l = 0; l < 32; l++) o[l] = from_f<bf16>(dl * (float)((qs[l] >> shift) & 0xf) - ml);
    }
}
