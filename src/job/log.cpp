#include "job/log.hpp"

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <fstream>
#include <map>

#include <fmt/format.h>

#include "util/error.hpp"

namespace flopscope::job {

namespace {

// The number after `key` (past spaces, '=', ':' and quotes); thousands separators allowed.
std::optional<double> number_after(const std::string& line, const std::string& key) {
  const size_t at = line.find(key);
  if (at == std::string::npos) return std::nullopt;
  size_t k = at + key.size();
  while (k < line.size() && (line[k] == ' ' || line[k] == '=' || line[k] == ':' || line[k] == '"' || line[k] == '\t')) ++k;
  std::string digits;
  while (k < line.size() && (std::isdigit(static_cast<unsigned char>(line[k])) || line[k] == '.' || line[k] == ',' ||
                             line[k] == 'e' || line[k] == 'E' || line[k] == '-' || line[k] == '+')) {
    if (line[k] != ',') digits += line[k];
    ++k;
  }
  if (digits.empty()) return std::nullopt;
  char* end = nullptr;
  const double v = std::strtod(digits.c_str(), &end);
  if (end == digits.c_str() || !std::isfinite(v)) return std::nullopt;
  return v;
}

std::string strip_ansi(const std::string& s) {
  std::string out;
  for (size_t i = 0; i < s.size(); ++i) {
    if (s[i] == '\x1b' && i + 1 < s.size() && s[i + 1] == '[') {
      i += 2;
      while (i < s.size() && !std::isalpha(static_cast<unsigned char>(s[i]))) ++i;
      continue;
    }
    out += s[i];
  }
  return out;
}

// torchtitan's lines carry "[rankN]:" when several ranks log: only rank 0's count.
bool other_rank(const std::string& line) {
  const size_t at = line.find("[rank");
  if (at == std::string::npos) return false;
  const auto r = number_after(line.substr(at), "[rank");
  return r && *r != 0;
}

std::optional<LogEntry> megatron(const std::string& line) {
  const auto ms = number_after(line, "elapsed time per iteration (ms)");
  const size_t it = line.find("iteration ");
  if (!ms || it == std::string::npos) return std::nullopt;
  LogEntry e;
  e.step = static_cast<int64_t>(number_after(line.substr(it), "iteration").value_or(0));
  e.step_time_s = *ms / 1000.0;
  e.tflops_per_gpu = number_after(line, "throughput per GPU (TFLOP/s/GPU)");
  if (const auto gb = number_after(line, "global batch size")) e.global_batch = static_cast<int64_t>(*gb);
  return e;
}

std::optional<LogEntry> nemo(const std::string& line) {
  const auto t = number_after(line, "train_step_timing in s");
  if (!t) return std::nullopt;
  LogEntry e;
  e.step_time_s = *t;
  if (const auto g = number_after(line, "global_step")) {
    e.step = static_cast<int64_t>(*g);
  } else if (const size_t it = line.find("iteration "); it != std::string::npos) {
    e.step = static_cast<int64_t>(number_after(line.substr(it), "iteration").value_or(0));
  }
  return e;
}

std::optional<LogEntry> torchtitan(const std::string& raw) {
  const std::string line = strip_ansi(raw);
  if (line.find("tps:") == std::string::npos || line.find("step:") == std::string::npos) return std::nullopt;
  if (other_rank(line)) return std::nullopt;
  LogEntry e;
  e.step = static_cast<int64_t>(number_after(line, "step:").value_or(0));
  e.tokens_per_s_per_gpu = number_after(line, "tps:");
  e.tflops_per_gpu = number_after(line, "tflops:");
  if (const auto m = number_after(line, "mfu:")) e.mfu = *m / 100.0;
  if (!e.tokens_per_s_per_gpu) return std::nullopt;
  return e;
}

std::optional<LogEntry> mllog(const std::string& line) {
  const size_t at = line.find(":::MLLOG");
  if (at == std::string::npos) return std::nullopt;
  nlohmann::json j;
  try {
    j = nlohmann::json::parse(line.substr(at + 8));
  } catch (const nlohmann::json::exception&) {
    return std::nullopt;
  }
  if (!j.is_object() || !j.contains("key")) return std::nullopt;
  const std::string key = j.value("key", "");
  LogEntry e;
  const auto step_of = [&](const nlohmann::json& m) {
    if (m.is_object() && m.contains("step") && m.at("step").is_number()) e.step = m.at("step").get<int64_t>();
  };
  if (j.contains("metadata")) step_of(j.at("metadata"));
  const nlohmann::json& v = j.contains("value") ? j.at("value") : nlohmann::json();
  if ((key == "train_step_timing" || key == "train_step_time") && v.is_number()) {
    e.step_time_s = v.get<double>();
    return e;
  }
  if (key == "tracked_stats" && v.is_object()) {
    for (const char* k : {"train_step_time", "train_step_timing"})
      if (v.contains(k) && v.at(k).is_number()) e.step_time_s = v.at(k).get<double>();
    if (v.contains("throughput") && v.at("throughput").is_number()) e.samples_per_s = v.at("throughput").get<double>();
    step_of(v);
    if (e.step_time_s || e.samples_per_s) return e;
  }
  return std::nullopt;
}

double quantile(std::vector<double> v, double q) {
  std::sort(v.begin(), v.end());
  const double pos = q * static_cast<double>(v.size() - 1);
  const size_t lo = static_cast<size_t>(std::floor(pos)), hi = static_cast<size_t>(std::ceil(pos));
  return v[lo] + (v[hi] - v[lo]) * (pos - static_cast<double>(lo));
}

nlohmann::json stats(const std::vector<double>& v) {
  if (v.empty()) return nullptr;
  const double med = quantile(v, 0.5), p10 = quantile(v, 0.1), p90 = quantile(v, 0.9);
  return {{"median", med},
          {"min", *std::min_element(v.begin(), v.end())},
          {"max", *std::max_element(v.begin(), v.end())},
          {"p10", p10},
          {"p90", p90},
          {"spread", med > 0 ? (p90 - p10) / med : 0.0},
          {"entries", v.size()}};
}

}  // namespace

RunLog read_log(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw UsageError(fmt::format("--log: cannot read '{}'", path));
  RunLog log;
  log.file = path;
  std::map<std::string, std::vector<LogEntry>> by_format;
  std::string line;
  int n = 0;
  while (std::getline(in, line)) {
    ++n;
    if (line.size() > (1u << 20)) continue;  // not a step line
    std::optional<LogEntry> e;
    std::string format;
    if ((e = mllog(line))) {
      format = "MLPerf MLLOG";
    } else if ((e = megatron(line))) {
      format = "Megatron-LM";
    } else if ((e = nemo(line))) {
      format = "NeMo";
    } else if ((e = torchtitan(line))) {
      format = "torchtitan";
    }
    if (!e) continue;
    e->line = n;
    by_format[format].push_back(*e);
  }
  log.lines = n;
  if (by_format.empty())
    throw UsageError(fmt::format("--log: '{}' has no step line flopscope reads (Megatron-LM's 'elapsed time per "
                                 "iteration (ms)', NeMo's 'train_step_timing in s', torchtitan's 'step: ... tps: ...', "
                                 "MLPerf's ':::MLLOG' train_step_timing or tracked_stats)",
                                 path));
  // One format: the one with the most step lines.
  auto best = by_format.begin();
  for (auto it = by_format.begin(); it != by_format.end(); ++it)
    if (it->second.size() > best->second.size()) best = it;
  log.format = best->first;
  log.entries = best->second;
  return log;
}

nlohmann::json log_vs_prediction(const RunLog& log, const nlohmann::json& result, int64_t warmup) {
  const auto& layout = result.at("layout");
  const auto& p = result.at("prediction");
  const double gpus = layout.at("gpus").get<double>();
  const double tokens_per_step = layout.at("global_batch").get<double>() * layout.at("seq").get<double>();
  const double predicted = p.at("step_time_s").get<double>();
  const double model_flops = p.at("model_flops_per_step").get<double>();
  const double peak = p.at("peak_tflops").get<double>();

  const int64_t n = static_cast<int64_t>(log.entries.size());
  const int64_t skip = warmup >= 0 ? std::min(warmup, n - 1)
                                   : (n >= 3 ? std::max<int64_t>(1, (n + 9) / 10) : 0);
  std::vector<double> step, tflops, mfu_printed;
  std::vector<std::string> notes;
  std::optional<int64_t> log_gb;
  for (int64_t i = skip; i < n; ++i) {
    const LogEntry& e = log.entries[static_cast<size_t>(i)];
    double s = std::nan("");
    std::string derived;
    if (e.step_time_s) {
      s = *e.step_time_s;
    } else if (e.tokens_per_s_per_gpu && *e.tokens_per_s_per_gpu > 0) {
      s = tokens_per_step / (*e.tokens_per_s_per_gpu * gpus);  // torchtitan prints tokens/s a GPU
    } else if (e.samples_per_s && *e.samples_per_s > 0) {
      s = layout.at("global_batch").get<double>() / *e.samples_per_s;
    }
    if (std::isfinite(s) && s > 0) step.push_back(s);
    if (e.tflops_per_gpu) tflops.push_back(*e.tflops_per_gpu);
    if (e.mfu) mfu_printed.push_back(*e.mfu);
    if (e.global_batch) log_gb = e.global_batch;
  }
  if (step.empty())
    throw UsageError(fmt::format("--log: '{}': {} step lines ({}), none left after the {} warm-up entries skipped with "
                                 "a step time; pass --log-warmup 0",
                                 log.file, n, log.format, skip));
  const bool printed_time = log.entries.front().step_time_s.has_value();
  if (log_gb && *log_gb != layout.at("global_batch").get<int64_t>())
    notes.push_back(fmt::format("the log's global batch size {} differs from the prediction's {}: the two describe "
                                "different steps",
                                *log_gb, layout.at("global_batch").get<int64_t>()));
  if (log.format == "Megatron-LM")
    notes.push_back("Megatron-LM prints each entry as the average over its --log-interval iterations");
  if (!printed_time)
    notes.push_back(log.format == "torchtitan"
                        ? "torchtitan prints no step time: measured step = global batch x seq / (tps x GPUs), tps per GPU"
                        : "the log prints throughput: measured step = global batch / samples a second");

  const double measured = quantile(step, 0.5);
  const double diff = measured - predicted;
  nlohmann::json m = {
      {"file", log.file},
      {"format", log.format},
      {"source", printed_time ? "timed: the step times the run printed" : "timed, derived: from the throughput the run printed"},
      {"lines", log.lines},
      {"entries", n},
      {"warmup_skipped", skip},
      {"first_step", log.entries.front().step},
      {"last_step", log.entries.back().step},
      {"step_time_s", stats(step)},
      {"tokens_per_s", tokens_per_step / measured},
      {"mfu", model_flops / (measured * gpus * peak * 1e12)},
      {"printed_tflops_per_gpu", stats(tflops)},
      {"printed_mfu", stats(mfu_printed)},
      {"notes", notes}};
  // Which parts of the predicted step could explain the difference on their own: the factor each
  // would need (slower than predicted), or whether it is large enough to absorb it (faster).
  nlohmann::json parts = nlohmann::json::array();
  const auto& b = p.at("breakdown");
  for (const char* k : {"compute_s", "tp_comm_s", "pp_comm_s", "bubble_s", "dp_comm_s", "optimizer_s"}) {
    const double t = b.at(k).get<double>();
    if (t <= 0) continue;
    nlohmann::json part = {{"part", std::string(k).substr(0, std::string(k).size() - 2)}, {"predicted_s", t}};
    if (diff > 0) {
      part["factor_alone"] = (t + diff) / t;
    } else {
      part["factor_alone"] = t + diff > 0 ? nlohmann::json((t + diff) / t) : nlohmann::json(nullptr);
    }
    parts.push_back(part);
  }
  std::sort(parts.begin(), parts.end(), [](const nlohmann::json& x, const nlohmann::json& y) {
    return x.at("predicted_s").get<double>() > y.at("predicted_s").get<double>();
  });
  m["vs_prediction"] = {{"predicted_step_time_s", predicted},
                        {"measured_step_time_s", measured},
                        {"difference_s", diff},
                        {"difference", measured / predicted - 1},
                        {"predicted_tokens_per_s", p.at("tokens_per_s")},
                        {"predicted_mfu", p.at("mfu")},
                        {"parts", parts},
                        {"reading", "factor_alone: how much that part of the predicted step would have to be scaled "
                                    "to account for the whole difference by itself (null: the part is smaller than "
                                    "the difference)"}};
  return m;
}

}  // namespace flopscope::job
