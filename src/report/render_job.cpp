// The "Your job" section of a prediction or an estimate made with --job: every value and where
// it came from, then what was ignored and what could not be known without running the file.
#include <fmt/format.h>

#include "report/render_detail.hpp"

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

}  // namespace flopscope::detail
