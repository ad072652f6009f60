// Row gather (token / position embedding; MoE token gather) and weighted row scatter-add (MoE).

// ---- kernels
// out[r] = table[ids[r]] * mult; ids were range-checked on the host.
template <typename T> __device__ void gather_impl(const T* table, const int* ids, T* out, int d, float mult) {
    pdl_start();
    long r = blockIdx.x;
    const T* src = table + (long)ids[r] * d;
    for (int i = threadIdx.x; i < d; i += blockDim.x) out[r * d + i] = from_f<T>(to_f(src[i]) * mult);
}
// out[idx[r]] += w[r] * y[r]; each idx appears once per launch.
template <typename T> __device__ void scatter_add_impl(T* out, const T* y, const int* idx, const float* w, int d) {
    long r = blockIdx.x;
    T* dst = out + (long)idx[r] * d;
    for (int i = threadIdx.x; i < d; i += blockDim.x) dst[i] = from_f<T>(to_f(dst[i]) + w[r] * to_f(y[r * d + i]));
}

// ---- launchers
extern "C" __global__ void gather_rows_f32(const float* t, const int* ids, float* o, int d, float m) { gather_impl(t, ids, o, d, m); }
extern "C" __global__ void gather_rows_bf16(const bf16* t, const int* ids, bf16* o, int d, float m) { gather_impl(t, ids, o, d, m); }
extern "C" __global__ void scatter_add_rows_f32(float* o, const float* y, const int* idx, const float* w, int d) { scatter_add_impl(o, y, idx, w, d); }
extern "C" __global__ void scatter_add_rows_bf16(bf16* o, const bf16* y, const int* idx, const float* w, int d) { scatter_add_impl(o, y, idx, w, d); }
