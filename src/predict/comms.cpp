#include "predict/comms.hpp"

#include <algorithm>
#include <cmath>
#include <sstream>

#include <fmt/format.h>

#include "util/error.hpp"

namespace flopscope::predict {

std::string_view to_string(Collective c) {
  switch (c) {
    case Collective::all_reduce: return "all_reduce";
    case Collective::reduce_scatter: return "reduce_scatter";
    case Collective::all_gather: return "all_gather";
    case Collective::send_recv: return "send_recv";
    case Collective::all_to_all: return "all_to_all";
  }
  return "?";
}

double BusBandwidthCurve::at(double bytes) const {
  if (points.empty()) return 0;
  if (bytes <= points.front().first) return points.front().second;
  if (bytes >= points.back().first) return points.back().second;
  for (size_t i = 1; i < points.size(); ++i) {
    if (bytes > points[i].first) continue;
    const auto [x0, y0] = points[i - 1];
    const auto [x1, y1] = points[i];
    const double t = (std::log(bytes) - std::log(x0)) / (std::log(x1) - std::log(x0));
    return y0 + t * (y1 - y0);
  }
  return points.back().second;
}

BusBandwidthCurve parse_nccl_tests(const std::string& text, const std::string& file, int64_t gpus_per_node) {
  BusBandwidthCurve c;
  c.file = file;
  bool named = false;
  auto name_from = [&](const std::string& s) {
    if (s.find("all_reduce") != std::string::npos || s.find("AllReduce") != std::string::npos) c.op = Collective::all_reduce;
    else if (s.find("reduce_scatter") != std::string::npos || s.find("ReduceScatter") != std::string::npos)
      c.op = Collective::reduce_scatter;
    else if (s.find("all_gather") != std::string::npos || s.find("AllGather") != std::string::npos) c.op = Collective::all_gather;
    else if (s.find("sendrecv") != std::string::npos || s.find("SendRecv") != std::string::npos) c.op = Collective::send_recv;
    else if (s.find("alltoall") != std::string::npos || s.find("AlltoAll") != std::string::npos ||
             s.find("AllToAll") != std::string::npos)
      c.op = Collective::all_to_all;
    else return false;
    return true;
  };
  int64_t ranks = 0;
  std::istringstream in(text);
  std::string line;
  while (std::getline(in, line)) {
    if (line.rfind("#", 0) == 0) {
      if (line.find("Collective test starting:") != std::string::npos) named = name_from(line) || named;
      if (line.find("Rank") != std::string::npos && line.find("device") != std::string::npos) ++ranks;
      continue;
    }
    // size count type redop root time algbw busbw #wrong time algbw busbw #wrong
    std::istringstream row(line);
    std::vector<std::string> f;
    for (std::string w; row >> w;) f.push_back(w);
    if (f.size() < 8) continue;
    char* end = nullptr;
    const double size = std::strtod(f[0].c_str(), &end);
    if (end == f[0].c_str() || *end || !(size > 0)) continue;
    const double busbw = std::strtod(f[7].c_str(), &end);
    if (end == f[7].c_str() || *end || !(busbw > 0) || !std::isfinite(busbw)) continue;
    c.points.emplace_back(size, busbw * 1e9);
  }
  if (!named && !name_from(file))
    throw UsageError(fmt::format("--nccl-tests {}: cannot tell the collective (no '# Collective test starting' line and "
                                 "the file name names none of all_reduce, reduce_scatter, all_gather, sendrecv, alltoall)", file));
  if (c.points.empty())
    throw UsageError(fmt::format("--nccl-tests {}: no rows of size, count, type, redop, root, time, algbw, busbw", file));
  std::sort(c.points.begin(), c.points.end());
  c.inter_node = ranks > gpus_per_node;
  return c;
}

CommGroup strided_group(int64_t ranks, int64_t stride, int64_t gpus_per_node) {
  const int64_t fit = stride >= gpus_per_node ? 1 : gpus_per_node / std::max<int64_t>(stride, 1);
  return CommGroup{ranks, std::clamp<int64_t>(fit, 1, std::max<int64_t>(ranks, 1))};
}

double Network::bus_bandwidth(CommGroup g) const {
  const double nvlink = system.nvlink_bytes_per_s * system.nvlink_efficiency;
  if (!g.spans_nodes()) return nvlink;
  const double rails = static_cast<double>(std::max<int64_t>(g.per_node, 1));
  return std::min(nvlink, rails * system.network_bytes_per_s * system.network_efficiency);
}

double Network::time(Collective c, double bytes, CommGroup g) const {
  const int64_t n = g.ranks;
  if (bytes <= 0 || (n <= 1 && c != Collective::send_recv)) return 0;
  const bool inter_node = g.spans_nodes();
  double bus = bus_bandwidth(g);
  const double alpha = inter_node ? system.network_latency_s : system.nvlink_latency_s;
  for (const auto& m : measured)
    if (m.op == c && m.inter_node == inter_node) bus = m.at(bytes);
  const double nn = static_cast<double>(n);
  switch (c) {
    case Collective::all_reduce: return 2 * (nn - 1) / nn * bytes / bus + 2 * (nn - 1) * alpha;
    case Collective::reduce_scatter:
    case Collective::all_gather:
    case Collective::all_to_all: return (nn - 1) / nn * bytes / bus + (nn - 1) * alpha;
    case Collective::send_recv: return bytes / bus + alpha;
  }
  return 0;
}

double Network::all_to_all(double bytes, CommGroup g) const {
  const int64_t n = g.ranks;
  if (bytes <= 0 || n <= 1) return 0;
  if (!g.spans_nodes()) return time(Collective::all_to_all, bytes, g);
  for (const auto& m : measured)  // nccl-tests' bus bandwidth over nodes: (n - 1) / n of the bytes
    if (m.op == Collective::all_to_all && m.inter_node) return time(Collective::all_to_all, bytes, g);
  // Each GPU sends its share for other nodes on its own NIC and the rest over NVLink at once.
  const double nn = static_cast<double>(n), local = static_cast<double>(g.per_node), remote = nn - local;
  const double over_network = remote / nn * bytes / (system.network_bytes_per_s * system.network_efficiency) +
                              remote * system.network_latency_s;
  const double over_nvlink = (local - 1) / nn * bytes / (system.nvlink_bytes_per_s * system.nvlink_efficiency) +
                             (local - 1) * system.nvlink_latency_s;
  return std::max(over_network, over_nvlink);
}

namespace {

// C(E - E/G, k) / C(E, k): none of a token's k experts (of E, at random) among a given E/G.
double none_of_k_among(int64_t experts, int64_t groups, int64_t k) {
  const double e = static_cast<double>(experts), held = e / static_cast<double>(std::max<int64_t>(groups, 1));
  double p = 1;
  for (int64_t i = 0; i < k; ++i) p *= std::max(0.0, (e - held - static_cast<double>(i)) / (e - static_cast<double>(i)));
  return p;
}

}  // namespace

double Network::dedup_all_to_all(double rows, double row_bytes, int64_t experts, int64_t top_k, CommGroup g) const {
  const int64_t G = g.ranks;
  if (rows <= 0 || G <= 1) return 0;
  const int64_t per_node = std::min(G, std::max<int64_t>(g.per_node, 1)), nodes = (G + per_node - 1) / per_node;
  const double p_rank = 1 - none_of_k_among(experts, G, top_k), p_node = 1 - none_of_k_among(experts, nodes, top_k);
  const double gl = static_cast<double>(per_node), nn = static_cast<double>(nodes);
  const double bytes = rows * row_bytes;
  const double over_nvlink = nn * (gl - 1) * p_rank * bytes / (system.nvlink_bytes_per_s * system.nvlink_efficiency) +
                             (gl - 1) * system.nvlink_latency_s;
  const double over_network =
      nodes > 1 ? (nn - 1) * p_node * bytes / (system.network_bytes_per_s * system.network_efficiency) +
                      (nn - 1) * system.network_latency_s
                : 0.0;
  return std::max(over_network, over_nvlink);
}

std::string Network::source(Collective c, CommGroup g) const {
  const bool inter_node = g.spans_nodes();
  for (const auto& m : measured)
    if (m.op == c && m.inter_node == inter_node) return "nccl-tests " + m.file;
  if (!inter_node) return "profile NVLink";
  return g.per_node > 1 ? fmt::format("profile network, {} GPUs of the group a node on their own NICs", g.per_node)
                        : "profile network";
}

}  // namespace flopscope::predict
