// The figures, drawn from result JSON alone (so `report` and `plot` work on saved files):
//
//   ops              per op: analytic vs counted (or measured) FLOPs, and each op's share of
//                    the layer's time (timed; estimate: of its FLOPs, analytic)
//   roofline         each op at its arithmetic intensity (analytic) and achieved throughput
//                    (counted / timed), under the ceilings: datasheet peak, the GEMM ceiling
//                    timed in the same run, and, given a `peak` result, its GEMM ceiling and
//                    copy bandwidth
//   seed-waterfall   the seed's 8.7e22, each correction factor (analytic, from the layer
//                    graph), the corrected totals and, for a measurement, its extrapolated total
//   sweep-throughput from a sweep: the layer's throughput against d_model, one line per
//                    configuration, toward GPT-3's full width
//   sweep-time       from a sweep: the extrapolated training time of each configuration
//   compare-time     from a comparison: each op's median time, one bar per input
//   step-breakdown   from a prediction (or a comparison of predictions): the step's parts as a
//                    stacked bar (modelled); src/report/render_predict.cpp
//   mfu-scaling      from a prediction with a --gpus list: MFU against GPU count (modelled)
//
// Every axis title and legend entry names its source (analytic, counted, measured, timed).
#pragma once

#include <string>
#include <vector>

#include <nlohmann/json.hpp>

namespace flopscope {

struct Figure {
  std::string id;       // stable: ops, roofline, seed-waterfall, sweep-throughput, sweep-time, compare-time, step-breakdown, mfu-scaling
  std::string title;
  std::string caption;  // what is drawn, with its sources
  std::string svg;      // inline in HTML (no namespace, no XML declaration)
  std::string file;     // a standalone .svg file
};

// Every figure a result of any command (estimate, measure, sweep, compare, predict) has, in order.
// `peak`: a `flopscope peak --format json` result whose ceilings the roofline adds, or null.
// Throws UsageError for a document of another schema or command; json::exception for
// missing fields.
std::vector<Figure> figures_for(const nlohmann::json& result, const nlohmann::json& peak = nullptr);

Figure ops_figure(const nlohmann::json& result);
Figure roofline_figure(const nlohmann::json& measure, const nlohmann::json& peak = nullptr);
Figure seed_waterfall_figure(const nlohmann::json& result);
Figure sweep_throughput_figure(const nlohmann::json& sweep);
Figure sweep_time_figure(const nlohmann::json& sweep);
Figure compare_time_figure(const nlohmann::json& compare);

}  // namespace flopscope
