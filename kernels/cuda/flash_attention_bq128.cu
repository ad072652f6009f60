// Flash-attention prefill with 128-query tiles: the default variant where two blocks fit an SM
// (kernels/src/flash.rs `Variant::Bq128`; TRTLLM_FLASH_BQ64=1 selects flash_attention.cu's
// 64-query kernel instead). Compiled in one translation unit after flash_attention.cu
// (kernels/src/module.rs), whose helpers (fa_cp16, fa_mma, fa_ldsm*, fa_pack, fa_slot, fa_load_kv)
// and conventions it shares: the operands, tile descriptors (here <= 128 rows), masking, softmax.
//
// Why: with 16 query rows per warp, every warp of the 64 kernel ldmatrix-reads the whole K and V
// tile (32 KB per 64 keys at HD 128) for 16 x 64 x HD x 2 MACs, so shared-memory bandwidth bounds
// it, not the tensor cores. Here warp w owns the 32 rows 32w..32w+31 (two m16 tiles), so every K
// and V fragment feeds two mma's. Q stays in shared memory, re-read by ldmatrix per key tile: in
// registers (2 x HD/16 x 4 words) it would not fit next to O (2 x HD/8 x 4 floats, 128 at HD 128)
// and S (2 x 8 x 4 floats). Per key tile of 64, K and V copied by cp.async one tile ahead into the
// other of two buffers: S = Q K^T -> scale, soft-cap -> mask (only on tiles crossing an edge of
// some present row's range) -> online softmax (ex2.approx) -> P as bf16 -> O += P V. One barrier
// per key tile. Block-table entries are copied (cp.async) three tiles ahead and turned into slots
// two tiles ahead, so no global load is waited on inside the loop.
// Lane (g = lane / 4, t = lane % 4) holds rows wr + 8i + g, i = 0..3 (i = 2 x m-tile + half).
// Dynamic smem (flash.rs `Variant::smem_bytes`): Q[128][HD + 8], K and V [2][64][HD + 8] bf16,
// slots and block ids [2][64] int each = 105,472 B at HD 128: two blocks (8 warps) per SM on
// sm_90 (228 KB), one on sm_80 (164 KB: flash.rs keeps the 64 kernel there).

// ---- kernels
#define FB_BQ 128

// fa_ldsm / fa_ldsm_t on a 32-bit shared address (no generic-pointer arithmetic in the loop).
__device__ __forceinline__ void fb_ldsm(unsigned* r, unsigned a) {
    asm volatile("ldmatrix.sync.aligned.m8n8.x4.shared.b16 {%0,%1,%2,%3}, [%4];"
                 : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
                 : "r"(a)
                 : "memory");
}
__device__ __forceinline__ void fb_ldsm_t(unsigned* r, unsigned a) {
    asm volatile("ldmatrix.sync.aligned.m8n8.x4.trans.shared.b16 {%0,%1,%2,%3}, [%4];"
                 : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
                 : "r"(a)
                 : "memory");
}
__device__ __forceinline__ float fb_ex2(float x) {  // 2^x; -inf -> 0
    float r;
    asm("ex2.approx.ftz.f32 %0, %1;" : "=f"(r) : "f"(x));
    return r;
}

// 4-byte global -> shared copy; `bytes` 0 zero-fills the destination (src is not read).
__device__ __forceinline__ void fb_cp4(void* dst, const void* src, int bytes) {
    asm volatile("cp.async.ca.shared.global [%0], [%1], 4, %2;" ::"r"(fa_smem(dst)), "l"(src), "r"(bytes) : "memory");
}

// Block id of key j (block-table entry) -> *blk, async (0 past kv_hi: table not read).
__device__ __forceinline__ void fb_load_blk(int* blk, const int* table, int j, int kv_hi, int bs) {
    fb_cp4(blk, j <= kv_hi ? table + j / bs : table, j <= kv_hi ? 4 : 0);
}

template <int HD>
__device__ __forceinline__ void flash128_impl(const bf16* __restrict__ q, const kv_t* __restrict__ kc,
                                              const kv_t* __restrict__ vc, bf16* __restrict__ out, int nh, int nkv,
                                              float scale, int window, float softcap, const int* __restrict__ tiles,
                                              const int* __restrict__ bt, const int* __restrict__ bt_off, int bs, float vs) {
#if __CUDA_ARCH__ >= 800
    constexpr int ST = HD + 8;  // padded smem row, elements
    constexpr int KS = HD / 16; // k-steps of Q K^T
    constexpr int DN = HD / 8;  // n-tiles of O
    constexpr int CH = HD / 8;  // 16-byte chunks per row
    constexpr int NT = FA_BK / 8, KK = FA_BK / 16;
    extern __shared__ __align__(16) unsigned char fb_sm[];
    unsigned short* sq = (unsigned short*)fb_sm;  // [FB_BQ * ST]
    unsigned short* sk = sq + FB_BQ * ST;         // [2][FA_BK * ST]
    unsigned short* sv = sk + 2 * FA_BK * ST;     // [2][FA_BK * ST]
    int* sslot = (int*)(sv + 2 * FA_BK * ST);     // [2][FA_BK] slots of a key tile's keys
    int* sblk = sslot + 2 * FA_BK;                // [2][FA_BK] block ids of a key tile's keys
    const int h = blockIdx.x;
    const int* td = tiles + blockIdx.y * 8;
    const int q0 = td[0], nq = td[1], p0 = td[2], kv_lo = td[4], kv_hi = td[5];
    const int* table = bt + bt_off[td[3]];
    const int kh = h / (nh / nkv);
    const int tid = threadIdx.x, lane = tid & 31, warp = tid >> 5, g = lane >> 2, tq = lane & 3;
    const long qstride = (long)nh * HD;
    const int kvstride = nkv * HD;
    const kv_t *khead = kc + kh * HD, *vhead = vc + kh * HD;  // kv head kh of slot 0

    // Slots of key tiles 0 and 1; block ids of tile 2 -> blk[0], Q (rows >= nq zero-filled) and key
    // tile 0 -> buffer 0: one copy group.
    if (tid < FA_BK) {
        sslot[tid] = fa_slot(table, kv_lo + tid, kv_hi, bs);
        sslot[FA_BK + tid] = fa_slot(table, kv_lo + FA_BK + tid, kv_hi, bs);
        fb_load_blk(sblk + tid, table, kv_lo + 2 * FA_BK + tid, kv_hi, bs);
    }
    for (int c = tid; c < FB_BQ * CH; c += FA_THREADS) {
        int r = c / CH, col = (c % CH) * 8;
        const bf16* src = r < nq ? q + (long)(q0 + r) * qstride + (long)h * HD + col : q;
        fa_cp16(sq + r * ST + col, src, r < nq ? 16 : 0);
    }
    __syncthreads();
    fa_load_kv<HD>(sk, sv, sslot, khead, vhead, kvstride, 0);  // commits

    // Positions relative to the warp's first row (position base), which it has when w_rows > 0:
    // row wr + r sees key base + d when d is in (r - window, r] (window 0: (-inf, r]). A missing
    // row (>= nq) is not masked apart: its Q is zero, its scores finite, its output unused.
    const int wr = warp * 32, base = p0 + wr, w_rows = min(32, nq - wr);
    const int wlim = window > 0 ? -window : -0x7fffffff - 1;
    // Scores in base-2 units: s * scale * log2(e) = s * mul; a soft-capped score gets log2(e) after
    // the cap (mul 1).
    const bool capped = softcap > 0.f;
    const float qk_scale = capped ? scale / softcap : scale * FA_LOG2E;
    const float cap2 = softcap * FA_LOG2E, mul = capped ? 1.f : qk_scale;

    float o[2][DN][4];
#pragma unroll
    for (int mt = 0; mt < 2; mt++)
#pragma unroll
        for (int i = 0; i < DN; i++) o[mt][i][0] = o[mt][i][1] = o[mt][i][2] = o[mt][i][3] = 0.f;
    float m[4], l[4];
#pragma unroll
    for (int i = 0; i < 4; i++) m[i] = -INFINITY, l[i] = 0.f;

    // ldmatrix lane addresses. Q (A operand, m-tile rows x 16 dims): lanes 0-15 rows 0-15 at dims
    // +0, lanes 16-31 at +8 -> a0..a3. K (B operand of two key n-tiles x one k-step): lanes 0-7 keys
    // 0-7 dims +0, 8-15 keys 0-7 dims +8, 16-23 keys 8-15 dims +0, 24-31 keys 8-15 dims +8 -> b[0], b[1]
    // of n-tile 2np, b[2], b[3] of 2np + 1. V (trans, 16 keys x two dim n-tiles), as in flash_impl.
    // Byte addresses in the shared window.
    const unsigned qp = fa_smem(sq + (wr + (lane & 15)) * ST + (lane >> 4) * 8);
    const unsigned kp = fa_smem(sk + ((lane & 7) + ((lane >> 4) << 3)) * ST + ((lane >> 3) & 1) * 8);
    const unsigned vp = fa_smem(sv + ((lane & 7) + ((lane >> 3) & 1) * 8) * ST + ((lane >> 4) & 1) * 8);

    for (int kt = kv_lo, buf = 0; kt <= kv_hi; kt += FA_BK, buf ^= 1) {
        // Tile i (and Q, and tile i + 2's block ids) landed; every warp is done with tile i - 1
        // (buffer buf ^ 1) and has issued tile i's copies (slots[buf] read).
        fa_wait<0>();
        __syncthreads();
        // While this tile is multiplied: tile i + 1 -> the other buffer; tile i + 2's slots ->
        // slots[buf] (from the block ids this thread copied to blk[buf] a tile ago); tile i + 3's
        // block ids -> blk[buf ^ 1]. One copy group; no global load waited on here.
        if (tid < FA_BK) {
            const int j = kt + 2 * FA_BK + tid;
            sslot[buf * FA_BK + tid] = j <= kv_hi ? sblk[buf * FA_BK + tid] * bs + j % bs : -1;
            fb_load_blk(sblk + (buf ^ 1) * FA_BK + tid, table, j + FA_BK, kv_hi, bs);
        }
        if (kt + FA_BK <= kv_hi)
            fa_load_kv<HD>(sk + (buf ^ 1) * FA_BK * ST, sv + (buf ^ 1) * FA_BK * ST, sslot + (buf ^ 1) * FA_BK, khead,
                           vhead, kvstride, 0);
        else
            fa_commit();
        const unsigned bk = kp + buf * (FA_BK * ST * 2), bv = vp + buf * (FA_BK * ST * 2);
        // Tile keys base + rel .. base + rel + 63. Warp-uniform: some present row of this warp sees
        // one of them (the last row the first key, the first row the last key).
        const int rel = kt - base;
        if (w_rows > 0 && rel < w_rows && rel + FA_BK - 1 > wlim) {
            float s[2][NT][4];
#pragma unroll
            for (int mt = 0; mt < 2; mt++)
#pragma unroll
                for (int nt = 0; nt < NT; nt++) s[mt][nt][0] = s[mt][nt][1] = s[mt][nt][2] = s[mt][nt][3] = 0.f;
#pragma unroll
            for (int ks = 0; ks < KS; ks++) {
                unsigned qa[2][4];
                fb_ldsm(qa[0], qp + ks * 32);
                fb_ldsm(qa[1], qp + (16 * ST + ks * 16) * 2);
#pragma unroll
                for (int np = 0; np < NT / 2; np++) {
                    unsigned b[4];
                    fb_ldsm(b, bk + (np * 16 * ST + ks * 16) * 2);
                    fa_mma(s[0][2 * np], qa[0], b[0], b[1]);
                    fa_mma(s[1][2 * np], qa[1], b[0], b[1]);
                    fa_mma(s[0][2 * np + 1], qa[0], b[2], b[3]);
                    fa_mma(s[1][2 * np + 1], qa[1], b[2], b[3]);
                }
            }
            if (capped) {
#pragma unroll
                for (int mt = 0; mt < 2; mt++)
#pragma unroll
                    for (int nt = 0; nt < NT; nt++)
#pragma unroll
                        for (int e = 0; e < 4; e++) s[mt][nt][e] = tanhf(s[mt][nt][e] * qk_scale) * cap2;
            }
            // Warp-uniform: unless every present row sees every key (the first row the last key,
            // the last row the first key), mask. Lane row wr + g + 8i, key base + d: d - g - 8i.
            if (rel + FA_BK - 1 > 0 || rel - (w_rows - 1) <= wlim) {
                const int jr = rel + tq * 2 - g;
#pragma unroll
                for (int mt = 0; mt < 2; mt++)
#pragma unroll
                    for (int nt = 0; nt < NT; nt++)
#pragma unroll
                        for (int e = 0; e < 4; e++) {
                            const int d = jr + nt * 8 + (e & 1) - 8 * (2 * mt + (e >> 1));
                            if (d > 0 || d <= wlim) s[mt][nt][e] = -INFINITY;
                        }
            }
            float mx[4] = {-INFINITY, -INFINITY, -INFINITY, -INFINITY};
#pragma unroll
            for (int mt = 0; mt < 2; mt++)
#pragma unroll
                for (int nt = 0; nt < NT; nt++)
#pragma unroll
                    for (int e = 0; e < 4; e++) mx[2 * mt + (e >> 1)] = fmaxf(mx[2 * mt + (e >> 1)], s[mt][nt][e]);
            float nb[4], al[4];
#pragma unroll
            for (int i = 0; i < 4; i++) {
                mx[i] = fmaxf(mx[i], __shfl_xor_sync(0xffffffffu, mx[i], 1));
                mx[i] = fmaxf(mx[i], __shfl_xor_sync(0xffffffffu, mx[i], 2));
                const float mn = fmaxf(m[i], mx[i] * mul);
                // Nothing seen yet (max -inf): subtract 0, so p = 2^-inf = 0 instead of NaN.
                nb[i] = mn == -INFINITY ? 0.f : -mn;
                al[i] = fb_ex2(m[i] + nb[i]);
                m[i] = mn;
                l[i] *= al[i];  // per-lane partial row sums; the quad is summed at the end
            }
#pragma unroll
            for (int mt = 0; mt < 2; mt++)
#pragma unroll
                for (int nt = 0; nt < NT; nt++)
#pragma unroll
                    for (int e = 0; e < 4; e++) {
                        const int i = 2 * mt + (e >> 1);
                        s[mt][nt][e] = fb_ex2(fmaf(s[mt][nt][e], mul, nb[i]));
                        l[i] += s[mt][nt][e];
                    }
            // O *= 2^(m_old - m_new), skipped (warp-uniform) when no row max of the warp moved.
            if (__any_sync(0xffffffffu, al[0] != 1.f || al[1] != 1.f || al[2] != 1.f || al[3] != 1.f)) {
#pragma unroll
                for (int mt = 0; mt < 2; mt++)
#pragma unroll
                    for (int d = 0; d < DN; d++) {
                        o[mt][d][0] *= al[2 * mt];
                        o[mt][d][1] *= al[2 * mt];
                        o[mt][d][2] *= al[2 * mt + 1];
                        o[mt][d][3] *= al[2 * mt + 1];
                    }
            }
            // The C fragments of key n-tiles 2kk, 2kk + 1 are the A fragment of PV k-step kk.
#pragma unroll
            for (int kk = 0; kk < KK; kk++) {
                unsigned pa[2][4];
#pragma unroll
                for (int mt = 0; mt < 2; mt++) {
                    pa[mt][0] = fa_pack(s[mt][2 * kk][0], s[mt][2 * kk][1]);
                    pa[mt][1] = fa_pack(s[mt][2 * kk][2], s[mt][2 * kk][3]);
                    pa[mt][2] = fa_pack(s[mt][2 * kk + 1][0], s[mt][2 * kk + 1][1]);
                    pa[mt][3] = fa_pack(s[mt][2 * kk + 1][2], s[mt][2 * kk + 1][3]);
                }
#pragma unroll
                for (int dp = 0; dp < HD / 16; dp++) {
                    unsigned b[4];
                    fb_ldsm_t(b, bv + (kk * 16 * ST + dp * 16) * 2);
                    fa_mma(o[0][2 * dp], pa[0], b[0], b[1]);
                    fa_mma(o[1][2 * dp], pa[1], b[0], b[1]);
                    fa_mma(o[0][2 * dp + 1], pa[0], b[2], b[3]);
                    fa_mma(o[1][2 * dp + 1], pa[1], b[2], b[3]);
                }
            }
        }
    }
    // A present row always sees its own position, so l > 0 there.
#pragma unroll
    for (int i = 0; i < 4; i++) {
        l[i] += __shfl_xor_sync(0xffffffffu, l[i], 1);
        l[i] += __shfl_xor_sync(0xffffffffu, l[i], 2);
        const int r = wr + 8 * i + g;
        if (r < nq) {
            unsigned* dst = (unsigned*)(out + (long)(q0 + r) * qstride + (long)h * HD + tq * 2);
            const float inv = vs / l[i];
            const int mt = i >> 1, e = (i & 1) * 2;
#pragma unroll
            for (int d = 0; d < DN; d++) dst[d * 4] = fa_pack(o[mt][d][e] * inv, o[mt][d][e + 1] * inv);
        }
    }
#endif
}

// ---- launchers (arguments: FA_ARGS of flash_attention.cu)
#define FB_ENTRY(HD) extern "C" __global__ void __launch_bounds__(FA_THREADS, 2) FA_ENTRY(flash_prefill_bq128_bf16, HD)
FB_ENTRY(64)(FA_ARGS) { FA_CALL(flash128_impl, 64); }
FB_ENTRY(96)(FA_ARGS) { FA_CALL(flash128_impl, 96); }
FB_ENTRY(128)(FA_ARGS) { FA_CALL(flash128_impl, 128); }
