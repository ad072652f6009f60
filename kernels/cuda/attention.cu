// Attention over the paged KV cache, and the fused per-token step that feeds it:
// (q/k RMSNorm) -> RoPE -> q out, k/v into their cache slots.
// Compiled twice (kernels/src/module.rs): as is, caches in the activation type; with KV8, bf16
// activations over an FP8 E4M3 cache (entries `*_kv8`): the write stores e4m3(k / k_scale) and
// e4m3(v / v_scale) (`iks`, `ivs` = the inverses), the reads fold k_scale into the score scale
// (host side) and multiply the output by `vs` = v_scale.

// ---- kernels
// One warp per (token, head): grid (tokens, ceil((heads + kv_heads) / 8)), 8 warps per block, each
// with its own hd floats of shared memory (hd <= 256) and only warp-level barriers. (One 128-thread
// block per (token, head) with block barriers took 100 us per layer for 2048 tokens of Llama-3-8B
// on the H100, ~6x its memory time.)
template <typename T, typename KV>
__device__ void qkv_impl(const T* qkv, int nh, int nkv, int hd, int rot_half, const int* pos, const float* inv_freq,
                         float scaling, const float* qn, const float* kn, float eps, const int* slots, T* q_out, KV* kc,
                         KV* vc, float iks, float ivs) {
    __shared__ float bufs[8][256];
    int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
    int t = blockIdx.x, h = blockIdx.y * 8 + warp;
    bool is_q = h < nh;
    // The rotation angles depend only on the position (uploaded before the step's first kernel,
    // not written by any kernel) and the norm weights are constants: both are ready before the
    // PDL wait, overlapping the previous kernel. This lane's elements are i = lane + 32 j (hd <= 256,
    // rot_half <= 128).
    float cs[4], sn[4], wn[8];
    if (inv_freq) {
        float p = (float)pos[t];
#pragma unroll
        for (int j = 0; j < 4; j++) {
            int i = lane + 32 * j;
            if (i < rot_half) {
                sincosf(p * inv_freq[i], &sn[j], &cs[j]);
                cs[j] *= scaling;
                sn[j] *= scaling;
            }
        }
    }
    const float* nw = is_q ? qn : kn;
#pragma unroll
    for (int j = 0; j < 8; j++) wn[j] = nw && lane + 32 * j < hd ? nw[lane + 32 * j] : 0.f;
    pdl_start();
    if (h >= nh + nkv) return;
    float* buf = bufs[warp];
    long width = (long)(nh + 2 * nkv) * hd;
    int kh = h - nh;
    const T* src = qkv + t * width + (long)h * hd;  // q heads, then k heads
    const T* vsrc = qkv + t * width + (long)(nh + nkv) * hd + (long)kh * hd;
    // Every load is issued before the first store (stores could alias them for the compiler).
    float x[8];
    T v[8];
#pragma unroll
    for (int j = 0; j < 8; j++) {
        int i = lane + 32 * j;
        x[j] = i < hd ? to_f(src[i]) : 0.f;
        if (!is_q && i < hd) v[j] = vsrc[i];
    }
    if (nw) {
        float ss = 0.f;
#pragma unroll
        for (int j = 0; j < 8; j++) ss += x[j] * x[j];
        float r = rsqrtf(warp_sum(ss) / hd + eps);
#pragma unroll
        for (int j = 0; j < 8; j++) x[j] = to_f(from_f<T>(wn[j] * (x[j] * r)));
    }
    if (inv_freq) {  // pairs (i, i + rot_half) may sit in different lanes: exchange through smem
#pragma unroll
        for (int j = 0; j < 8; j++)
            if (lane + 32 * j < hd) buf[lane + 32 * j] = x[j];
        __syncwarp();
#pragma unroll
        for (int j = 0; j < 4; j++) {
            int i = lane + 32 * j;
            if (i < rot_half) {
                float x1 = buf[i], x2 = buf[i + rot_half];
                buf[i] = x1 * cs[j] - x2 * sn[j];
                buf[i + rot_half] = x2 * cs[j] + x1 * sn[j];
            }
        }
        __syncwarp();
#pragma unroll
        for (int j = 0; j < 8; j++)
            if (lane + 32 * j < hd) x[j] = buf[lane + 32 * j];
    }
    if (is_q) {
        T* dst = q_out + (long)t * nh * hd + (long)h * hd;
#pragma unroll
        for (int j = 0; j < 8; j++)
            if (lane + 32 * j < hd) dst[lane + 32 * j] = from_f<T>(x[j]);
    } else if (slots[t] >= 0) {  // slot -1: a padding row (CUDA-graph bucket), nothing cached
        long base = (long)slots[t] * nkv * hd + (long)kh * hd;
#pragma unroll
        for (int j = 0; j < 8; j++) {
            int i = lane + 32 * j;
            if (i < hd) {
#ifdef KV8
                kc[base + i].x = (unsigned char)e4m3_sat(x[j] * iks);
                vc[base + i].x = (unsigned char)e4m3_sat(to_f(v[j]) * ivs);
#else
                kc[base + i] = from_f<T>(x[j]);
                vc[base + i] = v[j];
#endif
            }
        }
    }
}

// One chunk of the online softmax (both attention kernels): ps[0, n) holds the chunk's scores
// (one per thread, blockDim >= n); they become probabilities against the running max m, their
// sum is folded into l, and the factor the output accumulated so far must be scaled by comes
// back. Ends with a barrier, so every thread sees ps.
__device__ __forceinline__ float softmax_chunk(float* ps, int n, float& m, float& l) {
    float s = threadIdx.x < n ? ps[threadIdx.x] : -INFINITY;
    float mnew = fmaxf(m, block_max(s));
    float p = threadIdx.x < n ? expf(s - mnew) : 0.f;
    float alpha = expf(m - mnew);
    l = l * alpha + block_sum(p);  // block_sum syncs before its shared writes: ps reads above are done
    ps[threadIdx.x] = p;
    __syncthreads();
    m = mnew;
    return alpha;
}

// grid (tokens, heads); dynamic smem: q[hd], acc[hd], p[blockDim], slot[blockDim].
// Online softmax over the token's visible positions [lo, pos], read through its block table,
// in chunks of blockDim keys: each warp scores keys with its lanes splitting head_dim (coalesced
// K reads), then every thread accumulates its output dims over the chunk (coalesced V reads).
template <typename T, typename KV>
__device__ void attn_impl(const T* q, const KV* kc, const KV* vc, T* out, int nh, int nkv, int hd, float scale, int window,
                          float softcap, const int* positions, const int* token_seq, const int* bt, const int* bt_off, int bs,
                          const float* sinks, float vs) {
    extern __shared__ float sm[];
    pdl_start();
    float* qs = sm;
    float* acc = sm + hd;
    float* ps = sm + 2 * hd;
    int* sl = (int*)(ps + blockDim.x);
    int t = blockIdx.x, h = blockIdx.y, kh = h / (nh / nkv);
    int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, nwarps = blockDim.x >> 5;
    long kvw = (long)nkv * hd;
    for (int i = threadIdx.x; i < hd; i += blockDim.x) { qs[i] = to_f(q[(long)t * nh * hd + (long)h * hd + i]); acc[i] = 0.f; }
    int pos = positions[t];
    int lo = window > 0 ? max(0, pos + 1 - window) : 0;
    const int* table = bt + bt_off[token_seq[t]];
    __syncthreads();
    // A sink logit starts the running max with weight exp(sink - sink) = 1 in the denominator.
    float m = sinks ? sinks[h] : -INFINITY, l = sinks ? 1.f : 0.f;
    for (int j0 = lo; j0 <= pos; j0 += blockDim.x) {
        int n = min((int)blockDim.x, pos - j0 + 1);
        // Scores of this chunk: warp w takes keys w, w + nwarps, ...
        for (int jj = warp; jj < n; jj += nwarps) {
            int j = j0 + jj;
            int slot = table[j / bs] * bs + j % bs;
            const KV* k = kc + (long)slot * kvw + (long)kh * hd;
            float d = 0.f;
            for (int i = lane; i < hd; i += 32) d += qs[i] * to_f(k[i]);
            d = warp_sum(d) * scale;
            if (softcap > 0.f) d = tanhf(d / softcap) * softcap;
            if (lane == 0) { ps[jj] = d; sl[jj] = slot; }
        }
        __syncthreads();
        float alpha = softmax_chunk(ps, n, m, l);
        for (int d = threadIdx.x; d < hd; d += blockDim.x) {
            float a = acc[d] * alpha;
            for (int jj = 0; jj < n; jj++) a += ps[jj] * to_f(vc[(long)sl[jj] * kvw + (long)kh * hd + d]);
            acc[d] = a;
        }
        __syncthreads();
    }
    for (int i = threadIdx.x; i < hd; i += blockDim.x) out[(long)t * nh * hd + (long)h * hd + i] = from_f<T>(acc[i] * vs / l);
}

// The same attention with 16-byte loads, for bf16 and head_dim 64 / 128 / 256 (KL = hd / 8 lanes
// read one key row, so a warp scores 32 / KL keys per load and 4 such loads are in flight before
// any is reduced; the weighted V sum is split over (8-dim group, key group) threads and reduced
// through shared memory). The scalar kernel above issued one 2-byte load chain per key per warp:
// 11 us per layer at 16-144 tokens of context on the H100 (ncu), latency-bound.
template <int KL>
__device__ void attn_vec_impl(const bf16* q, const bf16* kc, const bf16* vc, bf16* out, int nh, int nkv, float scale,
                              int window, float softcap, const int* positions, const int* token_seq, const int* bt,
                              const int* bt_off, int bs) {
    constexpr int HD = KL * 8, KPW = 32 / KL, U = 4;
    extern __shared__ float sm[];
    int t = blockIdx.x, h = blockIdx.y, kh = h / (nh / nkv);
    long kvw = (long)nkv * HD;
    // The positions and block tables are uploaded before the step's first kernel, and the cache
    // rows of positions before this step's were written by earlier steps: ask L2 for the first
    // chunk's rows while the previous kernel (qkv_prepare) finishes.
    int pos = positions[t];
    int lo = window > 0 ? max(0, pos + 1 - window) : 0;
    const int* table = bt + bt_off[token_seq[t]];
    if (int j = lo + threadIdx.x; j < pos) {
        long off = (long)(table[j / bs] * bs + j % bs) * kvw + (long)kh * HD;
#pragma unroll
        for (int b = 0; b < HD * 2; b += 128) {
            asm volatile("prefetch.global.L2 [%0];" :: "l"((const char*)(kc + off) + b));
            asm volatile("prefetch.global.L2 [%0];" :: "l"((const char*)(vc + off) + b));
        }
    }
    pdl_start();
    float* qs = sm;                    // [HD]
    float* acc = qs + HD;              // [HD]
    float* ps = acc + HD;              // [blockDim] scores, then probabilities
    int* sl = (int*)(ps + blockDim.x); // [blockDim] cache slots
    float* red = (float*)(sl + blockDim.x); // [blockDim * 8] PV partials
    int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, nwarps = blockDim.x >> 5;
    for (int i = threadIdx.x; i < HD; i += blockDim.x) { qs[i] = to_f(q[(long)t * nh * HD + (long)h * HD + i]); acc[i] = 0.f; }
    __syncthreads();
    int sub = lane % KL, kin = lane / KL;          // this lane's 8 dims of its key; which key of the warp's KPW
    int dg = threadIdx.x % KL, kg = threadIdx.x / KL, nkg = blockDim.x / KL;  // PV split
    float m = -INFINITY, l = 0.f;
    for (int j0 = lo; j0 <= pos; j0 += blockDim.x) {
        int n = min((int)blockDim.x, pos - j0 + 1);
        for (int b = warp * KPW; b < n; b += nwarps * KPW * U) {
            uint4 kv[U];
            int slot[U];
#pragma unroll
            for (int u = 0; u < U; u++) {
                int jj = b + u * nwarps * KPW + kin, j = j0 + jj;
                slot[u] = jj < n ? table[j / bs] * bs + j % bs : 0;
                kv[u] = jj < n ? __ldg((const uint4*)(kc + (long)slot[u] * kvw + (long)kh * HD) + sub) : make_uint4(0u, 0u, 0u, 0u);
            }
#pragma unroll
            for (int u = 0; u < U; u++) {
                float kf[8];
                unpack(kv[u], kf, (const bf16*)nullptr);
                float d = 0.f;
#pragma unroll
                for (int e = 0; e < 8; e++) d += qs[sub * 8 + e] * kf[e];
#pragma unroll
                for (int o = KL / 2; o > 0; o >>= 1) d += __shfl_xor_sync(0xffffffffu, d, o);
                int jj = b + u * nwarps * KPW + kin;
                if (sub == 0 && jj < n) {
                    d *= scale;
                    if (softcap > 0.f) d = tanhf(d / softcap) * softcap;
                    ps[jj] = d;
                    sl[jj] = slot[u];
                }
            }
        }
        __syncthreads();
        float alpha = softmax_chunk(ps, n, m, l);
        float a8[8];
#pragma unroll
        for (int e = 0; e < 8; e++) a8[e] = 0.f;
#pragma unroll 4
        for (int jj = kg; jj < n; jj += nkg) {
            float vf[8];
            unpack(__ldg((const uint4*)(vc + (long)sl[jj] * kvw + (long)kh * HD) + dg), vf, (const bf16*)nullptr);
            float pj = ps[jj];
#pragma unroll
            for (int e = 0; e < 8; e++) a8[e] += pj * vf[e];
        }
#pragma unroll
        for (int e = 0; e < 8; e++) red[kg * HD + dg * 8 + e] = a8[e];
        __syncthreads();
        for (int d = threadIdx.x; d < HD; d += blockDim.x) {
            float a = acc[d] * alpha;
            for (int g = 0; g < nkg; g++) a += red[g * HD + d];
            acc[d] = a;
        }
        __syncthreads();
    }
    for (int i = threadIdx.x; i < HD; i += blockDim.x) out[(long)t * nh * HD + (long)h * HD + i] = from_f<bf16>(acc[i] / l);
}

// ---- launchers
#define QKV_ARGS(T, KV) const T* qkv, int nh, int nkv, int hd, int rh, const int* pos, const float* f, float sc, \
    const float* qn, const float* kn, float eps, const int* slots, T* qo, KV* kc, KV* vc
#define QKV_CALL(iks, ivs) qkv_impl(qkv, nh, nkv, hd, rh, pos, f, sc, qn, kn, eps, slots, qo, kc, vc, iks, ivs)
#define ATTN_ARGS(T, KV) const T* q, const KV* kc, const KV* vc, T* o, int nh, int nkv, int hd, float scale, int win, \
    float cap, const int* pos, const int* ts, const int* bt, const int* bo, int bs
#define ATTN_CALL(sinks, vs) attn_impl(q, kc, vc, o, nh, nkv, hd, scale, win, cap, pos, ts, bt, bo, bs, sinks, vs)
#ifdef KV8
extern "C" __global__ void qkv_prepare_bf16_kv8(QKV_ARGS(bf16, e4m3), float iks, float ivs) { QKV_CALL(iks, ivs); }
extern "C" __global__ void paged_attention_bf16_kv8(ATTN_ARGS(bf16, e4m3), float vs) { ATTN_CALL(nullptr, vs); }
extern "C" __global__ void paged_attention_sinks_bf16_kv8(ATTN_ARGS(bf16, e4m3), const float* sinks, float vs) {
    ATTN_CALL(sinks, vs);
}
#else
extern "C" __global__ void qkv_prepare_f32(QKV_ARGS(float, float)) { QKV_CALL(1.f, 1.f); }
extern "C" __global__ void qkv_prepare_bf16(QKV_ARGS(bf16, bf16)) { QKV_CALL(1.f, 1.f); }
extern "C" __global__ void paged_attention_f32(ATTN_ARGS(float, float)) { ATTN_CALL(nullptr, 1.f); }
extern "C" __global__ void paged_attention_bf16(ATTN_ARGS(bf16, bf16)) { ATTN_CALL(nullptr, 1.f); }
extern "C" __global__ void paged_attention_sinks_f32(ATTN_ARGS(float, float), const float* sinks) { ATTN_CALL(sinks, 1.f); }
extern "C" __global__ void paged_attention_sinks_bf16(ATTN_ARGS(bf16, bf16), const float* sinks) { ATTN_CALL(sinks, 1.f); }
extern "C" __global__ void paged_attention_vec_bf16_hd64(ATTN_ARGS(bf16, bf16)) { attn_vec_impl<8>(q, kc, vc, o, nh, nkv, scale, win, cap, pos, ts, bt, bo, bs); }
extern "C" __global__ void paged_attention_vec_bf16_hd128(ATTN_ARGS(bf16, bf16)) { attn_vec_impl<16>(q, kc, vc, o, nh, nkv, scale, win, cap, pos, ts, bt, bo, bs); }
extern "C" __global__ void paged_attention_vec_bf16_hd256(ATTN_ARGS(bf16, bf16)) { attn_vec_impl<32>(q, kc, vc, o, nh, nkv, scale, win, cap, pos, ts, bt, bo, bs); }
#endif
