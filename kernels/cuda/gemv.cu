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

// y[m, n] = x[m, k] @ w[n, k]^T: one warp per output row.
template <typename T, typename O, int HINT, bool XS>
__device__ void gemv_impl(const T* x, const T* w, O* y, int m, int n, int k) {
    int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
    int row = blockIdx.x * (blockDim.x >> 5) + warp;
    if (row < n) prefetch_row<T>(w + (long)row * k, k, lane);
    pdl_start();
    const T* xs = stage_x<T, XS>(x, m, k);
    if (row >= n) return;
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

// The gated MLP's first half fused: y[m, inter] = act(x @ gate^T) * (x @ up^T) with
// w = [gate; up] of shape [2 * inter, k]. One warp per output column c reads gate row c and up
// row inter + c. Gate and up are rounded to T before the activation, exactly as the unfused
// GEMV + gated_act pair stores and reloads them, so the result is bit-identical to it.
template <typename T, int HINT, bool XS>
__device__ void gemv_gated_impl(const T* x, const T* w, T* y, int m, int inter, int k, int kind) {
    int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
    int col = blockIdx.x * (blockDim.x >> 5) + warp;
    if (col < inter) prefetch_row<T>(w + (long)col * k, k, lane);
    pdl_start();
    const T* xs = stage_x<T, XS>(x, m, k);
    if (col >= inter) return;
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

// MoE experts: y[p, n] = x[p / xdiv] @ w[ids[p]]^T for every pair p < pairs (w: [experts, n, k];
// xdiv = top-k for the gate/up GEMVs, 1 for down). Block column blockIdx.y serves expert
// e = ids[blockIdx.y] when that pair is e's first (later pairs of e return at once), so the grid
// is row blocks x pairs, not x experts. The block lists e's pairs in shared memory (order does
// not matter: each pair's sum is formed the same way), then each warp reads its weight row once
// per 8 of them. pairs <= MOE_GEMV_MAX_PAIRS; ids < experts (the router's output).
#define MOE_GEMV_MAX_PAIRS 256
template <typename T>
__device__ void gemv_moe_impl(const T* x, const T* w, const int* ids, T* y, int pairs, int n, int k, int xdiv) {
    __shared__ int plist[MOE_GEMV_MAX_PAIRS];
    __shared__ int cnt, dup;
    constexpr int V = 16 / sizeof(T);
    int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
    int row = blockIdx.x * (blockDim.x >> 5) + warp;
    if (threadIdx.x == 0) cnt = dup = 0;
    pdl_start();
    __syncthreads();
    int e = ids[blockIdx.y];
    for (int p = threadIdx.x; p < pairs; p += blockDim.x) {
        int id = ids[p];
        if (id == e && p < (int)blockIdx.y) dup = 1;
        if (id == e) plist[atomicAdd(&cnt, 1)] = p;
    }
    __syncthreads();
    int c = cnt;
    if (dup || row >= n) return;
    const uint4* wr = (const uint4*)(w + ((long)e * n + row) * k);
    int kv = k / V;
    for (int p0 = 0; p0 < c; p0 += 8) {
        int m = min(8, c - p0);
        const uint4* xr[8];
#pragma unroll
        for (int i = 0; i < 8; i++) xr[i] = (const uint4*)(x + (long)(plist[p0 + min(i, m - 1)] / xdiv) * k);
        float acc[8];
#pragma unroll
        for (int i = 0; i < 8; i++) acc[i] = 0.f;
        for (int c0 = lane; c0 < kv; c0 += 128) {
            uint4 wv[4];
#pragma unroll
            for (int u = 0; u < 4; u++) wv[u] = c0 + 32 * u < kv ? ldw<1>(wr + c0 + 32 * u) : make_uint4(0u, 0u, 0u, 0u);
#pragma unroll
            for (int u = 0; u < 4; u++) {
                int cc = c0 + 32 * u;
                if (cc >= kv) break;
                float wf[V];
                unpack(wv[u], wf, (const T*)nullptr);
#pragma unroll
                for (int i = 0; i < 8; i++) {
                    if (i < m) {
                        float xf[V];
                        unpack(__ldg(xr[i] + cc), xf, (const T*)nullptr);
                        float s = 0.f;
#pragma unroll
                        for (int j = 0; j < V; j++) s += wf[j] * xf[j];
                        acc[i] += s;
                    }
                }
            }
        }
#pragma unroll
        for (int i = 0; i < 8; i++) {
            if (i < m) {
                float s = warp_sum(acc[i]);
                if (lane == 0) y[(long)plist[p0 + i] * n + row] = from_f<T>(s);
            }
        }
    }
}

// ---- launchers (k % (16 / sizeof(T)) == 0, 16-byte aligned w and x: checked by the host).
// The plain names stage x in shared memory (dynamic, m * k * sizeof(T) bytes, <= 48 KB); the _gx
// twins read x from global memory, for larger m * k.
#define GEMV_ENTRY(name, T, O, HINT, XS) \
    extern "C" __global__ void name(const T* x, const T* w, O* y, int m, int n, int k) { gemv_impl<T, O, HINT, XS>(x, w, y, m, n, k); }
GEMV_ENTRY(gemv_f32, float, float, 1, true)
GEMV_ENTRY(gemv_f32_gx, float, float, 1, false)
GEMV_ENTRY(gemv_bf16, bf16, bf16, 1, true)
GEMV_ENTRY(gemv_bf16_gx, bf16, bf16, 1, false)
// bf16 operands, f32 output (row-parallel partial sums kept in f32 until the all-reduce)
GEMV_ENTRY(gemv_bf16_f32out, bf16, float, 1, true)
GEMV_ENTRY(gemv_bf16_f32out_gx, bf16, float, 1, false)
#define GEMV_GATED_ENTRY(name, T, XS) \
    extern "C" __global__ void name(const T* x, const T* w, T* y, int m, int inter, int k, int kind) { gemv_gated_impl<T, 1, XS>(x, w, y, m, inter, k, kind); }
GEMV_GATED_ENTRY(gemv_gated_f32, float, true)
GEMV_GATED_ENTRY(gemv_gated_f32_gx, float, false)
GEMV_GATED_ENTRY(gemv_gated_bf16, bf16, true)
GEMV_GATED_ENTRY(gemv_gated_bf16_gx, bf16, false)
#define GEMV_MOE_ENTRY(name, T) \
    extern "C" __global__ void name(const T* x, const T* w, const int* ids, T* y, int pairs, int n, int k, int xdiv) { gemv_moe_impl<T>(x, w, ids, y, pairs, n, k, xdiv); }
GEMV_MOE_ENTRY(gemv_moe_f32, float)
GEMV_MOE_ENTRY(gemv_moe_bf16, bf16)
// the sweep's baselines: neither change (the kernel before 2026-11-28), and each one alone
GEMV_ENTRY(gemv_bf16_base, bf16, bf16, 0, false)
GEMV_ENTRY(gemv_bf16_l2, bf16, bf16, 1, false)
GEMV_ENTRY(gemv_bf16_xs, bf16, bf16, 0, true)

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
