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

// ---- launchers
extern "C" __global__ void argmax_f32(const float* x, int n, int* o) { argmax_impl(x, n, o); }
extern "C" __global__ void argmax_bf16(const bf16* x, int n, int* o) { argmax_impl(x, n, o); }
