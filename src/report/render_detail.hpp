// Rendering internals: a result JSON becomes a Document (titled sections of notes and
// tables), which prints as aligned text or Markdown; CSV is a tidy long table.
#pragma once

#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "report/table.hpp"

namespace flopscope::detail {

struct Section {
  std::string heading;
  std::vector<std::string> before;  // notes above the table
  std::optional<Table> table;
  std::vector<std::string> after;   // notes below the table
};

struct Document {
  std::string title;
  std::vector<Section> sections;
  std::string text() const;
  std::string markdown() const;
};

void check_schema(const nlohmann::json& result);  // throws UsageError
Document estimate_document(const nlohmann::json& result);
Document measure_document(const nlohmann::json& result);
std::string render_csv(const nlohmann::json& result);

// Shared pieces.
std::string model_line(const nlohmann::json& model);
Section formulas_section(const nlohmann::json& formulas, const nlohmann::json& cluster, const std::string& heading);
Section seed_section(const nlohmann::json& seed);
// A --job result's values and where each came from (render_job.cpp).
Section job_section(const nlohmann::json& job);
// predict --log: the run's measured steps beside the prediction (render_job.cpp).
Section run_log_section(const nlohmann::json& run_log);
// A CSV field, quoted when needed.
std::string csv_field(const std::string& s);

}  // namespace flopscope::detail
