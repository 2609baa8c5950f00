#include <fmt/format.h>

#include "report/render_detail.hpp"
#include "report/result.hpp"
#include "util/error.hpp"

namespace flopscope::detail {

using nlohmann::json;

std::string Document::text() const {
  std::string out = title + "\n";
  for (const auto& s : sections) {
    out += "\n" + s.heading + "\n";
    for (const auto& l : s.before) out += "  " + l + "\n";
    if (s.table) out += s.table->text();
    for (const auto& l : s.after) out += "  " + l + "\n";
  }
  return out;
}

std::string Document::markdown() const {
  std::string out = "# " + title + "\n";
  for (const auto& s : sections) {
    out += "\n## " + s.heading + "\n\n";
    for (const auto& l : s.before) out += l + "\n\n";
    if (s.table) out += s.table->markdown() + "\n";
    for (const auto& l : s.after) out += l + "\n\n";
  }
  return out;
}

void check_schema(const json& r) {
  if (!r.is_object() || !r.contains("schema"))
    throw UsageError("not a flopscope result: no 'schema' field");
  if (!r.at("schema").is_string())
    throw UsageError("not a flopscope result: 'schema' is not a string");
  const auto schema = r.at("schema").get<std::string>();
  if (schema != kSchema)
    throw UsageError(fmt::format("result schema '{}' is not the schema this flopscope reads ('{}')", schema, kSchema));
  const auto cmd = r.at("command").get<std::string>();
  if (cmd != "estimate" && cmd != "measure")
    throw UsageError(fmt::format("result of unknown command '{}'", cmd));
}

std::string model_line(const json& m) {
  std::string line = fmt::format("{}: {} layers, d_model {}, {} heads x {}, d_ff {}, n_ctx {}, vocab {}; {} training tokens",
                     m.at("name").get<std::string>(), m.at("n_layers").get<int64_t>(), m.at("d_model").get<int64_t>(),
                     m.at("n_heads").get<int64_t>(), m.at("d_head").get<int64_t>(), m.at("d_ff").get<int64_t>(),
                     m.at("n_ctx").get<int64_t>(), m.at("vocab").get<int64_t>(),
                     fmt_count(m.at("train_tokens").get<double>()));
  // The architecture (results written before these keys existed are GPT-3's and omit them).
  if (m.contains("norm")) {
    const int64_t heads = m.at("n_heads").get<int64_t>(), kv = m.at("n_kv_heads").get<int64_t>();
    const std::string attention = kv == heads ? "multi-head" : kv == 1 ? "multi-query" : "grouped-query";
    const std::string position = m.at("position").get<std::string>();
    line += fmt::format("; {} kv heads ({}), {}, {} FFN, {} positions{}, biases {}, embeddings {}", kv, attention,
                        m.at("norm").get<std::string>(), m.at("ffn").get<std::string>(), position,
                        position == "rope" ? fmt::format(" (theta {:g})", m.at("rope_theta").get<double>()) : "",
                        m.at("biases").get<std::string>(), m.at("tied_embeddings").get<bool>() ? "tied" : "untied");
    if (const int64_t w = m.at("sliding_window").get<int64_t>(); w > 0)
      line += fmt::format("; sliding window {}: the graph's model FLOPs count the window's area, its executed FLOPs "
                          "the whole square (as cuBLASLt runs it), the closed-form formulas full causal attention",
                          w);
  }
  return line;
}

// A whole count with thousands separators: 405,853,388,800.
std::string exact_count(double v) {
  std::string digits = fmt::format("{:.0f}", v), out;
  for (size_t i = 0; i < digits.size(); ++i) {
    if (i > 0 && (digits.size() - i) % 3 == 0 && digits[i - 1] != '-') out += ',';
    out += digits[i];
  }
  return out;
}

// N and its breakdown, one line (analytic); a model of several kinds of layer, or a mixture of
// experts, adds a line each for its kinds and its active N.
std::vector<std::string> parameters_lines(const json& r) {
  const double total = r.at("parameters").get<double>();
  std::string line =
      fmt::format("parameters N (analytic, from the architecture): {} ({})", exact_count(total), fmt_count(total));
  if (!r.contains("parameter_breakdown")) return {line};
  const auto& p = r.at("parameter_breakdown");
  auto n = [&](const char* key) { return fmt_count(p.at(key).get<double>()); };
  line += fmt::format(" = embeddings {} + positions {} + layers {} (per layer: attention {} + biases {}, FFN {} + biases {}, "
                      "norms {}) + final norm {} + LM head {} (untied; 0 when tied); non-embedding (Kaplan) {}",
                      n("embeddings"), n("positions"), n("layers"), n("attention_per_layer"),
                      n("attention_biases_per_layer"), n("ffn_per_layer"), n("ffn_biases_per_layer"),
                      n("norms_per_layer"), n("final_norm"), n("lm_head"), n("non_embedding"));
  std::vector<std::string> lines = {line};
  if (r.contains("layer_kinds") && r.at("layer_kinds").size() > 1) {
    std::string kinds;
    for (const auto& k : r.at("layer_kinds"))
      kinds += fmt::format("{}{} x {} ({} each, {} active)", kinds.empty() ? "" : " + ", k.at("count").get<int64_t>(),
                           k.at("layer").get<std::string>(), fmt_count(k.at("parameters").at("total").get<double>()),
                           fmt_count(k.at("parameters").at("active").get<double>()));
    lines.push_back("layers by kind: " + kinds);
  }
  if (r.contains("active_parameters") && r.at("active_parameters").get<double>() != total) {
    const double active = r.at("active_parameters").get<double>();
    lines.push_back(fmt::format("active parameters per token N_active (analytic): {} ({}): embeddings, LM head, "
                                "norms, attention, router, shared experts and the top-k routed experts",
                                exact_count(active), fmt_count(active)));
  }
  return lines;
}

Section formulas_section(const json& formulas, const json& c, const std::string& heading) {
  Section s;
  s.heading = heading;
  const bool has_peak = !c.at("peak_tflops").is_null();
  const std::string cluster_col =
      fmt::format("days on {:.0f} x {}", c.at("gpus").get<double>(), c.at("gpu").get<std::string>());
  s.before.push_back(
      has_peak ? fmt::format("Days assume {:.0f} x {} at {} of the {} dense peak ({} TFLOP/s, {}), perfect scaling.",
                             c.at("gpus").get<double>(), c.at("gpu_title").get<std::string>(),
                             fmt_percent(c.at("utilization").get<double>(), 0), c.at("dtype").get<std::string>(),
                             fmt_sig(c.at("peak_tflops").get<double>(), 5), c.at("peak_source").get<std::string>())
               : fmt::format("No datasheet peak for {} on {}: days are n/a.", c.at("dtype").get<std::string>(),
                             c.at("gpu").get<std::string>()));
  Table t({"<formula", "FLOPs/token", "total FLOPs", "x 6nd", "PF-days", cluster_col, "<what it counts"});
  for (const auto& f : formulas) {
    t.add_row({f.at("id").get<std::string>(), fmt_flops(f.at("flops_per_token").get<double>()),
               fmt_flops(f.at("total_flops").get<double>()), fmt_fixed(f.at("ratio_to_6nd").get<double>(), 3),
               fmt_sig(f.at("pf_days").get<double>(), 4),
               f.at("days_on_cluster").is_null() ? "n/a" : fmt_sig(f.at("days_on_cluster").get<double>(), 3),
               f.at("title").get<std::string>()});
  }
  s.table = std::move(t);
  s.after.push_back("Sources:");
  for (const auto& f : formulas)
    s.after.push_back(fmt::format("  {:<19} {}", f.at("id").get<std::string>(), f.at("source").get<std::string>()));
  return s;
}

Section seed_section(const json& seed) {
  Section s;
  if (!seed.value("applies", true)) {
    s.heading = "Seed check (analytic): n/a";
    s.before.push_back(seed.at("note").get<std::string>());
    return s;
  }
  const double product = seed.at("product").get<double>();
  s.heading = fmt::format("Seed check (analytic): why {} is {}x too low", fmt_flops(seed.at("seed_total").get<double>()),
                          fmt_fixed(product, 2));
  Table t({"<correction", "seed", "graph", "factor", "running total"});
  t.add_row({"the seed's estimate", "", "", "", fmt_flops(seed.at("seed_total").get<double>())});
  for (const auto& f : seed.at("factors")) {
    t.add_row({f.at("description").get<std::string>(), fmt_sig(f.at("seed_value").get<double>(), 4),
               fmt_sig(f.at("graph_value").get<double>(), 4), fmt::format("x{:.4f}", f.at("factor").get<double>()),
               fmt_flops(f.at("running_total").get<double>())});
  }
  s.table = std::move(t);
  s.after.push_back(fmt::format("product of the factors: {:.3f}; corrected total {} (graph GEMMs, executed)", product,
                                fmt_flops(seed.at("corrected_total").get<double>())));
  s.after.push_back(fmt::format("for reference: 6nd {}, graph with every op and the LM head {}",
                                fmt_flops(seed.at("six_nd_total").get<double>()),
                                fmt_flops(seed.at("graph_total").get<double>())));
  s.after.push_back(seed.at("note").get<std::string>());
  return s;
}

Document estimate_document(const json& r) {
  Document d;
  const auto& m = r.at("model");
  d.title = fmt::format("flopscope estimate: {}", m.at("name").get<std::string>());
  Section model;
  model.heading = "Model";
  model.before.push_back(model_line(m));
  for (auto& l : parameters_lines(r)) model.before.push_back(std::move(l));
  d.sections.push_back(model);
  if (r.contains("job")) d.sections.push_back(job_section(r.at("job")));
  d.sections.push_back(formulas_section(r.at("formulas"), r.at("cluster"), "Training FLOPs, every analytic formula"));
  d.sections.push_back(seed_section(r.at("seed_check")));

  const auto& L = r.at("layer");
  Section ops;
  ops.heading = fmt::format("One layer, op by op (analytic): width {}, d_model {}, batch {}, seq {}, {}",
                            L.at("width").get<std::string>(), L.at("d_model").get<int64_t>(),
                            L.at("batch").get<int64_t>(), L.at("seq").get<int64_t>(),
                            L.at("precision").get<std::string>());
  double fwd = 0, bwd = 0, rec = 0, total = 0;
  for (const auto& o : r.at("ops")) {
    const double f = o.at("flops").get<double>();
    total += f;
    const auto phase = o.at("phase").get<std::string>();
    (phase == "forward" ? fwd : phase == "backward" ? bwd : rec) += f;
  }
  Table t({"<op", "<phase", "<kind", "<shape", "FLOPs", "model FLOPs", "share"});
  for (const auto& o : r.at("ops")) {
    const double f = o.at("flops").get<double>();
    t.add_row({o.at("name").get<std::string>(), o.at("phase").get<std::string>(), o.at("kind").get<std::string>(),
               o.at("shape").get<std::string>(), fmt_flops(f),
               o.contains("model_flops") ? fmt_flops(o.at("model_flops").get<double>()) : "",
               fmt_percent(f / total)});
  }
  ops.table = std::move(t);
  ops.after.push_back(fmt::format("forward {}, backward {}{}; backward / forward = {:.3f}", fmt_flops(fwd),
                                  fmt_flops(bwd), rec > 0 ? fmt::format(", recompute {}", fmt_flops(rec)) : "",
                                  bwd / fwd));
  ops.after.push_back("model FLOPs (Megatron-LM's convention) halve the causal attention square; FLOPs are executed.");
  d.sections.push_back(std::move(ops));
  return d;
}

}  // namespace flopscope::detail
