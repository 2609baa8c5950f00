// cast_e4m3: FP8 E4M3 copies of a tensor for the fp8 GEMMs, optionally transposed, with amax.
//   q(v)  = e4m3_satfinite_rn(float(v) * s),  s = scale[0]
//   transpose = false: out[i * cols + j] = q(x[i * cols + j])    out: (rows, cols)
//   transpose = true:  out[j * rows + i] = q(x[i * cols + j])    out: (cols, rows)
//   amax (optional):   *amax = max(*amax, max_ij |x_ij|)         (unscaled input)
// shapes: x (rows, cols) of f32, f16 or bf16, row-major; out bytes; scale, amax one float each.
//
// The conversion is CUDA's __nv_cvt_float_to_fp8 / __nv_cvt_float2_to_fp8x2 with __NV_SATFINITE,
// __NV_E4M3: one cvt.rn.satfinite.e4m3x2.f32 per pair on sm_89+ (the sm_90 SASS and the
// compute_90 PTX), the header's software rounding on sm_80 (slower, same bits). Both round to
// nearest even, saturate every |v| >= 448 (infinity included) to +-448 and give a NaN code for
// NaN; src/util/fp8.hpp models them bit for bit. float(v) * s is one rounded multiply.
//
// amax is reduced as bits: |v| as a float is non-negative, and for non-negative floats the
// unsigned-int order of the bits is the numeric order, with every NaN (sign cleared) above +inf.
// So a NaN in x makes *amax a NaN; *amax must start non-negative (a -0 would read as huge).
// Per thread, then per warp (__reduce_max_sync), then per block in shared memory; one
// atomicMax per block, skipped when the block's max is +0 (it cannot raise a non-negative amax).
//
// Launch, transpose = false: the tensor is one flat range of n = rows * cols elements in both x
// and out. Units of 8 elements: one 16-byte load (f16/bf16; two for f32) and one 8-byte store of
// 8 codes, from the first element where x is 16-byte and out 8-byte aligned; the elements before
// it and after the last whole unit are scalars (all of them when x and out are at different
// phases). 256 threads, grid-stride over at most 65535 blocks.
//
// Launch, transpose = true: 64 x 64 tiles, one block of 256 threads per tile (grid-stride over
// the tiles, all on grid x: no 65535 limit on y). Thread (a, b) = (t / 16, t % 16) reads the
// 4 x 4 elements at rows 4a.., cols 4b.. of the tile (per row: 8-byte loads for f16/bf16,
// 16-byte for f32; each load of a warp covers 2 rows x 64 contiguous elements), converts them and packs
// column c's four codes (rows 4a..4a+3) into one 32-bit word: 4 consecutive bytes of output
// row 4b + c. The words go to shared memory word[a][j] (16 x 64 words, 4 KiB) with one 16-byte
// store per thread, at column j ^ 8 * (a / 4), an XOR swizzle that keeps both phases free of
// bank conflicts: on the store a quarter warp writes one a, 32 consecutive j; on the read-out
// thread (j, q) = (t / 4, t % 4) reads word[4q + k][j], k = 0..3, and stores them as 16 codes
// (output row j, cols 16q..16q+15) with one 16-byte store; 8 lanes of one q then hit 8
// consecutive j and the 4 q's hit 4 different 8-bank groups. A warp writes 8 output rows x 64
// contiguous bytes. Partial tiles, unaligned rows (cols % 4 != 0 or x not 4-element aligned) and
// unaligned output rows (rows % 16 != 0 or out not 16-byte aligned) take guarded scalar loads
// and stores.
#include <cuda_fp8.h>

#include "common.cuh"

namespace flopscope::kernels {

namespace {

using namespace detail;

// |v| as bits (see above); v already widened to float.
__device__ __forceinline__ unsigned abs_bits(float v) { return __float_as_uint(v) & 0x7FFFFFFFu; }

__device__ __forceinline__ unsigned char to_e4m3(float v) {
  return static_cast<unsigned char>(__nv_cvt_float_to_fp8(v, __NV_SATFINITE, __NV_E4M3));
}
// Two codes in 16 bits, lo in the low byte.
__device__ __forceinline__ unsigned to_e4m3x2(float lo, float hi) {
  return static_cast<unsigned>(__nv_cvt_float2_to_fp8x2(make_float2(lo, hi), __NV_SATFINITE, __NV_E4M3));
}
// Four codes in 32 bits, v0 in the low byte.
__device__ __forceinline__ unsigned to_e4m3x4(float v0, float v1, float v2, float v3) {
  return to_e4m3x2(v0, v1) | (to_e4m3x2(v2, v3) << 16);
}

// 4 consecutive elements as float; p aligned to 4 elements (8 bytes for f16/bf16, 16 for f32).
template <typename T>
__device__ __forceinline__ void load4(const T* p, float (&v)[4]) {
  if constexpr (sizeof(T) == 4) {
    const float4 raw = *reinterpret_cast<const float4*>(p);
    v[0] = raw.x;
    v[1] = raw.y;
    v[2] = raw.z;
    v[3] = raw.w;
  } else {
    const uint2 raw = *reinterpret_cast<const uint2*>(p);
    T e[4];
    memcpy(e, &raw, sizeof raw);
#pragma unroll
    for (int k = 0; k < 4; ++k) v[k] = to_acc(e[k]);
  }
}

// 8 consecutive elements as float; p 16-byte aligned.
template <typename T>
__device__ __forceinline__ void load8(const T* p, float (&v)[8]) {
  if constexpr (sizeof(T) == 4) {
    float a[4], b[4];
    load4(p, a);
    load4(p + 4, b);
#pragma unroll
    for (int k = 0; k < 4; ++k) {
      v[k] = a[k];
      v[k + 4] = b[k];
    }
  } else {
    const Pack<T> pk = load_pack(p);
#pragma unroll
    for (int k = 0; k < 8; ++k) v[k] = to_acc(pk.v[k]);
  }
}

// The block's max of `m` (every thread passes one), added to *amax by thread 0. All threads of
// the block call it; blockDim.x is a multiple of 32.
__device__ __forceinline__ void amax_block_update(unsigned m, float* amax) {
  __shared__ unsigned warp_max[32];
  m = __reduce_max_sync(kFullMask, m);
  const unsigned lane = threadIdx.x & 31u, warp = threadIdx.x >> 5;
  if (lane == 0) warp_max[warp] = m;
  __syncthreads();
  if (warp == 0) {
    m = lane < (blockDim.x >> 5) ? warp_max[lane] : 0u;
    m = __reduce_max_sync(kFullMask, m);
    if (lane == 0 && m != 0) atomicMax(reinterpret_cast<unsigned*>(amax), m);
  }
}

inline constexpr int kUnit = 8;  // elements per vector unit of the flat cast

// Flat cast. Scalars: [0, head) and [head + units * 8, n); units at head + u * 8.
template <typename T>
__global__ void __launch_bounds__(kFlatThreads)
    cast_flat_kernel(const T* __restrict__ x, unsigned char* __restrict__ out, int64_t n, int64_t head,
                     int64_t units, const float* __restrict__ scale, float* amax) {
  const float s = __ldg(scale);
  const int64_t tid = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  const int64_t stride = static_cast<int64_t>(gridDim.x) * blockDim.x;
  unsigned m = 0;
  for (int64_t u = tid; u < units; u += stride) {
    const int64_t i = head + u * kUnit;
    float v[kUnit];
    load8(x + i, v);
#pragma unroll
    for (int k = 0; k < kUnit; ++k) m = max(m, abs_bits(v[k]));
    uint2 codes;
    codes.x = to_e4m3x4(v[0] * s, v[1] * s, v[2] * s, v[3] * s);
    codes.y = to_e4m3x4(v[4] * s, v[5] * s, v[6] * s, v[7] * s);
    *reinterpret_cast<uint2*>(out + i) = codes;
  }
  const int64_t body_end = head + units * kUnit;
  const int64_t n_scalar = head + (n - body_end);
  for (int64_t k = tid; k < n_scalar; k += stride) {
    const int64_t i = k < head ? k : body_end + (k - head);
    const float v = to_acc(x[i]);
    m = max(m, abs_bits(v));
    out[i] = to_e4m3(v * s);
  }
  if (amax != nullptr) amax_block_update(m, amax);
}

inline constexpr int kTile = 64;              // tile edge, elements
inline constexpr int kTileWords = kTile / 4;  // 32-bit words of codes per output row of a tile
inline constexpr int kTileThreads = 256;      // (kTile / 4)^2 threads, a 4 x 4 block each

// Word (a, j) of the tile's shared memory: codes of output row j, output cols 4a..4a+3.
__device__ __forceinline__ int swizzled(int a, int j) { return a * kTile + (j ^ (8 * (a >> 2))); }

// Transposed cast. vec_in: cols % 4 == 0 and x 4-element aligned; vec_out: rows % 16 == 0 and
// out 16-byte aligned. Tiles: tiles_i x tiles_j, tile t at (t / tiles_j, t % tiles_j).
template <typename T>
__global__ void __launch_bounds__(kTileThreads)
    cast_transpose_kernel(const T* __restrict__ x, unsigned char* __restrict__ out, int64_t rows, int64_t cols,
                          int64_t tiles_j, int64_t tiles, bool vec_in, bool vec_out,
                          const float* __restrict__ scale, float* amax) {
  alignas(16) __shared__ unsigned word[kTileWords * kTile];
  const float s = __ldg(scale);
  const int t = static_cast<int>(threadIdx.x);
  const int a = t / kTileWords, b = t % kTileWords;  // load phase: rows 4a.., cols 4b.. of the tile
  const int oj = t / 4, oq = t % 4;                  // store phase: output row oj, cols 16 oq..
  unsigned m = 0;
  for (int64_t tile = blockIdx.x; tile < tiles; tile += gridDim.x) {
    const int64_t i0 = (tile / tiles_j) * kTile, j0 = (tile % tiles_j) * kTile;
    const bool full_i = i0 + kTile <= rows, full_j = j0 + kTile <= cols;

    // Load 4 x 4, convert, pack by output row (input column).
    float v[4][4];
    const int64_t ri = i0 + 4 * a, cj = j0 + 4 * b;
    if (vec_in && full_i && full_j) {
#pragma unroll
      for (int r = 0; r < 4; ++r) load4(x + (ri + r) * cols + cj, v[r]);
    } else {
#pragma unroll
      for (int r = 0; r < 4; ++r)
#pragma unroll
        for (int c = 0; c < 4; ++c)
          v[r][c] = (ri + r < rows && cj + c < cols) ? to_acc(x[(ri + r) * cols + cj + c]) : 0.0f;
    }
#pragma unroll
    for (int r = 0; r < 4; ++r)
#pragma unroll
      for (int c = 0; c < 4; ++c) m = max(m, abs_bits(v[r][c]));
    const auto column = [&](int c) { return to_e4m3x4(v[0][c] * s, v[1][c] * s, v[2][c] * s, v[3][c] * s); };
    const uint4 packed = make_uint4(column(0), column(1), column(2), column(3));
    *reinterpret_cast<uint4*>(&word[swizzled(a, 4 * b)]) = packed;  // 4b ^ 8(a/4) stays 4-aligned
    __syncthreads();

    // Output row j0 + oj, cols i0 + 16 oq .. + 15.
    uint4 codes;
    codes.x = word[swizzled(4 * oq + 0, oj)];
    codes.y = word[swizzled(4 * oq + 1, oj)];
    codes.z = word[swizzled(4 * oq + 2, oj)];
    codes.w = word[swizzled(4 * oq + 3, oj)];
    const int64_t oi = i0 + 16 * oq;
    unsigned char* dst = out + (j0 + oj) * rows + oi;
    if (vec_out && full_i && full_j) {
      *reinterpret_cast<uint4*>(dst) = codes;
    } else if (j0 + oj < cols) {
      unsigned char bytes[16];
      memcpy(bytes, &codes, sizeof bytes);
#pragma unroll
      for (int k = 0; k < 16; ++k)
        if (oi + k < rows) dst[k] = bytes[k];
    }
    __syncthreads();  // the next tile overwrites `word`
  }
  if (amax != nullptr) amax_block_update(m, amax);
}

}  // namespace

cudaError_t cast_e4m3(DType t, const void* x, void* out, int64_t rows, int64_t cols, bool transpose, const float* scale,
                      float* amax, cudaStream_t stream) {
  if (rows < 0 || cols < 0) return cudaErrorInvalidValue;
  if (t != DType::f32 && t != DType::f16 && t != DType::bf16) return cudaErrorInvalidValue;
  if (rows == 0 || cols == 0) return cudaSuccess;
  if (!x || !out || !scale) return cudaErrorInvalidValue;
  if (rows > INT64_MAX / cols) return cudaErrorInvalidValue;
  if (!element_aligned<float>(scale) || (amax && !element_aligned<float>(amax))) return cudaErrorInvalidValue;
  const int64_t n = rows * cols;
  return dispatch(t, [&](auto tag) -> cudaError_t {
    using T = typename decltype(tag)::type;
    if constexpr (sizeof(T) > 4) {
      return cudaErrorInvalidValue;  // f64: rejected above; keeps the double instantiation out
    } else {
      if (!element_aligned<T>(x)) return cudaErrorInvalidValue;
      const T* xt = static_cast<const T*>(x);
      auto* o = static_cast<unsigned char*>(out);
      if (!transpose) {
        int64_t head = head_elements(xt);  // first element with x 16-byte aligned
        if (head > n || (address(o) + static_cast<uintptr_t>(head)) % 8 != 0) head = n;
        const int64_t units = (n - head) / kUnit;
        cast_flat_kernel<T><<<flat_blocks(units > 0 ? units : n), kFlatThreads, 0, stream>>>(xt, o, n, head, units,
                                                                                            scale, amax);
      } else {
        const int64_t tiles_i = (rows + kTile - 1) / kTile, tiles_j = (cols + kTile - 1) / kTile;
        const int64_t tiles = tiles_i * tiles_j;
        constexpr int64_t kMaxGrid = 0x7fffffff;
        const bool vec_in = cols % 4 == 0 && address(x) % (4 * sizeof(T)) == 0;
        const bool vec_out = rows % 16 == 0 && aligned16(out);
        cast_transpose_kernel<T><<<static_cast<unsigned>(tiles < kMaxGrid ? tiles : kMaxGrid), kTileThreads, 0,
                                   stream>>>(xt, o, rows, cols, tiles_j, tiles, vec_in, vec_out, scale, amax);
      }
      return cudaGetLastError();
    }
  });
}

}  // namespace flopscope::kernels
