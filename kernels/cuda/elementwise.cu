// Elementwise ops: residual add, bias add, scaling, casts, soft-capping, activations (plain and gated).

// ---- kernels
// (`act` and the ACT_* kinds are in common.cuh: the gated GEMV in gemv.cu applies them too)

template <typename T> __device__ void add_impl(const T* a, const T* b, T* out, long n) {
    for (long i = blockIdx.x * (long)blockDim.x + threadIdx.x; i < n; i += (long)gridDim.x * blockDim.x)
        out[i] = from_f<T>(to_f(a[i]) + to_f(b[i]));
}
template <typename T> __device__ void mul_impl(const T* a, const T* b, T* out, long n) {
    for (long i = blockIdx.x * (long)blockDim.x + threadIdx.x; i < n; i += (long)gridDim.x * blockDim.x)
        out[i] = from_f<T>(to_f(a[i]) * to_f(b[i]));
}
template <typename T> __device__ void add_bias_impl(const T* x, const T* bias, T* out, long n, int cols) {
    for (long i = blockIdx.x * (long)blockDim.x + threadIdx.x; i < n; i += (long)gridDim.x * blockDim.x)
        out[i] = from_f<T>(to_f(x[i]) + to_f(bias[i % cols]));
}
template <typename T> __device__ void act_impl(const T* x, T* out, long n, int kind) {
    for (long i = blockIdx.x * (long)blockDim.x + threadIdx.x; i < n; i += (long)gridDim.x * blockDim.x)
        out[i] = from_f<T>(act(to_f(x[i]), kind));
}
// gate_up [rows, 2*inter] -> out [rows, inter] = act(gate) * up
template <typename T> __device__ void gated_impl(const T* gu, T* out, long rows, int inter, int kind) {
    long n = rows * inter;
    for (long i = blockIdx.x * (long)blockDim.x + threadIdx.x; i < n; i += (long)gridDim.x * blockDim.x) {
        long r = i / inter, c = i % inter;
        float g = to_f(gu[r * 2 * inter + c]), u = to_f(gu[r * 2 * inter + inter + c]);
        out[i] = from_f<T>(act(g, kind) * u);
    }
}
// gated_impl with 8 outputs per thread (bf16, inter % 8 == 0, 16-byte aligned rows): same math.
__device__ void gated_v8_impl(const bf16* gu, bf16* out, long rows, int inter, int kind) {
    long n8 = rows * (inter / 8);
    for (long q = blockIdx.x * (long)blockDim.x + threadIdx.x; q < n8; q += (long)gridDim.x * blockDim.x) {
        long r = q / (inter / 8), c = (q % (inter / 8)) * 8;
        float g[8], u[8];
        unpack(__ldg((const uint4*)(gu + r * 2 * inter + c)), g, (const bf16*)nullptr);
        unpack(__ldg((const uint4*)(gu + r * 2 * inter + inter + c)), u, (const bf16*)nullptr);
        float o[8];
#pragma unroll
        for (int e = 0; e < 8; e++) o[e] = act(g[e], kind) * u[e];
        *(uint4*)(out + r * inter + c) = pack(o, (const bf16*)nullptr);
    }
}
// x [rows, 2*inter], gate/up interleaved by column -> out [rows, inter]: GPT-OSS's clamped SwiGLU,
// (clamp(up, -limit, limit) + 1) * g * sigmoid(alpha * g) with g = min(gate, limit).
template <typename T> __device__ void clamped_swiglu_impl(const T* x, T* out, long rows, int inter, float alpha, float limit) {
    long n = rows * inter;
    for (long i = blockIdx.x * (long)blockDim.x + threadIdx.x; i < n; i += (long)gridDim.x * blockDim.x) {
        // comparisons, not fminf/fmaxf: a NaN stays NaN (torch's clamp; the CPU twin)
        float g = to_f(x[2 * i]), u = to_f(x[2 * i + 1]);
        g = g > limit ? limit : g;
        u = u > limit ? limit : (u < -limit ? -limit : u);
        out[i] = from_f<T>((u + 1.f) * (g / (1.f + expf(-alpha * g))));
    }
}
template <typename T> __device__ void scale_impl(const T* x, T* out, long n, float s) {
    for (long i = blockIdx.x * (long)blockDim.x + threadIdx.x; i < n; i += (long)gridDim.x * blockDim.x)
        out[i] = from_f<T>(to_f(x[i]) * s);
}
template <typename T> __device__ void softcap_impl(const T* x, T* out, long n, float cap) {
    for (long i = blockIdx.x * (long)blockDim.x + threadIdx.x; i < n; i += (long)gridDim.x * blockDim.x)
        out[i] = from_f<T>(tanhf(to_f(x[i]) / cap) * cap);
}

// ---- launchers (extern "C" entry points)
extern "C" __global__ void add_f32(const float* a, const float* b, float* o, long n) { add_impl(a, b, o, n); }
extern "C" __global__ void add_bf16(const bf16* a, const bf16* b, bf16* o, long n) { add_impl(a, b, o, n); }
extern "C" __global__ void mul_f32(const float* a, const float* b, float* o, long n) { mul_impl(a, b, o, n); }
extern "C" __global__ void mul_bf16(const bf16* a, const bf16* b, bf16* o, long n) { mul_impl(a, b, o, n); }
extern "C" __global__ void add_bias_f32(const float* x, const float* b, float* o, long n, int c) { add_bias_impl(x, b, o, n, c); }
extern "C" __global__ void add_bias_bf16(const bf16* x, const bf16* b, bf16* o, long n, int c) { add_bias_impl(x, b, o, n, c); }
extern "C" __global__ void act_f32(const float* x, float* o, long n, int k) { act_impl(x, o, n, k); }
extern "C" __global__ void act_bf16(const bf16* x, bf16* o, long n, int k) { act_impl(x, o, n, k); }
extern "C" __global__ void gated_act_f32(const float* g, float* o, long r, int i, int k) { gated_impl(g, o, r, i, k); }
extern "C" __global__ void gated_act_bf16(const bf16* g, bf16* o, long r, int i, int k) { gated_impl(g, o, r, i, k); }
extern "C" __global__ void gated_act_v8_bf16(const bf16* g, bf16* o, long r, int i, int k) { gated_v8_impl(g, o, r, i, k); }
extern "C" __global__ void clamped_swiglu_f32(const float* x, float* o, long r, int i, float a, float l) { clamped_swiglu_impl(x, o, r, i, a, l); }
extern "C" __global__ void clamped_swiglu_bf16(const bf16* x, bf16* o, long r, int i, float a, float l) { clamped_swiglu_impl(x, o, r, i, a, l); }
extern "C" __global__ void scale_f32(const float* x, float* o, long n, float s) { scale_impl(x, o, n, s); }
extern "C" __global__ void scale_bf16(const bf16* x, bf16* o, long n, float s) { scale_impl(x, o, n, s); }
extern "C" __global__ void softcap_f32(const float* x, float* o, long n, float c) { softcap_impl(x, o, n, c); }
extern "C" __global__ void softcap_bf16(const bf16* x, bf16* o, long n, float c) { softcap_impl(x, o, n, c); }
extern "C" __global__ void cast_f32_bf16(const float* x, bf16* o, long n) {
    for (long i = blockIdx.x * (long)blockDim.x + threadIdx.x; i < n; i += (long)gridDim.x * blockDim.x) o[i] = from_f<bf16>(x[i]);
}
extern "C" __global__ void cast_bf16_f32(const bf16* x, float* o, long n) {
    for (long i = blockIdx.x * (long)blockDim.x + threadIdx.x; i < n; i += (long)gridDim.x * blockDim.x) o[i] = to_f(x[i]);
}
extern "C" __global__ void fill_f32(float* o, long n, float v) {
    for (long i = blockIdx.x * (long)blockDim.x + threadIdx.x; i < n; i += (long)gridDim.x * blockDim.x) o[i] = v;
}
