// Paged attention by KV head (GQA-grouped) with optional split-K (FlashDecoding), bf16 caches,
// head_dim 64 / 128 / 256: one block per (KV head, query token, split) serves all G = heads /
// kv_heads query heads that share the KV head, so each cached K/V row is read from memory once
// per token instead of once per query head. A split covers `split_keys` consecutive visible
// positions (grid: tokens, KV heads, splits); with one split the block writes the output, else its normalized partial output and
// (max, sum) go to f32 workspaces that `attn_combine_bf16` merges.
// Compiled twice (kernels/src/module.rs): bf16 caches, and with KV8 FP8 E4M3 caches (entries
// `paged_attention_gqa_bf16_kv8_*`: a lane reads its 8 elements as 8 bytes; the host folds
// k_scale into `scale`, the output is multiplied by `vs` = v_scale, 1 for bf16).

#ifdef KV8
typedef e4m3 kv_t;
typedef uint2 kv_raw;  // 8 cache elements
#define GQA_NAME(HD, G) paged_attention_gqa_bf16_kv8_hd##HD##_g##G
#else
typedef bf16 kv_t;
typedef uint4 kv_raw;
#define GQA_NAME(HD, G) paged_attention_gqa_bf16_hd##HD##_g##G
#endif
// Elements 8i .. 8i + 7 of a cache row.
__device__ __forceinline__ kv_raw kv_load8(const kv_t* row, int i) { return __ldg((const kv_raw*)row + i); }

// ---- kernels
// Block: 128 threads = 4 warps. Scores: KL = HD / 8 lanes read one key row with 16-byte loads
// (a warp covers KPW = 32 / KL keys per load, U loads in flight); each lane keeps its 8 dims of
// the G query rows in registers. Softmax: warp w owns heads w, w + 4 (online max / sum kept in
// its registers). PV: thread (dg, kg) accumulates 8 dims x G heads over keys kg, kg + nkg, ... in
// registers across all chunks (rescaled by each chunk's alpha), reduced over kg once at the end.
template <int KL, int G>
__device__ void attn_gqa_impl(const bf16* q, const kv_t* kc, const kv_t* vc, bf16* out, float* part, float* ml,
                              int nh, int nkv, float scale, int window, float softcap, const int* positions,
                              const int* token_seq, const int* bt, const int* bt_off, int bs, int split_keys, float vs) {
    constexpr int HD = KL * 8, KPW = 32 / KL, U = 4, NW = 4, CH = 128, NKG = CH / KL, GW = (G + NW - 1) / NW;
    __shared__ float ps[G][CH];     // scores, then probabilities of the chunk
    __shared__ int sl[CH];          // cache slots of the chunk's keys
    __shared__ float alpha_s[G];    // per-head rescale of this chunk
    __shared__ float ml_s[G][2];    // final (max, sum) per head
    extern __shared__ float red[];  // [NKG][G][HD]: the query rows, then the PV partials
    int t = blockIdx.x, kh = blockIdx.y, split = blockIdx.z, nsplit = gridDim.z;
    int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
    long kvw = (long)nkv * HD;
    int pos = positions[t];
    int lo = window > 0 ? max(0, pos + 1 - window) : 0;
    int a = lo + split * split_keys, b = split_keys > 0 ? min(pos, a + split_keys - 1) : pos;
    const int* table = bt + bt_off[token_seq[t]];
    // Positions and block tables are step inputs and earlier steps wrote the cached rows: ask
    // L2 for the first chunk while the previous kernel finishes.
    if (int j = a + threadIdx.x; j < b) {
        long off = (long)(table[j / bs] * bs + j % bs) * kvw + (long)kh * HD;
#pragma unroll
        for (int o = 0; o < HD * (int)sizeof(kv_t); o += 128) {
            asm volatile("prefetch.global.L2 [%0];" :: "l"((const char*)(kc + off) + o));
            asm volatile("prefetch.global.L2 [%0];" :: "l"((const char*)(vc + off) + o));
        }
    }
    pdl_start();
    long qrow = (long)t * nh * HD + (long)kh * G * HD;  // the G heads of this KV head are contiguous
    if (a > b) {  // an empty split (context shorter than this split's start)
        if (threadIdx.x < G) {
            long r = ((long)t * nh + kh * G + threadIdx.x) * nsplit + split;
            ml[2 * r] = -INFINITY;
            ml[2 * r + 1] = 0.f;
        }
        return;
    }
    for (int i = threadIdx.x; i < G * HD; i += CH) red[i] = to_f(q[qrow + i]);
    __syncthreads();
    int sub = lane % KL, kin = lane / KL;
    float qr[G][8];
#pragma unroll
    for (int g = 0; g < G; g++)
#pragma unroll
        for (int e = 0; e < 8; e++) qr[g][e] = red[g * HD + sub * 8 + e];
    int dg = threadIdx.x % KL, kg = threadIdx.x / KL;
    float acc[G][8];
#pragma unroll
    for (int g = 0; g < G; g++)
#pragma unroll
        for (int e = 0; e < 8; e++) acc[g][e] = 0.f;
    float m[GW], l[GW];
#pragma unroll
    for (int i = 0; i < GW; i++) { m[i] = -INFINITY; l[i] = 0.f; }
    for (int j0 = a; j0 <= b; j0 += CH) {
        int n = min(CH, b - j0 + 1);
        for (int c = warp * KPW; c < n; c += NW * KPW * U) {
            kv_raw kv[U];
            int slot[U];
#pragma unroll
            for (int u = 0; u < U; u++) {
                int jj = c + u * NW * KPW + kin, j = j0 + jj;
                slot[u] = jj < n ? table[j / bs] * bs + j % bs : 0;
                kv[u] = jj < n ? kv_load8(kc + (long)slot[u] * kvw + (long)kh * HD, sub) : kv_raw{};
            }
#pragma unroll
            for (int u = 0; u < U; u++) {
                float kf[8];
                unpack(kv[u], kf, (const kv_t*)nullptr);
                int jj = c + u * NW * KPW + kin;
#pragma unroll
                for (int g = 0; g < G; g++) {
                    float d = 0.f;
#pragma unroll
                    for (int e = 0; e < 8; e++) d += qr[g][e] * kf[e];
#pragma unroll
                    for (int o = KL / 2; o > 0; o >>= 1) d += __shfl_xor_sync(0xffffffffu, d, o);
                    if (sub == 0 && jj < n) {
                        d *= scale;
                        if (softcap > 0.f) d = tanhf(d / softcap) * softcap;
                        ps[g][jj] = d;
                    }
                }
                if (sub == 0 && jj < n) sl[jj] = slot[u];
            }
        }
        __syncthreads();
#pragma unroll
        for (int gi = 0; gi < GW; gi++) {
            int g = warp + NW * gi;
            if (g < G) {
                float s[CH / 32], mx = -INFINITY;
#pragma unroll
                for (int i = 0; i < CH / 32; i++) {
                    int jj = lane + 32 * i;
                    s[i] = jj < n ? ps[g][jj] : -INFINITY;
                    mx = fmaxf(mx, s[i]);
                }
                float mnew = fmaxf(m[gi], warp_max(mx)), sum = 0.f;
#pragma unroll
                for (int i = 0; i < CH / 32; i++) {
                    int jj = lane + 32 * i;
                    float p = jj < n ? expf(s[i] - mnew) : 0.f;
                    if (jj < n) ps[g][jj] = p;
                    sum += p;
                }
                float alpha = expf(m[gi] - mnew);
                l[gi] = l[gi] * alpha + warp_sum(sum);
                m[gi] = mnew;
                if (lane == 0) alpha_s[g] = alpha;
            }
        }
        __syncthreads();
#pragma unroll
        for (int g = 0; g < G; g++) {
            float al = alpha_s[g];
#pragma unroll
            for (int e = 0; e < 8; e++) acc[g][e] *= al;
        }
#pragma unroll 2
        for (int jj = kg; jj < n; jj += NKG) {
            float vf[8];
            unpack(kv_load8(vc + (long)sl[jj] * kvw + (long)kh * HD, dg), vf, (const kv_t*)nullptr);
#pragma unroll
            for (int g = 0; g < G; g++) {
                float p = ps[g][jj];
#pragma unroll
                for (int e = 0; e < 8; e++) acc[g][e] += p * vf[e];
            }
        }
        __syncthreads();  // ps and sl are rewritten by the next chunk
    }
#pragma unroll
    for (int gi = 0; gi < GW; gi++) {
        int g = warp + NW * gi;
        if (g < G && lane == 0) { ml_s[g][0] = m[gi]; ml_s[g][1] = l[gi]; }
    }
#pragma unroll
    for (int g = 0; g < G; g++)
#pragma unroll
        for (int e = 0; e < 8; e++) red[(kg * G + g) * HD + dg * 8 + e] = acc[g][e];
    __syncthreads();
    for (int i = threadIdx.x; i < G * HD; i += CH) {
        int g = i / HD, d = i % HD;
        float s = 0.f;
#pragma unroll
        for (int k = 0; k < NKG; k++) s += red[(k * G + g) * HD + d];
        float inv = vs / ml_s[g][1];
        if (nsplit == 1) {
            out[qrow + i] = from_f<bf16>(s * inv);
        } else {
            long r = ((long)t * nh + kh * G + g) * nsplit + split;
            part[r * HD + d] = s * inv;
            if (d == 0) { ml[2 * r] = ml_s[g][0]; ml[2 * r + 1] = ml_s[g][1]; }
        }
    }
}

// ---- launchers
#define GQA_ARGS const bf16* q, const kv_t* kc, const kv_t* vc, bf16* o, float* part, float* ml, int nh, int nkv, \
    float scale, int win, float cap, const int* pos, const int* ts, const int* bt, const int* bo, int bs, int sk, float vs
#define GQA_CALL(KL, G) attn_gqa_impl<KL, G>(q, kc, vc, o, part, ml, nh, nkv, scale, win, cap, pos, ts, bt, bo, bs, sk, vs)
#define GQA_HD(HD, KL) \
    extern "C" __global__ void __launch_bounds__(128) GQA_NAME(HD, 1)(GQA_ARGS) { GQA_CALL(KL, 1); } \
    extern "C" __global__ void __launch_bounds__(128) GQA_NAME(HD, 2)(GQA_ARGS) { GQA_CALL(KL, 2); } \
    extern "C" __global__ void __launch_bounds__(128) GQA_NAME(HD, 3)(GQA_ARGS) { GQA_CALL(KL, 3); } \
    extern "C" __global__ void __launch_bounds__(128) GQA_NAME(HD, 4)(GQA_ARGS) { GQA_CALL(KL, 4); } \
    extern "C" __global__ void __launch_bounds__(128) GQA_NAME(HD, 5)(GQA_ARGS) { GQA_CALL(KL, 5); } \
    extern "C" __global__ void __launch_bounds__(128) GQA_NAME(HD, 6)(GQA_ARGS) { GQA_CALL(KL, 6); } \
    extern "C" __global__ void __launch_bounds__(128) GQA_NAME(HD, 7)(GQA_ARGS) { GQA_CALL(KL, 7); } \
    extern "C" __global__ void __launch_bounds__(128) GQA_NAME(HD, 8)(GQA_ARGS) { GQA_CALL(KL, 8); }
GQA_HD(64, 8)
GQA_HD(128, 16)
GQA_HD(256, 32)

// Merge the splits of one (token, head): grid (tokens, heads), 128 threads. Split s holds its
// normalized output o_s and (m_s, l_s); out = sum_s w_s o_s / sum_s w_s with w_s = l_s exp(m_s - M).
extern "C" __global__ void attn_combine_bf16(const float* part, const float* ml, bf16* out, int nh, int hd, int nsplit) {
    pdl_start();
    long r = (long)blockIdx.x * nh + blockIdx.y;
    const float* mlr = ml + 2 * r * nsplit;
    float mx = -INFINITY;
    for (int s = 0; s < nsplit; s++)
        if (mlr[2 * s + 1] > 0.f) mx = fmaxf(mx, mlr[2 * s]);
    for (int d = threadIdx.x; d < hd; d += blockDim.x) {
        float num = 0.f, den = 0.f;
        for (int s = 0; s < nsplit; s++) {
            float l = mlr[2 * s + 1];
            if (l > 0.f) {
                float w = l * expf(mlr[2 * s] - mx);
                num += w * part[(r * nsplit + s) * hd + d];
                den += w;
            }
        }
        out[r * hd + d] = from_f<bf16>(num / den);
    }
}
