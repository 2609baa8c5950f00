// `flopscope predict`: step time, throughput, MFU and memory per GPU of a parallel training
// run (tensor, pipeline and data parallel, sequence parallelism, recompute) from the layer
// graph's per-op cost, the layout's communication and the 1F1B schedule (src/predict).
#include <algorithm>
#include <cmath>
#include <filesystem>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include <fmt/format.h>

#include "analytic/formulas.hpp"
#include "job/log.hpp"
#include "cli/commands.hpp"
#include "predict/predict.hpp"
#include "predict/search.hpp"
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
  // The layout: "" = not given (src/predict/layout.hpp's defaults apply).
  std::string tp, pp, vpp, cp, fsdp, micro_batch, global_batch, precision, recompute, sequence_parallel, attention,
      distributed_optimizer, dp_overlap, tp_comm_overlap, ep_comm_overlap, torch_compile, embedding_in_split,
      loss_in_split;
  std::string ep, etp, moe_imbalance, moe_dispatcher;  // a mixture of experts' layout
  bool search = false;
  std::string top = "5";
  bool validate = false;
  std::string published_runs;  // with --validate: a file of published runs to predict too
  JobOptions job;
  std::string log, log_warmup;
  const CLI::Option* gpus_option = nullptr;  // whether --gpus was given (beside --job)
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

json search_row(const pr::Prediction& p) {
  return {{"layout", pr::layout_to_json(p.layout)},  {"step_time_s", p.step_time_s}, {"tokens_per_s", p.tokens_per_s},
          {"mfu", p.mfu},                            {"memory_per_gpu_bytes", p.memory.total_bytes},
          {"fits", p.memory.fits}};
}

// The layout flags given; the ones not given stay unset for resolve_layout's defaults.
pr::LayoutChoices layout_choices(const PredictArgs& a) {
  pr::LayoutChoices c;
  auto count = [](const std::string& flag, const std::string& v, int64_t max) -> std::optional<int64_t> {
    if (v.empty()) return std::nullopt;
    return parse_count(flag, v, max);
  };
  auto on_off = [](const std::string& flag, const std::string& v) -> std::optional<bool> {
    if (v.empty()) return std::nullopt;
    return parse_on_off(flag, v);
  };
  c.tp = count("--tp", a.tp, 1 << 20);
  c.pp = count("--pp", a.pp, 1 << 20);
  c.vpp = count("--vpp", a.vpp, 1 << 10);
  c.cp = count("--cp", a.cp, 1 << 20);
  if (a.fsdp == "off" || a.fsdp == "0") c.fsdp = 0;
  else c.fsdp = count("--fsdp", a.fsdp, INT64_C(1) << 24);
  c.ep = count("--ep", a.ep, 1 << 20);
  c.etp = count("--etp", a.etp, 1 << 20);
  if (!a.moe_imbalance.empty()) c.moe_imbalance = parse_positive_real("--moe-imbalance", a.moe_imbalance, 100.0);
  c.micro_batch = count("--micro-batch", a.micro_batch, 1 << 20);
  c.global_batch = count("--global-batch", a.global_batch, INT64_C(1) << 30);
  if (!a.precision.empty()) c.precision = a.precision;
  if (!a.recompute.empty()) c.recompute = pr::parse_recompute(a.recompute);
  if (!a.attention.empty()) c.attention = pr::parse_attention(a.attention);
  if (!a.moe_dispatcher.empty()) c.moe_dispatcher = pr::parse_dispatcher(a.moe_dispatcher);
  c.sequence_parallel = on_off("--sequence-parallel", a.sequence_parallel);
  c.distributed_optimizer = on_off("--distributed-optimizer", a.distributed_optimizer);
  c.dp_overlap = on_off("--dp-overlap", a.dp_overlap);
  c.tp_comm_overlap = on_off("--tp-comm-overlap", a.tp_comm_overlap);
  c.ep_comm_overlap = on_off("--ep-comm-overlap", a.ep_comm_overlap);
  c.torch_compile = on_off("--torch-compile", a.torch_compile);
  c.embedding_in_split = on_off("--account-for-embedding-in-pipeline-split", a.embedding_in_split);
  c.loss_in_split = on_off("--account-for-loss-in-pipeline-split", a.loss_in_split);
  return c;
}

// --job: the one seam between a job file and predict. The job's layout values (src/job) fill
// the choices no flag gives; they then take the same defaulting path as flags (resolve_layout).
// Returns the GPU count when --gpus is not given.
std::optional<int64_t> apply_job(job::Job& j, const PredictArgs& a, pr::LayoutChoices& c) {
  job::Flags f = model_flags(a.model);
  const std::pair<const char*, const std::string*> layout_flags[] = {
      {"--tp", &a.tp}, {"--pp", &a.pp}, {"--vpp", &a.vpp}, {"--cp", &a.cp}, {"--fsdp", &a.fsdp}, {"--ep", &a.ep},
      {"--etp", &a.etp},
      {"--micro-batch", &a.micro_batch}, {"--global-batch", &a.global_batch}, {"--precision", &a.precision},
      {"--recompute", &a.recompute}, {"--sequence-parallel", &a.sequence_parallel}, {"--attention", &a.attention},
      {"--distributed-optimizer", &a.distributed_optimizer}, {"--dp-overlap", &a.dp_overlap},
      {"--tp-comm-overlap", &a.tp_comm_overlap}, {"--ep-comm-overlap", &a.ep_comm_overlap},
      {"--moe-dispatcher", &a.moe_dispatcher}, {"--torch-compile", &a.torch_compile},
      {"--account-for-embedding-in-pipeline-split", &a.embedding_in_split},
      {"--account-for-loss-in-pipeline-split", &a.loss_in_split}};
  for (const auto& [flag, value] : layout_flags) {
    std::string name = std::string(flag).substr(2);
    std::replace(name.begin(), name.end(), '-', '_');
    if (!value->empty()) f[name] = {flag, *value};
  }
  const bool gpus_given = a.gpus_option != nullptr && a.gpus_option->count() > 0;
  if (gpus_given) f["gpus"] = {"--gpus", a.gpus};
  const job::JobLayout l = job::settle(j, f, parse_gpu_list(a.gpus).front()).layout;
  auto take = [](auto& choice, const auto& value) {
    if (!choice && value) choice = *value;
  };
  take(c.tp, l.tp);
  take(c.pp, l.pp);
  take(c.vpp, l.vpp);
  take(c.cp, l.cp);
  take(c.ep, l.ep);
  take(c.etp, l.etp);
  take(c.micro_batch, l.micro_batch);
  take(c.global_batch, l.global_batch);
  take(c.precision, l.precision);
  take(c.sequence_parallel, l.sequence_parallel);
  take(c.distributed_optimizer, l.distributed_optimizer);
  take(c.dp_overlap, l.dp_overlap);
  take(c.tp_comm_overlap, l.tp_comm_overlap);
  take(c.ep_comm_overlap, l.ep_comm_overlap);
  take(c.torch_compile, l.torch_compile);
  take(c.embedding_in_split, l.embedding_in_split);
  take(c.loss_in_split, l.loss_in_split);
  if (!c.fsdp && l.fsdp) c.fsdp = *l.fsdp > 1 ? *l.fsdp : 0;
  // The sequence is the model's (--seq, or the job's): given, not a default.
  if (!c.seq) c.seq = f.count("seq") ? parse_count("--seq", f.at("seq").text, INT64_C(1) << 24) : j.model.n_ctx;
  if (!c.recompute && l.recompute) c.recompute = pr::parse_recompute(*l.recompute);
  if (!c.attention && l.attention) c.attention = pr::parse_attention(*l.attention);
  if (!c.moe_dispatcher && l.moe_dispatcher) c.moe_dispatcher = pr::parse_dispatcher(*l.moe_dispatcher);
  return gpus_given ? std::nullopt : l.gpus;
}

void add_predict_options(CLI::App* sub, PredictArgs& a);
json published_runs_json(const std::string& file, const GlobalOptions& global);

json prediction_result(const PredictArgs& a, const GlobalOptions& global);

int run_predict(const PredictArgs& a, const GlobalOptions& global) {
  check_output(a.out);
  if (!a.published_runs.empty() && !a.validate) throw UsageError("--published-runs goes with --validate");
  if (a.validate) {
    const pr::SystemProfile sys = a.system.empty() ? pr::system_by_id(a.gpu) : pr::system_from_file(a.system);
    json r = base_result(global, "validation");
    r["validation"] = pr::validation_json(pr::validate_table5(sys), sys);
    r["system"] = pr::system_to_json(sys);
    if (!a.published_runs.empty()) r["published_runs"] = published_runs_json(a.published_runs, global);
    emit(r, a.out);
    return 0;
  }
  emit(prediction_result(a, global), a.out);
  return 0;
}

// One published run's args as `predict` would take them, and its prediction (JSON).
json published_row(const nlohmann::json& row, const std::string& data_dir, const GlobalOptions& global) {
  std::vector<std::string> args;
  for (const auto& x : row.at("args")) {
    std::string v = x.get<std::string>();
    for (size_t at = v.find("@DATA@"); at != std::string::npos; at = v.find("@DATA@", at + data_dir.size()))
      v.replace(at, 6, data_dir);
    args.push_back(v);
  }
  PredictArgs ra;
  CLI::App parser;
  add_predict_options(&parser, ra);
  std::reverse(args.begin(), args.end());  // CLI11 takes them last first
  try {
    parser.parse(args);
  } catch (const CLI::ParseError& e) {
    throw UsageError(fmt::format("its args: {}", e.what()));
  }
  return prediction_result(ra, global);
}

// --validate --published-runs: each row predicted with its args; the error of the key it names
// against its published figure; per group (a row's "needs", else its kind) the mean and max.
json published_runs_json(const std::string& file, const GlobalOptions& global) {
  json d;
  try {
    d = json::parse(read_file(file));
  } catch (const json::exception& e) {
    throw UsageError(fmt::format("--published-runs {}: not valid JSON ({})", file, e.what()));
  }
  if (!d.is_object() || !d.contains("rows") || !d.at("rows").is_array() || d.at("rows").empty())
    throw UsageError(fmt::format("--published-runs {}: no \"rows\" array of published runs", file));
  const std::string dir = std::filesystem::absolute(file).parent_path().string();
  json rows = json::array();
  std::map<std::string, std::vector<double>> errors;
  std::map<std::string, int64_t> counts;
  for (const auto& row : d.at("rows")) {
    json out;
    try {
      const std::string id = row.at("id").get<std::string>(), key = row.at("key").get<std::string>();
      const std::string kind = row.value("kind", std::string("dense"));
      const std::string group = kind == "memory" ? "memory" : row.contains("needs") ? row.at("needs").get<std::string>() : kind;
      const double published = row.at("published").get<double>();
      out = {{"id", id}, {"group", group}, {"key", key}, {"published", published}};
      ++counts[group];
      try {
        const json p = published_row(row, dir, global).at("prediction");
        if (!p.contains(key) || !p.at(key).is_number())
          throw UsageError(fmt::format("no prediction field '{}'", key));
        const double predicted = p.at(key).get<double>();
        out["predicted"] = predicted;
        out["error"] = predicted / published - 1;
        errors[group].push_back(std::abs(predicted / published - 1));
      } catch (const Error& e) {
        out["failed"] = e.what();
      }
    } catch (const json::exception& e) {
      throw UsageError(fmt::format("--published-runs {}: a row without id, key, published and args ({})", file, e.what()));
    }
    rows.push_back(out);
  }
  auto summary = [](const std::vector<double>& v, int64_t n) {
    double sum = 0, mx = 0;
    for (double e : v) sum += e, mx = std::max(mx, e);
    json s = {{"rows", n}, {"ran", v.size()}};
    if (!v.empty()) s["mean_abs_error"] = sum / static_cast<double>(v.size()), s["max_abs_error"] = mx;
    return s;
  };
  json groups = json::array();
  std::vector<double> all;
  int64_t total = 0;
  for (const auto& [g, n] : counts) {
    json s = summary(errors[g], n);
    s["group"] = g;
    groups.push_back(s);
    all.insert(all.end(), errors[g].begin(), errors[g].end());
    total += n;
  }
  return {{"file", file}, {"rows", rows}, {"groups", groups}, {"all", summary(all, total)},
          {"note", "modelled predictions against the published figures; a fitted parameter's rows are in-sample "
                   "(docs/predict.md says which)"}};
}

json prediction_result(const PredictArgs& a, const GlobalOptions& global) {
  pr::SystemProfile sys = a.system.empty() ? pr::system_by_id(a.gpu) : pr::system_from_file(a.system);

  std::optional<job::Job> jb = read_job_option(a.job, a.model);
  // --log: the run's own step times, put beside the prediction at the end (read first: a bad log
  // stops before any work).
  std::optional<job::RunLog> run_log;
  if (!a.log.empty()) run_log = job::read_log(a.log);
  const int64_t log_warmup = a.log_warmup.empty() ? -1 : parse_nonnegative("--log-warmup", a.log_warmup, 1 << 20);
  auto with_log = [&](json& result) {
    if (run_log) result["run_log"] = job::log_vs_prediction(*run_log, result, log_warmup);
  };
  pr::LayoutChoices choices = layout_choices(a);
  std::vector<int64_t> gpu_list = parse_gpu_list(a.gpus);
  if (jb) {
    if (const auto n = apply_job(*jb, a, choices)) gpu_list = {*n};
  }
  const ModelConfig model = resolve_model(a.model, jb ? &*jb : nullptr);
  pr::PredictInput in;
  in.model = model;
  in.system = sys;
  std::unique_ptr<pr::MeasuredOps> measured;
  if (!a.from_measure.empty()) {
    measured = std::make_unique<pr::MeasuredOps>(pr::measured_ops_from_file(a.from_measure));
    in.measured = measured.get();
  }
  for (const auto& f : a.nccl_tests) in.nccl.push_back(pr::parse_nccl_tests(read_file(f), f, sys.gpus_per_node));

  const int64_t top = parse_count("--top", a.top, 1000);
  if (a.search && gpu_list.size() > 1) throw UsageError("--search: give one GPU count in --gpus");

  json r = base_result(global, "prediction");
  r["sources"] = sources_json();
  if (jb) {
    r["job"] = jb->to_json();
    r["sources"]["layout"] = "your job file, the flags beside it, and the defaults: job.values and layout.defaults say "
                             "which";
  }
  r["model"] = model_to_json(model);
  r["parameters"] = parameter_count(model);
  r["system"] = pr::system_to_json(sys);
  if (measured) r["from_measure"] = {{"file", measured->file}, {"device", measured->device}, {"ops", measured->ops.size()}};

  if (a.search) {
    const pr::SearchResult found = pr::search_layouts(in, choices, gpu_list.front(), top);
    json rows = json::array();
    for (const auto& p : found.best) rows.push_back(search_row(p));
    r["search"] = {{"gpus", gpu_list.front()}, {"layouts_tried", found.tried}, {"layouts_fitting", found.fitting},
                   {"best", rows}, {"space", found.space}};
    r["layout"] = pr::layout_to_json(found.best.front().layout);
    r["prediction"] = pr::prediction_json(found.best.front());
    with_log(r);
    return r;
  }

  const pr::ResolvedLayout resolved = pr::resolve_layout(choices, model, sys, gpu_list.front());
  in.layout = resolved.layout;
  const pr::Prediction p = pr::predict(in);
  r["layout"] = pr::layout_to_json(resolved);
  r["prediction"] = pr::prediction_json(p);
  with_log(r);
  if (gpu_list.size() > 1) {
    json scaling = json::array();
    for (int64_t n : gpu_list) {
      const pr::Layout x = pr::resolve_layout(choices, model, sys, n).layout;
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
  return r;
}

// The options of `predict` on `sub`, into `a` (the command's, and each published run's args).
void add_predict_options(CLI::App* sub, PredictArgs& a) {
  add_model_options(*sub, a.model);
  std::string ids;
  for (const auto& i : pr::system_ids()) ids += (ids.empty() ? "" : ", ") + i;
  sub->add_option("--gpu", a.gpu, "built-in GPU profile: " + ids)->type_name("NAME")->capture_default_str();
  sub->add_option("--system", a.system, "GPU profile JSON with the fields of a built-in one (or \"base\": a built-in id "
                                         "and the fields to change); see docs/predict.md")->type_name("FILE");
  sub->add_option("--from-measure", a.from_measure,
                  "a `measure --format json` result of the GPU: each op's timed time, scaled to the predicted op's "
                  "shape by FLOPs (GEMMs) or bytes (other ops), replaces the modelled time")->type_name("FILE");
  sub->add_option("--nccl-tests", a.nccl_tests,
                  "output of NVIDIA nccl-tests (all_reduce_perf, reduce_scatter_perf, all_gather_perf, sendrecv_perf): "
                  "its bus bandwidth against message size replaces the profile's link figures")->type_name("FILE...");
  add_job_options(*sub, a.job);
  sub->add_option("--log", a.log,
                  "the run's own training log (Megatron-LM, NeMo, torchtitan or MLPerf MLLOG lines): its steady-state "
                  "step time, tokens/s and MFU beside the prediction, the difference, and which parts of the step "
                  "could explain it")->type_name("FILE");
  sub->add_option("--log-warmup", a.log_warmup,
                  "step entries of --log skipped as warm-up (default: the first 10%, at least 1, with 3 or more)")
      ->type_name("N");
  a.gpus_option = sub->add_option("--gpus", a.gpus, "GPUs, or a comma-separated list (MFU against GPU count)")
                       ->type_name("N[,N...]")
                       ->capture_default_str();
  sub->add_option("--tp", a.tp, "tensor-parallel size (divides the heads, the kv heads and d_ff)")->type_name("N")
      ->default_str("1");
  sub->add_option("--pp", a.pp, "pipeline-parallel stages")->type_name("N")->default_str("1");
  sub->add_option("--vpp", a.vpp, "interleaved chunks a pipeline stage (virtual pipeline)")->type_name("N")->default_str("1");
  sub->add_option("--cp", a.cp,
                  "context-parallel size: each sequence split over N GPUs (Megatron-LM's ring attention, flash only; "
                  "dp = gpus / (tp pp cp))")->type_name("N")->default_str("1");
  sub->add_option("--fsdp", a.fsdp,
                  "FSDP (PyTorch FSDP2, as torchtitan runs it): weights, gradients and optimizer states sharded over N "
                  "of the data-parallel ranks (N divides dp; replicated over dp / N); 0 or off: none")
      ->type_name("N|off")->default_str("off");
  sub->add_option("--ep", a.ep,
                  "expert-parallel size of a mixture of experts: the routed experts split over N GPUs of a stage's tp x "
                  "cp x dp (Megatron Core's; N divides the experts), tokens exchanged by an all-to-all")
      ->type_name("N")->default_str("1");
  sub->add_option("--etp", a.etp,
                  "expert tensor-parallel size: each expert's FFN width split over N GPUs (default: --tp, as Megatron "
                  "Core defaults it)")
      ->type_name("N");
  sub->add_option("--moe-imbalance", a.moe_imbalance,
                  "a mixture of experts' load imbalance: the busiest expert's tokens over the mean, which sets the "
                  "expert GEMMs' time (default 1: balanced, as the published runs force it; measure --backend cpu "
                  "reports a seeded router's)")
      ->type_name("X");
  sub->add_option("--moe-dispatcher", a.moe_dispatcher,
                  "a mixture of experts' token dispatcher (Megatron Core's --moe-token-dispatcher-type): alltoall (each "
                  "routed copy of a token to its expert's GPU), flex (DeepEP, HybridEP: each token once to each GPU "
                  "and node holding its experts; etp 1) or allgather (the etp x ep group's tokens gathered, the "
                  "outputs reduce-scattered back)")
      ->type_name("KIND")->default_str("alltoall");
  sub->add_option("--micro-batch", a.micro_batch, "sequences per micro-batch")->type_name("N")->default_str("1");
  sub->add_option("--global-batch", a.global_batch,
                  "sequences per step over all data-parallel ranks (default: the model's published tokens per batch, "
                  "4M tokens where it publishes none, / seq, rounded down to a multiple of micro-batch x dp)")
      ->type_name("N");
  sub->add_option("--precision", a.precision,
                  "bf16, fp16 or fp8 (fp8: the linear layers' GEMMs in fp8 as Transformer Engine runs them)")
      ->type_name("DTYPE")->default_str("bf16");
  sub->add_option("--recompute", a.recompute, "activation recompute: none, selective (the attention core) or full")
      ->type_name("MODE")->default_str("selective");
  sub->add_option("--sequence-parallel", a.sequence_parallel, "on or off (applies with tp > 1)")->type_name("on|off")
      ->default_str("on");
  sub->add_option("--attention", a.attention, "unfused (scores, softmax, context) or flash (no s x s tensor)")
      ->type_name("KIND")->default_str("flash on Hopper, else unfused");
  sub->add_option("--distributed-optimizer", a.distributed_optimizer,
                  "on: optimizer states split over data-parallel ranks, gradients reduce-scattered")->type_name("on|off")
      ->default_str("on on Hopper, else off");
  sub->add_option("--dp-overlap", a.dp_overlap,
                  "data-parallel collectives overlapped with compute, a model chunk at a time: the gradients' reduction "
                  "with the backward, the distributed optimizer's parameter all-gather with the next forward")
      ->type_name("on|off")->default_str("on");
  sub->add_option("--tp-comm-overlap", a.tp_comm_overlap,
                  "tensor-parallel collectives overlapped with the GEMMs they feed or follow (Transformer Engine's "
                  "userbuffers: Megatron-LM's --tp-comm-overlap, NeMo's ub_tp_comm_overlap; needs sequence parallelism)")
      ->type_name("on|off")->default_str("on on Hopper with tp > 1 and sequence parallelism, off with --fsdp");
  sub->add_option("--ep-comm-overlap", a.ep_comm_overlap,
                  "a mixture of experts' all-to-alls overlapped with another micro-batch's compute (Megatron Core's "
                  "--overlap-moe-expert-parallel-comm: one micro-batch's forward and another's backward run merged; "
                  "needs --ep 2 or more, no full recompute, and --vpp 2 or more with --pp)")
      ->type_name("on|off")->default_str("off");
  sub->add_option("--torch-compile", a.torch_compile,
                  "FSDP layouts (torchtitan's): its transformer blocks under torch.compile (norms, RoPE and SwiGLU "
                  "fused; the final norm and the loss stay eager) or eager (each as PyTorch's separate kernels, fp32 "
                  "where it upcasts); no effect without FSDP")
      ->type_name("on|off")->default_str("off, on with fp8 (torchtitan's Float8 runs compiled)");
  sub->add_option("--account-for-embedding-in-pipeline-split", a.embedding_in_split,
                  "Megatron-LM's: the embedding counts as a layer of the first stage's first chunk when the layers are "
                  "split over the stages (that stage holds one layer fewer)")
      ->type_name("on|off")->default_str("off, or on with the loss when only both make the layers divide into pp x vpp");
  sub->add_option("--account-for-loss-in-pipeline-split", a.loss_in_split,
                  "Megatron-LM's: the loss (LM head) counts as a layer of the last stage's last chunk")
      ->type_name("on|off")->default_str("as --account-for-embedding-in-pipeline-split");
  sub->add_flag("--search", a.search,
                "try every valid layout for the GPU count (tp, pp, vpp, cp, fsdp, micro-batch, recompute, flash or "
                "unfused, distributed optimizer, and ep, its dispatcher and all-to-all overlap for a mixture of "
                "experts, torch.compile with FSDP; a layout flag given holds that dimension) and list the fastest that "
                "fit in memory");
  sub->add_option("--top", a.top, "layouts --search lists")->type_name("N")->capture_default_str();
  sub->add_flag("--validate", a.validate,
                "predict Korthikanti et al. 2022 Table 5 (A100) and print prediction, published and error per row");
  add_output_options(*sub, a.out);
}

}  // namespace

Runner add_predict(CLI::App& app, const GlobalOptions& global) {
  auto a = std::make_shared<PredictArgs>();
  CLI::App* sub = app.add_subcommand(
      "predict",
      "Predict a parallel training run (tensor, pipeline, data parallel, sequence parallelism, recompute): step time "
      "and its breakdown, tokens/s, TFLOP/s and MFU per GPU, memory per GPU, training days. Runs nothing; checked "
      "against Korthikanti et al. 2022 Table 5 (--validate). --job reads your own Megatron-LM, NeMo or torchtitan "
      "job; --log puts its run's measured steps beside the prediction. docs/predict.md has the model.");
  add_predict_options(sub, *a);
  sub->add_option("--published-runs", a->published_runs,
                  "with --validate: also predict every row of this file of published runs (each with its args, key and "
                  "published figure, as ../shared/data/published-runs.json; @DATA@ in args is the file's folder) and "
                  "print per row the prediction, the published figure and the error, and per group the mean and max")
      ->type_name("FILE");
  const GlobalOptions* g = &global;
  return [a, g] { return run_predict(*a, *g); };
}

}  // namespace flopscope::cli
