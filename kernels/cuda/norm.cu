// RMSNorm (optionally fused with the residual add) and LayerNorm; one block per row, f32 math.
// Norm weights are f32 (Gemma's 1 + w is baked in at load).

// ---- kernels
// The norm weight is a constant: each thread loads its (up to NW) weights before pdl_start()
// waits for the previous kernel, so that DRAM round trip overlaps it.
constexpr int NW = 8;
__device__ __forceinline__ void load_w(const float* w, int d, float* wr) {
#pragma unroll
    for (int j = 0; j < NW; j++) {
        int i = threadIdx.x + j * blockDim.x;
        wr[j] = i < d ? w[i] : 0.f;
    }
}
template <typename T> __device__ void rms_impl(const T* x, const float* w, T* out, int d, float eps) {
    float wr[NW];
    load_w(w, d, wr);
    pdl_start();
    long row = blockIdx.x;
    const T* xr = x + row * d;
    float ss = 0.f;
    for (int i = threadIdx.x; i < d; i += blockDim.x) { float v = to_f(xr[i]); ss += v * v; }
    float r = rsqrtf(block_sum(ss) / d + eps);
#pragma unroll
    for (int j = 0; j < NW; j++) {
        int i = threadIdx.x + j * blockDim.x;
        if (i < d) out[row * d + i] = from_f<T>(wr[j] * (to_f(xr[i]) * r));
    }
    for (int i = threadIdx.x + NW * blockDim.x; i < d; i += blockDim.x) out[row * d + i] = from_f<T>(w[i] * (to_f(xr[i]) * r));
}
// sum = x + residual (rounded to T, as the model's dtype holds it), out = rms_norm(sum)
template <typename T> __device__ void add_rms_impl(const T* x, const T* res, const float* w, T* sum, T* out, int d, float eps) {
    float wr[NW];
    load_w(w, d, wr);
    pdl_start();
    long row = blockIdx.x;
    float ss = 0.f;
    for (int i = threadIdx.x; i < d; i += blockDim.x) {
        T s = from_f<T>(to_f(x[row * d + i]) + to_f(res[row * d + i]));
        sum[row * d + i] = s;
        float v = to_f(s);
        ss += v * v;
    }
    float r = rsqrtf(block_sum(ss) / d + eps);
#pragma unroll
    for (int j = 0; j < NW; j++) {
        int i = threadIdx.x + j * blockDim.x;
        if (i < d) out[row * d + i] = from_f<T>(wr[j] * (to_f(sum[row * d + i]) * r));
    }
    for (int i = threadIdx.x + NW * blockDim.x; i < d; i += blockDim.x) out[row * d + i] = from_f<T>(w[i] * (to_f(sum[row * d + i]) * r));
}
// The 16-byte twins (rms_row_vec, common.cuh): one row per block, d % (16 / sizeof(T)) == 0,
// d / (16 / sizeof(T)) <= 4 * blockDim (blockDim <= 512), 16-byte aligned rows and weights (host-checked). The
// scalar kernels above re-read their row and issue one load per element: 65 us per 2048 x 4096
// bf16 add_rms_norm on the H100 (ncu), where the row traffic alone takes ~20 us.
template <typename T> __device__ void rms_vec_impl(const T* x, const T* res, const float* w, T* sum, T* out, int d, float eps) {
    float wv[4][Vec<T>::N];
    rms_load_w<T, 4>(w, d, wv);
    pdl_start();
    long o = (long)blockIdx.x * d;
    rms_row_vec<T, 4>(x + o, res ? res + o : nullptr, wv, sum ? sum + o : nullptr, out + o, d, eps);
}
template <typename T> __device__ void ln_impl(const T* x, const float* w, const float* b, T* out, int d, float eps) {
    pdl_start();
    long row = blockIdx.x;
    const T* xr = x + row * d;
    float s = 0.f;
    for (int i = threadIdx.x; i < d; i += blockDim.x) s += to_f(xr[i]);
    float mean = block_sum(s) / d;
    float v = 0.f;
    for (int i = threadIdx.x; i < d; i += blockDim.x) { float t = to_f(xr[i]) - mean; v += t * t; }
    float r = rsqrtf(block_sum(v) / d + eps);
    for (int i = threadIdx.x; i < d; i += blockDim.x) out[row * d + i] = from_f<T>((to_f(xr[i]) - mean) * r * w[i] + (b ? b[i] : 0.f));
}

// Full-width q/k RMSNorm (OLMo 2): in each row of `width` elements, columns [0, a) (q) and
// [a, a + b) (k) are each normalized as one vector. Two kernels so that a tensor-parallel rank can
// all-reduce the sums of squares between them: qk_sumsq writes (sum q^2, sum k^2) per row, f32;
// qk_rms_apply writes the whole row: q and k times rsqrt(sum / count + eps) and their f32
// weights (rounded to T), the other columns (v) copied.
template <typename T> __device__ void qk_sumsq_impl(const T* x, float* sums, int width, int a, int b) {
    pdl_start();
    long row = blockIdx.x;
    const T* xr = x + row * width;
    float sq = 0.f, sk = 0.f;
    for (int i = threadIdx.x; i < a + b; i += blockDim.x) {
        float v = to_f(xr[i]);
        if (i < a) sq += v * v; else sk += v * v;
    }
    sq = block_sum(sq);
    sk = block_sum(sk);
    if (threadIdx.x == 0) { sums[row * 2] = sq; sums[row * 2 + 1] = sk; }
}
template <typename T> __device__ void qk_rms_apply_impl(const T* x, const float* sums, const float* wq, const float* wk, T* out,
                                                        int width, int a, int b, float count_q, float count_k, float eps) {
    pdl_start();
    long row = blockIdx.x;
    const T* xr = x + row * width;
    float rq = rsqrtf(sums[row * 2] / count_q + eps), rk = rsqrtf(sums[row * 2 + 1] / count_k + eps);
    for (int i = threadIdx.x; i < width; i += blockDim.x) {
        float v = to_f(xr[i]);
        T o = xr[i];
        if (i < a) o = from_f<T>(wq[i] * (v * rq));
        else if (i < a + b) o = from_f<T>(wk[i - a] * (v * rk));
        out[row * width + i] = o;
    }
}

// ---- launchers
extern "C" __global__ void qk_sumsq_f32(const float* x, float* s, int w, int a, int b) { qk_sumsq_impl(x, s, w, a, b); }
extern "C" __global__ void qk_sumsq_bf16(const bf16* x, float* s, int w, int a, int b) { qk_sumsq_impl(x, s, w, a, b); }
extern "C" __global__ void qk_rms_apply_f32(const float* x, const float* s, const float* wq, const float* wk, float* o, int w, int a, int b, float cq, float ck, float e) { qk_rms_apply_impl(x, s, wq, wk, o, w, a, b, cq, ck, e); }
extern "C" __global__ void qk_rms_apply_bf16(const bf16* x, const float* s, const float* wq, const float* wk, bf16* o, int w, int a, int b, float cq, float ck, float e) { qk_rms_apply_impl(x, s, wq, wk, o, w, a, b, cq, ck, e); }
extern "C" __global__ void rms_norm_f32(const float* x, const float* w, float* o, int d, float e) { rms_impl(x, w, o, d, e); }
extern "C" __global__ void rms_norm_bf16(const bf16* x, const float* w, bf16* o, int d, float e) { rms_impl(x, w, o, d, e); }
extern "C" __global__ void add_rms_norm_f32(const float* x, const float* r, const float* w, float* s, float* o, int d, float e) { add_rms_impl(x, r, w, s, o, d, e); }
extern "C" __global__ void add_rms_norm_bf16(const bf16* x, const bf16* r, const float* w, bf16* s, bf16* o, int d, float e) { add_rms_impl(x, r, w, s, o, d, e); }
extern "C" __global__ void layer_norm_f32(const float* x, const float* w, const float* b, float* o, int d, float e) { ln_impl(x, w, b, o, d, e); }
extern "C" __global__ void layer_norm_bf16(const bf16* x, const float* w, const float* b, bf16* o, int d, float e) { ln_impl(x, w, b, o, d, e); }
extern "C" __global__ void __launch_bounds__(512) rms_norm_vec_f32(const float* x, const float* w, float* o, int d, float e) { rms_vec_impl<float>(x, nullptr, w, nullptr, o, d, e); }
extern "C" __global__ void __launch_bounds__(512) rms_norm_vec_bf16(const bf16* x, const float* w, bf16* o, int d, float e) { rms_vec_impl<bf16>(x, nullptr, w, nullptr, o, d, e); }
extern "C" __global__ void __launch_bounds__(512) add_rms_norm_vec_f32(const float* x, const float* r, const float* w, float* s, float* o, int d, float e) { rms_vec_impl<float>(x, r, w, s, o, d, e); }
extern "C" __global__ void __launch_bounds__(512) add_rms_norm_vec_bf16(const bf16* x, const bf16* r, const float* w, bf16* s, bf16* o, int d, float e) { rms_vec_impl<bf16>(x, r, w, s, o, d, e); }
