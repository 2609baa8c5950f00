// Collective and point-to-point times: a ring (alpha-beta) over the link the group uses.
// A group of n GPUs all inside one node (NVLink) uses the NVLink figures. A group over nodes,
// k of its GPUs in each node, runs k rings at once (NCCL's channels), each crossing between
// nodes on a different GPU's NIC (one a GPU, DGX/HGX rails) and carrying 1/k of the message, the
// hops inside a node on NVLink: its bus bandwidth is min(NVLink, k x network), each x its
// efficiency (k = 1, one GPU of the group a node: the network's; k = 8: eight NICs, NVLink's
// 360 GB/s on Hopper, what nccl-tests' all_reduce_perf shows over DGX H100 nodes), latency the
// network's. With the bus bandwidth B:
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

// A communicator: `ranks` GPUs, `per_node` of them in each node (ranks <= per_node: one node).
struct CommGroup {
  int64_t ranks = 1;
  int64_t per_node = 1;
  bool spans_nodes() const { return ranks > per_node; }
};
// `ranks` GPUs `stride` apart in the global rank order (Megatron-LM's: tp innermost, then cp, dp,
// pp), on nodes of gpus_per_node: gpus_per_node / stride of them share a node (at least 1, at
// most ranks).
CommGroup strided_group(int64_t ranks, int64_t stride, int64_t gpus_per_node);

struct Network {
  SystemProfile system;
  std::vector<BusBandwidthCurve> measured;  // --nccl-tests
  // Seconds for collective `c` of a message of `bytes` (the whole tensor) over group `g`.
  double time(Collective c, double bytes, CommGroup g) const;
  // The bus bandwidth (bytes/s) collective `c` gets over `g` from the profile (nccl-tests'
  // figures replace it in time()).
  double bus_bandwidth(CommGroup g) const;
  // An all-to-all over `g`, each GPU sending `bytes` in all (a mixture of experts' dispatch or
  // combine).
  double all_to_all(double bytes, CommGroup g) const;
  // A deduplicating dispatch or combine (Megatron Core's flex dispatcher: DeepEP, HybridEP) over
  // `g`: each of this GPU's `rows` tokens (`row_bytes` each) goes once to each GPU of the group
  // holding one or more of its `top_k` experts, and between nodes once to each node holding one
  // or more, on the NIC, then on NVLink to that node's GPUs. With a balanced router (k of the E
  // `experts` at random, as the published runs force it) over G ranks, N nodes of g ranks each:
  //   p_r = 1 - C(E - E/G, k) / C(E, k)   a given rank holds one of a token's experts
  //   p_n = 1 - C(E - E/N, k) / C(E, k)   a given node does
  //   network: (N - 1) p_n rows a token out of each GPU, on its NIC
  //   NVLink:  (g - 1) p_r rows to its node's other GPUs, and the rows that came from other
  //            nodes forwarded to theirs, (N - 1) (g - 1) p_r: N (g - 1) p_r in all
  // the slower of the two, each with a latency a peer. (The alltoall dispatcher sends all k
  // copies: k (G - g) / G rows a token over the network.)
  double dedup_all_to_all(double rows, double row_bytes, int64_t experts, int64_t top_k, CommGroup g) const;
  // Where the bandwidth comes from: "profile" or the nccl-tests file.
  std::string source(Collective c, CommGroup g) const;
};

}  // namespace flopscope::predict
