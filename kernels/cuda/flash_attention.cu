// Flash-attention prefill over the paged KV cache: bf16, tensor cores (mma.sync m16n8k16, sm_80+).
// This is the 64-query-tile kernel; flash_attention_bq128.cu (same translation unit, after this
// file: it uses the helpers below) holds the 128-query one, the default where two of its blocks
// fit an SM (kernels/src/flash.rs `Variant`; TRTLLM_FLASH_BQ64=1 keeps this one).
//
// Layouts: q and out [tokens, heads, HD]; k and v cache [slots, kv_heads, HD]; the key at position
// j of a sequence lives in slot table[j / bs] * bs + j % bs of that sequence's block table.
// Work: grid (heads, tiles), 128 threads = 4 warps. A tile (host-built, kernels/src/flash.rs) is
// <= 64 consecutive query tokens of one sequence, 8 ints:
//   [q0 = first packed token, nq = rows, p0 = position of row 0, seq, kv_lo, kv_hi, 0, 0]
// and the sequence's block table starts at bt + bt_off[seq] (the paged kernel's operands).
// Row r (position p0 + r) sees keys [max(0, p0 + r + 1 - window), p0 + r] (window 0 = all);
// [kv_lo, kv_hi] is the union over the tile's rows, so fully masked causal tiles are never visited.
// Warp w owns query rows 16w..16w+15; its Q fragments stay in registers. Per key tile of 64:
//   K, V rows -> smem by cp.async, issued one tile ahead into the other of two buffers (rows
//   padded to HD + 8 elements: conflict-free ldmatrix); S = Q K^T (f32) -> scale, soft-cap, mask
//   -> online softmax in f32 (base 2) -> P as bf16 -> O += P V (V by ldmatrix.trans), O in f32
//   registers; out = O / l at the end. One barrier per key tile.
// A warp skips the math of a key tile none of its rows can see. Dynamic smem (launcher:
// flash.rs smem_bytes): 4 x 64 x (HD + 8) x 2 B + 512 B = 70,144 B at HD 128.
// Compiled twice (kernels/src/module.rs): bf16 caches, and with KV8 FP8 E4M3 caches (entries
// `*_kv8_hd*`): K/V rows are then read by plain loads, widened to bf16 (exact) and stored into
// the same smem tiles; the host folds k_scale into `scale`, the output is multiplied by
// `vs` = v_scale (1 for bf16).

// ---- kernels
#define FA_BQ 64
#define FA_BK 64
#define FA_THREADS 128
#define FA_LOG2E 1.4426950408889634f
#ifdef KV8
typedef e4m3 kv_t;
#define FA_ENTRY(base, HD) base##_kv8_hd##HD
#else
typedef bf16 kv_t;
#define FA_ENTRY(base, HD) base##_hd##HD
#endif

__device__ __forceinline__ unsigned fa_smem(const void* p) {
    unsigned r;
    asm("{ .reg .u64 a; cvta.to.shared.u64 a, %1; cvt.u32.u64 %0, a; }" : "=r"(r) : "l"(p));
    return r;
}
// 16-byte global -> shared copy; `bytes` 0 zero-fills the destination (src is not read).
__device__ __forceinline__ void fa_cp16(void* dst, const void* src, int bytes) {
    asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;" ::"r"(fa_smem(dst)), "l"(src), "r"(bytes) : "memory");
}
__device__ __forceinline__ void fa_commit() { asm volatile("cp.async.commit_group;" ::: "memory"); }
template <int N> __device__ __forceinline__ void fa_wait() { asm volatile("cp.async.wait_group %0;" ::"n"(N) : "memory"); }
// Two floats -> bf16x2 (round to nearest even); `lo` goes to the low half (the lower index).
__device__ __forceinline__ unsigned fa_pack(float lo, float hi) {
    unsigned r;
    asm("cvt.rn.bf16x2.f32 %0, %1, %2;" : "=r"(r) : "f"(hi), "f"(lo));
    return r;
}
// c[16x8] += a[16x16] b[16x8]. Fragments (g = lane / 4, t = lane % 4, pairs along the k or n index):
//   a0 (g, 2t..) a1 (g+8, 2t..) a2 (g, 2t+8..) a3 (g+8, 2t+8..); b0 (k 2t.., n g) b1 (k 2t+8.., n g);
//   c0,c1 (g, 2t..) c2,c3 (g+8, 2t..).
__device__ __forceinline__ void fa_mma(float* c, const unsigned* a, unsigned b0, unsigned b1) {
    asm("mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, {%0,%1,%2,%3};"
        : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
        : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
}
// Four 8x8 bf16 matrices (r[i] = matrix i); lane l gives the address of matrix l / 8, row l % 8.
// Lane g * 4 + t receives row g, columns 2t, 2t + 1 (transposed: rows 2t, 2t + 1 of column g).
__device__ __forceinline__ void fa_ldsm(unsigned* r, const void* p) {
    asm volatile("ldmatrix.sync.aligned.m8n8.x4.shared.b16 {%0,%1,%2,%3}, [%4];"
                 : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
                 : "r"(fa_smem(p))
                 : "memory");
}
__device__ __forceinline__ void fa_ldsm_t(unsigned* r, const void* p) {
    asm volatile("ldmatrix.sync.aligned.m8n8.x4.trans.shared.b16 {%0,%1,%2,%3}, [%4];"
                 : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
                 : "r"(fa_smem(p))
                 : "memory");
}

// Slot of key j (-1 past kv_hi: its K/V rows are zero-filled, never read).
__device__ __forceinline__ int fa_slot(const int* table, int j, int kv_hi, int bs) {
    return j <= kv_hi ? table[j / bs] * bs + j % bs : -1;
}

#ifdef KV8
// 8 E4M3 cache elements -> 8 bf16 (exact) in one 16-byte smem store.
__device__ __forceinline__ void fa_st8(unsigned short* dst, uint2 r) {
    float f[8];
    unpack(r, f, (const e4m3*)nullptr);
    *(uint4*)dst = make_uint4(fa_pack(f[0], f[1]), fa_pack(f[2], f[3]), fa_pack(f[4], f[5]), fa_pack(f[6], f[7]));
}
#endif

// K and V rows of the 64 keys whose slots are in `slot` -> padded smem rows (async; one group;
// with KV8 the loads are plain and the group is empty).
template <int HD>
__device__ __forceinline__ void fa_load_kv(unsigned short* sk, unsigned short* sv, const int* slot, const kv_t* kc,
                                           const kv_t* vc, long kvstride, int kh) {
    constexpr int ST = HD + 8, CH = HD / 8;
    for (int c = threadIdx.x; c < FA_BK * CH; c += FA_THREADS) {
        int r = c / CH, col = (c % CH) * 8, s = slot[r];
        long off = s >= 0 ? (long)s * kvstride + (long)kh * HD + col : 0;
#ifdef KV8
        uint2 z = make_uint2(0u, 0u);
        fa_st8(sk + r * ST + col, s >= 0 ? __ldg((const uint2*)(kc + off)) : z);
        fa_st8(sv + r * ST + col, s >= 0 ? __ldg((const uint2*)(vc + off)) : z);
#else
        fa_cp16(sk + r * ST + col, kc + off, s >= 0 ? 16 : 0);
        fa_cp16(sv + r * ST + col, vc + off, s >= 0 ? 16 : 0);
#endif
    }
    fa_commit();
}

// Dynamic smem (fa_smem_bytes): K[2][64][HD + 8], V[2][64][HD + 8] (bf16), slots[2][64] (int).
// Key tile i lives in buffer i & 1; its copies are issued one tile ahead, so they land while
// the tile before is being multiplied; one barrier per tile.
template <int HD>
__device__ __forceinline__ void flash_impl(const bf16* __restrict__ q, const kv_t* __restrict__ kc,
                                           const kv_t* __restrict__ vc, bf16* __restrict__ out, int nh, int nkv,
                                           float scale, int window, float softcap, const int* __restrict__ tiles,
                                           const int* __restrict__ bt, const int* __restrict__ bt_off, int bs, float vs) {
#if __CUDA_ARCH__ >= 800
    constexpr int ST = HD + 8;  // padded smem row, elements
    constexpr int KS = HD / 16; // k-steps of Q K^T
    constexpr int DN = HD / 8;  // n-tiles of O
    constexpr int CH = HD / 8;  // 16-byte chunks per row
    constexpr int NT = FA_BK / 8, KK = FA_BK / 16;
    extern __shared__ __align__(16) unsigned char fa_sm[];
    unsigned short* sk = (unsigned short*)fa_sm;  // [2][FA_BK * ST]
    unsigned short* sv = sk + 2 * FA_BK * ST;     // [2][FA_BK * ST]
    int* sslot = (int*)(sv + 2 * FA_BK * ST);     // [2][FA_BK]
    const int h = blockIdx.x;
    const int* td = tiles + blockIdx.y * 8;
    const int q0 = td[0], nq = td[1], p0 = td[2], kv_lo = td[4], kv_hi = td[5];
    const int* table = bt + bt_off[td[3]];
    const int kh = h / (nh / nkv);
    const int tid = threadIdx.x, lane = tid & 31, warp = tid >> 5, g = lane >> 2, tq = lane & 3;
    const long qstride = (long)nh * HD, kvstride = (long)nkv * HD;

    // Q tile -> smem (K buffer 1 as staging, rows >= nq zero); slots of key tiles 0 and 1.
    unsigned short* sq = sk + FA_BK * ST;
    for (int c = tid; c < FA_BQ * CH; c += FA_THREADS) {
        int r = c / CH, col = (c % CH) * 8;
        uint4 v = {0u, 0u, 0u, 0u};
        if (r < nq) v = *(const uint4*)(q + (long)(q0 + r) * qstride + (long)h * HD + col);
        *(uint4*)(sq + r * ST + col) = v;
    }
    if (tid < FA_BK) {
        sslot[tid] = fa_slot(table, kv_lo + tid, kv_hi, bs);
        sslot[FA_BK + tid] = fa_slot(table, kv_lo + FA_BK + tid, kv_hi, bs);
    }
    __syncthreads();
    fa_load_kv<HD>(sk, sv, sslot, kc, vc, kvstride, kh);  // key tile 0 -> buffer 0
    const int ra = warp * 16 + g, rb = ra + 8;            // this lane's two rows
    unsigned qa[KS][4];
#pragma unroll
    for (int ks = 0; ks < KS; ks++) {
        const unsigned short* p = sq + ra * ST + ks * 16 + tq * 2;
        qa[ks][0] = *(const unsigned*)p;
        qa[ks][1] = *(const unsigned*)(p + 8 * ST);
        qa[ks][2] = *(const unsigned*)(p + 8);
        qa[ks][3] = *(const unsigned*)(p + 8 * ST + 8);
    }
    // Row r sees keys [lo, pos]; a missing row (r >= nq) has pos -1 and sees none.
    const int pos_a = ra < nq ? p0 + ra : -1, pos_b = rb < nq ? p0 + rb : -1;
    const int lo_a = window > 0 ? pos_a + 1 - window : 0, lo_b = window > 0 ? pos_b + 1 - window : 0;
    // The warp's rows together see at most keys [w_lo, w_hi].
    const int w_rows = min(16, nq - warp * 16);
    const int w_hi = w_rows > 0 ? p0 + warp * 16 + w_rows - 1 : -1;
    const int w_lo = window > 0 ? p0 + warp * 16 + 1 - window : 0;
    // Scores in base-2 units: s * scale * log2(e) (soft-capped scores get log2(e) after the cap).
    const float qk_scale = softcap > 0.f ? scale : scale * FA_LOG2E;

    float o[DN][4];
#pragma unroll
    for (int i = 0; i < DN; i++) o[i][0] = o[i][1] = o[i][2] = o[i][3] = 0.f;
    float m_a = -INFINITY, m_b = -INFINITY, l_a = 0.f, l_b = 0.f;

    for (int kt = kv_lo, buf = 0; kt <= kv_hi; kt += FA_BK, buf ^= 1) {
        // Tile i landed, and every warp is done with tile i - 1 (buffer buf ^ 1, slots[buf ^ 1]
        // read) and with the Q staging.
        fa_wait<0>();
        __syncthreads();
        if (kt + FA_BK <= kv_hi)  // tile i + 1 -> the other buffer, while this one is multiplied
            fa_load_kv<HD>(sk + (buf ^ 1) * FA_BK * ST, sv + (buf ^ 1) * FA_BK * ST, sslot + (buf ^ 1) * FA_BK, kc,
                           vc, kvstride, kh);
        // Block id of tile i + 2's key, loaded now and stored after the math (latency hidden).
        int next = -1;
        if (tid < FA_BK && kt + 2 * FA_BK + tid <= kv_hi) next = table[(kt + 2 * FA_BK + tid) / bs];
        const unsigned short* bk = sk + buf * FA_BK * ST;
        const unsigned short* bv = sv + buf * FA_BK * ST;
        if (kt <= w_hi && kt + FA_BK - 1 >= w_lo) {  // warp-uniform: some row of this warp sees a key here
            // ldmatrix of K rows (keys) nt*8 + 0..7 x dims ks*16 + {0, 8, 16, 24} + 0..7: b[0], b[1]
            // = B fragment of k-step ks, b[2], b[3] = of k-step ks + 1.
            float s[NT][4];
#pragma unroll
            for (int nt = 0; nt < NT; nt++) {
                s[nt][0] = s[nt][1] = s[nt][2] = s[nt][3] = 0.f;
#pragma unroll
                for (int ks = 0; ks < KS; ks += 2) {
                    unsigned b[4];
                    fa_ldsm(b, bk + (nt * 8 + (lane & 7)) * ST + ks * 16 + (lane >> 3) * 8);
                    fa_mma(s[nt], qa[ks], b[0], b[1]);
                    fa_mma(s[nt], qa[ks + 1], b[2], b[3]);
                }
            }
            float mx_a = -INFINITY, mx_b = -INFINITY;
#pragma unroll
            for (int nt = 0; nt < NT; nt++) {
#pragma unroll
                for (int e = 0; e < 4; e++) {
                    int j = kt + nt * 8 + tq * 2 + (e & 1);
                    float x = s[nt][e] * qk_scale;
                    if (softcap > 0.f) x = tanhf(x / softcap) * softcap * FA_LOG2E;
                    bool ok = e < 2 ? (j >= lo_a && j <= pos_a) : (j >= lo_b && j <= pos_b);
                    x = ok ? x : -INFINITY;
                    s[nt][e] = x;
                    if (e < 2) mx_a = fmaxf(mx_a, x);
                    else mx_b = fmaxf(mx_b, x);
                }
            }
            mx_a = fmaxf(mx_a, __shfl_xor_sync(0xffffffffu, mx_a, 1));
            mx_a = fmaxf(mx_a, __shfl_xor_sync(0xffffffffu, mx_a, 2));
            mx_b = fmaxf(mx_b, __shfl_xor_sync(0xffffffffu, mx_b, 1));
            mx_b = fmaxf(mx_b, __shfl_xor_sync(0xffffffffu, mx_b, 2));
            const float mn_a = fmaxf(m_a, mx_a), mn_b = fmaxf(m_b, mx_b);
            // Nothing seen yet (max -inf): subtract 0, so p = exp2(-inf) = 0 instead of NaN.
            const float base_a = mn_a == -INFINITY ? 0.f : mn_a, base_b = mn_b == -INFINITY ? 0.f : mn_b;
            const float al_a = exp2f(m_a - base_a), al_b = exp2f(m_b - base_b);
            m_a = mn_a;
            m_b = mn_b;
            float sum_a = 0.f, sum_b = 0.f;
#pragma unroll
            for (int nt = 0; nt < NT; nt++) {
                s[nt][0] = exp2f(s[nt][0] - base_a);
                s[nt][1] = exp2f(s[nt][1] - base_a);
                s[nt][2] = exp2f(s[nt][2] - base_b);
                s[nt][3] = exp2f(s[nt][3] - base_b);
                sum_a += s[nt][0] + s[nt][1];
                sum_b += s[nt][2] + s[nt][3];
            }
            l_a = l_a * al_a + sum_a;  // per-lane partial row sums; the quad is summed at the end
            l_b = l_b * al_b + sum_b;
#pragma unroll
            for (int i = 0; i < DN; i++) {
                o[i][0] *= al_a;
                o[i][1] *= al_a;
                o[i][2] *= al_b;
                o[i][3] *= al_b;
            }
            // The C fragments of key n-tiles 2kk, 2kk+1 are the A fragment of PV k-step kk;
            // ldmatrix.trans of V rows (keys) kk*16 + {0..7, 8..15} x dims dp*16 + {0..7, 8..15}:
            // b[0], b[1] = B fragment of dim n-tile 2dp; b[2], b[3] = of n-tile 2dp + 1.
            const int lr = (lane & 7) + ((lane >> 3) & 1) * 8, lc = ((lane >> 4) & 1) * 8;
#pragma unroll
            for (int kk = 0; kk < KK; kk++) {
                unsigned pa[4];
                pa[0] = fa_pack(s[2 * kk][0], s[2 * kk][1]);
                pa[1] = fa_pack(s[2 * kk][2], s[2 * kk][3]);
                pa[2] = fa_pack(s[2 * kk + 1][0], s[2 * kk + 1][1]);
                pa[3] = fa_pack(s[2 * kk + 1][2], s[2 * kk + 1][3]);
#pragma unroll
                for (int dp = 0; dp < HD / 16; dp++) {
                    unsigned b[4];
                    fa_ldsm_t(b, bv + (kk * 16 + lr) * ST + dp * 16 + lc);
                    fa_mma(o[2 * dp], pa, b[0], b[1]);
                    fa_mma(o[2 * dp + 1], pa, b[2], b[3]);
                }
            }
        }
        // slots[buf] (tile i's, used at the top of iteration i - 1) now takes tile i + 2's; read
        // after the next barrier.
        if (tid < FA_BK) {
            int j = kt + 2 * FA_BK + tid;
            sslot[buf * FA_BK + tid] = next >= 0 ? next * bs + j % bs : -1;
        }
    }
    l_a += __shfl_xor_sync(0xffffffffu, l_a, 1);
    l_a += __shfl_xor_sync(0xffffffffu, l_a, 2);
    l_b += __shfl_xor_sync(0xffffffffu, l_b, 1);
    l_b += __shfl_xor_sync(0xffffffffu, l_b, 2);
    // A present row always sees its own position, so l > 0 there.
    if (ra < nq) {
        unsigned* dst = (unsigned*)(out + (long)(q0 + ra) * qstride + (long)h * HD + tq * 2);
        float inv = vs / l_a;
#pragma unroll
        for (int i = 0; i < DN; i++) dst[i * 4] = fa_pack(o[i][0] * inv, o[i][1] * inv);
    }
    if (rb < nq) {
        unsigned* dst = (unsigned*)(out + (long)(q0 + rb) * qstride + (long)h * HD + tq * 2);
        float inv = vs / l_b;
#pragma unroll
        for (int i = 0; i < DN; i++) dst[i * 4] = fa_pack(o[i][2] * inv, o[i][3] * inv);
    }
#endif
}

// ---- launchers
#define FA_ARGS const bf16 *q, const kv_t *kc, const kv_t *vc, bf16 *o, int nh, int nkv, float scale, int win, \
    float cap, const int *tiles, const int *bt, const int *bo, int bs, float vs
#define FA_CALL(impl, HD) impl<HD>(q, kc, vc, o, nh, nkv, scale, win, cap, tiles, bt, bo, bs, vs)
extern "C" __global__ void __launch_bounds__(FA_THREADS) FA_ENTRY(flash_prefill_bf16, 64)(FA_ARGS) { FA_CALL(flash_impl, 64); }
extern "C" __global__ void __launch_bounds__(FA_THREADS) FA_ENTRY(flash_prefill_bf16, 96)(FA_ARGS) { FA_CALL(flash_impl, 96); }
extern "C" __global__ void __launch_bounds__(FA_THREADS) FA_ENTRY(flash_prefill_bf16, 128)(FA_ARGS) { FA_CALL(flash_impl, 128); }
