// Sampling on the device: greedy argmax per row (ties -> lowest index, as torch.argmax).

// ---- kernels
// Keep (v, i) if it beats (best, bi): larger, or equal at a lower index. NaN never wins.
__device__ __forceinline__ void take_max(float v, int i, float& best, int& bi) {
    if (v > best || (v == best && i < bi)) { best = v; bi = i; }
}

// Block-wide reduction of every thread's candidate; thread 0 writes the row's index.
__device__ void argmax_finish(float best, int bi, int* out_row) {
    __shared__ float sv[32];
    __shared__ int si[32];
    for (int o = 16; o > 0; o >>= 1) {
        float ov = __shfl_xor_sync(0xffffffffu, best, o);
        int oi = __shfl_xor_sync(0xffffffffu, bi, o);
        take_max(ov, oi, best, bi);
    }
    int lane = threadIdx.x & 31, w = threadIdx.x >> 5;
    if (lane == 0) { sv[w] = best; si[w] = bi; }
    __syncthreads();
    if (threadIdx.x == 0) {
        for (int k = 1; k < (int)(blockDim.x >> 5); k++) take_max(sv[k], si[k], best, bi);
        *out_row = bi == 0x7fffffff ? 0 : bi;
    }
}

template <typename T> __device__ void argmax_impl(const T* x, int n, int* out) {
    pdl_start();
    long row = blockIdx.x;
    float best = -INFINITY;
    int bi = 0x7fffffff;
    for (int i = threadIdx.x; i < n; i += blockDim.x) take_max(to_f(x[row * n + i]), i, best, bi);
    argmax_finish(best, bi, out + row);
}

// The same with 16-byte loads, 4 in flight per thread (rows of n % (16 / sizeof(T)) == 0
// elements, 16-byte aligned: checked by the host). Each thread still visits its indices in
// increasing order, so ties keep the lowest index.
template <typename T> __device__ void argmax_vec_impl(const T* x, int n, int* out) {
    pdl_start();
    constexpr int V = 16 / sizeof(T);
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
            for (int e = 0; e < V; e++) take_max(f[e], c * V + e, best, bi);
        }
    }
    argmax_finish(best, bi, out + row);
}

// Structured outputs: a logit whose token the row's packed mask does not allow becomes -inf.
// x [rows, n]; mask [rows, words] u32, bit t % 32 of word t / 32 set = token t allowed (t past
// the mask: not allowed). Grid (column blocks, rows).
template <typename T> __device__ void token_mask_impl(T* x, const unsigned* mask, int n, int words) {
    pdl_start();
    const long r = blockIdx.y;
    const unsigned* m = mask + r * words;
    T* row = x + r * (long)n;
    const T ninf = from_f<T>(__int_as_float(0xff800000));
    for (int t = blockIdx.x * blockDim.x + threadIdx.x; t < n; t += gridDim.x * blockDim.x) {
        const int w = t >> 5;
        if (w >= words || !((m[w] >> (t & 31)) & 1u)) row[t] = ninf;
    }
}

// ---- launchers
extern "C" __global__ void token_mask_f32(float* x, const unsigned* m, int n, int w) { token_mask_impl(x, m, n, w); }
extern "C" __global__ void token_mask_bf16(bf16* x, const unsigned* m, int n, int w) { token_mask_impl(x, m, n, w); }
extern "C" __global__ void argmax_f32(const float* x, int n, int* o) { argmax_impl(x, n, o); }
extern "C" __global__ void argmax_bf16(const bf16* x, int n, int* o) { argmax_impl(x, n, o); }
extern "C" __global__ void argmax_vec_f32(const float* x, int n, int* o) { argmax_vec_impl(x, n, o); }
extern "C" __global__ void argmax_vec_bf16(const bf16* x, int n, int* o) { argmax_vec_impl(x, n, o); }
