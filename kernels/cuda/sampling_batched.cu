// Batched sampling on the device: one 1024-thread block per row, every row of a step in one launch.
// Appended to sampling.cu (same translation unit: take_max). The exact semantics, and a CPU twin
// that reproduces every bit of it, are in kernels/src/sample_ref.rs; the launchers in
// kernels/src/launch/sampling.rs. Per row:
//   l = logits, penalized from the slot's device token state (counts / prompt_mask) exactly as
//       runtime/logits.rs apply_penalties, plus the row's sparse logit bias (CSR, unique ids);
//   (m, i*) = argmax of l (NaN never wins, ties -> lowest index); all -inf / NaN -> raw argmax;
//   temperature 0 (or m = +inf) -> i*; else e_i = exp_neg((l_i - m) / T) (exp_neg: IEEE ops only,
//   bit-identical to the twin), mass q_i = trunc(e_i * 2^40) (u64: every sum is exact, so order
//   free and deterministic); keep key(l_i) >= top-k threshold (ties kept), top-p threshold over
//   the top-k set (radix select on mass), e_i >= min_p; draw r = Philox4x32-10(key = seed,
//   counter = (counter, 0, 0, 0)).x, target = (kept_mass * r) >> 32, and pick the first kept token
//   in index order whose inclusive prefix mass exceeds target.
// No sorting: thresholds come from radix selects over the monotone u32 key of the f32 logit, in
// three digit passes (12, 10, 10 bits) of shared-memory histograms.

struct SampleParams {
    unsigned long long seed, counter;
    float temperature, top_p, min_p, repetition_penalty, presence_penalty, frequency_penalty;
    int top_k, slot, logprobs, pad;
};

#define SAMPLE_MAX_TOP 20

// Shared memory of one block, declared once per kernel and passed down (helpers that declared
// their own would each take 32 KB).
struct SampleSmem {
    unsigned long long hist[4096];
    unsigned long long scan[32];
    unsigned long long above;
    unsigned int bin;
    int tok, cnt;
    int wc[32];
    int top[SAMPLE_MAX_TOP];
    float av[32];
    int ai[32];
};

// ---- exact scalar pieces (mirrored op for op in sample_ref.rs)
// NaN -> -inf, -0 -> +0.
__device__ __forceinline__ float clean_l(float v) { return v != v ? -INFINITY : (v == 0.f ? 0.f : v); }
// Monotone key: a > b <=> key(a) > key(b) (after clean_l).
__device__ __forceinline__ unsigned int fkey(float v) {
    unsigned int b = __float_as_uint(clean_l(v));
    return (b & 0x80000000u) ? ~b : (b | 0x80000000u);
}
// exp(x) for x <= 0 from IEEE-rounded mul/add and fused fma only (Cephes polynomial); 0 below -87.
__device__ __forceinline__ float exp_neg(float x) {
    if (!(x > -87.f)) return 0.f;
    float k = rintf(__fmul_rn(x, __uint_as_float(0x3fb8aa3bu)));
    float r = fmaf(k, -__uint_as_float(0x3f317200u), x);
    r = fmaf(k, -__uint_as_float(0x35bfbe8eu), r);
    float z = __fmul_rn(r, r);
    float p = __uint_as_float(0x39506967u);
    p = fmaf(p, r, __uint_as_float(0x3ab743ceu));
    p = fmaf(p, r, __uint_as_float(0x3c088908u));
    p = fmaf(p, r, __uint_as_float(0x3d2aa9c1u));
    p = fmaf(p, r, __uint_as_float(0x3e2aaaaau));
    p = fmaf(p, r, __uint_as_float(0x3f000000u));
    float y = __fadd_rn(fmaf(p, z, r), 1.f);
    return __fmul_rn(y, __uint_as_float((unsigned int)((int)k + 127) << 23));
}
__device__ __forceinline__ float prob_e(float l, float m, float t) { return exp_neg(__fdiv_rn(__fsub_rn(clean_l(l), m), t)); }
__device__ __forceinline__ unsigned long long fixq(float e) { return (unsigned long long)__fmul_rn(e, 1099511627776.f); }
// (a * b) >> 32 without overflow (a < 2^58, b <= 2^32).
__device__ __forceinline__ unsigned long long mul_shr32(unsigned long long a, unsigned long long b) {
    return (__umul64hi(a, b) << 32) | ((a * b) >> 32);
}
__device__ __forceinline__ float penalize(float l, int c, unsigned char pm, const SampleParams& p) {
    if ((p.presence_penalty != 0.f || p.frequency_penalty != 0.f) && c > 0)
        l = __fsub_rn(l, __fadd_rn(p.presence_penalty, __fmul_rn(p.frequency_penalty, (float)c)));
    if (p.repetition_penalty != 1.f && (pm != 0 || c > 0))
        l = l > 0.f ? __fdiv_rn(l, p.repetition_penalty) : __fmul_rn(l, p.repetition_penalty);
    return l;
}
// Philox4x32-10, first output word.
__device__ __forceinline__ unsigned int philox_x(unsigned long long seed, unsigned long long ctr) {
    unsigned int c0 = (unsigned int)ctr, c1 = (unsigned int)(ctr >> 32), c2 = 0u, c3 = 0u;
    unsigned int k0 = (unsigned int)seed, k1 = (unsigned int)(seed >> 32);
#pragma unroll
    for (int i = 0; i < 10; i++) {
        unsigned int hi0 = __umulhi(0xD2511F53u, c0), lo0 = 0xD2511F53u * c0;
        unsigned int hi1 = __umulhi(0xCD9E8D57u, c2), lo1 = 0xCD9E8D57u * c2;
        c0 = hi1 ^ c1 ^ k0; c1 = lo1; c2 = hi0 ^ c3 ^ k1; c3 = lo0;
        k0 += 0x9E3779B9u; k1 += 0xBB67AE85u;
    }
    return c0;
}

// ---- block helpers (every thread calls them; blockDim.x = 1024)
// Inclusive prefix sum in thread order; `total` gets the block's sum on every thread.
__device__ unsigned long long block_scan_u64(unsigned long long v, unsigned long long& total, SampleSmem& s) {
    int lane = threadIdx.x & 31, w = threadIdx.x >> 5, nw = blockDim.x >> 5;
    for (int o = 1; o < 32; o <<= 1) {
        unsigned long long n = __shfl_up_sync(0xffffffffu, v, o);
        if (lane >= o) v += n;
    }
    __syncthreads();
    if (lane == 31) s.scan[w] = v;
    __syncthreads();
    unsigned long long t = lane < nw ? s.scan[lane] : 0ull;
    for (int o = 1; o < 32; o <<= 1) {
        unsigned long long n = __shfl_up_sync(0xffffffffu, t, o);
        if (lane >= o) t += n;
    }
    total = __shfl_sync(0xffffffffu, t, 31);
    unsigned long long before = __shfl_sync(0xffffffffu, t, (w + 31) & 31);
    return v + (w > 0 ? before : 0ull);
}
// Block argmax by take_max; every thread gets the winner (bi = 0x7fffffff: none, all NaN).
__device__ void block_argmax(float& best, int& bi, SampleSmem& s) {
    for (int o = 16; o > 0; o >>= 1) {
        float ov = __shfl_xor_sync(0xffffffffu, best, o);
        int oi = __shfl_xor_sync(0xffffffffu, bi, o);
        take_max(ov, oi, best, bi);
    }
    int lane = threadIdx.x & 31, w = threadIdx.x >> 5;
    __syncthreads();
    if (lane == 0) { s.av[w] = best; s.ai[w] = bi; }
    __syncthreads();
    best = lane < (int)(blockDim.x >> 5) ? s.av[lane] : -INFINITY;
    bi = lane < (int)(blockDim.x >> 5) ? s.ai[lane] : 0x7fffffff;
    for (int o = 16; o > 0; o >>= 1) {
        float ov = __shfl_xor_sync(0xffffffffu, best, o);
        int oi = __shfl_xor_sync(0xffffffffu, bi, o);
        take_max(ov, oi, best, bi);
    }
}

// Radix select: the largest key t such that the weight of the elements with key >= t (among those
// with key >= floor) is >= need; weight 1 (MASS false, need = need_or_frac) or q_i (MASS true:
// need = max(1, (total mass * need_or_frac) >> 32), frac = top_p * 2^32). Returns t; `above` gets
// the weight of the keys > t. Bins are scanned from the top, each thread owning nb / 1024 of them.
template <bool MASS, typename S>
__device__ unsigned int radix_select(const S* x, int n, unsigned int floor, float m, float temp,
                                     unsigned long long need_or_frac, unsigned long long& above_out, SampleSmem& s) {
    unsigned int prefix = 0u, pmask = 0u;
    unsigned long long above = 0ull, need = need_or_frac;
    for (int lv = 0; lv < 3; lv++) {
        const int sh = lv == 0 ? 20 : (lv == 1 ? 10 : 0), nb = lv == 0 ? 4096 : 1024;
        for (int b = threadIdx.x; b < nb; b += blockDim.x) s.hist[b] = 0ull;
        if (threadIdx.x == 0) { s.bin = 0u; s.above = above; }
        __syncthreads();
        for (int i = threadIdx.x; i < n; i += blockDim.x) {
            float v = to_f(x[i]);
            unsigned int k = fkey(v);
            if ((k & pmask) == prefix && k >= floor) {
                unsigned long long wgt = MASS ? fixq(prob_e(v, m, temp)) : 1ull;
                if (wgt) atomicAdd(&s.hist[(k >> sh) & (unsigned int)(nb - 1)], wgt);
            }
        }
        __syncthreads();
        const int bpt = nb / blockDim.x, top = nb - 1 - threadIdx.x * bpt;
        unsigned long long loc = 0ull, tot;
        for (int j = 0; j < bpt; j++) loc += s.hist[top - j];
        unsigned long long incl = block_scan_u64(loc, tot, s);
        if (MASS && lv == 0) {
            need = mul_shr32(tot, need_or_frac);
            if (need == 0ull) need = 1ull;
        }
        unsigned long long ex = above + incl - loc;
        if (ex < need && need <= above + incl) {
            for (int j = 0; j < bpt; j++) {
                unsigned long long h = s.hist[top - j];
                if (ex + h >= need) { s.bin = (unsigned int)(top - j); s.above = ex; break; }
                ex += h;
            }
        }
        __syncthreads();
        prefix |= s.bin << sh;
        pmask |= (unsigned int)(nb - 1) << sh;
        above = s.above;
        __syncthreads();
    }
    above_out = above;
    return prefix;
}

// Mass of element v in the kept set (0 when filtered out).
__device__ __forceinline__ unsigned long long kept_q(float v, unsigned int thr, float m, float t, float min_p) {
    if (fkey(v) < thr) return 0ull;
    float e = prob_e(v, m, t);
    return (min_p > 0.f && !(e >= min_p)) ? 0ull : fixq(e);
}

// Filter + draw over processed logits `x` (max m at index mi, finite; temperature > 0).
template <typename S>
__device__ int sample_filtered(const S* x, int n, const SampleParams& p, float m, int mi, SampleSmem& s) {
    const float t = p.temperature;
    unsigned int thr = 0u;
    unsigned long long above;
    if (p.top_k > 0 && p.top_k < n) thr = radix_select<false>(x, n, 0u, m, t, (unsigned long long)p.top_k, above, s);
    if (p.top_p < 1.f) {
        unsigned long long frac = (unsigned long long)__fmul_rn(fmaxf(p.top_p, 0.f), 4294967296.f);
        unsigned int tp = radix_select<true>(x, n, thr, m, t, frac, above, s);
        thr = max(thr, tp);
    }
    unsigned long long loc = 0ull, mass;
    for (int i = threadIdx.x; i < n; i += blockDim.x) loc += kept_q(to_f(x[i]), thr, m, t, p.min_p);
    block_scan_u64(loc, mass, s);
    const unsigned long long target = mul_shr32(mass, philox_x(p.seed, p.counter));
    if (threadIdx.x == 0) s.tok = -1;
    __syncthreads();
    // In index order, 4 consecutive elements per thread per tile.
    unsigned long long run = 0ull;
    for (int base = 0; base < n; base += 4 * blockDim.x) {
        unsigned long long q[4], l4 = 0ull, tot;
        const int i0 = base + 4 * threadIdx.x;
#pragma unroll
        for (int j = 0; j < 4; j++) {
            q[j] = i0 + j < n ? kept_q(to_f(x[i0 + j]), thr, m, t, p.min_p) : 0ull;
            l4 += q[j];
        }
        unsigned long long incl = block_scan_u64(l4, tot, s);
        unsigned long long ex = run + incl - l4;
        if (ex <= target && target < run + incl) {
#pragma unroll
            for (int j = 0; j < 4; j++) {
                ex += q[j];
                if (target < ex) { s.tok = i0 + j; break; }
            }
        }
        __syncthreads();
        if (s.tok >= 0) break;
        run += tot;
    }
    int tok = s.tok;
    return tok >= 0 && tok < n ? tok : mi;
}

// The `nn` best raw tokens (value desc, index asc) into s.top, sorted.
template <typename T> __device__ void top_tokens(const T* x, int n, int nn, SampleSmem& s) {
    unsigned long long above;
    const unsigned int t = radix_select<false>(x, n, 0u, 0.f, 1.f, (unsigned long long)nn, above, s);
    if (threadIdx.x == 0) s.cnt = 0;
    __syncthreads();
    for (int i = threadIdx.x; i < n; i += blockDim.x) {
        if (fkey(to_f(x[i])) > t) {
            int c = atomicAdd(&s.cnt, 1);
            if (c < SAMPLE_MAX_TOP) s.top[c] = i;
        }
    }
    __syncthreads();
    // ties at t: the lowest indices, by an in-order ballot scan
    int left = nn - (int)above, have = (int)above;
    const int lane = threadIdx.x & 31, w = threadIdx.x >> 5, nw = blockDim.x >> 5;
    for (int base = 0; base < n && left > 0; base += blockDim.x) {
        const int i = base + threadIdx.x;
        const bool f = i < n && fkey(to_f(x[i])) == t;
        const unsigned int bal = __ballot_sync(0xffffffffu, f);
        if (lane == 0) s.wc[w] = __popc(bal);
        __syncthreads();
        int before = 0, tot = 0;
        for (int k = 0; k < nw; k++) { before += k < w ? s.wc[k] : 0; tot += s.wc[k]; }
        const int rank = before + __popc(bal & ((1u << lane) - 1u));
        if (f && rank < left && have + rank < SAMPLE_MAX_TOP) s.top[have + rank] = i;
        have += min(tot, left);
        left -= tot;
        __syncthreads();
    }
    if (threadIdx.x == 0) {
        for (int a = 1; a < nn; a++) {
            int id = s.top[a], b = a - 1;
            float v = clean_l(to_f(x[id]));
            while (b >= 0) {
                float u = clean_l(to_f(x[s.top[b]]));
                if (u > v || (u == v && s.top[b] < id)) break;
                s.top[b + 1] = s.top[b];
                b--;
            }
            s.top[b + 1] = id;
        }
    }
    __syncthreads();
}

template <typename T>
__device__ void sample_impl(const T* x, int n, const SampleParams* prm, const int* counts, const unsigned char* pmask,
                            int nslots, const int* boff, const int* bids, const float* bval, int nnz, float* ws,
                            int* tok_out, float* lp_out, int* top_ids, float* top_lps, int top_stride) {
    __shared__ SampleSmem s;
    pdl_start();
    const long row = blockIdx.x;
    const SampleParams p = prm[row];
    const T* xr = x + row * n;
    float* w = ws + row * n;
    const bool pen = counts && pmask && p.slot >= 0 && p.slot < nslots &&
                     (p.repetition_penalty != 1.f || p.presence_penalty != 0.f || p.frequency_penalty != 0.f);
    int b0 = 0, b1 = 0;
    if (boff) {
        b0 = min(max(boff[row], 0), nnz);
        b1 = min(max(boff[row + 1], b0), nnz);
    }
    const bool direct = !pen && b1 == b0;  // processed logits == raw: read x, skip the workspace
    const int nlp = (lp_out && p.logprobs >= 0) ? min(min(p.logprobs, top_ids ? top_stride : 0), SAMPLE_MAX_TOP) : -1;
    const int* cr = pen ? counts + (long)p.slot * n : nullptr;
    const unsigned char* mr = pen ? pmask + (long)p.slot * n : nullptr;
    // pass 1: raw argmax (greedy / fallback), raw online max + sum (logprobs), processed logits
    float rb = -INFINITY, rm = -INFINITY, rs = 0.f;
    int ri = 0x7fffffff;
    for (int i = threadIdx.x; i < n; i += blockDim.x) {
        const float v = to_f(xr[i]);
        take_max(v, i, rb, ri);
        if (nlp >= 0 && v > -INFINITY) {
            if (v > rm) { rs = rs * expf(rm - v) + 1.f; rm = v; } else rs += expf(v - rm);
        }
        if (!direct) w[i] = pen ? penalize(v, cr[i], mr[i], p) : v;
    }
    block_argmax(rb, ri, s);
    float pb = rb;
    int pi = ri;
    if (!direct) {
        __syncthreads();
        for (int j = b0 + threadIdx.x; j < b1; j += blockDim.x) {
            const int id = bids[j];
            if (id >= 0 && id < n) w[id] = __fadd_rn(w[id], bval[j]);
        }
        __syncthreads();
        pb = -INFINITY;
        pi = 0x7fffffff;
        for (int i = threadIdx.x; i < n; i += blockDim.x) take_max(w[i], i, pb, pi);
        block_argmax(pb, pi, s);
    }
    int tok;
    if (pi == 0x7fffffff || pb == -INFINITY) tok = ri == 0x7fffffff ? 0 : ri;
    else if (!(p.temperature > 0.f) || pb == INFINITY) tok = pi;
    else tok = direct ? sample_filtered(xr, n, p, pb, pi, s) : sample_filtered(w, n, p, pb, pi, s);
    if (threadIdx.x == 0) tok_out[row] = tok;
    if (nlp < 0) return;
    // logprobs of the raw distribution
    const float gm = block_max(rm);
    const float S = block_sum(gm > -INFINITY ? rs * expf(rm - gm) : 0.f);
    const float lse = gm + logf(S);
    if (threadIdx.x == 0) lp_out[row] = to_f(xr[tok]) - lse;
    if (!top_ids) return;
    const int nn = min(nlp, n);
    if (nn > 0) top_tokens(xr, n, nn, s);
    for (int j = threadIdx.x; j < top_stride; j += blockDim.x) {
        const int id = j < nn ? s.top[j] : -1;
        top_ids[row * top_stride + j] = id;
        top_lps[row * top_stride + j] = id >= 0 ? to_f(xr[id]) - lse : -INFINITY;
    }
}

// ---- launchers
#define SAMPLE_ARGS(T)                                                                                          \
    const T *x, int n, const SampleParams *prm, const int *counts, const unsigned char *pmask, int nslots,      \
        const int *boff, const int *bids, const float *bval, int nnz, float *ws, int *tok, float *lp, int *tids, \
        float *tlps, int ts
#define SAMPLE_PASS x, n, prm, counts, pmask, nslots, boff, bids, bval, nnz, ws, tok, lp, tids, tlps, ts
extern "C" __global__ void __launch_bounds__(1024) sample_f32(SAMPLE_ARGS(float)) { sample_impl(SAMPLE_PASS); }
extern "C" __global__ void __launch_bounds__(1024) sample_bf16(SAMPLE_ARGS(bf16)) { sample_impl(SAMPLE_PASS); }

// Block b resets slot slots[b]: counts = histogram of its output ids (ooff/oids CSR, may be null),
// prompt_mask = its prompt ids (poff/pids CSR). Slots of one launch must be distinct.
extern "C" __global__ void sample_slots_init(int* counts, unsigned char* pmask, int n, int nslots, const int* slots,
                                             const int* poff, const int* pids, int pnnz, const int* ooff,
                                             const int* oids, int onnz) {
    pdl_start();
    const int b = blockIdx.x, sl = slots[b];
    if (sl < 0 || sl >= nslots) return;
    int* c = counts + (long)sl * n;
    unsigned char* m = pmask + (long)sl * n;
    for (int i = threadIdx.x; i < n; i += blockDim.x) { c[i] = 0; m[i] = 0; }
    __syncthreads();
    const int p0 = min(max(poff[b], 0), pnnz), p1 = min(max(poff[b + 1], p0), pnnz);
    for (int j = p0 + threadIdx.x; j < p1; j += blockDim.x) {
        const int id = pids[j];
        if (id >= 0 && id < n) m[id] = 1;
    }
    if (!ooff) return;
    const int o0 = min(max(ooff[b], 0), onnz), o1 = min(max(ooff[b + 1], o0), onnz);
    for (int j = o0 + threadIdx.x; j < o1; j += blockDim.x) {
        const int id = oids[j];
        if (id >= 0 && id < n) atomicAdd(c + id, 1);
    }
}

// counts[prm[r].slot][tok[r]] += 1 for every row with a slot (one launch per step).
extern "C" __global__ void sample_count_tokens(int* counts, int n, int nslots, const SampleParams* prm, const int* tok,
                                               int rows) {
    pdl_start();
    for (int r = blockIdx.x * blockDim.x + threadIdx.x; r < rows; r += gridDim.x * blockDim.x) {
        const int sl = prm[r].slot, t = tok[r];
        if (sl >= 0 && sl < nslots && t >= 0 && t < n) atomicAdd(counts + (long)sl * n + t, 1);
    }
}
