// The flopscope binary as a user runs it (ctest label `cli`): outputs in every format, files
// written atomically, `report` reproducing a saved result, and every kind of bad input turned
// into exit code 2, exactly one line on stderr, nothing on stdout and no file left behind.
#include <sys/stat.h>
#include <unistd.h>

#include <filesystem>
#include <set>
#include <sstream>
#include <string>
#include <vector>

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "cli_util.hpp"

namespace {

namespace fs = std::filesystem;
using nlohmann::json;
using namespace cli_test;

// ---- estimate, every format -----------------------------------------------------------------

TEST(CliEstimate, TableFor175B) {
  TempDir cwd;
  const Outcome r = run({"estimate", "--model", "gpt3-175b"}, cwd.path());
  ASSERT_EQ(r.rc, 0) << describe(r);
  EXPECT_EQ(r.err, "");
  EXPECT_TRUE(contains(r.out, "3.14e+23")) << "6nd total missing\n" << r.out;
  EXPECT_TRUE(contains(r.out, "8.7e+22")) << "the seed's total missing\n" << r.out;
  EXPECT_TRUE(contains(r.out, "3.70x")) << "the seed check's factor missing\n" << r.out;
  EXPECT_TRUE(contains(r.out, "174.6B")) << r.out;  // parameters from the architecture
  EXPECT_TRUE(cwd.names().empty()) << "estimate wrote a file";
  // The default model is gpt3-175b.
  EXPECT_EQ(run({"estimate"}, cwd.path()).out, r.out);
}

TEST(CliEstimate, Json) {
  TempDir cwd;
  const Outcome r = run({"estimate", "--model", "gpt3-175b", "--format", "json"}, cwd.path());
  ASSERT_EQ(r.rc, 0) << describe(r);
  EXPECT_EQ(r.err, "");
  json j;
  ASSERT_NO_THROW(j = json::parse(r.out)) << r.out;
  EXPECT_EQ(j.at("schema"), "flopscope/1");
  EXPECT_EQ(j.at("command"), "estimate");
  const json& m = j.at("model");
  EXPECT_EQ(m.at("name"), "gpt3-175b");
  EXPECT_EQ(m.at("n_layers"), 96);
  EXPECT_EQ(m.at("d_model"), 12288);
  EXPECT_EQ(m.at("n_heads"), 96);

  const std::vector<std::string> ids = {"seed",        "6nd",        "kaplan", "palm",       "megatron", "megatron_recompute",
                                        "megatron_lm", "chinchilla", "graph",  "graph_model"};
  std::vector<std::string> got;
  for (const json& f : j.at("formulas")) {
    got.push_back(f.at("id").get<std::string>());
    SCOPED_TRACE(got.back());
    ASSERT_TRUE(f.at("total_flops").is_number());
    EXPECT_GT(f.at("total_flops").get<double>(), 0);
    ASSERT_TRUE(f.at("source").is_string());
    EXPECT_FALSE(f.at("source").get<std::string>().empty());
    if (got.back() == "6nd") {
      EXPECT_TRUE(within(f.at("total_flops").get<double>(), 3.14e23, 0.02));
    }
    if (got.back() == "seed") {
      EXPECT_TRUE(within(f.at("total_flops").get<double>(), 8.7e22, 0.01));
    }
  }
  EXPECT_EQ(got, ids);

  const json& ops = j.at("ops");
  ASSERT_TRUE(ops.is_array());
  ASSERT_FALSE(ops.empty());
  EXPECT_EQ(ops.front().at("name"), "fwd.ln1");
  std::set<std::string> names;
  int attention = 0;
  for (const json& op : ops) {
    const std::string name = op.at("name").get<std::string>();
    SCOPED_TRACE(name);
    EXPECT_TRUE(names.insert(name).second) << "duplicate op";
    const std::string phase = op.at("phase").get<std::string>();
    EXPECT_TRUE(phase == "forward" || phase == "backward" || phase == "recompute") << phase;
    EXPECT_TRUE(op.at("kind").is_string());
    ASSERT_TRUE(op.at("flops").is_number());
    EXPECT_GT(op.at("flops").get<double>(), 0);
    if (op.at("kind") == "batched_gemm") {  // the causal attention products
      ++attention;
      ASSERT_TRUE(op.contains("model_flops"));
      EXPECT_EQ(op.at("model_flops").get<double>() * 2, op.at("flops").get<double>());
    }
  }
  EXPECT_EQ(attention, 6);  // scores and context forward; dprobs, dv, dq, dk backward
  EXPECT_TRUE(names.count("bwd.ffn.up.wgrad"));

  const json& seed = j.at("seed_check");
  EXPECT_TRUE(within(seed.at("product").get<double>(), 3.70, 0.001));
  EXPECT_EQ(seed.at("factors").size(), 5u);
}

TEST(CliEstimate, Csv) {
  TempDir cwd;
  const Outcome r = run({"estimate", "--format", "csv"}, cwd.path());
  ASSERT_EQ(r.rc, 0) << describe(r);
  EXPECT_EQ(r.err, "");
  std::istringstream in(r.out);
  std::string line;
  ASSERT_TRUE(std::getline(in, line));
  EXPECT_EQ(line, "section,name,phase,metric,value,unit,source");
  int rows = 0, six_nd = 0;
  while (std::getline(in, line)) {
    ++rows;
    const auto f = csv_fields(line);
    ASSERT_EQ(f.size(), 7u) << line;
    if (f[0] == "formula" && f[1] == "6nd" && f[3] == "total_flops") {
      ++six_nd;
      EXPECT_TRUE(within(std::stod(f[4]), 3.14e23, 0.02)) << line;
      EXPECT_EQ(f[5], "FLOP");
      EXPECT_EQ(f[6], "analytic");
    }
  }
  EXPECT_EQ(six_nd, 1);
  EXPECT_GT(rows, 100);
}

TEST(CliEstimate, Markdown) {
  TempDir cwd;
  const Outcome r = run({"estimate", "--format", "markdown"}, cwd.path());
  ASSERT_EQ(r.rc, 0) << describe(r);
  EXPECT_EQ(r.err, "");
  EXPECT_EQ(r.out.rfind("# ", 0), 0u) << r.out.substr(0, 200);
  EXPECT_TRUE(contains(r.out, "3.14e+23"));
  EXPECT_TRUE(contains(r.out, "| ---: |") || contains(r.out, "| :--- |")) << "no Markdown table";
}

TEST(CliEstimate, ScaledLayerWithRecomputeAndHead) {
  TempDir cwd;
  const Outcome r = run({"estimate", "--width", "1/8", "--batch", "2", "--recompute", "--include-head", "--format", "json"},
                    cwd.path());
  ASSERT_EQ(r.rc, 0) << describe(r);
  const json j = json::parse(r.out);
  const json& layer = j.at("layer");
  EXPECT_EQ(layer.at("d_model"), 1536);
  EXPECT_EQ(layer.at("n_heads"), 12);
  EXPECT_EQ(layer.at("d_ff"), 6144);
  EXPECT_EQ(layer.at("batch"), 2);
  EXPECT_EQ(layer.at("width"), "1/8");
  EXPECT_EQ(j.at("model").at("d_model"), 12288);  // the formulas stay at full width
  std::set<std::string> names;
  double logits = -1;
  for (const json& op : j.at("ops")) {
    names.insert(op.at("name").get<std::string>());
    if (op.at("name") == "fwd.head.logits") logits = op.at("flops").get<double>();
  }
  EXPECT_TRUE(names.count("rec.qkv"));
  EXPECT_TRUE(names.count("bwd.head.logits.wgrad"));
  EXPECT_EQ(logits, 2.0 * 2 * 2048 * 50257 * 1536);  // 2 T V d, T = 2 x 2048
}

// Every preset runs (gpt3-xl once exited 2: "heads (24) must divide d_model (2048)").
TEST(CliEstimate, EveryPresetRuns) {
  TempDir cwd;
  for (const char* name : {"gpt3-small", "gpt3-medium", "gpt3-large", "gpt3-xl", "gpt3-2.7b", "gpt3-6.7b", "gpt3-13b",
                           "gpt3-175b"}) {
    SCOPED_TRACE(name);
    const Outcome r = run({"estimate", "--model", name, "--format", "json"}, cwd.path());
    EXPECT_EQ(r.rc, 0) << describe(r);
  }
}

// ---- files ----------------------------------------------------------------------------------

TEST(CliOutput, WritesTheFileAtomically) {
  TempDir cwd, dir;
  const Outcome shown = run({"estimate", "--format", "json"}, cwd.path());
  ASSERT_EQ(shown.rc, 0) << describe(shown);
  for (int pass = 0; pass < 2; ++pass) {  // the second pass replaces the first file
    SCOPED_TRACE(pass);
    const Outcome r = run({"estimate", "--format", "json", "--output", dir / "out.json"}, cwd.path());
    ASSERT_EQ(r.rc, 0) << describe(r);
    EXPECT_EQ(r.out, "");
    EXPECT_EQ(r.err, "");
    // The same document, but for the command line it records (which names the output file).
    auto without_command_line = [](const std::string& text) {
      nlohmann::json j = nlohmann::json::parse(text);
      EXPECT_TRUE(j.contains("command_line"));
      j.erase("command_line");
      return j;
    };
    EXPECT_EQ(without_command_line(slurp(dir / "out.json")), without_command_line(shown.out));
    EXPECT_EQ(dir.names(), std::set<std::string>{"out.json"}) << "a temporary file was left behind";
    struct stat st {};
    ASSERT_EQ(::stat((dir / "out.json").c_str(), &st), 0);
    EXPECT_EQ(st.st_mode & 0777, 0644u);
  }
  // -o, a relative path, and the table format.
  const Outcome table = run({"estimate"}, cwd.path());
  const Outcome r = run({"estimate", "-o", "table.txt"}, cwd.path());
  ASSERT_EQ(r.rc, 0) << describe(r);
  EXPECT_EQ(slurp(cwd / "table.txt"), table.out);
  EXPECT_EQ(cwd.names(), std::set<std::string>{"table.txt"});
}

TEST(CliReport, ReproducesEveryFormat) {
  TempDir cwd;
  const Outcome saved = run({"estimate", "--width", "1/8", "--format", "json", "--output", "result.json"}, cwd.path());
  ASSERT_EQ(saved.rc, 0) << describe(saved);
  const std::string file = slurp(cwd / "result.json");
  ASSERT_FALSE(file.empty());
  const Outcome again = run({"report", "result.json", "--format", "json"}, cwd.path());
  ASSERT_EQ(again.rc, 0) << describe(again);
  EXPECT_EQ(again.out, file) << "report changed the JSON";
  EXPECT_EQ(again.err, "");
  for (const char* format : {"table", "csv", "markdown"}) {
    SCOPED_TRACE(format);
    const Outcome direct = run({"estimate", "--width", "1/8", "--format", format}, cwd.path());
    const Outcome rendered = run({"report", cwd / "result.json", "--format", format}, cwd.path());
    ASSERT_EQ(rendered.rc, 0) << describe(rendered);
    EXPECT_EQ(rendered.out, direct.out);
  }
}

// ---- bad input ------------------------------------------------------------------------------

TEST(CliErrors, BadInputIsOneLineAndExitTwo) {
  TempDir inputs, cwd;
  spit(inputs / "malformed.json", "{\"base\": \"gpt3-small\", \"n_layers\": ");
  spit(inputs / "incomplete.json", "{\"n_layers\": 2, \"n_heads\": 4}");
  spit(inputs / "not-json.txt", "this is not JSON\n");
  spit(inputs / "wrong-schema.json", "{\"schema\": \"someone-else/7\", \"command\": \"estimate\"}\n");
  spit(inputs / "no-fields.json", "{\"schema\": \"flopscope/1\", \"command\": \"estimate\"}\n");
  fs::create_directory(inputs / "a-folder");
  const std::string out = "out.json";  // relative: would land in cwd
  const std::vector<BadCase> cases = {
      {"unknown model", {"estimate", "--model", "gpt4", "-o", out}, "gpt4"},
      {"a near miss of a preset", {"estimate", "--model", "llama3-405b", "-o", out}, "did you mean llama3.1-405b?"},
      {"a shortening of a preset", {"estimate", "--model", "llama3-8b", "-o", out}, "did you mean llama3.1-8b?"},
      {"a shortening of two", {"estimate", "--model", "mixtral", "-o", out}, "did you mean mixtral-8x7b or mixtral-8x22b?"},
      {"unknown option", {"estimate", "--bogus", "-o", out}, "--bogus"},
      {"unknown subcommand", {"train"}, "subcommand"},
      {"no subcommand", {}, "subcommand"},
      {"heads do not divide d_model", {"estimate", "--heads", "7", "-o", out}, "12288"},
      {"width leaves no whole head", {"estimate", "--width", "1/7", "-o", out}, "1/7"},
      {"width zero", {"estimate", "--width", "0", "-o", out}, "--width"},
      {"width above one", {"estimate", "--width", "2", "-o", out}, "--width"},
      {"layers zero", {"estimate", "--layers", "0", "-o", out}, "--layers"},
      {"layers negative", {"estimate", "--layers", "-1", "-o", out}, "--layers"},
      {"layers negative, = form", {"estimate", "--layers=-1", "-o", out}, "--layers"},
      {"layers not a number", {"estimate", "--layers", "abc", "-o", out}, "--layers"},
      {"layers huge", {"estimate", "--layers", "1e30", "-o", out}, "--layers"},
      {"layers fractional", {"estimate", "--layers", "1.5", "-o", out}, "--layers"},
      {"d-model overflows", {"estimate", "--d-model", "99999999999999999999", "-o", out}, "--d-model"},
      {"tokens nan", {"estimate", "--tokens", "nan", "-o", out}, "--tokens"},
      {"batch zero", {"estimate", "--batch", "0", "-o", out}, "--batch"},
      {"unknown precision", {"estimate", "--precision", "fp4", "-o", out}, "fp4"},
      {"unknown gpu", {"estimate", "--gpu", "tpu", "-o", out}, "tpu"},
      {"utilization above one", {"estimate", "--utilization", "1.5", "-o", out}, "--utilization"},
      {"unknown format", {"estimate", "--format", "xml", "-o", out}, "xml"},
      {"output folder missing", {"estimate", "--output", "/nonexistent-dir/x.json"}, "/nonexistent-dir/x.json"},
      // Root can write anywhere chmod can forbid, but not into /proc.
      {"output folder refuses files", {"estimate", "--output", "/proc/flopscope-test.json"}, "/proc/flopscope-test.json"},
      {"output is a folder", {"estimate", "--output", inputs / "a-folder"}, "a-folder"},
      {"config malformed", {"estimate", "--config", inputs / "malformed.json", "-o", out}, "malformed.json"},
      {"config incomplete", {"estimate", "--config", inputs / "incomplete.json", "-o", out}, "d_model"},
      {"config missing", {"estimate", "--config", inputs / "missing.json", "-o", out}, "missing.json"},
      {"report without a file", {"report"}, "file"},
      {"report on a missing file", {"report", inputs / "missing.json", "-o", out}, "missing.json"},
      {"report on a non-JSON file", {"report", inputs / "not-json.txt", "-o", out}, "not-json.txt"},
      {"report on a wrong schema", {"report", inputs / "wrong-schema.json", "-o", out}, "someone-else/7"},
      {"report on a result missing its fields", {"report", inputs / "no-fields.json", "-o", out}, "no-fields.json"},
      {"report on a folder", {"report", inputs / "a-folder", "-o", out}, "a-folder"},
  };
  for (const auto& c : cases) expect_usage_error(c, cwd.path(), cwd.path());
}

TEST(CliErrors, ReadOnlyOutputFolder) {
  if (::geteuid() == 0) {
    GTEST_SKIP() << "running as root: chmod 555 does not stop root from writing, so this case cannot fail";
  }
  TempDir cwd;
  fs::create_directory(cwd / "ro");
  ASSERT_EQ(::chmod((cwd / "ro").c_str(), 0555), 0);
  expect_usage_error({"read-only output folder", {"estimate", "--output", cwd / "ro/x.json"}, "ro/x.json"}, cwd.path(),
                     cwd / "ro");
}

// ---- help -----------------------------------------------------------------------------------

// Each option's line in the help, which must also show its default.
void expect_option(const std::string& help, const std::string& option, const std::string& default_text) {
  SCOPED_TRACE(option);
  std::istringstream in(help);
  std::string line;
  while (std::getline(in, line)) {
    // The option as a whole word: "--gpu" must not match "--gpus".
    const auto at = line.find(option);
    if (at == std::string::npos) continue;
    const size_t end = at + option.size();
    if (end < line.size() && line[end] != ' ' && line[end] != '=' && line[end] != ',') continue;
    EXPECT_TRUE(contains(line, default_text)) << "default '" << default_text << "' missing from: " << line;
    return;
  }
  ADD_FAILURE() << "option " << option << " missing from the help:\n" << help;
}

TEST(CliHelp, AppListsItsOptionsAndSubcommands) {
  TempDir cwd;
  const Outcome r = run({"--help"}, cwd.path());
  ASSERT_EQ(r.rc, 0) << describe(r);
  EXPECT_EQ(r.err, "");
  expect_option(r.out, "--help", "");
  expect_option(r.out, "--version", "");
  expect_option(r.out, "--log-level", "=info");
  expect_option(r.out, "--quiet", "");
  for (const char* sub : {"estimate", "report"}) EXPECT_TRUE(contains(r.out, std::string("  ") + sub + " ")) << sub;
}

TEST(CliHelp, EstimateListsEveryOptionWithItsDefault) {
  TempDir cwd;
  const Outcome r = run({"estimate", "--help"}, cwd.path());
  ASSERT_EQ(r.rc, 0) << describe(r);
  EXPECT_EQ(r.err, "");
  const std::vector<std::pair<std::string, std::string>> options = {
      {"--model", "=gpt3-175b"},
      {"--config", "JSON"},  // no default: the preset is used
      {"--layers", "default: the model's"},
      {"--d-model", "default: the model's"},
      {"--heads", "default: the model's"},
      {"--seq", "default: the model's, 2048"},
      {"--vocab", "default: the model's, 50257"},
      {"--ffn-mult", "default: 4"},
      {"--tokens", "default: the model's, 300e9"},
      {"--width", "=1"},
      {"--batch", "=1"},
      {"--precision", "=bf16"},
      {"--recompute", ""},     // flags: off unless given
      {"--include-head", ""},
      {"--format", "=table"},
      {"--output", "standard output"},  // default: stdout
      {"--gpu", "=h200-sxm"},
      {"--gpus", "=1024"},
      {"--utilization", "=0.5"},
      {"--dtype", "=bf16"},
  };
  for (const auto& [option, default_text] : options) expect_option(r.out, option, default_text);
}

TEST(CliHelp, Version) {
  TempDir cwd;
  const Outcome r = run({"--version"}, cwd.path());
  EXPECT_EQ(r.rc, 0) << describe(r);
  EXPECT_TRUE(contains(r.out, "0.1.0")) << r.out;
}

}  // namespace
