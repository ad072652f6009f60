// FP8 E4M3 (torch.float8_e4m3fn) activation quantization, dequantization, and the epilogue of
// the per-token x per-channel FP8 GEMM. Twins: kernels/src/quant_ref.rs (bit-exact: the encode
// below is quant_ref::e4m3_encode, division is IEEE, products are single f32 roundings).

// e4m3_sat / e4m3_to_f: common.cuh.

// Per-token dynamic quantization, one block per row of x[rows, d] (d % 8 == 0, 16-byte aligned
// rows; host-checked): scale[r] = amax(|x[r]|) / 448 (1 for an all-zero row), q = e4m3(x / scale).
// Each thread owns 8-element chunks: one 16-byte load, one 8-byte store.
extern "C" __global__ void fp8_quantize_rows_bf16(const bf16* x, unsigned char* q, float* scale, int d) {
    pdl_start();
    const long row = blockIdx.x;
    const uint4* xr = (const uint4*)(x + row * d);
    uint2* qr = (uint2*)(q + row * d);
    const int nc = d >> 3;
    float amax = 0.f;
    for (int c = threadIdx.x; c < nc; c += blockDim.x) {
        float v[8];
        unpack(__ldg(xr + c), v, (const bf16*)nullptr);
#pragma unroll
        for (int j = 0; j < 8; j++) amax = fmaxf(amax, fabsf(v[j]));
    }
    amax = block_max(amax);
    const float s = amax > 0.f ? amax / 448.f : 1.f;
    if (threadIdx.x == 0) scale[row] = s;
    for (int c = threadIdx.x; c < nc; c += blockDim.x) {
        float v[8];
        unpack(__ldg(xr + c), v, (const bf16*)nullptr);
        unsigned int w[2] = {0u, 0u};
#pragma unroll
        for (int j = 0; j < 8; j++) w[j >> 2] |= e4m3_sat(v[j] / s) << (8 * (j & 3));
        qr[c] = make_uint2(w[0], w[1]);
    }
}

// Static quantization with a given per-tensor scale (scale[0], e.g. a checkpoint's
// input_scale): q[i] = e4m3(x[i] / scale[0]) for i < n.
extern "C" __global__ void fp8_quantize_static_bf16(const bf16* x, const float* scale, unsigned char* q, long n) {
    pdl_start();
    const float s = __ldg(scale);
    for (long i = blockIdx.x * (long)blockDim.x + threadIdx.x; i < n; i += (long)gridDim.x * blockDim.x)
        q[i] = (unsigned char)e4m3_sat(to_f(x[i]) / s);
}

// out[r, c] = bf16(e4m3(q[r, c]) * scale[(r / rdiv) * rstride + c / cdiv]) over a [rows, cols]
// matrix, which covers every layout of quant_ref::ScaleLayout: tensor (rstride 0, cdiv > cols),
// row (1, 1, > cols), column (rstride 0, cdiv 1), 128 x 128 blocks (128, ceil(cols / 128), 128).
extern "C" __global__ void fp8_dequant_bf16(const unsigned char* q, const float* scale, bf16* out, int rows,
                                            int cols, int rdiv, int rstride, int cdiv) {
    pdl_start();
    const long n = (long)rows * cols;
    for (long i = blockIdx.x * (long)blockDim.x + threadIdx.x; i < n; i += (long)gridDim.x * blockDim.x) {
        const int r = (int)(i / cols), c = (int)(i % cols);
        const float s = __ldg(scale + (long)(r / rdiv) * rstride + c / cdiv);
        out[i] = from_f<bf16>(e4m3_to_f(q[i]) * s);
    }
}

// The per-token x per-channel FP8 GEMM's epilogue: out[r, c] = bf16((acc[r, c] * rs[r]) * cs[c])
// for the f32 result acc[m, n] of the unit-scaled GEMM.
extern "C" __global__ void fp8_scale_rowcol_bf16(const float* acc, const float* rs, const float* cs, bf16* out,
                                                 int m, int n) {
    pdl_start();
    const long total = (long)m * n;
    for (long i = blockIdx.x * (long)blockDim.x + threadIdx.x; i < total; i += (long)gridDim.x * blockDim.x) {
        const int r = (int)(i / n), c = (int)(i % n);
        out[i] = from_f<bf16>(acc[i] * __ldg(rs + r) * __ldg(cs + c));
    }
}
