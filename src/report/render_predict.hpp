// Rendering of `predict` results (kind "prediction" or "validation") and of a comparison of
// predictions (a `compare` result of kind "prediction"): text, Markdown, CSV, figures.
#pragma once

#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "report/collections.hpp"
#include "report/plots.hpp"
#include "report/render_detail.hpp"

namespace flopscope {

// A `compare` result of predictions side by side, ratios to the first.
nlohmann::json compare_predictions(const std::vector<CompareInput>& inputs);
bool is_prediction_compare(const nlohmann::json& r);

// The figures of a prediction: the step's breakdown as a stacked bar; MFU against GPU count
// when the result has a scaling list; a comparison: one stacked bar per input.
std::vector<Figure> predict_figures(const nlohmann::json& r);

namespace detail {
Document predict_document(const nlohmann::json& r);
std::string predict_csv(const nlohmann::json& r);
}  // namespace detail

}  // namespace flopscope
