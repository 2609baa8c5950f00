// Bias add and bias gradient over the columns of a (rows, cols) activation.
//
//   bias_add:  x_rj += bias_j                   (in place)
//   bias_grad: dbias_j = sum_r dy_rj            (a column reduction; overwritten)
// shapes: x, dy (rows, cols) of T; bias, dbias (cols) of T. cols is d_model or the FFN's
// d_ff (up to 49152 at GPT-3 width), or 3 * d_model for the QKV bias; rows up to 2048 * 8.
//
// bias_add launch: a 2-D grid. blockIdx.x * blockDim.x + threadIdx.x picks one column unit (a
// 16-byte pack when x and bias are 16-byte aligned and cols % (16 / sizeof(T)) == 0, else one
// element), and the thread walks rows blockIdx.y, blockIdx.y + gridDim.y, ... (gridDim.y =
// min(rows, 65535)), loading its bias unit once. 32..256 threads per block (fewer for narrow
// rows). Memory-bound: 2 x rows x cols x sizeof(T) bytes.
//
// bias_grad design: column-blocked, single pass, no workspace (the interface has none). Each
// block owns a slice of columns and sums it over all rows: 256 threads arranged as kLanes
// column lanes x (256 / kLanes) row groups; row group g reads rows g, g + 256 / kLanes, ...
// into per-thread float accumulators (double for f64), then the row groups' partial sums are
// added in shared memory in group order: deterministic, and bitwise identical run to run.
//   vector path (dy 16-byte aligned, cols % (16 / sizeof(T)) == 0): kLanes = 4 lanes of one
//     16-byte pack each: a slice is 64 bytes of a row (32 bf16 / 16 f32 columns), two full
//     32-byte sectors per row read; 64 row groups. Narrow slices keep enough blocks for an
//     H200's 132 SMs: cols / 32 = 384 blocks at d_model = 12288 in bf16, 1536 at d_ff;
//   scalar path (cols = 50257, 1001, 3, ...): kLanes = 32 one-element lanes (a warp reads 32
//     consecutive columns of one row), 8 row groups.
// Each thread keeps 4 rows of loads in flight (unrolled) to cover memory latency.
#include "common.cuh"

namespace flopscope::kernels {

namespace {

using namespace detail;

template <typename T>
__global__ void __launch_bounds__(kMaxRowThreads)
    bias_add_kernel(T* __restrict__ x, const T* __restrict__ bias, int64_t rows, int64_t cols, bool vec) {
  constexpr int N = kPack<T>;
  const int64_t unit = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (vec) {
    const int64_t j = unit * N;
    if (j >= cols) return;
    const Pack<T> b = load_pack(bias + j);
    for (int64_t r = blockIdx.y; r < rows; r += gridDim.y) {
      T* xr = x + r * cols + j;
      const Pack<T> v = load_pack(xr);
      Pack<T> o;
#pragma unroll
      for (int k = 0; k < N; ++k) o.v[k] = from_acc<T>(to_acc(v.v[k]) + to_acc(b.v[k]));
      store_pack(xr, o);
    }
  } else {
    const int64_t j = unit;
    if (j >= cols) return;
    const auto b = to_acc(bias[j]);
    for (int64_t r = blockIdx.y; r < rows; r += gridDim.y) {
      T* xr = x + r * cols + j;
      *xr = from_acc<T>(to_acc(*xr) + b);
    }
  }
}

constexpr int kGradThreads = 256;
constexpr int kUnroll = 4;

// V: elements per lane (a 16-byte pack or 1); kLanes: lanes across the slice.
template <typename T, int V, int kLanes>
__global__ void __launch_bounds__(kGradThreads)
    bias_grad_kernel(const T* __restrict__ dy, T* __restrict__ dbias, int64_t rows, int64_t cols) {
  using A = Acc<T>;
  constexpr int kGroups = kGradThreads / kLanes;
  constexpr int kSlice = kLanes * V;  // columns per block
  static_assert(V == 1 || V == kPack<T>, "a lane reads one element or one 16-byte pack");
  __shared__ A partial[kGroups][kSlice];  // (row group, slice column)

  const int lane = static_cast<int>(threadIdx.x) % kLanes;
  const int group = static_cast<int>(threadIdx.x) / kLanes;
  const int64_t j0 = static_cast<int64_t>(blockIdx.x) * kSlice + lane * V;  // this lane's first column

  A acc[V];
#pragma unroll
  for (int k = 0; k < V; ++k) acc[k] = A(0);
  auto add = [&](const T* p) {
    if constexpr (V == 1) {
      acc[0] += to_acc(*p);
    } else {
      const Pack<T> v = load_pack(p);
#pragma unroll
      for (int k = 0; k < V; ++k) acc[k] += to_acc(v.v[k]);
    }
  };
  if (j0 < cols) {  // V > 1 needs cols % V == 0, so the whole pack is in range
    const int64_t step = kGroups;
    int64_t r = group;
    for (; r + (kUnroll - 1) * step < rows; r += kUnroll * step) {
      // kUnroll independent loads before the adds: latency overlaps.
      T buf[kUnroll][V];
#pragma unroll
      for (int u = 0; u < kUnroll; ++u) {
        if constexpr (V == 1) {
          buf[u][0] = dy[(r + u * step) * cols + j0];
        } else {
          const Pack<T> v = load_pack(dy + (r + u * step) * cols + j0);
#pragma unroll
          for (int k = 0; k < V; ++k) buf[u][k] = v.v[k];
        }
      }
#pragma unroll
      for (int u = 0; u < kUnroll; ++u)
#pragma unroll
        for (int k = 0; k < V; ++k) acc[k] += to_acc(buf[u][k]);
    }
    for (; r < rows; r += step) add(dy + r * cols + j0);
  }
#pragma unroll
  for (int k = 0; k < V; ++k) partial[group][lane * V + k] = acc[k];
  __syncthreads();
  for (int c = static_cast<int>(threadIdx.x); c < kSlice; c += kGradThreads) {
    const int64_t j = static_cast<int64_t>(blockIdx.x) * kSlice + c;
    if (j >= cols) continue;
    A s = 0;
    for (int g = 0; g < kGroups; ++g) s += partial[g][c];  // fixed order: reproducible
    dbias[j] = from_acc<T>(s);
  }
}

template <typename T, int V, int kLanes>
cudaError_t launch_grad(const T* dy, T* dbias, int64_t rows, int64_t cols, cudaStream_t stream) {
  constexpr int64_t kSlice = kLanes * V;
  const int64_t blocks = (cols + kSlice - 1) / kSlice;
  if (blocks > 0x7fffffff) return cudaErrorInvalidValue;
  bias_grad_kernel<T, V, kLanes><<<static_cast<unsigned>(blocks), kGradThreads, 0, stream>>>(dy, dbias, rows, cols);
  return cudaGetLastError();
}

}  // namespace

cudaError_t bias_add(DType t, void* x, const void* bias, int64_t rows, int64_t cols, cudaStream_t stream) {
  if (rows < 0 || cols < 0) return cudaErrorInvalidValue;
  if (rows == 0 || cols == 0) return cudaSuccess;
  if (!x || !bias) return cudaErrorInvalidValue;
  return dispatch(t, [&](auto tag) {
    using T = typename decltype(tag)::type;
    constexpr int N = kPack<T>;
    if (!element_aligned<T>(x) || !element_aligned<T>(bias)) return cudaErrorInvalidValue;
    const bool vec = cols % N == 0 && aligned16(x) && aligned16(bias);
    const int64_t units = vec ? cols / N : cols;
    const int threads = row_threads(units);
    const int64_t gx = (units + threads - 1) / threads;
    if (gx > 0x7fffffff) return cudaErrorInvalidValue;
    const dim3 grid(static_cast<unsigned>(gx), static_cast<unsigned>(rows < 65535 ? rows : 65535));
    bias_add_kernel<T><<<grid, threads, 0, stream>>>(static_cast<T*>(x), static_cast<const T*>(bias), rows, cols, vec);
    return cudaGetLastError();
  });
}

cudaError_t bias_grad(DType t, const void* dy, void* dbias, int64_t rows, int64_t cols, cudaStream_t stream) {
  if (rows < 0 || cols < 0) return cudaErrorInvalidValue;
  if (cols == 0) return cudaSuccess;
  if (!dbias || (rows > 0 && !dy)) return cudaErrorInvalidValue;
  // rows == 0 still launches: the sums over no rows are zeros.
  return dispatch(t, [&](auto tag) {
    using T = typename decltype(tag)::type;
    constexpr int N = kPack<T>;
    if (!element_aligned<T>(dy) || !element_aligned<T>(dbias)) return cudaErrorInvalidValue;
    const auto* in = static_cast<const T*>(dy);
    auto* out = static_cast<T*>(dbias);
    if (cols % N == 0 && aligned16(dy)) return launch_grad<T, N, 4>(in, out, rows, cols, stream);
    return launch_grad<T, 1, 32>(in, out, rows, cols, stream);
  });
}

}  // namespace flopscope::kernels
