// Shared device helpers: bf16 <-> f32 without CUDA headers (NVRTC needs no include path),
// warp/block reductions. Prepended to every kernel file at compile time.
#ifndef INFINITY
#define INFINITY __int_as_float(0x7f800000)
#endif
struct bf16 { unsigned short x; };

__device__ __forceinline__ float to_f(float v) { return v; }
__device__ __forceinline__ float to_f(bf16 v) { return __uint_as_float(((unsigned int)v.x) << 16); }

template <typename T> __device__ __forceinline__ T from_f(float v);
template <> __device__ __forceinline__ float from_f<float>(float v) { return v; }
template <> __device__ __forceinline__ bf16 from_f<bf16>(float v) {
    unsigned int u = __float_as_uint(v);
    bf16 r;
    if ((u & 0x7fffffffu) > 0x7f800000u) { r.x = 0x7fc0; return r; }  // NaN stays NaN
    u += 0x7fffu + ((u >> 16) & 1u);                                   // round to nearest even
    r.x = (unsigned short)(u >> 16);
    return r;
}

// 16 bytes -> 8 bf16 / 4 f32 values as floats (the third argument picks the element type).
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

// Programmatic dependent launch (Hopper): a kernel the host launched with the PDL attribute
// (kernels/src/launch/pdl.rs, PDL_KERNELS) may start while the previous kernel of the stream is still running.
// pdl_wait() blocks until that kernel has completed and its writes are visible: every such kernel
// calls it before reading anything an earlier kernel wrote (and before any early return, so its
// own completion still implies the previous one's). pdl_launch_dependents() lets the next kernel
// be scheduled now. Both are no-ops without the attribute and before sm_90.
__device__ __forceinline__ void pdl_wait() {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
    asm volatile("griddepcontrol.wait;" ::: "memory");
#endif
}
__device__ __forceinline__ void pdl_launch_dependents() {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
    asm volatile("griddepcontrol.launch_dependents;" :::);
#endif
}
__device__ __forceinline__ void pdl_start() { pdl_launch_dependents(); pdl_wait(); }

// Activations by kind (elementwise.cu's act/gated_act, gemv.cu's gated GEMV).
enum { ACT_SILU = 0, ACT_GELU = 1, ACT_GELU_TANH = 2, ACT_RELU = 3 };
__device__ __forceinline__ float act(float x, int kind) {
    switch (kind) {
        case ACT_SILU: return x / (1.f + expf(-x));
        case ACT_GELU: return 0.5f * x * (1.f + erff(x * 0.70710678118654752f));
        case ACT_GELU_TANH: return 0.5f * x * (1.f + tanhf(0.7978845608028654f * (x + 0.044715f * x * x * x)));
        default: return fmaxf(x, 0.f);
    }
}

__device__ __forceinline__ float warp_sum(float v) {
    for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
    return v;
}
__device__ __forceinline__ float warp_max(float v) {
    for (int o = 16; o > 0; o >>= 1) v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, o));
    return v;
}
// Block-wide sum / max; every thread gets the result. blockDim.x must be a multiple of 32.
__device__ float block_sum(float v) {
    __shared__ float s[32];
    int lane = threadIdx.x & 31, w = threadIdx.x >> 5, nw = blockDim.x >> 5;
    v = warp_sum(v);
    __syncthreads();
    if (lane == 0) s[w] = v;
    __syncthreads();
    v = lane < nw ? s[lane] : 0.f;
    return warp_sum(v);
}
__device__ float block_max(float v) {
    __shared__ float s[32];
    int lane = threadIdx.x & 31, w = threadIdx.x >> 5, nw = blockDim.x >> 5;
    v = warp_max(v);
    __syncthreads();
    if (lane == 0) s[w] = v;
    __syncthreads();
    v = lane < nw ? s[lane] : -INFINITY;
    return warp_max(v);
}
