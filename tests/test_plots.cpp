// src/report/svg.* and plots.*: every figure parsed as XML (tests/xml_util.hpp) and checked
// for its content: the series it must have, axis titles that name their source, each mark's
// value equal to the result JSON's, and every mark inside the canvas. The results are real:
// `estimate` from the library, `measure` run in-process on the CPU backend at a tiny width.
#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <map>
#include <set>
#include <string>
#include <vector>

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>
#include <spdlog/spdlog.h>

#include "graph/graph.hpp"
#include "measure/run_point.hpp"
#include "model/model.hpp"
#include "report/collections.hpp"
#include "report/plots.hpp"
#include "report/result.hpp"
#include "report/svg.hpp"
#include "util/error.hpp"
#include "xml_util.hpp"

namespace {

using nlohmann::json;
using namespace flopscope;
using xml_test::Node;

// ---- fixtures --------------------------------------------------------------------------------

// GPT-3 175B with n_ctx 64: a layer at width 1/96 (one head, d_model 128) runs in milliseconds.
ModelConfig tiny_model() {
  ModelOverrides o;
  o.n_ctx = 64;
  return apply_overrides(preset("gpt3-175b"), o);
}

json measure_at(const Fraction& width, bool ceiling, bool recompute = false) {
  spdlog::set_level(spdlog::level::warn);
  PointRequest r;
  r.model = tiny_model();
  r.width = width;
  r.backend = "cpu";
  r.recompute = recompute;
  r.settings.warmup = 0;
  r.settings.repeats = 1;
  r.no_ceiling = !ceiling;
  r.command_line = "test_plots";
  return run_point(r);
}

const json& measured() {
  static const json r = measure_at({1, 96}, false);
  return r;
}

json estimate_of(const ModelConfig& m, const Fraction& width) {
  const ModelConfig layer = scale_width(m, width);
  const LayerGraph g = build_layer_graph(layer_shape(layer, 1, m.n_ctx), GraphOptions{});
  return estimate_result(m, layer, width.str(), g, ClusterAssumption{});
}

// A sweep index as `flopscope sweep` writes it, for the figures' needs: points and summaries.
json sweep_of(const std::vector<std::pair<std::string, json>>& points) {
  json pts = json::array();
  for (const auto& [id, r] : points) {
    const auto& L = r.at("layer");
    pts.push_back({{"id", id}, {"width", L.at("width")}, {"batch", L.at("batch")}, {"precision", L.at("precision")},
                   {"recompute", L.at("recompute")}, {"include_head", false}, {"file", "points/" + id + ".json"},
                   {"status", "done"}, {"reused", false}, {"error", nullptr}, {"summary", point_summary(r)}});
  }
  return {{"schema", kSchema}, {"command", "sweep"}, {"model", model_to_json(tiny_model())}, {"points", pts}};
}

// ---- helpers ---------------------------------------------------------------------------------

Node parse_svg(const std::string& text) {
  Node n;
  try {
    n = xml_test::parse(text);
  } catch (const std::exception& e) {
    ADD_FAILURE() << e.what() << "\n" << text.substr(0, 400);
  }
  return n;
}

// The series of a figure by label: its data marks.
std::map<std::string, std::vector<const Node*>> series_of(const Node& svg) {
  std::map<std::string, std::vector<const Node*>> out;
  for (const Node* g : svg.find_all([](const Node& n) { return n.name == "g" && n.attr("class") == "series"; })) {
    auto& marks = out[g->attr("data-series")];
    for (const Node* m : g->find_all([](const Node& n) {
           const auto c = n.attr("class");
           return c == "bar" || c == "point" || c == "line";
         }))
      marks.push_back(m);
  }
  return out;
}

std::string series_source(const Node& svg, const std::string& label) {
  for (const Node* g : svg.find_all([](const Node& n) { return n.name == "g" && n.attr("class") == "series"; }))
    if (g->attr("data-series") == label) return g->attr("data-source");
  return "";
}

std::vector<std::string> axis_labels(const Node& svg, const std::string& axis) {
  std::vector<std::string> out;
  for (const Node* t : svg.find_all([&](const Node& n) {
         return n.name == "text" && n.attr("class") == "axis-label" && n.attr("data-axis") == axis;
       }))
    out.push_back(t->all_text());
  return out;
}

bool names_a_source(const std::string& s) {
  for (const char* src : {"analytic", "counted", "measured", "timed"})
    if (s.find(src) != std::string::npos) return true;
  return false;
}

::testing::AssertionResult near(double actual, double expected, double rel = 1e-9) {
  if (std::abs(actual - expected) <= rel * std::max(std::abs(expected), 1e-300)) return ::testing::AssertionSuccess();
  return ::testing::AssertionFailure() << actual << " is not " << expected;
}

// Every bar and point lies inside the canvas.
void expect_marks_inside(const Node& svg) {
  const double W = svg.num("width"), H = svg.num("height");
  for (const Node* b : svg.find_all([](const Node& n) { return n.attr("class") == "bar"; })) {
    SCOPED_TRACE(b->attr("data-label"));
    EXPECT_GE(b->num("x"), 0);
    EXPECT_GE(b->num("y"), 0);
    EXPECT_GE(b->num("width"), 0);
    EXPECT_GE(b->num("height"), 0);
    EXPECT_LE(b->num("x") + b->num("width"), W + 0.5);
    EXPECT_LE(b->num("y") + b->num("height"), H + 0.5);
  }
  for (const Node* p : svg.find_all([](const Node& n) { return n.attr("class") == "point"; })) {
    SCOPED_TRACE(p->attr("data-label"));
    EXPECT_GE(p->num("cx"), 0);
    EXPECT_LE(p->num("cx"), W);
    EXPECT_GE(p->num("cy"), 0);
    EXPECT_LE(p->num("cy"), H);
  }
}

// What every figure must be: well-formed both ways, titled, axes that name their source,
// marks inside the canvas, a namespace only in the standalone file.
Node check_figure(const Figure& f) {
  SCOPED_TRACE(f.id);
  EXPECT_FALSE(f.title.empty());
  EXPECT_FALSE(f.caption.empty());
  const Node inl = parse_svg(f.svg);
  const Node file = parse_svg(f.file);
  EXPECT_EQ(inl.name, "svg");
  EXPECT_EQ(file.name, "svg");
  EXPECT_EQ(file.attr("xmlns"), "http://www.w3.org/2000/svg");
  EXPECT_EQ(f.file.rfind("<?xml", 0), 0u);
  EXPECT_FALSE(inl.has("xmlns"));
  EXPECT_EQ(f.svg.find("http"), std::string::npos) << "inline SVG names a URL";
  EXPECT_GT(inl.num("width"), 100);
  EXPECT_GT(inl.num("height"), 100);
  EXPECT_FALSE(inl.attr("viewBox").empty());
  const auto titles = inl.find_all([](const Node& n) { return n.name == "title"; });
  EXPECT_FALSE(titles.empty() || titles.front()->text.empty());
  const auto xs = axis_labels(inl, "x"), ys = axis_labels(inl, "y");
  EXPECT_FALSE(xs.empty()) << "no x axis title";
  for (const auto& l : xs) EXPECT_TRUE(names_a_source(l)) << "x axis title names no source: " << l;
  for (const auto& l : ys) EXPECT_TRUE(names_a_source(l)) << "y axis title names no source: " << l;
  for (const Node* t : inl.find_all([](const Node& n) { return n.attr("class") == "legend-label"; }))
    EXPECT_FALSE(t->all_text().empty());
  expect_marks_inside(inl);
  return inl;
}

// ---- svg.hpp -------------------------------------------------------------------------------

TEST(Svg, EscapesTextForXml) {
  EXPECT_EQ(svg::escape("a<b & \"c\" 'd'>"), "a&lt;b &amp; &quot;c&quot; &apos;d&apos;&gt;");
  EXPECT_EQ(svg::escape(std::string("x\x01y")), "x y");  // control characters are not XML
  svg::Canvas c(200, 100, "t <&>", "d \"'");
  c.text(10, 20, "fwd.qkv <&> \"quoted\" 'single'", "start", 12, {{"data-x", "a<b&c"}});
  c.begin_series("s <1>", "analytic");
  c.bar(1, 2, 3, 4, "#000000", "l&l", 1.5, "tip <b>");
  c.end_series();
  for (bool standalone : {false, true}) {
    const Node n = parse_svg(c.str(standalone));
    const auto texts = n.find_all([](const Node& x) { return x.name == "text"; });
    ASSERT_EQ(texts.size(), 1u);
    EXPECT_EQ(texts[0]->text, "fwd.qkv <&> \"quoted\" 'single'");
    EXPECT_EQ(texts[0]->attr("data-x"), "a<b&c");
    const auto s = series_of(n);
    ASSERT_EQ(s.count("s <1>"), 1u);
    EXPECT_EQ(s.at("s <1>").front()->attr("data-label"), "l&l");
    EXPECT_EQ(s.at("s <1>").front()->num("data-value"), 1.5);
  }
}

TEST(Svg, LogScaleTicksAreDecades) {
  const svg::Scale s = svg::log_scale(3e4, 2e9, 0, 500);
  EXPECT_EQ(s.lo, 1e4);
  EXPECT_EQ(s.hi, 1e10);
  EXPECT_DOUBLE_EQ(s(1e4), 0);
  EXPECT_DOUBLE_EQ(s(1e10), 500);
  EXPECT_NEAR(s(1e7), 250, 1e-9);
  const auto t = s.ticks();
  ASSERT_FALSE(t.empty());
  for (double v : t) EXPECT_NEAR(std::log10(v), std::round(std::log10(v)), 1e-9) << v;
  // Narrow domains get 2 and 5 between the decades.
  const auto fine = svg::log_scale(1.5, 40, 0, 100).ticks();
  EXPECT_TRUE(std::find(fine.begin(), fine.end(), 2.0) != fine.end());
  EXPECT_TRUE(std::find(fine.begin(), fine.end(), 50.0) != fine.end());
}

TEST(Svg, LinearScaleIsRoundAndStartsAtZero) {
  const svg::Scale s = svg::linear_scale(0, 7.3, 400, 100);
  EXPECT_EQ(s.lo, 0);
  EXPECT_GE(s.hi, 7.3);
  EXPECT_LE(s.hi, 10);
  EXPECT_DOUBLE_EQ(s(0), 400);  // pixels grow downward: y scales run from bottom to top
  const auto t = s.ticks();
  ASSERT_GE(t.size(), 3u);
  EXPECT_EQ(t.front(), 0);
  const double step = t[1] - t[0];
  for (size_t i = 1; i < t.size(); ++i) EXPECT_NEAR(t[i] - t[i - 1], step, 1e-12);
}

TEST(Svg, TickLabels) {
  EXPECT_EQ(svg::tick_label(0), "0");
  EXPECT_EQ(svg::tick_label(0.5), "0.5");
  EXPECT_EQ(svg::tick_label(12288), "12288");
  EXPECT_EQ(svg::tick_label(1e9), "1e9");
  EXPECT_EQ(svg::tick_label(2e22), "2e22");
  EXPECT_EQ(svg::tick_label(1e-3), "1e-3");
}

// ---- the figures ---------------------------------------------------------------------------

TEST(Plots, OpsFigureOfAMeasurement) {
  const json& r = measured();
  const Node svg = check_figure(ops_figure(r));
  const auto s = series_of(svg);
  ASSERT_EQ(s.size(), 3u);
  ASSERT_TRUE(s.count("analytic FLOPs"));
  ASSERT_TRUE(s.count("counted FLOPs"));
  ASSERT_TRUE(s.count("time share"));
  EXPECT_EQ(series_source(svg, "analytic FLOPs"), "analytic");
  EXPECT_EQ(series_source(svg, "counted FLOPs"), "counted");
  EXPECT_EQ(series_source(svg, "time share"), "timed");
  const size_t n = r.at("ops").size();
  EXPECT_EQ(s.at("analytic FLOPs").size(), n);
  EXPECT_EQ(s.at("counted FLOPs").size(), n);
  EXPECT_EQ(s.at("time share").size(), n);
  std::map<std::string, json> ops;
  for (const auto& o : r.at("ops")) ops[o.at("name").get<std::string>()] = o;
  for (const Node* b : s.at("analytic FLOPs")) EXPECT_TRUE(near(b->num("data-value"), ops.at(b->attr("data-label")).at("flops")));
  for (const Node* b : s.at("counted FLOPs"))
    EXPECT_TRUE(near(b->num("data-value"), ops.at(b->attr("data-label")).at("counted_flops")));
  double share = 0;
  for (const Node* b : s.at("time share")) {
    EXPECT_GE(b->num("data-value"), 0);
    EXPECT_LE(b->num("data-value"), 100);
    share += b->num("data-value");
  }
  EXPECT_NEAR(share, 100, 1e-6);
  // Bars grow with their value: the largest analytic bar is a GEMM.
  const auto widest = *std::max_element(s.at("analytic FLOPs").begin(), s.at("analytic FLOPs").end(),
                                        [](const Node* a, const Node* b) { return a->num("width") < b->num("width"); });
  EXPECT_EQ(ops.at(widest->attr("data-label")).at("impl"), "gemm");
  const auto xs = axis_labels(svg, "x");
  ASSERT_EQ(xs.size(), 2u);
  EXPECT_NE(xs[0].find("analytic vs counted"), std::string::npos) << xs[0];
  EXPECT_NE(xs[1].find("timed"), std::string::npos) << xs[1];
}

TEST(Plots, OpsFigureOfAnEstimate) {
  const json r = estimate_of(preset("gpt3-175b"), {1, 8});
  const Node svg = check_figure(ops_figure(r));
  const auto s = series_of(svg);
  ASSERT_EQ(s.size(), 3u);
  ASSERT_TRUE(s.count("analytic FLOPs"));
  ASSERT_TRUE(s.count("FLOP share"));
  const auto model = std::find_if(s.begin(), s.end(), [](const auto& kv) { return kv.first.rfind("model FLOPs", 0) == 0; });
  ASSERT_NE(model, s.end());
  EXPECT_EQ(model->second.size(), 6u);  // the six causal attention products
  for (const Node* b : model->second) EXPECT_NE(b->attr("data-label").find("attn"), std::string::npos);
  for (const auto& [label, marks] : s) EXPECT_EQ(series_source(svg, label), "analytic") << label;
}

TEST(Plots, RooflineUnderItsCeilings) {
  const json r = measure_at({1, 96}, true);
  const double ceiling = r.at("peaks").at("measured_ceiling").at("flops_per_s").get<double>();
  // A `flopscope peak` result: a GEMM ceiling and a copy bandwidth.
  const json peak = {{"schema", kSchema},
                     {"command", "peak"},
                     {"gemm", {{{"dtype", "fp32"}, {"n", 1024}, {"ms", 1.0}, {"flops_per_s", 2 * ceiling}}}},
                     {"copy", {{"bytes_per_s", 5e9}}}};
  for (const json* pk : {static_cast<const json*>(nullptr), &peak}) {
    SCOPED_TRACE(pk ? "with a peak result" : "alone");
    const Node svg = check_figure(roofline_figure(r, pk ? *pk : json(nullptr)));
    const auto s = series_of(svg);
    std::map<std::string, json> ops;
    size_t timed = 0;
    for (const auto& o : r.at("ops")) {
      ops[o.at("name").get<std::string>()] = o;
      timed += o.at("achieved_flops_per_s").is_number() && o.at("achieved_flops_per_s").get<double>() > 0;
    }
    size_t points = 0;
    std::set<std::string> ceilings;
    for (const auto& [label, marks] : s) {
      if (label.find("GEMM ceiling") != std::string::npos || label.find("memory roof") != std::string::npos) {
        ceilings.insert(label);
        EXPECT_EQ(series_source(svg, label), "timed") << label;
        continue;
      }
      EXPECT_EQ(series_source(svg, label), "counted / timed") << label;
      for (const Node* p : marks) {
        ++points;
        const json& o = ops.at(p->attr("data-label"));
        EXPECT_EQ(o.at("kind"), label);
        EXPECT_TRUE(near(p->num("data-x"), o.at("flops").get<double>() / o.at("min_bytes").get<double>(), 1e-12));
        EXPECT_TRUE(near(p->num("data-y"), o.at("achieved_flops_per_s").get<double>() / 1e9, 1e-12));
      }
    }
    EXPECT_EQ(points, timed);
    EXPECT_EQ(ceilings.size(), pk ? 3u : 1u);
    const auto ys = axis_labels(svg, "y");
    ASSERT_EQ(ys.size(), 1u);
    EXPECT_NE(ys[0].find("GFLOP/s"), std::string::npos);
    EXPECT_NE(ys[0].find("counted"), std::string::npos);
    EXPECT_NE(axis_labels(svg, "x")[0].find("FLOP per byte"), std::string::npos);
  }
  EXPECT_THROW(roofline_figure(estimate_of(preset("gpt3-175b"), {1, 8})), UsageError);
}

TEST(Plots, SeedWaterfallFromTheSeedToTheMeasurement) {
  const json& r = measured();
  const Node svg = check_figure(seed_waterfall_figure(r));
  // Bars in document order are grouped by series; collect them by label.
  std::map<std::string, double> bars;
  std::map<std::string, std::string> series_of_bar;
  for (const auto& [label, marks] : series_of(svg))
    for (const Node* m : marks) {
      if (m->attr("class") != "bar") continue;
      bars[m->attr("data-label")] = m->num("data-value");
      series_of_bar[m->attr("data-label")] = label;
    }
  const json seed = seed_check_json(tiny_model());
  EXPECT_TRUE(near(bars.at("the seed's estimate"), 8.6973087744e22, 1e-12));
  EXPECT_TRUE(near(bars.at("multiply-add = 2 FLOPs"), seed.at("factors").at(0).at("running_total").get<double>()));
  EXPECT_TRUE(near(bars.at("backward = 2x forward"), seed.at("corrected_total").get<double>()));
  EXPECT_TRUE(near(bars.at("graph total"), seed.at("graph_total").get<double>()));
  EXPECT_TRUE(near(bars.at("this measurement"), r.at("extrapolation").at("training_flops").get<double>()));
  EXPECT_EQ(bars.size(), 10u);  // seed, 5 factors, GEMMs, other ops, graph total, measurement
  EXPECT_EQ(series_source(svg, series_of_bar.at("this measurement")), "counted");
  EXPECT_EQ(series_source(svg, series_of_bar.at("attention projections")), "analytic");
  EXPECT_EQ(series_of(svg).count("6ND (analytic)"), 1u);
  // Every value between the seed and the largest total; the scale starts at zero.
  for (const auto& [label, v] : bars) {
    EXPECT_GE(v, 8e22) << label;
    EXPECT_LE(v, 5e23) << label;
  }
  const auto ys = axis_labels(svg, "y");
  ASSERT_EQ(ys.size(), 1u);
  EXPECT_NE(ys[0].find("training FLOPs"), std::string::npos);
  // An estimate ends at the graph's total.
  const Node est = check_figure(seed_waterfall_figure(estimate_of(preset("gpt3-175b"), {1, 1})));
  size_t n = 0;
  for (const auto& [label, marks] : series_of(est)) n += std::count_if(marks.begin(), marks.end(), [](const Node* m) { return m->attr("class") == "bar"; });
  EXPECT_EQ(n, 9u);
}

TEST(Plots, SweepFigures) {
  const json a = measured();
  const json b = measure_at({1, 48}, false);
  const json c = measure_at({1, 96}, false, true);
  const json sweep = sweep_of({{"w1-96_b1_fp32", a}, {"w1-48_b1_fp32", b}, {"w1-96_b1_fp32_recompute", c}});

  const Node tp = check_figure(sweep_throughput_figure(sweep));
  const auto s = series_of(tp);
  ASSERT_TRUE(s.count("fp32, batch 1"));
  ASSERT_TRUE(s.count("fp32, batch 1, recompute"));
  std::vector<const Node*> pts;
  for (const Node* m : s.at("fp32, batch 1"))
    if (m->attr("class") == "point") pts.push_back(m);
  ASSERT_EQ(pts.size(), 2u);
  std::map<std::string, const json*> by_id = {{"w1-96_b1_fp32", &a}, {"w1-48_b1_fp32", &b}};
  for (const Node* p : pts) {
    const json& r = *by_id.at(p->attr("data-label"));
    EXPECT_EQ(p->num("data-x"), r.at("layer").at("d_model").get<double>());
    EXPECT_TRUE(near(p->num("data-y"), r.at("totals").at("total").at("achieved_flops_per_s").get<double>() / 1e9, 1e-12));
  }
  EXPECT_NE(axis_labels(tp, "x")[0].find("d_model"), std::string::npos);
  EXPECT_NE(axis_labels(tp, "y")[0].find("counted FLOPs / timed"), std::string::npos);
  bool full = false;
  for (const Node* t : tp.find_all([](const Node& n) { return n.attr("class") == "tick"; })) full |= t->text == "12288";
  EXPECT_TRUE(full) << "the full width is not on the x axis";

  const Node time = check_figure(sweep_time_figure(sweep));
  const auto ts = series_of(time);
  ASSERT_TRUE(ts.count("training time"));
  ASSERT_EQ(ts.at("training time").size(), 3u);
  for (const Node* bar : ts.at("training time")) {
    const json& r = bar->attr("data-label") == "w1-48_b1_fp32" ? b : bar->attr("data-label") == "w1-96_b1_fp32" ? a : c;
    EXPECT_TRUE(near(bar->num("data-value"), r.at("extrapolation").at("days_on_cluster").get<double>()));
  }
  EXPECT_EQ(series_source(time, "training time"), "timed");
  EXPECT_EQ(ts.count("Megatron-LM 34 days (analytic)"), 1u);
  EXPECT_EQ(figures_for(sweep).size(), 2u);
}

TEST(Plots, CompareFigure) {
  const json b = measure_at({1, 48}, false);
  const json cmp = compare_result({{"narrow", "a.json", measured()}, {"wide", "b.json", b}});
  const Node svg = check_figure(compare_time_figure(cmp));
  const auto s = series_of(svg);
  ASSERT_EQ(s.size(), 2u);
  ASSERT_EQ(s.at("narrow").size(), measured().at("ops").size());
  for (const Node* bar : s.at("wide")) {
    double ms = -1;
    for (const auto& o : b.at("ops"))
      if (o.at("name") == bar->attr("data-label")) ms = o.at("time_ms").at("median").get<double>();
    EXPECT_TRUE(near(bar->num("data-value"), ms));
  }
}

TEST(Plots, EveryFigureOfEveryCommand) {
  const json est = estimate_of(preset("gpt3-175b"), {1, 1});
  std::vector<std::string> ids;
  for (const auto& f : figures_for(est)) ids.push_back(f.id);
  EXPECT_EQ(ids, (std::vector<std::string>{"ops", "seed-waterfall"}));
  ids.clear();
  for (const auto& f : figures_for(measured())) {
    check_figure(f);
    ids.push_back(f.id);
  }
  EXPECT_EQ(ids, (std::vector<std::string>{"ops", "roofline", "seed-waterfall"}));
  EXPECT_THROW(figures_for(json{{"command", "devices"}}), UsageError);
}

TEST(Plots, HostileNamesStayText) {
  ModelConfig m = preset("gpt3-175b");
  m.name = "gpt <3> & \"friends\"";
  for (const auto& f : figures_for(estimate_of(m, {1, 8}))) {
    const Node svg = check_figure(f);
    bool found = false;
    for (const Node* t : svg.find_all([](const Node& n) { return n.name == "text" || n.name == "desc"; }))
      found |= t->all_text().find("gpt <3> & \"friends\"") != std::string::npos;
    EXPECT_TRUE(found) << f.id;
  }
}

// The test's parser against Python's (when there is a python3): both accept the figures.
TEST(Plots, PythonMinidomAgrees) {
  if (std::system("python3 -c 'import xml.dom.minidom' >/dev/null 2>&1") != 0) GTEST_SKIP() << "no python3 with xml.dom.minidom";
  const std::string dir = (std::filesystem::temp_directory_path() / ("flopscope-plots-" + std::to_string(::getpid()))).string();
  std::filesystem::create_directories(dir);
  for (const auto& f : figures_for(measured())) {
    const std::string path = dir + "/" + f.id + ".svg";
    std::ofstream(path) << f.file;
    const std::string cmd = "python3 -c 'import sys, xml.dom.minidom; xml.dom.minidom.parse(sys.argv[1])' " + path;
    EXPECT_EQ(std::system(cmd.c_str()), 0) << f.id;
  }
  std::filesystem::remove_all(dir);
}

}  // namespace
