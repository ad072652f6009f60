// Skinny GEMM for decode: y[m, n] = x[m, k] @ w[n, k]^T with m <= 8. Memory-bound on w, so:
// one warp per output row, 16-byte weight loads (L1 bypassed, 256 B fetched into L2 per request),
// 4 loads in flight per lane, each weight element read once for all m rows of x; x staged in
// shared memory once per block when it fits (48 KB); f32 accumulation, warp-shuffle reduction.
// Measured on the H100 (kernels/examples/gemv_sweep.rs, docs/perf-notes.md): x read from global
// per weight chunk and plain __ldg weight loads held the 8B shapes at 1.7-1.8 TB/s (o, qkv, down).

// ---- kernels
// (unpack: 16 bytes -> floats, in common.cuh)

// U = weight chunks in flight per lane: U 16-byte loads are issued before any is used, so a warp
// has 32 * U * 16 bytes outstanding. U = 2 / 8 / 16 measured no better (8 and 16: fewer warps
// resident), so U is fixed at 4.
// Weight load: read-only path; HINT = 1 adds "don't keep in L1, fetch 256 B into L2" (sweep).
template <int HINT>
__device__ __forceinline__ uint4 ldw(const uint4* p) {
    if (HINT == 0) return __ldg(p);
    uint4 r;
    asm volatile("ld.global.nc.L1::no_allocate.L2::256B.v4.u32 {%0,%1,%2,%3}, [%4];"
                 : "=r"(r.x), "=r"(r.y), "=r"(r.z), "=r"(r.w) : "l"(p));
    return r;
}

// Weights do not depend on the previous kernel: before pdl_start() waits for it, each lane asks
// L2 for the first 4 of its row's 16-byte chunks (the first 2 KB of the row per warp).
template <typename T>
__device__ __forceinline__ void prefetch_row(const T* w_row, int k, int lane) {
    int kv = k / (16 / sizeof(T));
    const uint4* wr = (const uint4*)w_row;
#pragma unroll
    for (int u = 0; u < 4; u++) {
        int c = lane + 32 * u;
        if (c < kv) asm volatile("prefetch.global.L2 [%0];" :: "l"(wr + c));
    }
}

// x rows for the dot products: staged in shared memory once per block (XS: m * k * sizeof(T)
// bytes of dynamic shared memory), or read from global memory (16-byte aligned, host-checked).
template <typename T, bool XS>
__device__ __forceinline__ const T* stage_x(const T* x, int m, int k) {
    extern __shared__ __align__(16) unsigned char xs_smem[];
    if (!XS) return x;
    constexpr int V = 16 / sizeof(T);
    const uint4* xv = (const uint4*)x;
    for (int i = threadIdx.x; i < m * k / V; i += blockDim.x) ((uint4*)xs_smem)[i] = __ldg(xv + i);
    __syncthreads();
    return (const T*)xs_smem;
}

// The GEMV's input normalized on the fly (a decoder layer's input / post-attention RMSNorm fused
// into the projection that follows it): staged row i = rms_norm(x[i] (+ res[i])) * nw, computed
// by every block from the L2-resident rows; block 0 also writes x + res to `sum`, the new residual
// stream. The rows go through shared memory twice (raw sum, then normalized in place) so no
// per-thread row cache raises the GEMV's register count. Same rounding as norm.cu's kernels.
template <typename T>
__device__ __forceinline__ const T* stage_x_rms(const T* x, const T* res, const float* nw, float eps, T* sum, int m, int k) {
    extern __shared__ __align__(16) unsigned char xs_smem[];
    constexpr int V = Vec<T>::N;
    uint4* xs = (uint4*)xs_smem;
    const int kc = k / V;
    const bool write_sum = blockIdx.x == 0 && sum;
    for (int i = 0; i < m; i++) {
        float ss = 0.f;
        for (int c = threadIdx.x; c < kc; c += blockDim.x) {
            long o = (long)i * kc + c;
            float v[V];
            unpack(((const uint4*)x)[o], v, (const T*)nullptr);
            if (res) {
                float r[V];
                unpack(((const uint4*)res)[o], r, (const T*)nullptr);
#pragma unroll
                for (int e = 0; e < V; e++) v[e] = to_f(from_f<T>(v[e] + r[e]));
            }
            uint4 p = pack(v, (const T*)nullptr);
            xs[o] = p;
            if (write_sum) ((uint4*)sum)[o] = p;
#pragma unroll
            for (int e = 0; e < V; e++) ss += v[e] * v[e];
        }
        const float r = rsqrtf(block_sum(ss) / k + eps);
        for (int c = threadIdx.x; c < kc; c += blockDim.x) {
            long o = (long)i * kc + c;
            float v[V], wv[V];
            unpack(xs[o], v, (const T*)nullptr);
#pragma unroll
            for (int e = 0; e < V; e += 4) *(float4*)(wv + e) = __ldg((const float4*)(nw + c * V + e));
#pragma unroll
            for (int e = 0; e < V; e++) v[e] = wv[e] * (v[e] * r);
            xs[o] = pack(v, (const T*)nullptr);
        }
    }
    __syncthreads();
    return (const T*)xs;
}

// acc[i] += this lane's share of dot(x[i], w_row) for i < m. Lane l reads 16-byte chunks
// l, l + 32, ...; GEMV_U of them are issued before any is used.
template <typename T, int HINT, bool XS, int GEMV_U = 4>
__device__ __forceinline__ void row_dot(const T* xs, const T* w_row, int m, int k, int lane, float* acc) {
    constexpr int V = 16 / sizeof(T);   // elements per 16-byte load
    const uint4* wr = (const uint4*)w_row;
    int kv = k / V;
    for (int c0 = lane; c0 < kv; c0 += 32 * GEMV_U) {
        uint4 wv[GEMV_U];
#pragma unroll
        for (int u = 0; u < GEMV_U; u++) {
            int c = c0 + 32 * u;
            wv[u] = c < kv ? ldw<HINT>(wr + c) : make_uint4(0u, 0u, 0u, 0u);
        }
#pragma unroll
        for (int u = 0; u < GEMV_U; u++) {
            int c = c0 + 32 * u;
            if (c >= kv) break;
            float wf[V];
            unpack(wv[u], wf, (const T*)nullptr);
#pragma unroll
            for (int i = 0; i < 8; i++) {
                if (i < m) {
                    const uint4* xr = (const uint4*)(xs + (long)i * k) + c;
                    float xf[V];
                    unpack(XS ? *xr : __ldg(xr), xf, (const T*)nullptr);
                    float s = 0.f;
#pragma unroll
                    for (int j = 0; j < V; j++) s += wf[j] * xf[j];
                    acc[i] += s;
                }
            }
        }
    }
}

// The GEMV's input: x itself (XM 0: read from global, 1: staged in shared memory), or (XM 2)
// rms_norm(x + res) * nw staged in shared memory, with x + res written to sum (stage_x_rms).
enum { XM_GLOBAL = 0, XM_SMEM = 1, XM_RMS = 2 };
template <typename T> struct XIn {
    const T* x;
    const T* res;
    const float* nw;
    float eps;
    T* sum;
};
template <typename T, int XM>
__device__ __forceinline__ const T* stage_in(const XIn<T>& in, int m, int k) {
    if (XM == XM_RMS) return stage_x_rms<T>(in.x, in.res, in.nw, in.eps, in.sum, m, k);
    return stage_x<T, XM == XM_SMEM>(in.x, m, k);
}

// y[i, row] = dot(x[i], w[row]) for i < m: this warp's output row.
template <typename T, typename O, int HINT, bool XS>
__device__ __forceinline__ void gemv_row(const T* xs, const T* w, O* y, int row, int m, int n, int k, int lane) {
    float acc[8];
#pragma unroll
    for (int i = 0; i < 8; i++) acc[i] = 0.f;
    row_dot<T, HINT, XS>(xs, w + (long)row * k, m, k, lane, acc);
#pragma unroll
    for (int i = 0; i < 8; i++) {
        if (i < m) {
            float s = warp_sum(acc[i]);
            if (lane == 0) y[(long)i * n + row] = from_f<O>(s);
        }
    }
}

// y[i, col] = act(dot(x[i], gate[col])) * dot(x[i], up[col]) for i < m (w = [gate; up]).
template <typename T, int HINT, bool XS>
__device__ __forceinline__ void gated_row(const T* xs, const T* w, T* y, int col, int m, int inter, int k, int lane,
                                          int kind) {
    float g[8], u[8];
#pragma unroll
    for (int i = 0; i < 8; i++) g[i] = u[i] = 0.f;
    row_dot<T, HINT, XS>(xs, w + (long)col * k, m, k, lane, g);
    row_dot<T, HINT, XS>(xs, w + ((long)inter + col) * k, m, k, lane, u);
#pragma unroll
    for (int i = 0; i < 8; i++) {
        if (i < m) {
            float gs = to_f(from_f<T>(warp_sum(g[i]))), us = to_f(from_f<T>(warp_sum(u[i])));
            if (lane == 0) y[(long)i * inter + col] = from_f<T>(act(gs, kind) * us);
        }
    }
}

// y[m, n] = x[m, k] @ w[n, k]^T: one warp per output row, or (fused-norm GEMV, launched with a
// smaller grid so the norm is staged once per block) rows row0, row0 + stride, ... (A loop in
// every GEMV cost the plain ones 15% of their bandwidth on the H100: 2.46 -> 2.14 TB/s.)
template <typename T, typename O, int HINT, int XM>
__device__ void gemv_impl(XIn<T> in, const T* w, O* y, int m, int n, int k) {
    constexpr bool XS = XM != XM_GLOBAL;
    int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
    int row0 = blockIdx.x * (blockDim.x >> 5) + warp;
    if (row0 < n) prefetch_row<T>(w + (long)row0 * k, k, lane);
    pdl_start();
    const T* xs = stage_in<T, XM>(in, m, k);
    if (XM != XM_RMS) {
        if (row0 < n) gemv_row<T, O, HINT, XS>(xs, w, y, row0, m, n, k, lane);
        return;
    }
    const int stride = gridDim.x * (blockDim.x >> 5);
    for (int row = row0; row < n; row += stride) {
        if (row + stride < n) prefetch_row<T>(w + (long)(row + stride) * k, k, lane);
        gemv_row<T, O, HINT, XS>(xs, w, y, row, m, n, k, lane);
    }
}

// The gated MLP's first half fused: y[m, inter] = act(x @ gate^T) * (x @ up^T) with
// w = [gate; up] of shape [2 * inter, k]. One warp per output column c reads gate row c and up
// row inter + c. Gate and up are rounded to T before the activation, exactly as the unfused
// GEMV + gated_act pair stores and reloads them, so the result is bit-identical to it.
template <typename T, int HINT, int XM>
__device__ void gemv_gated_impl(XIn<T> in, const T* w, T* y, int m, int inter, int k, int kind) {
    constexpr bool XS = XM != XM_GLOBAL;
    int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
    int col0 = blockIdx.x * (blockDim.x >> 5) + warp;
    if (col0 < inter) prefetch_row<T>(w + (long)col0 * k, k, lane);
    pdl_start();
    const T* xs = stage_in<T, XM>(in, m, k);
    if (XM != XM_RMS) {
        if (col0 < inter) gated_row<T, HINT, XS>(xs, w, y, col0, m, inter, k, lane, kind);
        return;
    }
    const int stride = gridDim.x * (blockDim.x >> 5);
    for (int col = col0; col < inter; col += stride) {
        if (col + stride < inter) prefetch_row<T>(w + (long)(col + stride) * k, k, lane);
        gated_row<T, HINT, XS>(xs, w, y, col, m, inter, k, lane, kind);
    }
}

// ---- launchers (k % (16 / sizeof(T)) == 0, 16-byte aligned w and x: checked by the host).
// The plain names stage x in shared memory (dynamic, m * k * sizeof(T) bytes, <= 48 KB); the _gx
// twins read x from global memory, for larger m * k.
#define GEMV_ENTRY(name, T, O, HINT, XM) \
    extern "C" __global__ void name(const T* x, const T* w, O* y, int m, int n, int k) { \
        gemv_impl<T, O, HINT, XM>(XIn<T>{x, nullptr, nullptr, 0.f, nullptr}, w, y, m, n, k); }
GEMV_ENTRY(gemv_f32, float, float, 1, XM_SMEM)
GEMV_ENTRY(gemv_f32_gx, float, float, 1, XM_GLOBAL)
GEMV_ENTRY(gemv_bf16, bf16, bf16, 1, XM_SMEM)
GEMV_ENTRY(gemv_bf16_gx, bf16, bf16, 1, XM_GLOBAL)
// bf16 operands, f32 output (row-parallel partial sums kept in f32 until the all-reduce)
GEMV_ENTRY(gemv_bf16_f32out, bf16, float, 1, XM_SMEM)
GEMV_ENTRY(gemv_bf16_f32out_gx, bf16, float, 1, XM_GLOBAL)
#define GEMV_GATED_ENTRY(name, T, XM) \
    extern "C" __global__ void name(const T* x, const T* w, T* y, int m, int inter, int k, int kind) { \
        gemv_gated_impl<T, 1, XM>(XIn<T>{x, nullptr, nullptr, 0.f, nullptr}, w, y, m, inter, k, kind); }
GEMV_GATED_ENTRY(gemv_gated_f32, float, XM_SMEM)
GEMV_GATED_ENTRY(gemv_gated_f32_gx, float, XM_GLOBAL)
GEMV_GATED_ENTRY(gemv_gated_bf16, bf16, XM_SMEM)
GEMV_GATED_ENTRY(gemv_gated_bf16_gx, bf16, XM_GLOBAL)
// The RMSNorm in front fused (stage_x_rms): y = rms_norm(x + res) @ w^T, sum = x + res (res and
// sum may be null: no pending residual add). x staged in shared memory (m * k * sizeof(T) <= 48 KB).
#define GEMV_RMS_ENTRY(name, T) \
    extern "C" __global__ void name(const T* x, const T* res, const float* nw, float eps, T* sum, const T* w, T* y, \
                                    int m, int n, int k) { \
        gemv_impl<T, T, 1, XM_RMS>(XIn<T>{x, res, nw, eps, sum}, w, y, m, n, k); }
GEMV_RMS_ENTRY(gemv_rms_f32, float)
GEMV_RMS_ENTRY(gemv_rms_bf16, bf16)
#define GEMV_GATED_RMS_ENTRY(name, T) \
    extern "C" __global__ void name(const T* x, const T* res, const float* nw, float eps, T* sum, const T* w, T* y, \
                                    int m, int inter, int k, int kind) { \
        gemv_gated_impl<T, 1, XM_RMS>(XIn<T>{x, res, nw, eps, sum}, w, y, m, inter, k, kind); }
GEMV_GATED_RMS_ENTRY(gemv_gated_rms_f32, float)
GEMV_GATED_RMS_ENTRY(gemv_gated_rms_bf16, bf16)
// the sweep's baselines: neither change (the kernel before 2026-11-28), and each one alone
GEMV_ENTRY(gemv_bf16_base, bf16, bf16, 0, XM_GLOBAL)
GEMV_ENTRY(gemv_bf16_l2, bf16, bf16, 1, XM_GLOBAL)
GEMV_ENTRY(gemv_bf16_xs, bf16, bf16, 0, XM_SMEM)

// Read-bandwidth probes for the sweep (same grid as the GEMV, no arithmetic): the weight rows
// read in the GEMV's order (one warp per row, 4 x 16 B in flight per lane), and each block's rows
// read as one linear region (consecutive lanes of the block on consecutive 16 B). y gets a
// data-dependent value so nothing is optimized away.
extern "C" __global__ void read_rows_bf16(const bf16* x, const bf16* w, bf16* y, int m, int n, int k) {
    int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
    int row = blockIdx.x * (blockDim.x >> 5) + warp;
    if (row >= n) return;
    const uint4* wr = (const uint4*)(w + (long)row * k);
    int kv = k / 8;
    unsigned int a = 0;
    for (int c0 = lane; c0 < kv; c0 += 128) {
        uint4 v[4];
#pragma unroll
        for (int u = 0; u < 4; u++) v[u] = c0 + 32 * u < kv ? __ldg(wr + c0 + 32 * u) : make_uint4(0u, 0u, 0u, 0u);
#pragma unroll
        for (int u = 0; u < 4; u++) a ^= v[u].x ^ v[u].y ^ v[u].z ^ v[u].w;
    }
    for (int o = 16; o > 0; o >>= 1) a ^= __shfl_xor_sync(0xffffffffu, a, o);
    if (lane == 0) y[row].x = (unsigned short)a;
}
extern "C" __global__ void read_lin_bf16(const bf16* x, const bf16* w, bf16* y, int m, int n, int k) {
    int rows = blockDim.x >> 5;
    long first = (long)blockIdx.x * rows;
    int nr = (int)min((long)rows, (long)n - first);
    long total = (long)nr * k / 8;
    const uint4* base = (const uint4*)(w + first * k);
    unsigned int a = 0;
    for (long c0 = threadIdx.x; c0 < total; c0 += 4L * blockDim.x) {
        uint4 v[4];
#pragma unroll
        for (int u = 0; u < 4; u++) {
            long c = c0 + (long)u * blockDim.x;
            v[u] = c < total ? __ldg(base + c) : make_uint4(0u, 0u, 0u, 0u);
        }
#pragma unroll
        for (int u = 0; u < 4; u++) a ^= v[u].x ^ v[u].y ^ v[u].z ^ v[u].w;
    }
    a = (unsigned int)block_sum((float)(a & 0xff));
    if (threadIdx.x == 0) y[blockIdx.x].x = (unsigned short)a;
}
