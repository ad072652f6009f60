// Skinny GEMM for decode: y[m, n] = x[m, k] @ w[n, k]^T with m <= 8. Memory-bound on w, so:
// one warp per output row, 16-byte weight loads, several loads in flight, each weight element
// read once for all m rows of x; f32 accumulation, warp-shuffle reduction.

// ---- kernels
__device__ __forceinline__ void unpack(uint4 r, float* o, const bf16*) {
    unsigned int u[4] = {r.x, r.y, r.z, r.w};
#pragma unroll
    for (int i = 0; i < 4; i++) {
        o[2 * i] = __uint_as_float(u[i] << 16);
        o[2 * i + 1] = __uint_as_float(u[i] & 0xffff0000u);
    }
}
__device__ __forceinline__ void unpack(uint4 r, float* o, const float*) {
    o[0] = __uint_as_float(r.x); o[1] = __uint_as_float(r.y); o[2] = __uint_as_float(r.z); o[3] = __uint_as_float(r.w);
}

// U = weight chunks in flight per lane: U 16-byte loads are issued before any is used, so a warp
// has 32 * U * 16 bytes outstanding (Little's law: ~2 KB per warp keeps HBM busy with 8
// warps/block). U = 4 is the default; the _u2 / _u8 entry points exist for the sweep
// (kernels/examples/gemv_sweep.rs).
template <typename T, typename O, int GEMV_U = 4>
__device__ void gemv_impl(const T* x, const T* w, O* y, int m, int n, int k) {
    constexpr int V = 16 / sizeof(T);   // elements per 16-byte load
    int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
    int row = blockIdx.x * (blockDim.x >> 5) + warp;
    if (row >= n) return;
    float acc[8];
#pragma unroll
    for (int i = 0; i < 8; i++) acc[i] = 0.f;
    const uint4* wr = (const uint4*)(w + (long)row * k);
    int kv = k / V;
    for (int c0 = lane; c0 < kv; c0 += 32 * GEMV_U) {
        uint4 wv[GEMV_U];
#pragma unroll
        for (int u = 0; u < GEMV_U; u++) {
            int c = c0 + 32 * u;
            wv[u] = c < kv ? __ldg(wr + c) : make_uint4(0u, 0u, 0u, 0u);
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
                    // x rows are 16-byte aligned (checked by the host): one vector load per chunk
                    float xf[V];
                    unpack(__ldg((const uint4*)(x + (long)i * k) + c), xf, (const T*)nullptr);
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
            if (lane == 0) y[(long)i * n + row] = from_f<O>(s);
        }
    }
}

// ---- launchers (k % (16 / sizeof(T)) == 0, 16-byte aligned w and x: checked by the host)
extern "C" __global__ void gemv_f32(const float* x, const float* w, float* y, int m, int n, int k) { gemv_impl(x, w, y, m, n, k); }
extern "C" __global__ void gemv_bf16(const bf16* x, const bf16* w, bf16* y, int m, int n, int k) { gemv_impl(x, w, y, m, n, k); }
// bf16 operands, f32 output (row-parallel partial sums kept in f32 until the all-reduce)
extern "C" __global__ void gemv_bf16_f32out(const bf16* x, const bf16* w, float* y, int m, int n, int k) { gemv_impl(x, w, y, m, n, k); }
extern "C" __global__ void gemv_bf16_u2(const bf16* x, const bf16* w, bf16* y, int m, int n, int k) { gemv_impl<bf16, bf16, 2>(x, w, y, m, n, k); }
extern "C" __global__ void gemv_bf16_u8(const bf16* x, const bf16* w, bf16* y, int m, int n, int k) { gemv_impl<bf16, bf16, 8>(x, w, y, m, n, k); }
