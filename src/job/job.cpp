#include "job/job.hpp"

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <sstream>

#include <fmt/format.h>

#include "job/readers.hpp"
#include "util/error.hpp"

namespace flopscope::job {

std::string_view to_string(From f) {
  switch (f) {
    case From::file: return "file";
    case From::flag: return "flag";
    case From::framework_default: return "framework default";
    case From::derived: return "derived";
    case From::environment: return "--job-env";
  }
  return "?";
}

void Job::record(const std::string& name, const nlohmann::json& value, From from, const std::string& where) {
  for (Value& v : values) {
    if (v.name == name) {
      v = {name, value, from, where};
      return;
    }
  }
  values.push_back({name, value, from, where});
}

const Value* Job::find(const std::string& name) const {
  for (const Value& v : values)
    if (v.name == name) return &v;
  return nullptr;
}

void Job::problem(const std::string& message, std::set<std::string> settled_by) {
  for (const Problem& p : problems)
    if (p.message == message) return;
  problems.push_back({message, std::move(settled_by)});
}

std::optional<int64_t> positive_whole(const std::string& text) {
  try {
    size_t used = 0;
    const long long v = std::stoll(text, &used);
    if (used == text.size() && v >= 1) return v;
  } catch (const std::exception&) {  // not a number, or out of range
  }
  return std::nullopt;
}

std::optional<double> finite_number(const std::string& text) {
  try {
    size_t used = 0;
    const double v = std::stod(text, &used);
    if (used == text.size() && std::isfinite(v)) return v;
  } catch (const std::exception&) {
  }
  return std::nullopt;
}

const std::set<std::string>& layout_names() {
  static const std::set<std::string> names = {"gpus", "tp", "pp", "vpp", "cp", "ep", "etp", "fsdp", "micro_batch",
                                              "global_batch", "precision", "recompute", "sequence_parallel",
                                              "attention", "distributed_optimizer", "dp_overlap", "tp_comm_overlap",
                                              "ep_comm_overlap", "moe_dispatcher", "torch_compile",
                                              "account_for_embedding_in_pipeline_split",
                                              "account_for_loss_in_pipeline_split"};
  return names;
}

void Job::raise_unsettled(const std::set<std::string>& given, bool with_layout) const {
  // What no flag can settle first (a mixture of experts, a key not understood).
  for (const Problem& p : problems)
    if (p.settled_by.empty()) throw UsageError(fmt::format("{}: {}", file, p.message));
  for (const Problem& p : problems) {
    if (!with_layout && !p.settled_by.empty() &&
        std::all_of(p.settled_by.begin(), p.settled_by.end(), [](const std::string& n) { return layout_names().count(n) > 0; }))
      continue;
    const bool settled =
        !p.settled_by.empty() && std::any_of(p.settled_by.begin(), p.settled_by.end(),
                                             [&](const std::string& n) { return given.count(n) > 0; });
    if (!settled) throw UsageError(fmt::format("{}: {}", file, p.message));
  }
}

nlohmann::json Job::to_json() const {
  nlohmann::json vs = nlohmann::json::array(), ig = nlohmann::json::array(), ng = nlohmann::json::array();
  for (const Value& v : values)
    vs.push_back({{"name", v.name}, {"value", v.value}, {"from", to_string(v.from)}, {"where", v.where}});
  for (const Ignored& i : ignored) ig.push_back({{"key", i.key}, {"where", i.where}, {"why", i.why}});
  for (const NotGiven& n : not_given) ng.push_back({{"what", n.what}, {"where", n.where}, {"why", n.why}});
  return {{"file", file},   {"format", format}, {"values", vs},
          {"ignored", ig},  {"not_given", ng},  {"env", env},
          {"note", "read as data: nothing in the file was run; the environment was not read (only --job-env)"}};
}

bool may_change_cost(const std::string& key) {
  std::string k = key;
  std::transform(k.begin(), k.end(), k.begin(), [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
  for (const char* word : {"layer", "hidden", "head", "parallel", "expert", "moe", "batch", "seq", "recompute",
                           "checkpoint_activations", "activations_checkpoint", "fp8", "fp16", "bf16", "fp4",
                           "precision", "vocab", "ffn", "attention", "attn", "pipeline", "tensor", "context", "fsdp",
                           "shard", "microbatch", "micro_batch", "flavor", "kv_channels", "query_groups", "num_query",
                           "swiglu", "normalization", "position", "rotary", "rope", "embedding", "float8", "mxfp"})
    if (k.find(word) != std::string::npos) return true;
  return false;
}

const std::vector<std::pair<std::string, std::string>>& model_flag_names() {
  static const std::vector<std::pair<std::string, std::string>> names = {
      {"--layers", "layers"},     {"--d-model", "d_model"},   {"--heads", "heads"},
      {"--kv-heads", "kv_heads"}, {"--d-head", "d_head"},     {"--seq", "seq"},
      {"--vocab", "vocab"},       {"--ffn-mult", "d_ff"},     {"--d-ff", "d_ff"},
      {"--norm", "norm"},         {"--ffn", "ffn"},           {"--position", "position"},
      {"--rope-theta", "rope_theta"}, {"--bias", "bias"},     {"--tie-embeddings", "tie_embeddings"},
      {"--tokens", "tokens"},
      {"--experts", "experts"},   {"--top-k", "top_k"},       {"--d-ff-expert", "d_ff_expert"},
      {"--shared-experts", "shared_experts"}, {"--d-ff-shared", "d_ff_shared"},
      {"--first-dense", "first_dense"}, {"--moe-step", "moe_step"}, {"--capacity-factor", "capacity_factor"}};
  return names;
}

namespace {

std::string read_text(const std::string& path) {
  std::error_code ec;
  if (!std::filesystem::is_regular_file(path, ec))
    throw UsageError(fmt::format("--job: cannot read '{}' (not a file)", path));
  const auto size = std::filesystem::file_size(path, ec);
  constexpr std::uintmax_t kMaxBytes = 16u << 20;  // a job file is small; 16 MiB is far beyond any
  if (ec || size > kMaxBytes)
    throw UsageError(fmt::format("--job: '{}' is {} (at most 16 MiB)", path, ec ? "unreadable" : "too large"));
  std::ifstream in(path, std::ios::binary);
  if (!in) throw UsageError(fmt::format("--job: cannot read '{}'", path));
  std::ostringstream ss;
  ss << in.rdbuf();
  const std::string text = ss.str();
  if (text.find('\0') != std::string::npos) throw UsageError(fmt::format("--job: '{}' is not a text file", path));
  return text;
}

bool ends_with(const std::string& s, const std::string& suffix) {
  return s.size() >= suffix.size() && s.compare(s.size() - suffix.size(), suffix.size(), suffix) == 0;
}

}  // namespace

Job read_job(const std::string& path, const ReadOptions& o) {
  const std::string text = read_text(path);
  std::string lower = path;
  std::transform(lower.begin(), lower.end(), lower.begin(), [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
  Job j;
  if (ends_with(lower, ".yaml") || ends_with(lower, ".yml")) {
    j = read_nemo(text, path, o);
  } else if (ends_with(lower, ".toml")) {
    j = read_torchtitan(text, path, o);
  } else {
    // .sh, .bash, .slurm, .sbatch, .txt or none: a launch script or a command line.
    j = read_megatron(text, path, o);
  }
  j.env = o.env;
  return j;
}

}  // namespace flopscope::job

namespace flopscope::job {

std::string job_name(const std::string& path) { return std::filesystem::path(path).stem().string(); }

}  // namespace flopscope::job
