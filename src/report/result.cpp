#include "report/result.hpp"

#include <fmt/format.h>

#include "analytic/formulas.hpp"
#include "report/collections.hpp"
#include "report/render_detail.hpp"
#include "report/render_predict.hpp"
#include "util/error.hpp"
#include "version.hpp"

namespace flopscope {

using nlohmann::json;

Format parse_format(std::string_view text) {
  if (text == "table") return Format::table;
  if (text == "json") return Format::json;
  if (text == "csv") return Format::csv;
  if (text == "markdown" || text == "md") return Format::markdown;
  if (text == "html") return Format::html;
  throw UsageError(fmt::format("--format: unknown format '{}'; choose table, json, csv, markdown or html", text));
}

json tool_json() { return {{"name", "flopscope"}, {"version", kVersion}, {"git_commit", kGitCommit}}; }

json op_json(const Op& op) {
  json j = {{"name", op.name},
            {"phase", to_string(op.phase)},
            {"group", to_string(op.group)},
            {"kind", to_string(op.kind)},
            {"impl", to_string(op.impl)},
            {"shape", op.shape_str()},
            {"dtype", to_string(op.precision)},
            {"flops", op.flops},
            {"min_bytes", op.min_bytes}};
  if (op.impl == OpImpl::gemm) {
    j["dims"] = {{"m", op.gemm.m}, {"n", op.gemm.n}, {"k", op.gemm.k}, {"batch", op.gemm.batch},
                 {"trans_a", op.gemm.trans_a}, {"trans_b", op.gemm.trans_b}};
    if (op.gemm.repeat > 1) j["dims"]["repeat"] = op.gemm.repeat;  // grouped-query attention: query heads per kv head
    if (op.gemm.blocked()) {  // the causal product in row blocks: executed FLOPs under the full square's
      j["dims"]["causal_block"] = op.gemm.causal_block;
      j["full_square_flops"] = op.gemm.full_flops();
    }
  } else {
    j["dims"] = {{"batch", op.batch}, {"rows", op.rows}, {"cols", op.cols}};
  }
  if (op.causal_square) j["model_flops"] = op.model_flops;
  return j;
}

json layer_json(const LayerGraph& g, const ModelConfig& lm, const std::string& width) {
  const auto& s = g.shape;
  json j = {{"width", width},
          {"batch", s.batch},
          {"seq", s.seq},
          {"tokens", s.tokens()},
          {"d_model", s.d_model},
          {"n_heads", s.n_heads},
          {"d_head", s.d_head},
          {"d_ff", s.d_ff},
          {"vocab", s.vocab},
          {"n_kv_heads", s.kv_heads()},
          {"norm", std::string(to_string(s.norm))},
          {"ffn", std::string(to_string(s.ffn))},
          {"position", std::string(to_string(s.position))},
          {"precision", to_string(g.options.precision)},
          {"recompute", g.options.recompute},
          {"causal_block", g.options.causal_block},
          {"include_head", g.options.include_head},
          {"tensor_bytes", g.tensor_bytes()},
          {"name", lm.name},
          {"layer_kind", to_string(s.layer)}};  // which of the model's kinds of layer this is
  if (s.moe()) {
    j["n_experts"] = s.n_experts;
    j["top_k"] = s.top_k;
    j["d_ff_expert"] = s.d_ff_expert;
    j["n_shared_experts"] = s.n_shared;
    j["d_ff_shared"] = s.d_ff_shared;
  }
  return j;
}

json formulas_json(const ModelConfig& m, const ClusterAssumption& c, int64_t megatron_vocab_multiple) {
  const GpuPeaks& gpu = gpu_by_id(c.gpu);
  const auto peak = peak_tflops(gpu, c.dtype);
  const double six_nd = formula_6nd(m).total_flops;
  json list = json::array();
  for (const auto& f : all_formulas(m, megatron_vocab_multiple)) {
    json j = {{"id", f.id},
              {"title", f.title},
              {"flops_per_token", f.flops_per_token},
              {"total_flops", f.total_flops},
              {"ratio_to_6nd", f.total_flops / six_nd},
              {"pf_days", pf_days(f.total_flops)},
              {"source", f.source}};
    j["days_on_cluster"] = peak ? json(days_on(f.total_flops, c.gpus, *peak * 1e12 * c.utilization)) : json(nullptr);
    list.push_back(j);
  }
  return list;
}

json cluster_json(const ClusterAssumption& c) {
  const GpuPeaks& gpu = gpu_by_id(c.gpu);
  const auto peak = peak_tflops(gpu, c.dtype);
  return {{"gpu", gpu.id},
          {"gpu_title", gpu.title},
          {"gpus", c.gpus},
          {"utilization", c.utilization},
          {"dtype", c.dtype},
          {"peak_tflops", peak ? json(*peak) : json(nullptr)},
          {"peak_source", gpu.source}};
}

json parameter_breakdown_json(const ModelConfig& m) {
  const ParameterBreakdown p = parameter_breakdown(m);
  return {{"embeddings", p.embeddings},
          {"positions", p.positions},
          {"attention_per_layer", p.attention},
          {"attention_biases_per_layer", p.attention_biases},
          {"ffn_per_layer", p.ffn},
          {"ffn_biases_per_layer", p.ffn_biases},
          {"norms_per_layer", p.norms},
          {"layers", p.layers()},
          {"final_norm", p.final_norm},
          {"lm_head", p.lm_head},
          {"total", p.total()},
          {"active", p.active()},
          {"non_embedding", non_embedding_parameters(m)}};
}

json layer_kinds_json(const ModelConfig& m) {
  json kinds = json::array();
  for (const auto& [k, p] : parameter_breakdown(m).kinds)
    kinds.push_back({{"layer", to_string(k.spec)},
                     {"count", k.count},
                     {"first", k.first},
                     {"parameters",
                      {{"attention", p.attention},
                       {"attention_biases", p.attention_biases},
                       {"attention_extra", p.attention_extra},
                       {"ffn", p.ffn},
                       {"ffn_biases", p.ffn_biases},
                       {"norms", p.norms},
                       {"routed_experts", p.routed_experts},
                       {"active_experts", p.active_experts},
                       {"shared_experts", p.shared_experts},
                       {"router", p.router},
                       {"total", p.total()},
                       {"active", p.active()}}}});
  return kinds;
}

json seed_check_json(const ModelConfig& m) {
  const SeedCheck c = seed_check(m);
  if (!c.applies) return {{"applies", false}, {"note", c.note}};
  json factors = json::array();
  for (const auto& f : c.factors) {
    factors.push_back({{"id", f.id},
                       {"description", f.description},
                       {"seed_value", f.seed_value},
                       {"graph_value", f.graph_value},
                       {"factor", f.factor},
                       {"running_total", f.running_total}});
  }
  return {{"applies", true},
          {"seed_total", c.seed_total},     {"factors", factors},
          {"product", c.product},           {"corrected_total", c.corrected_total},
          {"six_nd_total", c.six_nd_total}, {"graph_total", c.graph_total},
          {"note", "factors computed from the layer graph at full width (b = 1, s = n_ctx); the corrected total is "
                   "the graph's GEMM FLOPs, executed; graph_total adds the non-GEMM ops and the LM head"}};
}

json estimate_result(const ModelConfig& model, const ModelConfig& layer_model, const std::string& width,
                     const LayerGraph& g, const ClusterAssumption& c, int64_t megatron_vocab_multiple) {
  json ops = json::array();
  for (const auto& op : g.ops) ops.push_back(op_json(op));
  return {{"schema", kSchema},
          {"command", "estimate"},
          {"tool", tool_json()},
          {"sources",
           {{"formulas", "analytic"}, {"ops.flops", "analytic"}, {"ops.model_flops", "analytic"},
            {"seed_check", "analytic"}, {"cluster", "assumed"}}},
          {"model", model_to_json(model)},
          {"parameters", parameter_count(model)},
          {"active_parameters", active_parameter_count(model)},
          {"parameter_breakdown", parameter_breakdown_json(model)},
          {"layer_kinds", layer_kinds_json(model)},
          {"layer", layer_json(g, layer_model, width)},
          {"cluster", cluster_json(c)},
          {"formulas", formulas_json(model, c, megatron_vocab_multiple)},
          {"ops", ops},
          {"seed_check", seed_check_json(model)}};
}

std::string render(const json& result, Format f) {
  try {
    check_result(result);
    if (f == Format::json) return result.dump(2) + "\n";
    if (f == Format::html) return render_html(result);
    const std::string cmd = result.at("command").get<std::string>();
    if (cmd == "predict" || is_prediction_compare(result)) {  // src/report/render_predict.cpp
      if (f == Format::csv) return detail::predict_csv(result);
      const auto doc = detail::predict_document(result);
      return f == Format::markdown ? doc.markdown() : doc.text();
    }
    if (cmd == "sweep" || cmd == "compare") {
      if (f == Format::csv) return cmd == "sweep" ? detail::sweep_csv(result) : detail::compare_csv(result);
      const auto doc = cmd == "sweep" ? detail::sweep_document(result) : detail::compare_document(result);
      return f == Format::markdown ? doc.markdown() : doc.text();
    }
    detail::check_schema(result);
    if (f == Format::csv) return detail::render_csv(result);
    const auto doc = cmd == "estimate" ? detail::estimate_document(result) : detail::measure_document(result);
    return f == Format::markdown ? doc.markdown() : doc.text();
  } catch (const json::exception& e) {
    throw UsageError(fmt::format("result is malformed or incomplete: {}", e.what()));
  }
}

}  // namespace flopscope
