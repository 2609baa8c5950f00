// Collective and point-to-point times: a ring (alpha-beta) over the link the group uses.
// A group of n GPUs all inside one node (NVLink) uses the NVLink figures, else the network's
// (the ring is as slow as its slowest hop). With the bus bandwidth B = link x efficiency:
//   all-reduce      2 (n-1)/n S / B + 2 (n-1) alpha
//   reduce-scatter    (n-1)/n S / B +   (n-1) alpha   (S: the whole, unsharded message)
//   all-gather        (n-1)/n S / B +   (n-1) alpha
//   send/recv                 S / B +         alpha
//   all-to-all        (n-1)/n S / B +   (n-1) alpha   (S: what one GPU sends to the group, its own share included);
//                     a group over nodes: the share to other nodes over the network and the
//                     rest over NVLink at once, the slower of the two (Network::all_to_all)
// --nccl-tests replaces B by the bus bandwidth nccl-tests measured at the nearest message size.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include <nlohmann/json_fwd.hpp>

#include "predict/system.hpp"

namespace flopscope::predict {

enum class Collective { all_reduce, reduce_scatter, all_gather, send_recv, all_to_all };
std::string_view to_string(Collective c);

// Bus bandwidth against message size, as NVIDIA's nccl-tests print it (one table a file).
struct BusBandwidthCurve {
  Collective op = Collective::all_reduce;
  bool inter_node = false;  // measured over more GPUs than a node holds
  std::vector<std::pair<double, double>> points;  // (message bytes, bus bytes/s), sorted by size
  std::string file;
  // Bus bandwidth at `bytes`: interpolated in log size, clamped to the ends.
  double at(double bytes) const;
};
// Parses the output of all_reduce_perf, reduce_scatter_perf, all_gather_perf, sendrecv_perf or alltoall_perf:
// the collective from the "# Collective test starting: NAME" line (or the file name), the GPU
// count from the "#  Rank" lines (more than gpus_per_node: between nodes), then the rows of
// size, count, type, redop, root, then out-of-place time, algbw, busbw (GB/s), ...
// Throws UsageError naming the file when no row can be read.
BusBandwidthCurve parse_nccl_tests(const std::string& text, const std::string& file, int64_t gpus_per_node);

struct Network {
  SystemProfile system;
  std::vector<BusBandwidthCurve> measured;  // --nccl-tests
  // Seconds for collective `c` of a message of `bytes` (the whole tensor) over `n` GPUs;
  // `inter_node`: the group spans nodes.
  double time(Collective c, double bytes, int64_t n, bool inter_node) const;
  // An all-to-all over n GPUs, per_node of them in each node (n <= per_node: one node), each
  // sending `bytes` in all (a mixture of experts' dispatch or combine).
  double all_to_all(double bytes, int64_t n, int64_t per_node) const;
  // Where the bandwidth comes from: "profile" or the nccl-tests file.
  std::string source(Collective c, bool inter_node) const;
};

}  // namespace flopscope::predict
