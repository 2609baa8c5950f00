// `flopscope predict`: step time, throughput, MFU and memory per GPU of a parallel training
// run (tensor, pipeline and data parallel, sequence parallelism, recompute) from the layer
// graph's per-op cost, the layout's communication and the 1F1B schedule (src/predict).
#include <algorithm>
#include <memory>

#include <fmt/format.h>

#include "analytic/formulas.hpp"
#include "cli/commands.hpp"
#include "predict/predict.hpp"
#include "predict/validation.hpp"
#include "report/result.hpp"
#include "util/atomic_file.hpp"
#include "util/error.hpp"
#include "util/parse.hpp"

namespace flopscope::cli {

namespace {

using nlohmann::json;
namespace pr = flopscope::predict;

struct PredictArgs {
  ModelOptions model;
  OutputOptions out;
  std::string gpu = "a100-sxm-80gb";
  std::string system;
  std::string from_measure;
  std::vector<std::string> nccl_tests;
  std::string gpus = "8";
  std::string tp = "1", pp = "1", vpp = "1";
  std::string micro_batch = "1";
  std::string global_batch;
  std::string precision = "bf16";
  std::string recompute = "selective";
  std::string sequence_parallel = "on";
  std::string attention = "unfused";
  std::string distributed_optimizer = "off";
  std::string dp_overlap = "on";
  bool search = false;
  std::string top = "5";
  bool validate = false;
};

bool parse_on_off(const std::string& option, const std::string& v) {
  if (v == "on") return true;
  if (v == "off") return false;
  throw UsageError(fmt::format("{}: '{}' is not on or off", option, v));
}

std::vector<int64_t> parse_gpu_list(const std::string& text) {
  std::vector<int64_t> out;
  size_t start = 0;
  while (true) {
    const size_t comma = text.find(',', start);
    out.push_back(parse_count("--gpus", text.substr(start, comma == std::string::npos ? std::string::npos : comma - start),
                              INT64_C(1) << 24));
    if (comma == std::string::npos) break;
    start = comma + 1;
  }
  return out;
}

json base_result(const GlobalOptions& global, const std::string& kind) {
  return {{"schema", kSchema},
          {"command", "predict"},
          {"kind", kind},
          {"tool", tool_json()},
          {"command_line", global.command_line}};
}

json sources_json() {
  return {{"prediction", "modelled: the layer graph's ops (analytic FLOPs and bytes) costed by the system profile, or "
                         "scaled from a measure result (per op: prediction.ops[].source)"},
          {"prediction.memory", "analytic: Korthikanti et al. 2022 Table 2 and mixed-precision Adam"},
          {"prediction.model_flops_per_step", "analytic"},
          {"system", "datasheet, assumed or fitted: system.sources names each figure's"},
          {"layout", "assumed (your flags)"}};
}

// The layouts --search tries for a GPU count.
std::vector<pr::Layout> search_space(const pr::Layout& base, const ModelConfig& m, int64_t node) {
  std::vector<pr::Layout> out;
  for (int64_t tp = 1; tp <= std::min<int64_t>(node, base.gpus); ++tp) {
    if (m.n_heads % tp || base.gpus % tp) continue;
    for (int64_t pp = 1; pp <= std::min<int64_t>(m.n_layers, base.gpus / tp); ++pp) {
      if ((base.gpus / tp) % pp) continue;
      for (int64_t vpp : {1, 2, 3, 4}) {
        if (vpp > 1 && pp == 1) continue;
        for (int64_t mb : {1, 2, 4, 8}) {
          for (auto rc : {pr::Recompute::none, pr::Recompute::selective, pr::Recompute::full}) {
            pr::Layout l = base;
            l.tp = tp, l.pp = pp, l.vpp = vpp, l.micro_batch = mb, l.recompute = rc;
            l.sequence_parallel = tp > 1;
            try {
              pr::validate(l, m);
            } catch (const UsageError&) {
              continue;
            }
            out.push_back(l);
          }
        }
      }
    }
  }
  return out;
}

json search_row(const pr::Prediction& p) {
  return {{"layout", pr::layout_to_json(p.layout)},  {"step_time_s", p.step_time_s}, {"tokens_per_s", p.tokens_per_s},
          {"mfu", p.mfu},                            {"memory_per_gpu_bytes", p.memory.total_bytes},
          {"fits", p.memory.fits}};
}

int run_predict(const PredictArgs& a, const GlobalOptions& global) {
  check_output(a.out);
  pr::SystemProfile sys = a.system.empty() ? pr::system_by_id(a.gpu) : pr::system_from_file(a.system);

  if (a.validate) {
    json r = base_result(global, "validation");
    r["validation"] = pr::validation_json(pr::validate_table5(sys), sys);
    r["system"] = pr::system_to_json(sys);
    emit(r, a.out);
    return 0;
  }

  const ModelConfig model = resolve_model(a.model);
  pr::PredictInput in;
  in.model = model;
  in.system = sys;
  std::unique_ptr<pr::MeasuredOps> measured;
  if (!a.from_measure.empty()) {
    measured = std::make_unique<pr::MeasuredOps>(pr::measured_ops_from_file(a.from_measure));
    in.measured = measured.get();
  }
  for (const auto& f : a.nccl_tests) in.nccl.push_back(pr::parse_nccl_tests(read_file(f), f, sys.gpus_per_node));

  pr::Layout& l = in.layout;
  const std::vector<int64_t> gpu_list = parse_gpu_list(a.gpus);
  l.gpus = gpu_list.front();
  l.tp = parse_count("--tp", a.tp, 1 << 20);
  l.pp = parse_count("--pp", a.pp, 1 << 20);
  l.vpp = parse_count("--vpp", a.vpp, 1 << 10);
  l.micro_batch = parse_count("--micro-batch", a.micro_batch, 1 << 20);
  l.seq = model.n_ctx;
  l.precision = a.precision;
  l.recompute = pr::parse_recompute(a.recompute);
  l.sequence_parallel = parse_on_off("--sequence-parallel", a.sequence_parallel);
  l.attention = pr::parse_attention(a.attention);
  l.distributed_optimizer = parse_on_off("--distributed-optimizer", a.distributed_optimizer);
  l.dp_overlap = parse_on_off("--dp-overlap", a.dp_overlap);
  const int64_t top = parse_count("--top", a.top, 1000);
  if (a.search && gpu_list.size() > 1) throw UsageError("--search: give one GPU count in --gpus");
  auto global_batch_for = [&](const pr::Layout& x) -> int64_t {
    if (!a.global_batch.empty()) return parse_count("--global-batch", a.global_batch, INT64_C(1) << 30);
    // The model's batch in sequences, rounded down to a multiple of micro-batch x dp.
    if (x.gpus % (x.tp * x.pp) != 0) return x.micro_batch;  // validate() names the real problem
    const int64_t unit = x.micro_batch * x.dp();
    const auto seqs = static_cast<int64_t>(model.batch_tokens / static_cast<double>(model.n_ctx));
    return std::max(unit, seqs / unit * unit);
  };
  l.global_batch = global_batch_for(l);

  json r = base_result(global, "prediction");
  r["sources"] = sources_json();
  r["model"] = model_to_json(model);
  r["parameters"] = parameter_count(model);
  r["system"] = pr::system_to_json(sys);
  if (measured) r["from_measure"] = {{"file", measured->file}, {"device", measured->device}, {"ops", measured->ops.size()}};

  if (a.search) {
    json rows = json::array();
    std::vector<pr::Prediction> fitting;
    const auto space = search_space(l, model, sys.gpus_per_node);
    for (pr::Layout x : space) {
      if (a.global_batch.empty()) x.global_batch = global_batch_for(x);
      try {
        pr::validate(x, model);
      } catch (const UsageError&) {
        continue;
      }
      in.layout = x;
      pr::Prediction p = pr::predict(in);
      if (p.memory.fits) fitting.push_back(std::move(p));
    }
    if (fitting.empty())
      throw UsageError(fmt::format("--search: none of the {} layouts for {} GPUs fits in {}'s memory", space.size(), l.gpus,
                                   sys.title));
    std::sort(fitting.begin(), fitting.end(),
              [](const pr::Prediction& x, const pr::Prediction& y) { return x.step_time_s < y.step_time_s; });
    for (size_t i = 0; i < fitting.size() && static_cast<int64_t>(i) < top; ++i) rows.push_back(search_row(fitting[i]));
    r["search"] = {{"gpus", l.gpus}, {"layouts_tried", space.size()}, {"layouts_fitting", fitting.size()}, {"best", rows},
                   {"space", "tp dividing the heads up to the node size, pp dividing the GPUs / tp, vpp 1-4 where the "
                             "layers divide, micro-batch 1, 2, 4, 8, recompute none, selective, full; sequence parallel "
                             "with tp > 1; the global batch as given (or the model's)"}};
    r["layout"] = pr::layout_to_json(fitting.front().layout);
    r["prediction"] = pr::prediction_json(fitting.front());
    emit(r, a.out);
    return 0;
  }

  const pr::Prediction p = pr::predict(in);
  r["layout"] = pr::layout_to_json(l);
  r["prediction"] = pr::prediction_json(p);
  if (gpu_list.size() > 1) {
    json scaling = json::array();
    for (int64_t n : gpu_list) {
      pr::Layout x = l;
      x.gpus = n;
      x.global_batch = global_batch_for(x);
      in.layout = x;
      const pr::Prediction q = pr::predict(in);
      scaling.push_back({{"gpus", n},
                         {"dp", x.dp()},
                         {"global_batch", x.global_batch},
                         {"step_time_s", q.step_time_s},
                         {"tokens_per_s", q.tokens_per_s},
                         {"model_tflops_per_gpu", q.model_tflops_per_gpu},
                         {"mfu", q.mfu},
                         {"hfu", q.hfu},
                         {"training_days", q.training_days},
                         {"memory_per_gpu_bytes", q.memory.total_bytes},
                         {"fits", q.memory.fits}});
    }
    r["scaling"] = scaling;
  }
  emit(r, a.out);
  return 0;
}

}  // namespace

Runner add_predict(CLI::App& app, const GlobalOptions& global) {
  auto a = std::make_shared<PredictArgs>();
  CLI::App* sub = app.add_subcommand(
      "predict",
      "Predict a parallel training run (tensor, pipeline, data parallel, sequence parallelism, recompute): step time "
      "and its breakdown, tokens/s, TFLOP/s and MFU per GPU, memory per GPU, training days. Runs nothing; checked "
      "against Korthikanti et al. 2022 Table 5 (--validate). docs/predict.md has the model.");
  add_model_options(*sub, a->model);
  std::string ids;
  for (const auto& i : pr::system_ids()) ids += (ids.empty() ? "" : ", ") + i;
  sub->add_option("--gpu", a->gpu, "built-in GPU profile: " + ids)->type_name("NAME")->capture_default_str();
  sub->add_option("--system", a->system, "GPU profile JSON with the fields of a built-in one (or \"base\": a built-in id "
                                         "and the fields to change); see docs/predict.md")->type_name("FILE");
  sub->add_option("--from-measure", a->from_measure,
                  "a `measure --format json` result of the GPU: each op's timed time, scaled to the predicted op's "
                  "shape by FLOPs (GEMMs) or bytes (other ops), replaces the modelled time")->type_name("FILE");
  sub->add_option("--nccl-tests", a->nccl_tests,
                  "output of NVIDIA nccl-tests (all_reduce_perf, reduce_scatter_perf, all_gather_perf, sendrecv_perf): "
                  "its bus bandwidth against message size replaces the profile's link figures")->type_name("FILE...");
  sub->add_option("--gpus", a->gpus, "GPUs, or a comma-separated list (MFU against GPU count)")->type_name("N[,N...]")
      ->capture_default_str();
  sub->add_option("--tp", a->tp, "tensor-parallel size (divides the heads)")->type_name("N")->capture_default_str();
  sub->add_option("--pp", a->pp, "pipeline-parallel stages")->type_name("N")->capture_default_str();
  sub->add_option("--vpp", a->vpp, "interleaved chunks a pipeline stage (virtual pipeline)")->type_name("N")->capture_default_str();
  sub->add_option("--micro-batch", a->micro_batch, "sequences per micro-batch")->type_name("N")->capture_default_str();
  sub->add_option("--global-batch", a->global_batch,
                  "sequences per step over all data-parallel ranks (default: the model's batch, rounded down to a "
                  "multiple of micro-batch x dp)")->type_name("N");
  sub->add_option("--precision", a->precision, "bf16, fp16 or fp8 (fp8: the linear layers' GEMMs at the fp8 peak)")
      ->type_name("DTYPE")->capture_default_str();
  sub->add_option("--recompute", a->recompute, "activation recompute: none, selective (the attention core) or full")
      ->type_name("MODE")->capture_default_str();
  sub->add_option("--sequence-parallel", a->sequence_parallel, "on or off (applies with tp > 1)")->type_name("on|off")
      ->capture_default_str();
  sub->add_option("--attention", a->attention, "unfused (scores, softmax, context) or flash (no s x s tensor)")
      ->type_name("KIND")->capture_default_str();
  sub->add_option("--distributed-optimizer", a->distributed_optimizer,
                  "on: optimizer states split over data-parallel ranks, gradients reduce-scattered")->type_name("on|off")
      ->capture_default_str();
  sub->add_option("--dp-overlap", a->dp_overlap, "data-parallel gradient reduction overlapped with the last backward")
      ->type_name("on|off")->capture_default_str();
  sub->add_flag("--search", a->search,
                "try every valid layout for the GPU count (tp, pp, vpp, micro-batch, recompute) and list the fastest "
                "that fit in memory");
  sub->add_option("--top", a->top, "layouts --search lists")->type_name("N")->capture_default_str();
  sub->add_flag("--validate", a->validate,
                "predict Korthikanti et al. 2022 Table 5 (A100) and print prediction, published and error per row");
  add_output_options(*sub, a->out);
  const GlobalOptions* g = &global;
  return [a, g] { return run_predict(*a, *g); };
}

}  // namespace flopscope::cli
