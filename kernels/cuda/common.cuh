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

// 8 bf16 / 4 f32 floats -> 16 bytes of that type (bf16 rounded to nearest even): unpack's inverse.
__device__ __forceinline__ uint4 pack(const float* f, const bf16*) {
    unsigned int u[4];
#pragma unroll
    for (int i = 0; i < 4; i++) u[i] = from_f<bf16>(f[2 * i]).x | ((unsigned int)from_f<bf16>(f[2 * i + 1]).x << 16);
    return make_uint4(u[0], u[1], u[2], u[3]);
}
__device__ __forceinline__ uint4 pack(const float* f, const float*) {
    return make_uint4(__float_as_uint(f[0]), __float_as_uint(f[1]), __float_as_uint(f[2]), __float_as_uint(f[3]));
}

// FP8 E4M3 (torch.float8_e4m3fn). f32 -> E4M3, round to nearest even, saturating to +-448 (inf
// too), NaN -> 0x7f | sign. In software, so sm_80 gets the same bits as sm_89+ (whose
// cvt.rn.satfinite.e4m3x2.f32 agrees); kernels/src/quant_ref.rs e4m3_encode is its twin.
__device__ __forceinline__ unsigned int e4m3_sat(float x) {
    unsigned int u = __float_as_uint(x);
    unsigned int sign = (u >> 24) & 0x80u, a = u & 0x7fffffffu;
    if (a > 0x7f800000u) return sign | 0x7fu;
    if (a >= 0x43e00000u) return sign | 0x7eu;  // >= 448
    if (a < 0x3c800000u) return sign | (unsigned int)rintf(__uint_as_float(a) * 512.f);  // < 2^-6
    unsigned int code = ((((a >> 23) - 120u)) << 3) | ((a >> 20) & 7u);
    unsigned int rem = a & 0xfffffu;
    code += (rem > 0x80000u || (rem == 0x80000u && (code & 1u))) ? 1u : 0u;
    return sign | code;
}

// E4M3 -> f32, exact (NaN codes give NaN).
__device__ __forceinline__ float e4m3_to_f(unsigned int c) {
    if ((c & 0x7fu) == 0x7fu) return __uint_as_float(0x7fc00000u | (c & 0x80u) << 24);
    unsigned int b = ((c & 0x80u) << 8) | ((c & 0x7fu) << 4);  // bf16 bits of value * 2^-120
    return __uint_as_float(b << 16) * __uint_as_float(0x7b800000u);
}

// 4 E4M3 bytes (elements j .. j + 3, lowest byte first) -> 4 floats of value e4m3 * 2^-120
// without conversion instructions: an E4M3 byte's 7 exponent and mantissa bits, moved into a
// bf16's exponent low bits and mantissa high bits, make a bf16 of that value (subnormals
// included), and bf16 -> f32 is a shift. The NaN codes (0x7f / 0xff) give +-480 * 2^-120.
__device__ __forceinline__ void fp8x4_raw(unsigned int q, float* o) {
    unsigned int odd = (q & 0x80008000u) | ((q & 0x7f007f00u) >> 4);  // bytes 1, 3 as bf16 pairs
    unsigned int q2 = q << 8;
    unsigned int even = (q2 & 0x80008000u) | ((q2 & 0x7f007f00u) >> 4);  // bytes 0, 2
    o[0] = __uint_as_float(even << 16);
    o[1] = __uint_as_float(odd << 16);
    o[2] = __uint_as_float(even & 0xffff0000u);
    o[3] = __uint_as_float(odd & 0xffff0000u);
}

// An FP8 KV-cache element (`--kv-cache-dtype fp8`): E4M3 of value / the layer's K or V scale.
struct e4m3 { unsigned char x; };
__device__ __forceinline__ float to_f(e4m3 v) { return e4m3_to_f(v.x); }
// The NaN codes among 4 E4M3 bytes back to NaN (fp8x4_raw made them +-480): what `e4m3_to_f`
// and the CPU cache give, so a NaN written to the cache reads as NaN on every path.
__device__ __forceinline__ void fp8x4_nans(unsigned int q, float* o) {
    unsigned int nan = __vcmpeq4(q & 0x7f7f7f7fu, 0x7f7f7f7fu);
    if (nan) {
#pragma unroll
        for (int i = 0; i < 4; i++)
            if ((nan >> (8 * i)) & 1u) o[i] = __uint_as_float(0x7fc00000u);
    }
}
// 8 bytes = 8 E4M3 -> their exact values (x 2^120 undoes fp8x4_raw's bias; no rounding: the
// biased values are exact f32 normals or subnormals, kernels are built without flush-to-zero).
__device__ __forceinline__ void unpack(uint2 r, float* o, const e4m3*) {
    fp8x4_raw(r.x, o);
    fp8x4_raw(r.y, o + 4);
#pragma unroll
    for (int i = 0; i < 8; i++) o[i] *= __uint_as_float(0x7b800000u);
    fp8x4_nans(r.x, o);
    fp8x4_nans(r.y, o + 4);
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

// RMSNorm of one row by the whole block, with 16-byte accesses: s = x (+ res, rounded to T as the
// model's dtype holds it), out = w * (s * rsqrt(mean(s^2) + eps)) rounded to T; s also goes to
// `sum` when given. Thread t owns the 16-byte chunks t, t + blockDim, ... (at most NC of them:
// d <= NC * blockDim * 16 / sizeof(T) and d % (16 / sizeof(T)) == 0, host-checked), kept in
// registers between the two passes, with their f32 weights `wv` (rms_load_w, loaded before the
// PDL wait). Every thread of the block calls it (block_sum).
template <typename T> struct Vec { static constexpr int N = 16 / sizeof(T); };
template <typename T, int NC>
__device__ __forceinline__ void rms_load_w(const float* w, int d, float (&wv)[NC][Vec<T>::N]) {
    constexpr int V = Vec<T>::N;
#pragma unroll
    for (int j = 0; j < NC; j++) {
        int c = threadIdx.x + j * blockDim.x;
#pragma unroll
        for (int e = 0; e < V; e += 4) {
            float4 f = c * V < d ? *(const float4*)(w + c * V + e) : make_float4(0.f, 0.f, 0.f, 0.f);
            wv[j][e] = f.x; wv[j][e + 1] = f.y; wv[j][e + 2] = f.z; wv[j][e + 3] = f.w;
        }
    }
}
template <typename T, int NC>
__device__ __forceinline__ void rms_row_vec(const T* x, const T* res, const float (&wv)[NC][Vec<T>::N], T* sum, T* out,
                                            int d, float eps) {
    constexpr int V = Vec<T>::N;
    const int nc = d / V;
    float v[NC][V];
    float ss = 0.f;
#pragma unroll
    for (int j = 0; j < NC; j++) {
        int c = threadIdx.x + j * blockDim.x;
        if (c < nc) {
            unpack(((const uint4*)x)[c], v[j], (const T*)nullptr);
            if (res) {
                float r[V];
                unpack(((const uint4*)res)[c], r, (const T*)nullptr);
#pragma unroll
                for (int e = 0; e < V; e++) v[j][e] = to_f(from_f<T>(v[j][e] + r[e]));
                if (sum) ((uint4*)sum)[c] = pack(v[j], (const T*)nullptr);
            }
#pragma unroll
            for (int e = 0; e < V; e++) ss += v[j][e] * v[j][e];
        }
    }
    const float r = rsqrtf(block_sum(ss) / d + eps);
#pragma unroll
    for (int j = 0; j < NC; j++) {
        int c = threadIdx.x + j * blockDim.x;
        if (c < nc) {
            float o[V];
#pragma unroll
            for (int e = 0; e < V; e++) o[e] = wv[j][e] * (v[j][e] * r);
            ((uint4*)out)[c] = pack(o, (const T*)nullptr);
        }
    }
}
