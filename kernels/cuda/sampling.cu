// Sampling on the device: greedy argmax per row (ties -> lowest index, as torch.argmax).

// ---- kernels
template <typename T> __device__ void argmax_impl(const T* x, int n, int* out) {
    pdl_start();
    __shared__ float sv[32];
    __shared__ int si[32];
    long row = blockIdx.x;
    float best = -INFINITY;
    int bi = 0x7fffffff;
    for (int i = threadIdx.x; i < n; i += blockDim.x) {
        float v = to_f(x[row * n + i]);
        if (v > best || (v == best && i < bi)) { best = v; bi = i; }
    }
    for (int o = 16; o > 0; o >>= 1) {
        float ov = __shfl_xor_sync(0xffffffffu, best, o);
        int oi = __shfl_xor_sync(0xffffffffu, bi, o);
        if (ov > best || (ov == best && oi < bi)) { best = ov; bi = oi; }
    }
    int lane = threadIdx.x & 31, w = threadIdx.x >> 5;
    if (lane == 0) { sv[w] = best; si[w] = bi; }
    __syncthreads();
    if (threadIdx.x == 0) {
        for (int k = 1; k < (int)(blockDim.x >> 5); k++)
            if (sv[k] > best || (sv[k] == best && si[k] < bi)) { best = sv[k]; bi = si[k]; }
        out[row] = bi == 0x7fffffff ? 0 : bi;
    }
}

// The same with 16-byte loads, 4 in flight per thread (rows of n % (16 / sizeof(T)) == 0
// elements, 16-byte aligned: checked by the host). Each thread still visits its indices in
// increasing order, so ties keep the lowest index.
template <typename T> __device__ void argmax_vec_impl(const T* x, int n, int* out) {
    pdl_start();
    constexpr int V = 16 / sizeof(T);
    __shared__ float sv[32];
    __shared__ int si[32];
    long row = blockIdx.x;
    const uint4* xr = (const uint4*)(x + row * n);
    int nv = n / V;
    float best = -INFINITY;
    int bi = 0x7fffffff;
    for (int c0 = threadIdx.x; c0 < nv; c0 += 4 * blockDim.x) {
        uint4 r[4];
#pragma unroll
        for (int u = 0; u < 4; u++) {
            int c = c0 + u * blockDim.x;
            r[u] = c < nv ? __ldg(xr + c) : make_uint4(0u, 0u, 0u, 0u);
        }
#pragma unroll
        for (int u = 0; u < 4; u++) {
            int c = c0 + u * blockDim.x;
            if (c >= nv) break;
            float f[V];
            unpack(r[u], f, (const T*)nullptr);
#pragma unroll
            for (int e = 0; e < V; e++) {
                int i = c * V + e;
                if (f[e] > best || (f[e] == best && i < bi)) { best = f[e]; bi = i; }
            }
        }
    }
    for (int o = 16; o > 0; o >>= 1) {
        float ov = __shfl_xor_sync(0xffffffffu, best, o);
        int oi = __shfl_xor_sync(0xffffffffu, bi, o);
        if (ov > best || (ov == best && oi < bi)) { best = ov; bi = oi; }
    }
    int lane = threadIdx.x & 31, w = threadIdx.x >> 5;
    if (lane == 0) { sv[w] = best; si[w] = bi; }
    __syncthreads();
    if (threadIdx.x == 0) {
        for (int k = 1; k < (int)(blockDim.x >> 5); k++)
            if (sv[k] > best || (sv[k] == best && si[k] < bi)) { best = sv[k]; bi = si[k]; }
        out[row] = bi == 0x7fffffff ? 0 : bi;
    }
}

// ---- launchers
extern "C" __global__ void argmax_f32(const float* x, int n, int* o) { argmax_impl(x, n, o); }
extern "C" __global__ void argmax_bf16(const bf16* x, int n, int* o) { argmax_impl(x, n, o); }
extern "C" __global__ void argmax_vec_f32(const float* x, int n, int* o) { argmax_vec_impl(x, n, o); }
extern "C" __global__ void argmax_vec_bf16(const bf16* x, int n, int* o) { argmax_vec_impl(x, n, o); }
