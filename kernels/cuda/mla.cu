// Multi-head latent attention (DeepSeek-V2/V3) around the paged attention kernels, which run it
// as multi-query attention over the latent rows: the latent cache write, the query absorption
// and the output projection. The CPU twin is trtllm-core/src/ops/mla.rs.

// ---- kernels
// One block per token: c = w * (x * rsqrt(mean(x^2) + eps)) over the first `lora` values of
// kv_a, k_pe (its last `rope` values) rotated in rotate-half pairs (i, i + rope / 2); the row
// [c; k_pe] goes to the token's cache slot (slot -1: a padding row, nothing cached).
template <typename T>
__device__ void mla_cache_impl(const T* kv_a, const float* norm_w, T* cache, const int* pos, const int* slots,
                               const float* inv_freq, float scaling, int lora, int rope, float eps) {
    int t = blockIdx.x, d = lora + rope, half = rope / 2;
    const T* x = kv_a + (long)t * d;
    float ss = 0.f;
    for (int i = threadIdx.x; i < lora; i += blockDim.x) {
        float v = to_f(x[i]);
        ss += v * v;
    }
    float r = rsqrtf(block_sum(ss) / lora + eps);  // every thread reaches the block reduction
    int slot = slots[t];
    if (slot < 0) return;
    T* dst = cache + (long)slot * d;
    for (int i = threadIdx.x; i < lora; i += blockDim.x) dst[i] = from_f<T>(norm_w[i] * (to_f(x[i]) * r));
    float p = (float)pos[t];
    for (int i = threadIdx.x; i < half; i += blockDim.x) {
        float s, c;
        sincosf(p * inv_freq[i], &s, &c);
        s *= scaling;
        c *= scaling;
        float a = to_f(x[lora + i]), b = to_f(x[lora + half + i]);
        dst[lora + i] = from_f<T>(a * c - b * s);
        dst[lora + half + i] = from_f<T>(b * c + a * s);
    }
}

// grid (tokens, heads); dynamic smem: q_nope [nope] floats. The absorbed query of head h,
// [W_UK^T q_nope; rope(q_pe)] ([lora + rope]), from q [t, heads * (nope + rope)] and
// w_uk [heads, lora, nope].
template <typename T>
__device__ void mla_q_impl(const T* q, const T* w_uk, T* qa, const int* pos, const float* inv_freq, float scaling,
                           int heads, int nope, int rope, int lora) {
    extern __shared__ float qs[];
    int t = blockIdx.x, h = blockIdx.y, d = lora + rope, half = rope / 2;
    const T* src = q + ((long)t * heads + h) * (nope + rope);
    T* dst = qa + ((long)t * heads + h) * d;
    for (int i = threadIdx.x; i < nope; i += blockDim.x) qs[i] = to_f(src[i]);
    __syncthreads();
    const T* w = w_uk + (long)h * lora * nope;
    for (int l = threadIdx.x; l < lora; l += blockDim.x) {
        float acc = 0.f;
        for (int k = 0; k < nope; k++) acc += to_f(w[(long)l * nope + k]) * qs[k];
        dst[l] = from_f<T>(acc);
    }
    float p = (float)pos[t];
    for (int i = threadIdx.x; i < half; i += blockDim.x) {
        float s, c;
        sincosf(p * inv_freq[i], &s, &c);
        s *= scaling;
        c *= scaling;
        float a = to_f(src[nope + i]), b = to_f(src[nope + half + i]);
        dst[lora + i] = from_f<T>(a * c - b * s);
        dst[lora + half + i] = from_f<T>(b * c + a * s);
    }
}

// grid (tokens, heads); dynamic smem: the head's latent output [lora] floats. out[t, h] =
// W_UV_h o[t, h, :lora] ([v]) from o [t, heads * (lora + rope)] and w_uv [heads, v, lora].
template <typename T>
__device__ void mla_out_impl(const T* o, const T* w_uv, T* out, int heads, int lora, int rope, int v) {
    extern __shared__ float os[];
    int t = blockIdx.x, h = blockIdx.y;
    const T* src = o + ((long)t * heads + h) * (lora + rope);
    for (int i = threadIdx.x; i < lora; i += blockDim.x) os[i] = to_f(src[i]);
    __syncthreads();
    const T* w = w_uv + (long)h * v * lora;
    for (int j = threadIdx.x; j < v; j += blockDim.x) {
        float acc = 0.f;
        for (int l = 0; l < lora; l++) acc += to_f(w[(long)j * lora + l]) * os[l];
        out[((long)t * heads + h) * v + j] = from_f<T>(acc);
    }
}

// ---- launchers
#define MLA_CACHE_ARGS(T) const T* kv_a, const float* nw, T* cache, const int* pos, const int* slots, \
    const float* f, float sc, int lora, int rope, float eps
extern "C" __global__ void mla_cache_write_f32(MLA_CACHE_ARGS(float)) { mla_cache_impl(kv_a, nw, cache, pos, slots, f, sc, lora, rope, eps); }
extern "C" __global__ void mla_cache_write_bf16(MLA_CACHE_ARGS(bf16)) { mla_cache_impl(kv_a, nw, cache, pos, slots, f, sc, lora, rope, eps); }
#define MLA_Q_ARGS(T) const T* q, const T* w, T* qa, const int* pos, const float* f, float sc, int nh, int nope, \
    int rope, int lora
extern "C" __global__ void mla_absorb_q_f32(MLA_Q_ARGS(float)) { mla_q_impl(q, w, qa, pos, f, sc, nh, nope, rope, lora); }
extern "C" __global__ void mla_absorb_q_bf16(MLA_Q_ARGS(bf16)) { mla_q_impl(q, w, qa, pos, f, sc, nh, nope, rope, lora); }
extern "C" __global__ void mla_out_f32(const float* o, const float* w, float* out, int nh, int lora, int rope, int v) { mla_out_impl(o, w, out, nh, lora, rope, v); }
extern "C" __global__ void mla_out_bf16(const bf16* o, const bf16* w, bf16* out, int nh, int lora, int rope, int v) { mla_out_impl(o, w, out, nh, lora, rope, v); }
