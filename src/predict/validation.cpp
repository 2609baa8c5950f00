#include "predict/validation.hpp"

#include <cmath>

#include <nlohmann/json.hpp>

namespace flopscope::predict {

const std::vector<PublishedRun>& table5() {
  static const std::vector<PublishedRun> rows = {
      {"22B", 48, 6144, 64, 8, 1, 1, 8, 4, 4, 1.42, 1.10},
      {"175B", 96, 12288, 96, 8, 8, 3, 64, 64, 1, 18.13, 13.75},
      {"530B", 105, 20480, 128, 8, 35, 3, 280, 280, 1, 49.05, 37.83},
      {"1T", 128, 25600, 160, 8, 64, 1, 512, 512, 1, 94.42, 71.49},
  };
  return rows;
}

ModelConfig table5_model(const PublishedRun& r) {
  ModelConfig m = preset("gpt3-175b");
  m.name = "korthikanti-" + r.model;
  m.n_layers = r.layers;
  m.d_model = r.d_model;
  m.n_heads = r.heads;
  m.d_head = r.d_model / r.heads;
  m.n_ctx = 2048;
  m.vocab = 51200;
  m.validate();
  return m;
}

Layout table5_layout(const PublishedRun& r, bool selective_sp) {
  Layout l;
  l.gpus = r.gpus;
  l.tp = r.tp;
  l.pp = r.pp;
  l.vpp = r.vpp;
  l.micro_batch = r.micro_batch;
  l.global_batch = r.global_batch;
  l.seq = 2048;
  l.precision = "fp16";
  l.recompute = selective_sp ? Recompute::selective : Recompute::full;
  l.sequence_parallel = selective_sp;
  l.attention = Attention::unfused;
  l.distributed_optimizer = false;
  return l;
}

std::vector<ValidationRow> validate_table5(const SystemProfile& system) {
  std::vector<ValidationRow> out;
  for (const auto& r : table5()) {
    for (bool sel : {false, true}) {
      PredictInput in;
      in.model = table5_model(r);
      in.system = system;
      in.layout = table5_layout(r, sel);
      const Prediction p = predict(in);
      ValidationRow v;
      v.model = r.model;
      v.recompute = sel ? "selective + SP" : "full";
      v.predicted_s = p.step_time_s;
      v.published_s = sel ? r.selective_sp_s : r.full_s;
      v.error = v.predicted_s / v.published_s - 1;
      v.mfu = p.mfu;
      v.hfu = p.hfu;
      out.push_back(v);
    }
  }
  return out;
}

nlohmann::json validation_json(const std::vector<ValidationRow>& rows, const SystemProfile& system) {
  nlohmann::json list = nlohmann::json::array();
  double sum = 0, worst = 0;
  for (const auto& v : rows) {
    list.push_back({{"model", v.model}, {"recompute", v.recompute}, {"predicted_s", v.predicted_s},
                    {"published_s", v.published_s}, {"error", v.error}, {"mfu", v.mfu}, {"hfu", v.hfu}});
    sum += std::abs(v.error);
    worst = std::max(worst, std::abs(v.error));
  }
  return {{"source", "Korthikanti et al. 2022, Table 5 (A100 80GB, fp16, seq 2048, vocab 51200, data parallel 1)"},
          {"system", system.id},
          {"rows", list},
          {"mean_abs_error", rows.empty() ? 0 : sum / static_cast<double>(rows.size())},
          {"max_abs_error", worst},
          {"calibration", system.sources.count("gemm_efficiency") ? system.sources.at("gemm_efficiency") : ""}};
}

}  // namespace flopscope::predict
