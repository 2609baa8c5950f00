// layernorm over the last dimension, forward and backward.
//
// forward, per row r of x, with eps = 1e-5 (ref::kLayerNormEps):
//   mean_r = sum_j x_rj / cols
//   rstd_r = 1 / sqrt(sum_j (x_rj - mean_r)^2 / cols + eps)       two passes: centred squares
//   y_rj   = (x_rj - mean_r) * rstd_r * gamma_j + beta_j
// backward, with xhat_rj = (x_rj - mean_r) * rstd_r and g_rj = dy_rj * gamma_j:
//   dx_rj    = rstd_r * (g_rj - mean_j(g_r) - xhat_rj * mean_j(g_r * xhat_r))
//   dgamma_j = sum_r dy_rj * xhat_rj,   dbeta_j = sum_r dy_rj       (overwritten)
// shapes: x, y, dy, dx (rows, cols) of T; gamma, beta, dgamma, dbeta (cols) of T;
//         mean, rstd (rows) of Acc<T> (float; double for f64).
//
// Forward launch: one block per row (grid-stride past 2^31 - 1 rows) of 32..256 threads, about
// one 16-byte pack per thread for short rows. Three passes over the row (sum, centred squares,
// write); passes 2 and 3 re-read x, from L1/L2 (a 12288-wide bf16 row is 24 KiB), so any cols
// works without a shared-memory row cache. 16-byte loads and stores when x, y, gamma, beta are
// 16-byte aligned and cols % (16 / sizeof(T)) == 0; scalar otherwise (gamma is indexed by
// column, so a per-row head/tail split would not keep it aligned).
//
// Backward launch: P = min(rows, blocks resident on the device, 512) blocks of 32..256 threads;
// block b takes rows b, b + P, ... Per row: one pass summing g and g * xhat (one block reduction
// of the pair), one pass writing dx (re-reading dy, x, gamma from L1/L2). Every thread owns the
// same columns in every row (for_each_split's mapping is the same for equal splits), so it adds
// dy * xhat and dy into its own columns of a per-block accumulator with no atomics or barriers:
// shared memory when 2 * cols * sizeof(Acc) fits the opt-in limit (227 KiB on sm_90: up to
// ~29000 float columns), else the block's slot of the workspace directly. The block then writes
// its partial sums to its slot, and the column sums finish inside the same launch, in a fixed
// order (so the result is bitwise reproducible):
//   1. blocks form groups of G = ceil(sqrt(P)); the last block of a group to finish (atomic
//      ticket on the group's counter, after __threadfence) sums the group's slots in block order
//      into the group's first slot;
//   2. the last group to finish sums the group slots in group order and writes dgamma, dbeta.
// Why two levels and not one last block reading all P slots: on an H200 P is about 264 and a
// slot at GPT-3 width is 2 x 12288 floats (96 KiB): 26 MiB that a single SM (~100 GB/s) needs
// ~250 us to read, as long as the rest of the op. Two levels of ~sqrt(P) slots each are ~8x less.
// The last block of each level resets its counter to 0, so the op can run again at once.
//
// workspace: [64 x u32 counters: 256 bytes][S slots of (2, cols) f32], S = max(2, min(rows, 512)).
// An f64 slot is twice as wide, so f64 uses at most S / 2 blocks. The counters must be zero
// before a workspace's first use (cudaMemset it once after allocating); the kernel leaves them
// zero. Two launches must not share a workspace concurrently.
#include <algorithm>
#include <map>
#include <mutex>
#include <tuple>

#include "common.cuh"

namespace flopscope::kernels {

namespace {

using namespace detail;

constexpr double kEps = 1e-5;                // ref::kLayerNormEps
constexpr int64_t kMaxBackwardBlocks = 512;  // bounds the workspace: S slots
constexpr size_t kCounterBytes = 256;        // 64 counters: [0] top level, [1 + g] group g
constexpr int kMaxGroups = 63;               // ceil(512 / ceil(sqrt(512))) = 23 fits

template <typename T>
__global__ void __launch_bounds__(kMaxRowThreads)
    layernorm_forward_kernel(const T* __restrict__ x, const T* __restrict__ gamma, const T* __restrict__ beta,
                             T* __restrict__ y, Acc<T>* __restrict__ mean, Acc<T>* __restrict__ rstd, int64_t rows,
                             int64_t cols, bool vec) {
  using A = Acc<T>;
  constexpr int N = kPack<T>;
  const int64_t tid = threadIdx.x, nt = blockDim.x;
  for (int64_t r = blockIdx.x; r < rows; r += gridDim.x) {
    const T* xr = x + r * cols;  // (cols)
    T* yr = y + r * cols;        // (cols)
    const Split sp = split_range(xr, cols, vec);  // vec: aligned rows, so all packs

    A sum = 0;
    for_each_split<T>(
        sp, tid, nt,
        [&](int64_t j) {
          const Pack<T> v = load_pack(xr + j);
#pragma unroll
          for (int k = 0; k < N; ++k) sum += to_acc(v.v[k]);
        },
        [&](int64_t j) { sum += to_acc(xr[j]); });
    const A mu = block_reduce(sum, AddOp{}, A(0)) / static_cast<A>(cols);

    A sq = 0;
    for_each_split<T>(
        sp, tid, nt,
        [&](int64_t j) {
          const Pack<T> v = load_pack(xr + j);
#pragma unroll
          for (int k = 0; k < N; ++k) {
            const A d = to_acc(v.v[k]) - mu;
            sq += d * d;
          }
        },
        [&](int64_t j) {
          const A d = to_acc(xr[j]) - mu;
          sq += d * d;
        });
    const A var = block_reduce(sq, AddOp{}, A(0)) / static_cast<A>(cols);
    const A rs = A(1) / sqrt_acc(var + static_cast<A>(kEps));

    auto norm = [&](T xv, T g, T b) { return from_acc<T>((to_acc(xv) - mu) * rs * to_acc(g) + to_acc(b)); };
    for_each_split<T>(
        sp, tid, nt,
        [&](int64_t j) {
          const Pack<T> v = load_pack(xr + j), g = load_pack(gamma + j), b = load_pack(beta + j);
          Pack<T> o;
#pragma unroll
          for (int k = 0; k < N; ++k) o.v[k] = norm(v.v[k], g.v[k], b.v[k]);
          store_pack(yr + j, o);
        },
        [&](int64_t j) { yr[j] = norm(xr[j], gamma[j], beta[j]); });
    if (tid == 0) {
      mean[r] = mu;
      rstd[r] = rs;
    }
  }
}

template <typename T>
__global__ void __launch_bounds__(kMaxRowThreads)
    layernorm_backward_kernel(const T* __restrict__ dy, const T* __restrict__ x, const T* __restrict__ gamma,
                              const Acc<T>* __restrict__ mean, const Acc<T>* __restrict__ rstd, T* __restrict__ dx,
                              T* __restrict__ dgamma, T* __restrict__ dbeta, int64_t rows, int64_t cols, bool vec,
                              Acc<T>* slots, unsigned* counters, unsigned group_size, bool smem_acc) {
  using A = Acc<T>;
  constexpr int N = kPack<T>;
  extern __shared__ __align__(16) unsigned char smem_raw[];
  const int64_t tid = threadIdx.x, nt = blockDim.x;
  const int64_t slot_len = 2 * cols;                                    // (2, cols): dgamma, dbeta partials
  A* const my_slot = slots + static_cast<int64_t>(blockIdx.x) * slot_len;  // (2, cols)
  A* const acc = smem_acc ? reinterpret_cast<A*>(smem_raw) : my_slot;      // (2, cols)

  // The split is the same for every row (vec: aligned rows, all packs; else all scalars), so
  // each thread visits the same columns in every loop below and owns them in acc.
  const Split cs = split_range(dy, cols, vec);
  auto own_columns = [&](auto&& f) {
    for_each_split<T>(
        cs, tid, nt,
        [&](int64_t j) {
#pragma unroll
          for (int k = 0; k < N; ++k) f(j + k);
        },
        f);
  };
  own_columns([&](int64_t j) {
    acc[j] = A(0);
    acc[cols + j] = A(0);
  });

  for (int64_t r = blockIdx.x; r < rows; r += gridDim.x) {
    const T* dyr = dy + r * cols;  // (cols)
    const T* xr = x + r * cols;    // (cols)
    T* dxr = dx + r * cols;        // (cols)
    const A mu = mean[r], rs = rstd[r];

    Sum2<A> s{A(0), A(0)};  // sum_j g, sum_j g * xhat
    auto accumulate = [&](int64_t j, A dyv, A xv, A gv) {
      const A xhat = (xv - mu) * rs;
      const A g = dyv * gv;
      s.a += g;
      s.b += g * xhat;
      acc[j] += dyv * xhat;
      acc[cols + j] += dyv;
    };
    for_each_split<T>(
        cs, tid, nt,
        [&](int64_t j) {
          const Pack<T> d = load_pack(dyr + j), xv = load_pack(xr + j), g = load_pack(gamma + j);
#pragma unroll
          for (int k = 0; k < N; ++k) accumulate(j + k, to_acc(d.v[k]), to_acc(xv.v[k]), to_acc(g.v[k]));
        },
        [&](int64_t j) { accumulate(j, to_acc(dyr[j]), to_acc(xr[j]), to_acc(gamma[j])); });
    s = block_reduce(s, AddOp{}, Sum2<A>{A(0), A(0)});
    const A m1 = s.a / static_cast<A>(cols), m2 = s.b / static_cast<A>(cols);

    auto grad = [&](T dyv, T xv, T gv) {
      const A xhat = (to_acc(xv) - mu) * rs;
      return from_acc<T>(rs * (to_acc(dyv) * to_acc(gv) - m1 - xhat * m2));
    };
    for_each_split<T>(
        cs, tid, nt,
        [&](int64_t j) {
          const Pack<T> d = load_pack(dyr + j), xv = load_pack(xr + j), g = load_pack(gamma + j);
          Pack<T> o;
#pragma unroll
          for (int k = 0; k < N; ++k) o.v[k] = grad(d.v[k], xv.v[k], g.v[k]);
          store_pack(dxr + j, o);
        },
        [&](int64_t j) { dxr[j] = grad(dyr[j], xr[j], gamma[j]); });
  }
  if (smem_acc) {
    own_columns([&](int64_t j) {
      my_slot[j] = acc[j];
      my_slot[cols + j] = acc[cols + j];
    });
  }

  // Column sums across blocks: last block of each group, then the last group (see the top).
  __shared__ bool s_last;
  const unsigned blocks = gridDim.x;
  const unsigned group = blockIdx.x / group_size;
  const unsigned groups = (blocks + group_size - 1) / group_size;
  const unsigned first = group * group_size;
  const unsigned in_group = min(group_size, blocks - first);

  __threadfence();  // this thread's slot writes reach device scope before the block takes a ticket
  __syncthreads();
  if (tid == 0) s_last = atomicAdd(&counters[1 + group], 1u) == in_group - 1;
  __syncthreads();
  if (!s_last) return;
  __threadfence();
  for (int64_t c = tid; c < slot_len; c += nt) {
    A v = 0;
#pragma unroll 4
    for (unsigned b = first; b < first + in_group; ++b) v += __ldcg(slots + static_cast<int64_t>(b) * slot_len + c);
    slots[static_cast<int64_t>(first) * slot_len + c] = v;  // this thread read this element first
  }
  if (tid == 0) counters[1 + group] = 0;  // every block of the group has taken its ticket

  __threadfence();
  __syncthreads();
  if (tid == 0) s_last = atomicAdd(&counters[0], 1u) == groups - 1;
  __syncthreads();
  if (!s_last) return;
  __threadfence();
  for (int64_t c = tid; c < slot_len; c += nt) {
    A v = 0;
#pragma unroll 4
    for (unsigned g = 0; g < groups; ++g)
      v += __ldcg(slots + static_cast<int64_t>(g) * group_size * slot_len + c);
    if (c < cols)
      dgamma[c] = from_acc<T>(v);
    else
      dbeta[c - cols] = from_acc<T>(v);
  }
  if (tid == 0) counters[0] = 0;
}

int64_t workspace_slots(int64_t rows) { return std::max<int64_t>(2, std::min(rows, kMaxBackwardBlocks)); }

template <typename T>
cudaError_t launch_forward(const void* x, const void* gamma, const void* beta, void* y, void* mean, void* rstd,
                           int64_t rows, int64_t cols, cudaStream_t stream) {
  using A = Acc<T>;
  constexpr int N = kPack<T>;
  for (const void* p : {x, gamma, beta, static_cast<const void*>(y)})
    if (!element_aligned<T>(p)) return cudaErrorInvalidValue;
  if (!element_aligned<A>(mean) || !element_aligned<A>(rstd)) return cudaErrorInvalidValue;
  const bool vec = cols % N == 0 && aligned16(x) && aligned16(gamma) && aligned16(beta) && aligned16(y);
  layernorm_forward_kernel<T><<<row_blocks(rows), row_threads(vec ? cols / N : cols), 0, stream>>>(
      static_cast<const T*>(x), static_cast<const T*>(gamma), static_cast<const T*>(beta), static_cast<T*>(y),
      static_cast<A*>(mean), static_cast<A*>(rstd), rows, cols, vec);
  return cudaGetLastError();
}

// The backward launch's setup, done once and cached (a device query, cudaFuncSetAttribute and
// the occupancy calculation on every launch cost host time that shows in small layers' op
// times): per device its SM count and opt-in shared memory per block; per device, kernel
// (T), block size and dynamic shared memory the resident blocks per SM, with the kernel's
// shared-memory attribute raised to that size on that device first. Thread-safe (a mutex per
// cache). The attribute belongs to the device's primary context, which flopscope never
// resets, so it stays set; the first launch of a size comes in the verification run, before
// any CUDA-graph capture.
struct DeviceLimits {
  int sms = 0, optin = 0;
};

cudaError_t device_limits(int device, DeviceLimits& out) {
  static std::mutex m;
  static std::map<int, DeviceLimits> cache;
  const std::lock_guard<std::mutex> lock(m);
  if (const auto it = cache.find(device); it != cache.end()) {
    out = it->second;
    return cudaSuccess;
  }
  DeviceLimits l;
  cudaError_t e;
  if ((e = cudaDeviceGetAttribute(&l.sms, cudaDevAttrMultiProcessorCount, device)) != cudaSuccess) return e;
  if ((e = cudaDeviceGetAttribute(&l.optin, cudaDevAttrMaxSharedMemoryPerBlockOptin, device)) != cudaSuccess) return e;
  cache[device] = l;
  out = l;
  return cudaSuccess;
}

template <typename T>
cudaError_t blocks_per_sm(int device, int threads, size_t smem, int& per_sm) {
  static std::mutex m;
  static std::map<std::tuple<int, int, size_t>, int> occupancy;  // (device, threads, smem) -> blocks per SM
  static std::map<int, size_t> attribute;                        // device -> dynamic shared memory allowed
  const std::lock_guard<std::mutex> lock(m);
  if (const auto it = occupancy.find({device, threads, smem}); it != occupancy.end()) {
    per_sm = it->second;
    return cudaSuccess;
  }
  auto kernel = layernorm_backward_kernel<T>;
  cudaError_t e;
  if (smem > attribute[device]) {
    if ((e = cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, static_cast<int>(smem))) !=
        cudaSuccess)
      return e;
    attribute[device] = smem;
  }
  if ((e = cudaOccupancyMaxActiveBlocksPerMultiprocessor(&per_sm, kernel, threads, smem)) != cudaSuccess) return e;
  occupancy[{device, threads, smem}] = per_sm;
  return cudaSuccess;
}

template <typename T>
cudaError_t launch_backward(const void* dy, const void* x, const void* gamma, const void* mean, const void* rstd,
                            void* dx, void* dgamma, void* dbeta, int64_t rows, int64_t cols, void* workspace,
                            cudaStream_t stream) {
  using A = Acc<T>;
  constexpr int N = kPack<T>;
  for (const void* p : {dy, x, gamma, static_cast<const void*>(dx), static_cast<const void*>(dgamma),
                        static_cast<const void*>(dbeta)})
    if (!element_aligned<T>(p)) return cudaErrorInvalidValue;
  if (!element_aligned<A>(mean) || !element_aligned<A>(rstd) || !element_aligned<double>(workspace))
    return cudaErrorInvalidValue;
  const bool vec = cols % N == 0 && aligned16(dy) && aligned16(x) && aligned16(gamma) && aligned16(dx);
  const int threads = row_threads(vec ? cols / N : cols);

  cudaError_t e;
  int device = 0;
  if ((e = cudaGetDevice(&device)) != cudaSuccess) return e;  // host-side, no device round trip
  DeviceLimits limits;
  if ((e = device_limits(device, limits)) != cudaSuccess) return e;
  const int sms = limits.sms;

  // Accumulate in shared memory when it fits (1 KiB left for the kernel's static shared memory).
  const size_t acc_bytes = static_cast<size_t>(2 * cols) * sizeof(A);
  const bool smem_acc = acc_bytes + 1024 <= static_cast<size_t>(limits.optin);
  const size_t smem = smem_acc ? acc_bytes : 0;
  auto kernel = layernorm_backward_kernel<T>;
  int per_sm = 0;
  if ((e = blocks_per_sm<T>(device, threads, smem, per_sm)) != cudaSuccess) return e;

  const int64_t slots = workspace_slots(rows);
  const int64_t max_blocks = sizeof(A) == sizeof(double) ? slots / 2 : slots;  // f64 slots are 2 float slots wide
  const int64_t resident = static_cast<int64_t>(sms) * std::max(per_sm, 1);
  const int64_t blocks = std::max<int64_t>(1, std::min({rows, resident, max_blocks}));
  unsigned group = 1;
  while (static_cast<int64_t>(group) * group < blocks) ++group;  // ceil(sqrt(blocks))
  if ((blocks + group - 1) / group > kMaxGroups) return cudaErrorInvalidValue;  // cannot happen for 512 blocks

  auto* counters = static_cast<unsigned*>(workspace);
  auto* slot_base = reinterpret_cast<A*>(static_cast<unsigned char*>(workspace) + kCounterBytes);
  kernel<<<static_cast<unsigned>(blocks), threads, smem, stream>>>(
      static_cast<const T*>(dy), static_cast<const T*>(x), static_cast<const T*>(gamma), static_cast<const A*>(mean),
      static_cast<const A*>(rstd), static_cast<T*>(dx), static_cast<T*>(dgamma), static_cast<T*>(dbeta), rows, cols,
      vec, slot_base, counters, group, smem_acc);
  return cudaGetLastError();
}

}  // namespace

cudaError_t layernorm_forward(DType t, const void* x, const void* gamma, const void* beta, void* y, void* mean,
                              void* rstd, int64_t rows, int64_t cols, cudaStream_t stream) {
  if (rows < 0 || cols < 0 || (rows > 0 && cols == 0)) return cudaErrorInvalidValue;  // mean of no columns
  if (rows == 0) return cudaSuccess;
  if (!x || !gamma || !beta || !y || !mean || !rstd) return cudaErrorInvalidValue;
  return dispatch(t, [&](auto tag) {
    return launch_forward<typename decltype(tag)::type>(x, gamma, beta, y, mean, rstd, rows, cols, stream);
  });
}

size_t layernorm_backward_workspace_bytes(int64_t rows, int64_t cols) {
  if (rows < 0 || cols < 0) return 0;
  return kCounterBytes + static_cast<size_t>(workspace_slots(rows)) * static_cast<size_t>(2 * cols) * sizeof(float);
}

cudaError_t layernorm_backward(DType t, const void* dy, const void* x, const void* gamma, const void* mean,
                               const void* rstd, void* dx, void* dgamma, void* dbeta, int64_t rows, int64_t cols,
                               void* workspace, cudaStream_t stream) {
  if (rows < 0 || cols < 0) return cudaErrorInvalidValue;
  if (cols == 0) return cudaSuccess;  // nothing to write
  if (!dgamma || !dbeta || !workspace) return cudaErrorInvalidValue;
  if (rows > 0 && (!dy || !x || !gamma || !mean || !rstd || !dx)) return cudaErrorInvalidValue;
  // rows == 0 still launches: dgamma and dbeta are sums over no rows, zeros.
  return dispatch(t, [&](auto tag) {
    return launch_backward<typename decltype(tag)::type>(dy, x, gamma, mean, rstd, dx, dgamma, dbeta, rows, cols,
                                                         workspace, stream);
  });
}

}  // namespace flopscope::kernels
