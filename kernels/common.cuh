// Device helpers shared by the kernels in this folder (nvcc only; not part of the interface).
//
//  - Acc<T>: the accumulator type of storage type T: float for f32/f16/bf16, double for f64;
//    to_acc / from_acc<T> convert one element (from_acc rounds to nearest even).
//  - Pack<T>: 16 bytes of T (4 x f32, 8 x f16/bf16, 2 x f64), loaded and stored with one
//    128-bit instruction (LDG.E.128 / STG.E.128). Only at 16-byte aligned addresses.
//  - Split: a contiguous range [0, len) cut into a scalar head (elements before the first
//    16-byte boundary), a body of whole packs, and a scalar tail. for_each_split hands the
//    packs and the scalars to the threads of a block (or of the grid) in a strided loop.
//    Every tensor touched at the same index must be at the same 16-byte phase; the launchers
//    check that on the host and fall back to all-scalar (head = len) when it does not hold.
//    Mapping of work to threads: pack p -> thread p % stride, scalar k -> thread k % stride; the
//    same for every row of equal split, which the layernorm backward relies on to own columns.
//  - warp_reduce / block_reduce: butterfly (xor) shuffles, so every lane, and after
//    block_reduce every thread of the block, holds the same bits of the result. The block
//    size must be a multiple of 32 (at most 1024); every launcher here uses 32..256.
#pragma once

#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include <cmath>
#include <cstdint>
#include <cstring>

#include "kernels.cuh"

namespace flopscope::kernels::detail {

// ---- element types ----------------------------------------------------------------------

template <typename T>
struct AccOf {
  using type = float;
};
template <>
struct AccOf<double> {
  using type = double;
};
template <typename T>
using Acc = typename AccOf<T>::type;

__device__ __forceinline__ float to_acc(float v) { return v; }
__device__ __forceinline__ double to_acc(double v) { return v; }
__device__ __forceinline__ float to_acc(__half v) { return __half2float(v); }
__device__ __forceinline__ float to_acc(__nv_bfloat16 v) { return __bfloat162float(v); }

template <typename T>
__device__ __forceinline__ T from_acc(Acc<T> v);
template <>
__device__ __forceinline__ float from_acc<float>(float v) { return v; }
template <>
__device__ __forceinline__ double from_acc<double>(double v) { return v; }
template <>
__device__ __forceinline__ __half from_acc<__half>(float v) { return __float2half_rn(v); }
template <>
__device__ __forceinline__ __nv_bfloat16 from_acc<__nv_bfloat16>(float v) { return __float2bfloat16_rn(v); }

// Accurate (not fast-math) transcendental functions in the accumulator type. expf: at most
// 2 ulp over the full range (CUDA C Programming Guide, "Mathematical Functions"), as are tanhf
// and logf; the double versions are within 1-2 ulp. The build never sets --use_fast_math, so
// these are not replaced by the approximate __expf (ex2.approx, error growing with |x|).
__device__ __forceinline__ float exp_acc(float v) { return expf(v); }
__device__ __forceinline__ double exp_acc(double v) { return exp(v); }
__device__ __forceinline__ float log_acc(float v) { return logf(v); }
__device__ __forceinline__ double log_acc(double v) { return log(v); }
__device__ __forceinline__ float tanh_acc(float v) { return tanhf(v); }
__device__ __forceinline__ double tanh_acc(double v) { return tanh(v); }
__device__ __forceinline__ float sqrt_acc(float v) { return sqrtf(v); }  // IEEE-rounded (-prec-sqrt=true)
__device__ __forceinline__ double sqrt_acc(double v) { return sqrt(v); }

// (INFINITY and NAN are float constant expressions usable in device code; numeric_limits'
// constexpr members would need --expt-relaxed-constexpr.)
template <typename A>
__device__ __forceinline__ A neg_inf() {
  return -static_cast<A>(INFINITY);
}
template <typename A>
__device__ __forceinline__ A quiet_nan() {
  return static_cast<A>(NAN);
}

// ---- 16-byte packs ----------------------------------------------------------------------

template <typename T>
inline constexpr int kPack = 16 / static_cast<int>(sizeof(T));

template <typename T>
struct alignas(16) Pack {
  T v[kPack<T>];
};

// p must be 16-byte aligned. Through int4 so nvcc emits one 128-bit access.
template <typename T>
__device__ __forceinline__ Pack<T> load_pack(const T* p) {
  const int4 raw = *reinterpret_cast<const int4*>(p);
  Pack<T> out;
  memcpy(&out, &raw, sizeof(out));
  return out;
}
template <typename T>
__device__ __forceinline__ void store_pack(T* p, const Pack<T>& v) {
  int4 raw;
  memcpy(&raw, &v, sizeof(raw));
  *reinterpret_cast<int4*>(p) = raw;
}

// ---- head / packs / tail split ------------------------------------------------------------

// Elements of T before the first 16-byte boundary at or after p (0 when p is aligned).
// p must be aligned to sizeof(T), which every launcher checks.
template <typename T>
__host__ __device__ __forceinline__ int64_t head_elements(const T* p) {
  const auto mis = static_cast<int64_t>(reinterpret_cast<uintptr_t>(p) & 15u);
  return mis == 0 ? 0 : (16 - mis) / static_cast<int64_t>(sizeof(T));
}

struct Split {
  int64_t head;      // scalars [0, head)
  int64_t packs;     // packs at head + p * kPack, p in [0, packs)
  int64_t body_end;  // = head + packs * kPack; scalars [body_end, len)
  int64_t len;
  __device__ __forceinline__ int64_t scalars() const { return head + (len - body_end); }
  __device__ __forceinline__ int64_t scalar_index(int64_t k) const { return k < head ? k : body_end + (k - head); }
};

// `first` is the range's first element; vec = false makes every element a scalar.
template <typename T>
__device__ __forceinline__ Split split_range(const T* first, int64_t len, bool vec) {
  Split s;
  s.len = len;
  s.head = vec ? (head_elements(first) < len ? head_elements(first) : len) : len;
  s.packs = (len - s.head) / kPack<T>;
  s.body_end = s.head + s.packs * kPack<T>;
  return s;
}

// pack(j): elements [j, j + kPack) with j 16-byte aligned in every same-phase tensor;
// scalar(j): element j. Thread `tid` of `stride` threads takes packs and scalars tid, tid + stride, ...
template <typename T, typename PackFn, typename ScalarFn>
__device__ __forceinline__ void for_each_split(const Split& s, int64_t tid, int64_t stride, PackFn pack,
                                               ScalarFn scalar) {
  for (int64_t p = tid; p < s.packs; p += stride) pack(s.head + p * kPack<T>);
  const int64_t n_scalar = s.scalars();
  for (int64_t k = tid; k < n_scalar; k += stride) scalar(s.scalar_index(k));
}

// ---- reductions -------------------------------------------------------------------------

inline constexpr unsigned kFullMask = 0xffffffffu;

__device__ __forceinline__ float shfl_xor(float v, int lane_mask) { return __shfl_xor_sync(kFullMask, v, lane_mask); }
__device__ __forceinline__ double shfl_xor(double v, int lane_mask) { return __shfl_xor_sync(kFullMask, v, lane_mask); }
__device__ __forceinline__ unsigned long long shfl_xor(unsigned long long v, int lane_mask) {
  return __shfl_xor_sync(kFullMask, v, lane_mask);
}

// Two running sums reduced together (one pair of barriers instead of two).
template <typename A>
struct Sum2 {
  A a, b;
};
template <typename A>
__device__ __forceinline__ Sum2<A> shfl_xor(Sum2<A> v, int lane_mask) {
  return {shfl_xor(v.a, lane_mask), shfl_xor(v.b, lane_mask)};
}

// Online softmax state: m = max of the elements seen, s = sum of exp(x - m) over them.
template <typename A>
struct MaxSum {
  A m, s;
};
template <typename A>
__device__ __forceinline__ MaxSum<A> shfl_xor(MaxSum<A> v, int lane_mask) {
  return {shfl_xor(v.m, lane_mask), shfl_xor(v.s, lane_mask)};
}

struct AddOp {
  template <typename V>
  __device__ __forceinline__ V operator()(V x, V y) const {
    return x + y;
  }
  template <typename A>
  __device__ __forceinline__ Sum2<A> operator()(Sum2<A> x, Sum2<A> y) const {
    return {x.a + y.a, x.b + y.b};
  }
};

// Adds one element to an online-softmax state with one exp: rescale the sum when the max grows.
// NaN propagates into s; -inf contributes exp(-inf) = 0 without forming -inf - (-inf).
template <typename A>
__device__ __forceinline__ void online_add(MaxSum<A>& st, A x) {
  if (x > st.m) {
    st.s = st.s * exp_acc(st.m - x) + A(1);  // st.m = -inf on the first element: 0 * 0 + 1
    st.m = x;
  } else if (x != neg_inf<A>()) {
    st.s += exp_acc(x - st.m);
  }
}

// Merges two online-softmax states. Symmetric in its arguments bit for bit (max and + commute),
// which keeps the butterfly's lanes identical.
struct MaxSumOp {
  template <typename A>
  __device__ __forceinline__ MaxSum<A> operator()(MaxSum<A> x, MaxSum<A> y) const {
    const A m = x.m > y.m ? x.m : y.m;
    if (m == neg_inf<A>()) return {m, A(0)};  // both empty
    return {m, x.s * exp_acc(x.m - m) + y.s * exp_acc(y.m - m)};
  }
};

template <typename V, typename Op>
__device__ __forceinline__ V warp_reduce(V v, Op op) {
#pragma unroll
  for (int lane_mask = 16; lane_mask > 0; lane_mask >>= 1) v = op(v, shfl_xor(v, lane_mask));
  return v;
}

// Reduces one value per thread over the block; every thread returns the result. All threads
// of the block must call it (it has barriers); blockDim.x % 32 == 0. `identity` fills the
// lanes beyond the number of warps. Reusable back to back: the first barrier waits until
// every thread has read the scratch of the previous call.
template <typename V, typename Op>
__device__ __forceinline__ V block_reduce(V v, Op op, V identity) {
  __shared__ V scratch[32];
  v = warp_reduce(v, op);
  const int lane = static_cast<int>(threadIdx.x & 31u);
  const int warp = static_cast<int>(threadIdx.x >> 5);
  const int warps = static_cast<int>(blockDim.x >> 5);
  __syncthreads();
  if (lane == 0) scratch[warp] = v;
  __syncthreads();
  v = lane < warps ? scratch[lane] : identity;
  return warp_reduce(v, op);
}

// ---- launch helpers (host) ----------------------------------------------------------------

// Calls fn(Tag<T>{}) with T the storage type of `t`; e4m3 (no arithmetic type) and an unknown
// enum value are argument errors.
template <typename T>
struct Tag {
  using type = T;
};
template <typename Fn>
cudaError_t dispatch(DType t, Fn&& fn) {
  switch (t) {
    case DType::f64: return fn(Tag<double>{});
    case DType::f32: return fn(Tag<float>{});
    case DType::f16: return fn(Tag<__half>{});
    case DType::bf16: return fn(Tag<__nv_bfloat16>{});
    case DType::e4m3: return cudaErrorInvalidValue;  // storage only: cast_e4m3 and count_nonfinite
  }
  return cudaErrorInvalidValue;
}

inline uintptr_t address(const void* p) { return reinterpret_cast<uintptr_t>(p); }
inline bool aligned16(const void* p) { return (address(p) & 15u) == 0; }
// Every pointer is aligned to its element size (as cudaMalloc'd tensors are).
template <typename T>
inline bool element_aligned(const void* p) {
  return address(p) % sizeof(T) == 0;
}
// All pointers share one 16-byte phase: then equal indices are 16-byte aligned together.
inline bool same_phase(const void* a, const void* b) { return ((address(a) ^ address(b)) & 15u) == 0; }

// Threads for a block that walks one row of `units` packs or scalars: a power of two in
// [32, kMaxRowThreads], about one unit per thread for short rows.
inline constexpr int kMaxRowThreads = 256;
inline int row_threads(int64_t units) {
  int t = 32;
  while (t < kMaxRowThreads && t < units) t *= 2;
  return t;
}

// One block per row, grid-stride beyond the 2^31 - 1 limit of gridDim.x.
inline unsigned row_blocks(int64_t rows) {
  constexpr int64_t kMaxGrid = 0x7fffffff;
  return static_cast<unsigned>(rows < kMaxGrid ? rows : kMaxGrid);
}

// Elementwise kernels: 256 threads, grid-stride loop over at most 65535 blocks (eight or more
// blocks per SM on an H200's 132 SMs; each thread then handles a few units).
inline constexpr int kFlatThreads = 256;
inline unsigned flat_blocks(int64_t units) {
  constexpr int64_t kMaxGrid = 65535;
  const int64_t b = (units + kFlatThreads - 1) / kFlatThreads;
  return static_cast<unsigned>(b < 1 ? 1 : (b < kMaxGrid ? b : kMaxGrid));
}

}  // namespace flopscope::kernels::detail
