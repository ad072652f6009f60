// MoE on the device, for steps whose routing must not leave the GPU (CUDA-graph decode): the
// router's choice per token, expert biases by pair, and the weighted sum of the expert outputs.
// The expert GEMV itself (gemv_moe_*) is in gemv.cu. CPU twins: trtllm-core ops/moe.rs.

#define MOE_MAX_EXPERTS 512
#define MOE_MAX_GROUPS 64
#define MOE_MAX_TOPK 32

#define MOE_WARPS 4  // tokens per block of moe_route

// a ranks above b: NaN above numbers, then by value (+0 and -0 rank equal). The CPU router's
// f32::total_cmp differs only for NaN signs and signed zeros.
__device__ __forceinline__ bool moe_gt(float a, float b) { return (isnan(a) && !isnan(b)) || a > b; }

// This lane's best of v[i < n], i = lane, lane + 32, ..., not yet taken (ties: the lower index);
// -1 when it has none.
__device__ __forceinline__ int moe_lane_best(const float* v, const unsigned char* taken, int n, int lane) {
    int best = -1;
    for (int i = lane; i < n; i += 32)
        if (!taken[i] && (best < 0 || moe_gt(v[i], v[best]))) best = i;
    return best;
}

// The warp's best of the lanes' offers (value, index; index -1: no offer): the higher value,
// ties the lower index. Every lane gets the winner's index.
__device__ __forceinline__ int moe_warp_best(float v, int idx) {
    for (int o = 16; o > 0; o >>= 1) {
        float v2 = __shfl_xor_sync(0xffffffffu, v, o);
        int i2 = __shfl_xor_sync(0xffffffffu, idx, o);
        if (i2 >= 0 && (idx < 0 || moe_gt(v2, v) || (!moe_gt(v, v2) && i2 < idx))) {
            v = v2;
            idx = i2;
        }
    }
    return idx;
}

// ---- kernels
// One warp per token (MOE_WARPS tokens per block, scores in shared memory): router logits [t, e]
// (f32) -> the top-k (expert, weight) pairs, best first, in ids / wts [t, k]. scoring: 0 softmax,
// 1 sigmoid, 2 top-k logits then softmax. corr (or null): a per-expert bias added for the choice
// only. n_group > 0: experts form n_group equal groups; only the topk_group best groups (group
// score: the best, or the sum of the best two with group_top2) compete. renorm: the picked
// weights divided by their sum (scoring 0 and 1). scale multiplies every weight (1 when the model
// has no routed_scaling_factor). The host checks e <= MOE_MAX_EXPERTS, n_group <= MOE_MAX_GROUPS,
// k <= MOE_MAX_TOPK (lane j holds pick j).
extern "C" __global__ void moe_route(const float* logits, const float* corr, int* ids, float* wts, int t, int e,
                                     int k, int scoring, int n_group, int topk_group, int group_top2, int renorm,
                                     float scale) {
    __shared__ float s_all[MOE_WARPS][MOE_MAX_EXPERTS], c_all[MOE_WARPS][MOE_MAX_EXPERTS];
    __shared__ unsigned char taken_all[MOE_WARPS][MOE_MAX_EXPERTS];
    __shared__ float gs_all[MOE_WARPS][MOE_MAX_GROUPS];
    __shared__ unsigned char gkeep_all[MOE_WARPS][MOE_MAX_GROUPS];
    int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
    int r = blockIdx.x * MOE_WARPS + warp;
    if (r >= t) return;  // the whole warp: no block barrier below
    float *s = s_all[warp], *c = c_all[warp];
    unsigned char* taken = taken_all[warp];
    const float* x = logits + (long)r * e;
    if (scoring == 0) {
        float m = -INFINITY, sum = 0.f;
        for (int i = lane; i < e; i += 32) m = fmaxf(m, x[i]);
        m = warp_max(m);
        for (int i = lane; i < e; i += 32) { s[i] = expf(x[i] - m); sum += s[i]; }
        sum = warp_sum(sum);
        for (int i = lane; i < e; i += 32) s[i] /= sum;
    } else if (scoring == 1) {
        for (int i = lane; i < e; i += 32) s[i] = 1.f / (1.f + expf(-x[i]));
    } else {
        for (int i = lane; i < e; i += 32) s[i] = x[i];
    }
    for (int i = lane; i < e; i += 32) { c[i] = corr ? s[i] + corr[i] : s[i]; taken[i] = 0; }
    __syncwarp();
    if (n_group > 0) {
        int per = e / n_group;
        float* gs = gs_all[warp];
        unsigned char* gkeep = gkeep_all[warp];
        for (int g = lane; g < n_group; g += 32) {
            // best and second best of the group (the second counts only with group_top2)
            int b1 = -1, b2 = -1;
            for (int i = g * per; i < (g + 1) * per; i++) {
                if (b1 < 0 || moe_gt(c[i], c[b1])) { b2 = b1; b1 = i; }
                else if (b2 < 0 || moe_gt(c[i], c[b2])) b2 = i;
            }
            gs[g] = (group_top2 && b2 >= 0) ? c[b1] + c[b2] : c[b1];
            gkeep[g] = 0;
        }
        __syncwarp();
        for (int j = 0; j < topk_group; j++) {
            int b = moe_lane_best(gs, gkeep, n_group, lane);
            b = moe_warp_best(b >= 0 ? gs[b] : 0.f, b);
            if (lane == 0) gkeep[b] = 1;
            __syncwarp();
        }
        for (int i = lane; i < e; i += 32)
            if (!gkeep[i / per]) c[i] = -INFINITY;
        __syncwarp();
    }
    int id = 0;
    float w = 0.f;
    for (int j = 0; j < k; j++) {
        int b = moe_lane_best(c, taken, e, lane);
        b = moe_warp_best(b >= 0 ? c[b] : 0.f, b);
        if (lane == j) { id = b; w = s[b]; }
        if (lane == 0) taken[b] = 1;
        __syncwarp();
    }
    bool mine = lane < k;
    if (scoring == 2) {
        float m = warp_max(mine ? w : -INFINITY);
        float ex = mine ? expf(w - m) : 0.f;
        w = ex / warp_sum(ex);
    } else if (renorm) {
        w /= warp_sum(mine ? w : 0.f);
    }
    if (mine) { ids[(long)r * k + lane] = id; wts[(long)r * k + lane] = w * scale; }
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
