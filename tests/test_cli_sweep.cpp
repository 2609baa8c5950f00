// The binary's sweep, compare, plot and `report --format html` (ctest label `cli`), on the CPU
// backend with a tiny layer (GPT-3 175B at n_ctx 64, one or two heads), and the bad input they
// must turn into exit 2 and one line: another schema version, a truncated or hand-edited
// JSON, an invalid grid point (before anything runs), an output folder that is not writable.
// Also: docs/cli.md is the --help of every command, verbatim.
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <map>
#include <set>
#include <sstream>
#include <string>
#include <vector>

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "cli_util.hpp"
#include "xml_util.hpp"

#ifndef FLOPSCOPE_SOURCE_DIR
#error "FLOPSCOPE_SOURCE_DIR (the repository root) is set by tests/CMakeLists.txt"
#endif

namespace {

namespace fs = std::filesystem;
using nlohmann::json;
using namespace cli_test;

// The tiny layer every run here uses, fast on two cores.
const std::vector<std::string> kTiny = {"--model", "gpt3-175b", "--seq",    "64",           "--repeats",
                                        "1",       "--warmup",  "0",        "--no-ceiling", "--backend",
                                        "cpu"};

std::vector<std::string> with(std::vector<std::string> a, const std::vector<std::string>& b) {
  a.insert(a.end(), b.begin(), b.end());
  return a;
}

std::vector<std::string> sweep_args(const std::string& out, const std::string& widths = "1/96,1/48",
                                    const std::string& recompute = "off,on") {
  return with({"sweep", "--widths", widths, "--batches", "1", "--recompute", recompute, "--out-dir", out}, kTiny);
}

json read_json(const std::string& path) { return json::parse(slurp(path)); }

std::set<std::string> files_under(const std::string& dir) {
  std::set<std::string> s;
  if (!fs::exists(dir)) return s;
  for (const auto& e : fs::recursive_directory_iterator(dir))
    if (e.is_regular_file()) s.insert(fs::relative(e.path(), dir).string());
  return s;
}

// A measure result of the tiny layer at `width`, saved to `path`.
void measure_to(const std::string& width, const std::string& path, const std::string& cwd) {
  const Outcome r = run(with({"measure", "--width", width, "--format", "json", "-o", path}, kTiny), cwd);
  ASSERT_EQ(r.rc, 0) << describe(r);
}

// ---- sweep ----------------------------------------------------------------------------------

TEST(CliSweep, ProducesItsFilesAndIndex) {
  TempDir cwd;
  const Outcome r = run(sweep_args("out"), cwd.path());
  ASSERT_EQ(r.rc, 0) << describe(r);
  const std::set<std::string> expected = {"index.json", "points/w1-96_b1_fp32.json", "points/w1-48_b1_fp32.json",
                                          "points/w1-96_b1_fp32_recompute.json", "points/w1-48_b1_fp32_recompute.json"};
  EXPECT_EQ(files_under(cwd / "out"), expected) << "missing files, or temporary files left behind";

  const json idx = read_json(cwd / "out/index.json");
  EXPECT_EQ(idx.at("schema"), "flopscope/1");
  EXPECT_EQ(idx.at("command"), "sweep");
  EXPECT_EQ(idx.at("counts").at("points"), 4);
  EXPECT_EQ(idx.at("counts").at("done"), 4);
  EXPECT_EQ(idx.at("counts").at("failed"), 0);
  EXPECT_EQ(idx.at("grid").at("widths"), json({"1/96", "1/48"}));
  EXPECT_EQ(idx.at("model").at("n_ctx"), 64);
  ASSERT_EQ(idx.at("points").size(), 4u);
  for (const json& p : idx.at("points")) {
    const std::string id = p.at("id").get<std::string>();
    SCOPED_TRACE(id);
    EXPECT_EQ(p.at("status"), "done");
    EXPECT_EQ(p.at("reused"), false);
    EXPECT_TRUE(p.at("error").is_null());
    // Each point's file is the measure result of that point.
    const json m = read_json(cwd / ("out/" + p.at("file").get<std::string>()));
    EXPECT_EQ(m.at("schema"), "flopscope/1");
    EXPECT_EQ(m.at("command"), "measure");
    EXPECT_EQ(m.at("layer").at("width"), p.at("width"));
    EXPECT_EQ(m.at("layer").at("recompute"), p.at("recompute"));
    EXPECT_EQ(m.at("layer").at("precision"), "fp32");
    EXPECT_EQ(m.at("layer").at("seq"), 64);
    const json& s = p.at("summary");
    EXPECT_EQ(s.at("d_model"), m.at("layer").at("d_model"));
    EXPECT_EQ(s.at("flops_source"), "counted");
    EXPECT_EQ(s.at("layer_flops"), m.at("totals").at("total").at("counted_flops"));
    EXPECT_GT(s.at("flops_per_s").get<double>(), 0);
    EXPECT_EQ(s.at("training_flops"), m.at("extrapolation").at("training_flops"));
  }
  EXPECT_EQ(idx.at("points").at(1).at("summary").at("d_model"), 256);
  // The summary on stdout, progress on stderr.
  EXPECT_TRUE(contains(r.out, "4 of 4 points done")) << r.out;
  EXPECT_TRUE(contains(r.out, "w1-48_b1_fp32_recompute")) << r.out;
  EXPECT_TRUE(contains(r.err, "sweep: point 4/4 w1-48_b1_fp32_recompute: done")) << r.err;
  // `report` renders the index again, in every format.
  const Outcome again = run({"report", "out/index.json"}, cwd.path());
  ASSERT_EQ(again.rc, 0) << describe(again);
  EXPECT_EQ(again.out, r.out);
  for (const char* format : {"csv", "markdown", "json"}) {
    const Outcome f = run({"report", "out/index.json", "--format", format}, cwd.path());
    EXPECT_EQ(f.rc, 0) << format << describe(f);
  }
}

TEST(CliSweep, ReRunSkipsPointsAlreadyDone) {
  TempDir cwd;
  ASSERT_EQ(run(sweep_args("out", "1/96,1/48", "off"), cwd.path()).rc, 0);
  const std::string kept = slurp(cwd / "out/points/w1-96_b1_fp32.json");
  fs::remove(cwd / "out/points/w1-48_b1_fp32.json");
  // What an interrupted write would have left: a temporary file, removed by the re-run.
  spit(cwd / "out/points/w1-48_b1_fp32.json.tmp.AbC123", "{\"schema\": \"flopscope/1\", \"comm");

  const Outcome r = run(sweep_args("out", "1/96,1/48", "off"), cwd.path());
  ASSERT_EQ(r.rc, 0) << describe(r);
  EXPECT_TRUE(contains(r.err, "point 1/2 w1-96_b1_fp32: already done")) << r.err;
  EXPECT_TRUE(contains(r.err, "point 2/2 w1-48_b1_fp32: running")) << r.err;
  EXPECT_EQ(slurp(cwd / "out/points/w1-96_b1_fp32.json"), kept) << "a done point ran again";
  EXPECT_EQ(files_under(cwd / "out"),
            (std::set<std::string>{"index.json", "points/w1-96_b1_fp32.json", "points/w1-48_b1_fp32.json"}));
  const json idx = read_json(cwd / "out/index.json");
  EXPECT_EQ(idx.at("counts").at("done"), 2);
  EXPECT_EQ(idx.at("counts").at("reused"), 1);
  EXPECT_EQ(idx.at("points").at(0).at("reused"), true);
  EXPECT_EQ(idx.at("points").at(1).at("reused"), false);

  // A point file that is not a result of this schema runs again, with a warning.
  spit(cwd / "out/points/w1-96_b1_fp32.json", "{\"schema\": \"flopscope/1\", \"command\": \"meas");
  const Outcome fixed = run(sweep_args("out", "1/96,1/48", "off"), cwd.path());
  ASSERT_EQ(fixed.rc, 0) << describe(fixed);
  EXPECT_TRUE(contains(fixed.err, "cannot be reused")) << fixed.err;
  EXPECT_EQ(read_json(cwd / "out/points/w1-96_b1_fp32.json").at("command"), "measure");

  // A folder holding another sweep's points is refused before anything runs.
  std::vector<std::string> args = sweep_args("out", "1/96", "off");
  args[std::find(args.begin(), args.end(), "--seq") - args.begin() + 1] = "32";
  const Outcome other = run(args, cwd.path());
  EXPECT_EQ(other.rc, 2) << describe(other);
  EXPECT_TRUE(contains(other.err, "another sweep")) << other.err;
}

TEST(CliSweep, InvalidGridIsReportedBeforeAnythingRuns) {
  TempDir cwd;
  const std::vector<BadCase> cases = {
      {"a width that leaves no whole head", sweep_args("out", "1/96,1/7"), "w1-7_b1_fp32"},
      {"the same width twice", sweep_args("out", "1/96,0.5,1/2"), "listed twice"},
      {"a width that is not a fraction", sweep_args("out", "1/96,abc"), "--widths"},
      {"an empty item", sweep_args("out", "1/96,,1/48"), "empty item"},
      {"recompute neither off nor on", sweep_args("out", "1/96", "maybe"), "maybe"},
      {"a precision the cpu does not run", with(sweep_args("out", "1/96"), {"--precisions", "fp32,bf16"}), "w1-96_b1_bf16"},
      {"an unknown precision", with(sweep_args("out", "1/96"), {"--precisions", "fp4"}), "fp4"},
      {"a batch of zero", with(sweep_args("out", "1/96"), {"--batches", "1,0"}), "--batches"},
      {"--cuda-graph on the cpu", with(sweep_args("out", "1/96"), {"--cuda-graph"}), "needs --backend cuda"},
      {"--input-sets 0", with(sweep_args("out", "1/96"), {"--input-sets", "0"}), "--input-sets"},
      {"no widths", {"sweep", "--out-dir", "out"}, "--widths"},
      {"no output folder", {"sweep", "--widths", "1/96"}, "--out-dir"},
      {"an output folder that cannot be created", sweep_args("/proc/flopscope-sweep"), "/proc/flopscope-sweep"},
      {"an output folder that is a file", sweep_args("/dev/null/x"), "/dev/null/x"},
  };
  for (const auto& c : cases) expect_usage_error(c, cwd.path(), cwd.path());
  // Every invalid point is named, in one line.
  const Outcome r = run(sweep_args("out", "1/7,1/96,1/5"), cwd.path());
  EXPECT_TRUE(contains(r.err, "2 of 2 grid points are invalid") || contains(r.err, "4 of 6 grid points are invalid"))
      << r.err;
  EXPECT_TRUE(contains(r.err, "w1-7_b1_fp32") && contains(r.err, "w1-5_b1_fp32")) << r.err;
  EXPECT_FALSE(fs::exists(cwd / "out"));
}

TEST(CliSweep, ReadOnlyOutputFolder) {
  if (::geteuid() == 0) GTEST_SKIP() << "running as root: chmod 555 does not stop root from writing";
  TempDir cwd;
  fs::create_directory(cwd / "ro");
  ASSERT_EQ(::chmod((cwd / "ro").c_str(), 0555), 0);
  expect_usage_error({"read-only output folder", sweep_args(cwd / "ro/sweep"), "ro/sweep"}, cwd.path(), cwd / "ro");
}

TEST(CliSweep, DryRunListsThePointsAndWritesNothing) {
  TempDir cwd;
  const Outcome r = run(with(sweep_args("out"), {"--dry-run"}), cwd.path());
  ASSERT_EQ(r.rc, 0) << describe(r);
  EXPECT_TRUE(contains(r.out, "4 points, all valid")) << r.out;
  EXPECT_TRUE(contains(r.out, "w1-48_b1_fp32_recompute")) << r.out;
  EXPECT_TRUE(cwd.names().empty());
}

// ---- compare --------------------------------------------------------------------------------

TEST(CliCompare, TwoResultsSideBySideWithRatios) {
  TempDir cwd;
  measure_to("1/96", "narrow.json", cwd.path());
  measure_to("1/48", "wide.json", cwd.path());
  const Outcome t = run({"compare", "narrow.json", "wide.json"}, cwd.path());
  ASSERT_EQ(t.rc, 0) << describe(t);
  EXPECT_TRUE(contains(t.out, "A = narrow, the baseline")) << t.out;
  EXPECT_TRUE(contains(t.out, "B = wide")) << t.out;
  EXPECT_TRUE(contains(t.out, "B/A")) << t.out;
  EXPECT_TRUE(contains(t.out, "4.000x")) << "twice the width is four times a GEMM's FLOPs\n" << t.out;

  const Outcome j = run({"compare", "narrow.json", "wide.json", "--labels", "w96,w48", "--format", "json"}, cwd.path());
  ASSERT_EQ(j.rc, 0) << describe(j);
  const json c = json::parse(j.out);
  EXPECT_EQ(c.at("schema"), "flopscope/1");
  EXPECT_EQ(c.at("command"), "compare");
  EXPECT_EQ(c.at("baseline"), "w96");
  bool qkv = false;
  for (const json& o : c.at("ops")) {
    if (o.at("name") != "fwd.qkv") continue;
    qkv = true;
    EXPECT_DOUBLE_EQ(o.at("ratios").at(0).at("flops").get<double>(), 1.0);
    EXPECT_DOUBLE_EQ(o.at("ratios").at(1).at("flops").get<double>(), 4.0);  // 6 T d^2, d doubled
    const double a = o.at("values").at(0).at("median_ms").get<double>(), b = o.at("values").at(1).at("median_ms").get<double>();
    EXPECT_DOUBLE_EQ(o.at("ratios").at(1).at("median_ms").get<double>(), b / a);
  }
  EXPECT_TRUE(qkv);
  EXPECT_EQ(c.at("totals").size(), 3u);
  // compare's output renders again like any result; CSV is tidy with an input column.
  spit(cwd / "cmp.json", j.out);
  const Outcome again = run({"report", "cmp.json"}, cwd.path());
  ASSERT_EQ(again.rc, 0) << describe(again);
  const Outcome csv = run({"compare", "narrow.json", "wide.json", "--format", "csv"}, cwd.path());
  ASSERT_EQ(csv.rc, 0) << describe(csv);
  EXPECT_EQ(csv.out.substr(0, csv.out.find('\n')), "section,name,phase,input,metric,value,unit,source");
  std::istringstream in(csv.out);
  std::string line;
  std::getline(in, line);
  while (std::getline(in, line)) EXPECT_EQ(csv_fields(line).size(), 8u) << line;

  TempDir empty;
  expect_usage_error({"one file", {"compare", cwd / "narrow.json"}, "two result files"}, empty.path(), empty.path());
}

// ---- report --format html and plot ----------------------------------------------------------

void expect_self_contained_page(const std::string& html, size_t figures) {
  EXPECT_EQ(html.rfind("<!DOCTYPE html>", 0), 0u);
  EXPECT_TRUE(contains(html, "</html>"));
  EXPECT_EQ(html.find("http://"), std::string::npos) << "a network reference";
  EXPECT_EQ(html.find("https://"), std::string::npos) << "a network reference";
  EXPECT_EQ(html.find("<script"), std::string::npos);
  EXPECT_EQ(html.find("<link"), std::string::npos);
  EXPECT_EQ(html.find(" src="), std::string::npos);
  EXPECT_TRUE(contains(html, "<style>"));
  EXPECT_TRUE(contains(html, "<table>"));
  const auto svgs = xml_test::inline_svgs(html);
  EXPECT_EQ(svgs.size(), figures);
  for (const auto& s : svgs) EXPECT_NO_THROW(xml_test::parse(s)) << s.substr(0, 300);
}

TEST(CliReport, HtmlIsOneSelfContainedFile) {
  TempDir cwd;
  measure_to("1/96", "m.json", cwd.path());
  const Outcome r = run({"report", "m.json", "--format", "html", "-o", "m.html"}, cwd.path());
  ASSERT_EQ(r.rc, 0) << describe(r);
  EXPECT_EQ(r.out, "");
  EXPECT_EQ(cwd.names(), (std::set<std::string>{"m.json", "m.html"}));
  const std::string html = slurp(cwd / "m.html");
  expect_self_contained_page(html, 3);
  for (const char* id : {"fig-ops", "fig-roofline", "fig-seed-waterfall"}) EXPECT_TRUE(contains(html, id)) << id;
  // The tables are the text report's.
  EXPECT_TRUE(contains(html, "Layer totals"));
  EXPECT_TRUE(contains(html, "<td class=\"txt\">bwd.ffn.up.wgrad</td>"));

  // A sweep's index, a comparison and an estimate each make a page.
  ASSERT_EQ(run(sweep_args("sw", "1/96,1/48", "off"), cwd.path()).rc, 0);
  const Outcome s = run({"report", "sw/index.json", "--format", "html"}, cwd.path());
  ASSERT_EQ(s.rc, 0) << describe(s);
  expect_self_contained_page(s.out, 2);
  EXPECT_TRUE(contains(s.out, "fig-sweep-throughput"));
  const Outcome c = run({"compare", "sw/points/w1-96_b1_fp32.json", "sw/points/w1-48_b1_fp32.json", "--format", "html"},
                        cwd.path());
  ASSERT_EQ(c.rc, 0) << describe(c);
  expect_self_contained_page(c.out, 1);
  const Outcome e = run({"estimate", "--format", "html"}, cwd.path());
  ASSERT_EQ(e.rc, 0) << describe(e);
  expect_self_contained_page(e.out, 2);
}

TEST(CliPlot, WritesEveryFigureAsAnSvgFile) {
  TempDir cwd;
  measure_to("1/96", "m.json", cwd.path());
  const Outcome r = run({"plot", "m.json", "--out-dir", "figs"}, cwd.path());
  ASSERT_EQ(r.rc, 0) << describe(r);
  EXPECT_EQ(files_under(cwd / "figs"), (std::set<std::string>{"m.ops.svg", "m.roofline.svg", "m.seed-waterfall.svg"}));
  EXPECT_EQ(count_lines(r.out), 3u);
  for (const auto& f : files_under(cwd / "figs")) {
    const std::string text = slurp(cwd / ("figs/" + f));
    const xml_test::Node svg = xml_test::parse(text);
    EXPECT_EQ(svg.attr("xmlns"), "http://www.w3.org/2000/svg") << f;
  }
  // A `peak` result's ceilings go into the roofline.
  const json peak = {{"schema", "flopscope/1"},
                     {"command", "peak"},
                     {"gemm", {{{"dtype", "fp32"}, {"n", 1024}, {"ms", 1.0}, {"flops_per_s", 2e10}}}},
                     {"copy", {{"bytes_per_s", 5e9}}}};
  spit(cwd / "peak.json", peak.dump());
  const Outcome p = run({"plot", "m.json", "--peak", "peak.json", "--out-dir", "figs"}, cwd.path());
  ASSERT_EQ(p.rc, 0) << describe(p);
  EXPECT_TRUE(contains(slurp(cwd / "figs/m.roofline.svg"), "memory roof"));
  TempDir empty;
  expect_usage_error({"--peak not a peak result", {"plot", cwd / "m.json", "--peak", cwd / "m.json", "--out-dir", "x"}, "--peak"},
                     empty.path(), empty.path());
}

// ---- bad result files -----------------------------------------------------------------------

TEST(CliErrors, BadResultFilesAreOneLineAndExitTwo) {
  TempDir cwd, inputs;
  measure_to("1/96", inputs / "good.json", cwd.path());
  const std::string good = slurp(inputs / "good.json");
  json other = json::parse(good);
  other["schema"] = "flopscope/2";
  spit(inputs / "v2.json", other.dump());
  spit(inputs / "truncated.json", good.substr(0, good.size() / 2));
  json edited = json::parse(good);
  edited["ops"][1]["flops"] = "lots";  // a number edited into text
  spit(inputs / "edited.json", edited.dump());
  json no_ops = json::parse(good);
  no_ops.erase("ops");
  spit(inputs / "no-ops.json", no_ops.dump());
  spit(inputs / "index.json", "{\"schema\": \"flopscope/1\", \"command\": \"sweep\"}");
  const std::string g = inputs / "good.json";
  const std::vector<BadCase> cases = {
      {"report: another schema version", {"report", inputs / "v2.json", "-o", "x"}, "'flopscope/2' is not the schema this flopscope reads ('flopscope/1')"},
      {"compare: another schema version", {"compare", g, inputs / "v2.json", "-o", "x"}, "'flopscope/2'"},
      {"plot: another schema version", {"plot", inputs / "v2.json", "--out-dir", "x"}, "('flopscope/1')"},
      {"report html: another schema version", {"report", inputs / "v2.json", "--format", "html", "-o", "x"}, "flopscope/2"},
      {"report: truncated", {"report", inputs / "truncated.json", "--format", "html", "-o", "x"}, "truncated.json: not valid JSON"},
      {"compare: truncated", {"compare", g, inputs / "truncated.json", "-o", "x"}, "truncated.json: not valid JSON"},
      {"plot: truncated", {"plot", inputs / "truncated.json", "--out-dir", "x"}, "truncated.json"},
      {"report: hand-edited", {"report", inputs / "edited.json", "--format", "html", "-o", "x"}, "edited.json"},
      {"compare: hand-edited", {"compare", g, inputs / "edited.json", "-o", "x"}, "edited.json: result is malformed"},
      {"plot: a field removed", {"plot", inputs / "no-ops.json", "--out-dir", "x"}, "no-ops.json"},
      {"compare: a sweep index", {"compare", g, inputs / "index.json", "-o", "x"}, "points/*.json"},
      {"html to a folder that refuses files", {"report", g, "--format", "html", "-o", "/proc/x.html"}, "/proc/x.html"},
  };
  for (const auto& c : cases) expect_usage_error(c, cwd.path(), cwd.path());
}

// ---- docs/cli.md ----------------------------------------------------------------------------

// The fenced block under each "## `flopscope ...`" heading of docs/cli.md.
std::map<std::string, std::string> cli_md_blocks(const std::string& md) {
  std::map<std::string, std::string> out;
  std::istringstream in(md);
  std::string line, heading, block;
  bool inside = false;
  while (std::getline(in, line)) {
    if (!inside && line.rfind("## `", 0) == 0) {
      heading = line.substr(4, line.rfind('`') - 4);
    } else if (!inside && line == "```text" && !heading.empty()) {
      inside = true;
      block.clear();
    } else if (inside && line == "```") {
      inside = false;
      out[heading] = block;
      heading.clear();
    } else if (inside) {
      block += line + "\n";
    }
  }
  return out;
}

// The subcommands `flopscope --help` lists.
std::vector<std::string> subcommands(const std::string& help) {
  std::vector<std::string> out;
  std::istringstream in(help);
  std::string line;
  bool listing = false;
  while (std::getline(in, line)) {
    if (line == "Subcommands:" || line == "SUBCOMMANDS:") {
      listing = true;
      continue;
    }
    if (listing && line.rfind("  ", 0) == 0 && line.size() > 2 && line[2] != ' ') {
      out.push_back(line.substr(2, line.find(' ', 2) - 2));
    } else if (listing && !line.empty() && line[0] != ' ') {
      listing = false;
    }
  }
  return out;
}

TEST(CliDocs, CliMdIsTheHelpOfEveryCommand) {
  TempDir cwd;
  const std::string path = std::string(FLOPSCOPE_SOURCE_DIR) + "/docs/cli.md";
  ASSERT_TRUE(fs::exists(path)) << path << " is missing: run scripts/update-cli-docs.sh";
  const std::string md = slurp(path);
  EXPECT_TRUE(contains(md.substr(0, md.find('\n', md.find('\n') + 1)), "scripts/update-cli-docs.sh"))
      << "docs/cli.md must say at the top that it is generated, and how";
  const auto blocks = cli_md_blocks(md);
  const Outcome top = run({"--help"}, cwd.path());
  ASSERT_EQ(top.rc, 0) << describe(top);
  std::vector<std::string> commands = {"flopscope"};
  const auto subs = subcommands(top.out);
  ASSERT_GE(subs.size(), 8u) << top.out;
  for (const auto& s : subs) commands.push_back("flopscope " + s);
  std::set<std::string> seen;
  for (const auto& cmd : commands) {
    SCOPED_TRACE(cmd);
    seen.insert(cmd);
    std::vector<std::string> args;
    if (cmd != "flopscope") args.push_back(cmd.substr(10));
    args.push_back("--help");
    const Outcome h = run(args, cwd.path());
    ASSERT_EQ(h.rc, 0) << describe(h);
    ASSERT_TRUE(blocks.count(cmd)) << "docs/cli.md has no section for `" << cmd << "`: run scripts/update-cli-docs.sh";
    EXPECT_EQ(blocks.at(cmd), h.out) << "docs/cli.md differs from `" << cmd << " --help`: run scripts/update-cli-docs.sh";
  }
  for (const auto& [heading, block] : blocks)
    EXPECT_TRUE(seen.count(heading)) << "docs/cli.md documents `" << heading
                                     << "`, which --help does not list: run scripts/update-cli-docs.sh";
}

}  // namespace
