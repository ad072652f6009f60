// MoE on the device, for steps whose routing must not leave the GPU (CUDA-graph decode): the
// router's choice per token, expert biases by pair, and the weighted sum of the expert outputs.
// The expert GEMV itself (gemv_moe_*) is in gemv.cu. CPU twins: trtllm-core ops/moe.rs.

#define MOE_MAX_EXPERTS 512
#define MOE_MAX_GROUPS 64
#define MOE_MAX_TOPK 32

// a ranks above b: NaN above numbers (as f32::total_cmp for positive NaN), then by value.
__device__ __forceinline__ bool moe_gt(float a, float b) { return (isnan(a) && !isnan(b)) || a > b; }

// The best of v[i < n] not yet taken (ties: the lower index), marked taken.
__device__ __forceinline__ int moe_take_best(const float* v, unsigned char* taken, int n) {
    int best = -1;
    for (int i = 0; i < n; i++)
        if (!taken[i] && (best < 0 || moe_gt(v[i], v[best]))) best = i;
    taken[best] = 1;
    return best;
}

// ---- kernels
// One thread per token: router logits [t, e] (f32) -> the top-k (expert, weight) pairs, best
// first, in ids / wts [t, k]. scoring: 0 softmax, 1 sigmoid, 2 top-k logits then softmax.
// corr (or null): a per-expert bias added for the choice only. n_group > 0: experts form n_group
// equal groups; only the topk_group best groups (group score: best, or the sum of the best two
// with group_top2) compete. renorm: the picked weights divided by their sum (scoring 0 and 1).
// scale multiplies every weight (1 when the model has no routed_scaling_factor). The host checks
// e <= MOE_MAX_EXPERTS, n_group <= MOE_MAX_GROUPS, k <= MOE_MAX_TOPK.
extern "C" __global__ void moe_route(const float* logits, const float* corr, int* ids, float* wts, int t, int e,
                                     int k, int scoring, int n_group, int topk_group, int group_top2, int renorm,
                                     float scale) {
    int r = blockIdx.x * blockDim.x + threadIdx.x;
    if (r >= t) return;
    const float* x = logits + (long)r * e;
    float s[MOE_MAX_EXPERTS], c[MOE_MAX_EXPERTS];
    unsigned char taken[MOE_MAX_EXPERTS];
    if (scoring == 0) {
        float m = -INFINITY, sum = 0.f;
        for (int i = 0; i < e; i++) m = fmaxf(m, x[i]);
        for (int i = 0; i < e; i++) { s[i] = expf(x[i] - m); sum += s[i]; }
        for (int i = 0; i < e; i++) s[i] /= sum;
    } else if (scoring == 1) {
        for (int i = 0; i < e; i++) s[i] = 1.f / (1.f + expf(-x[i]));
    } else {
        for (int i = 0; i < e; i++) s[i] = x[i];
    }
    for (int i = 0; i < e; i++) { c[i] = corr ? s[i] + corr[i] : s[i]; taken[i] = 0; }
    if (n_group > 0) {
        int per = e / n_group;
        float gs[MOE_MAX_GROUPS];
        unsigned char gkeep[MOE_MAX_GROUPS];
        for (int g = 0; g < n_group; g++) {
            // best and second best of the group (the second counts only with group_top2)
            int b1 = -1, b2 = -1;
            for (int i = g * per; i < (g + 1) * per; i++) {
                if (b1 < 0 || moe_gt(c[i], c[b1])) { b2 = b1; b1 = i; }
                else if (b2 < 0 || moe_gt(c[i], c[b2])) b2 = i;
            }
            gs[g] = (group_top2 && b2 >= 0) ? c[b1] + c[b2] : c[b1];
            gkeep[g] = 0;
        }
        for (int j = 0; j < topk_group; j++) moe_take_best(gs, gkeep, n_group);
        for (int g = 0; g < n_group; g++)
            if (!gkeep[g])
                for (int i = g * per; i < (g + 1) * per; i++) c[i] = -INFINITY;
    }
    int id[MOE_MAX_TOPK];
    float w[MOE_MAX_TOPK];
    for (int j = 0; j < k; j++) { id[j] = moe_take_best(c, taken, e); w[j] = s[id[j]]; }
    if (scoring == 2) {
        float m = -INFINITY, sum = 0.f;
        for (int j = 0; j < k; j++) m = fmaxf(m, w[j]);
        for (int j = 0; j < k; j++) { w[j] = expf(w[j] - m); sum += w[j]; }
        for (int j = 0; j < k; j++) w[j] /= sum;
    } else if (renorm) {
        float sum = 0.f;
        for (int j = 0; j < k; j++) sum += w[j];
        for (int j = 0; j < k; j++) w[j] /= sum;
    }
    for (int j = 0; j < k; j++) { ids[(long)r * k + j] = id[j]; wts[(long)r * k + j] = w[j] * scale; }
}

// y[p, :] += bias[ids[p], :] (one block per pair p; bias [experts, n]).
template <typename T> __device__ void moe_bias_impl(T* y, const T* bias, const int* ids, int n) {
    long p = blockIdx.x;
    const T* b = bias + (long)ids[p] * n;
    for (int i = threadIdx.x; i < n; i += blockDim.x) y[p * n + i] = from_f<T>(to_f(y[p * n + i]) + to_f(b[i]));
}

// out[r, :] = sum_j w[r * k + j] * y[r * k + j, :], plus g * shared[r, :] when shared is given
// (g = sigmoid(z[r]), or 1 without z); f32 accumulation, one rounding. One block per token r.
template <typename T>
__device__ void moe_combine_impl(const T* y, const float* w, const T* shared, const float* z, T* out, int k, int d) {
    long r = blockIdx.x;
    float g = z ? 1.f / (1.f + expf(-z[r])) : 1.f;
    for (int i = threadIdx.x; i < d; i += blockDim.x) {
        float a = 0.f;
        for (int j = 0; j < k; j++) a += w[r * k + j] * to_f(y[(r * k + j) * d + i]);
        if (shared) a += g * to_f(shared[r * d + i]);
        out[r * d + i] = from_f<T>(a);
    }
}

// ---- launchers
extern "C" __global__ void moe_bias_f32(float* y, const float* b, const int* ids, int n) { moe_bias_impl(y, b, ids, n); }
extern "C" __global__ void moe_bias_bf16(bf16* y, const bf16* b, const int* ids, int n) { moe_bias_impl(y, b, ids, n); }
extern "C" __global__ void moe_combine_f32(const float* y, const float* w, const float* sh, const float* z, float* o, int k, int d) {
    moe_combine_impl(y, w, sh, z, o, k, d);
}
extern "C" __global__ void moe_combine_bf16(const bf16* y, const float* w, const bf16* sh, const float* z, bf16* o, int k, int d) {
    moe_combine_impl(y, w, sh, z, o, k, d);
}
