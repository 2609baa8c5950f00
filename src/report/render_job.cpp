// The "Your job" section of a prediction or an estimate made with --job: every value and where
// it came from, then what was ignored and what could not be known without running the file.
#include <fmt/format.h>

#include "report/render_detail.hpp"
#include "report/table.hpp"

namespace flopscope::detail {

namespace {

std::string shown(const nlohmann::json& v) { return v.is_string() ? v.get<std::string>() : v.dump(); }

}  // namespace

Section job_section(const nlohmann::json& job) {
  Section s;
  s.heading = fmt::format("Your job: {} ({})", job.at("file").get<std::string>(), job.at("format").get<std::string>());
  s.before.push_back(job.at("note").get<std::string>());
  Table t({"<value", "<as read", "<from", "<where"});
  for (const auto& v : job.at("values"))
    t.add_row({v.at("name").get<std::string>(), shown(v.at("value")), v.at("from").get<std::string>(),
               v.at("where").get<std::string>()});
  s.table = std::move(t);
  if (!job.at("ignored").empty()) {
    std::string list;
    for (const auto& i : job.at("ignored"))
      list += fmt::format("{}{} ({}: {})", list.empty() ? "" : "; ", i.at("key").get<std::string>(),
                          i.at("where").get<std::string>(), i.at("why").get<std::string>());
    s.after.push_back(fmt::format("ignored, as not changing the cost ({}): {}", job.at("ignored").size(), list));
  }
  for (const auto& n : job.at("not_given"))
    s.after.push_back(fmt::format("not read ({}): {}: {}", n.at("where").get<std::string>(), n.at("what").get<std::string>(),
                                  n.at("why").get<std::string>()));
  if (!job.at("env").empty()) s.after.push_back("--job-env: " + job.at("env").dump());
  return s;
}

Section run_log_section(const nlohmann::json& m) {
  Section s;
  const auto& v = m.at("vs_prediction");
  const auto& st = m.at("step_time_s");
  s.heading = fmt::format("Your run's log beside the prediction: {} ({})", m.at("file").get<std::string>(),
                          m.at("format").get<std::string>());
  s.before.push_back(fmt::format("{}; {} step entries (steps {} to {}), the first {} skipped as warm-up, {} used",
                                 m.at("source").get<std::string>(), m.at("entries").get<int64_t>(),
                                 m.at("first_step").get<int64_t>(), m.at("last_step").get<int64_t>(),
                                 m.at("warmup_skipped").get<int64_t>(), st.at("entries").get<int64_t>()));
  Table t({"<figure", "predicted (modelled)", "measured (the run)", "difference"});
  const double pred = v.at("predicted_step_time_s").get<double>(), meas = v.at("measured_step_time_s").get<double>();
  t.add_row({"step time s (median)", fmt_sig(pred, 4), fmt_sig(meas, 4), fmt::format("{:+.1f}%", 100 * (meas / pred - 1))});
  const double ptok = v.at("predicted_tokens_per_s").get<double>(), mtok = m.at("tokens_per_s").get<double>();
  t.add_row({"tokens/s", fmt_sig(ptok, 4), fmt_sig(mtok, 4), fmt::format("{:+.1f}%", 100 * (mtok / ptok - 1))});
  const double pm = v.at("predicted_mfu").get<double>(), mm = m.at("mfu").get<double>();
  t.add_row({"MFU (the prediction's model FLOPs and peak)", fmt_percent(pm), fmt_percent(mm),
             fmt::format("{:+.1f} points", 100 * (mm - pm))});
  s.table = std::move(t);
  s.after.push_back(fmt::format("measured step time: median {} s, p10 {} s, p90 {} s, min {} s, max {} s (spread "
                                "p90 - p10 = {} of the median)",
                                fmt_sig(st.at("median").get<double>(), 4), fmt_sig(st.at("p10").get<double>(), 4),
                                fmt_sig(st.at("p90").get<double>(), 4), fmt_sig(st.at("min").get<double>(), 4),
                                fmt_sig(st.at("max").get<double>(), 4), fmt_percent(st.at("spread").get<double>())));
  if (!m.at("printed_tflops_per_gpu").is_null())
    s.after.push_back(fmt::format("the run printed {} TFLOP/s per GPU (median; its own FLOP count)",
                                  fmt_sig(m.at("printed_tflops_per_gpu").at("median").get<double>(), 4)));
  if (!m.at("printed_mfu").is_null())
    s.after.push_back(fmt::format("the run printed MFU {} (median; its own FLOP count and peak)",
                                  fmt_percent(m.at("printed_mfu").at("median").get<double>())));
  std::string parts;
  const double gap = v.at("difference_s").get<double>();
  for (const auto& p : v.at("parts")) {
    const auto& f = p.at("factor_alone");
    parts += fmt::format("{}{} {} s{}", parts.empty() ? "" : "; ", p.at("part").get<std::string>(),
                         fmt_sig(p.at("predicted_s").get<double>(), 4),
                         f.is_null() ? " (smaller than the difference)" : fmt::format(" (x{:.2f} alone)", f.get<double>()));
  }
  s.after.push_back(fmt::format("the difference, {} s, could come from (each part of the predicted step, and the "
                                "factor it would need to explain it alone): {}",
                                fmt_sig(gap, 4), parts));
  for (const auto& n : m.at("notes")) s.after.push_back(n.get<std::string>());
  return s;
}

}  // namespace flopscope::detail
