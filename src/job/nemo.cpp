// NeMo (hydra) and Megatron-Bridge YAML recipes, read with yaml-cpp. ${...} interpolations
// are resolved within the file (absolute paths, relative ${.key}, ${training.x} as the NeMo
// Framework Launcher mounts the file, and the resolvers the recipes use: multiply, divide_ceil,
// divide_floor); ${oc.env:VAR} reads only --job-env. Tags construct nothing: a read value
// carrying a custom tag is a problem, never an object. A defaults list composes other files
// of the launcher's config groups, which are not read: each entry is listed.
#include <yaml-cpp/yaml.h>

#include <cmath>
#include <functional>
#include <set>

#include <fmt/format.h>

#include "job/readers.hpp"
#include "util/error.hpp"

namespace flopscope::job {

namespace {

// NeMo's GPT defaults: examples/nlp/language_modeling/conf/megatron_gpt_config.yaml and
// MegatronGPTModel's cfg.get(...) fallbacks (nemo/collections/nlp/models/language_modeling/).
constexpr const char* kNemo = "NeMo megatron_gpt_config.yaml / MegatronGPTModel default";
constexpr const char* kBridge = "Megatron-Bridge ConfigContainer / Megatron Core TransformerConfig default";

struct Resolved {
  bool present = false;  // the key is in the file
  bool known = true;
  bool null = false;
  std::string text;
  std::string why;
  int line = 0;
  std::string path;
};

class Yaml {
 public:
  Yaml(const YAML::Node& root, const std::string& file, const ReadOptions& o) : root_(root), file_(file), o_(o) {}

  // The node at a dotted path, or an undefined node.
  YAML::Node node(const std::string& path) const {
    YAML::Node n;
    n.reset(root_);
    size_t start = 0;
    while (true) {
      const size_t dot = path.find('.', start);
      const std::string key = path.substr(start, dot == std::string::npos ? std::string::npos : dot - start);
      if (!n.IsMap()) return YAML::Node(YAML::NodeType::Undefined);
      const YAML::Node& cn = n;  // const access: never inserts the key
      const YAML::Node next = cn[key];
      if (!next.IsDefined()) return YAML::Node(YAML::NodeType::Undefined);
      n.reset(next);
      if (dot == std::string::npos) return n;
      start = dot + 1;
    }
  }

  Resolved get(const std::string& path, int depth = 0) const {
    Resolved r;
    r.path = path;
    const YAML::Node n = node(path);
    if (!n.IsDefined()) return r;
    r.present = true;
    r.line = static_cast<int>(n.Mark().line) + 1;
    if (n.IsNull()) {
      r.null = true;
      return r;
    }
    // yaml-cpp keeps a tag as a string; a value with a tag other than YAML's own is not read.
    const std::string& tag = n.Tag();
    if (!tag.empty() && tag != "?" && tag != "!" &&
        (tag.rfind("tag:yaml.org,2002:", 0) != 0 || tag.find("python") != std::string::npos)) {
      r.known = false;
      r.why = fmt::format("{} (line {}) carries the tag {}: flopscope constructs nothing from tags", path, r.line, tag);
      return r;
    }
    if (!n.IsScalar()) {
      r.known = false;
      r.why = fmt::format("{} (line {}) is not a single value", path, r.line);
      return r;
    }
    const std::string parent = path.find('.') == std::string::npos ? "" : path.substr(0, path.rfind('.'));
    interpolate(n.Scalar(), parent, r, depth);
    if (r.known && (r.text == "null" || r.text == "~") && n.Scalar().find("${") != std::string::npos) r.null = true;
    return r;
  }

 private:
  // Expands ${...} in `s` (a value under `parent`) into r.text.
  void interpolate(const std::string& s, const std::string& parent, Resolved& r, int depth) const {
    if (depth > 16) {
      r.known = false;
      r.why = fmt::format("{} (line {}): interpolations nest too deep (a cycle?)", r.path, r.line);
      return;
    }
    std::string out;
    size_t i = 0;
    while (i < s.size()) {
      const size_t open = s.find("${", i);
      if (open == std::string::npos) {
        out += s.substr(i);
        break;
      }
      out += s.substr(i, open - i);
      size_t k = open + 2;
      int d = 1;
      while (k < s.size() && d > 0) {
        if (s.compare(k, 2, "${") == 0) {
          ++d;
          k += 2;
          continue;
        }
        if (s[k] == '}') --d;
        ++k;
      }
      if (d != 0) {
        r.known = false;
        r.why = fmt::format("{} (line {}): an unterminated ${{", r.path, r.line);
        return;
      }
      const std::string inner = s.substr(open + 2, k - open - 3);
      Resolved v = expression(inner, parent, r, depth);
      if (!v.known) {
        r.known = false;
        r.why = v.why;
        return;
      }
      out += v.text;
      i = k;
    }
    r.text = out;
  }

  Resolved expression(const std::string& inner, const std::string& parent, const Resolved& at, int depth) const {
    Resolved v;
    v.line = at.line;
    v.path = at.path;
    const size_t colon = inner.find(':');
    const bool is_resolver = colon != std::string::npos && inner.find("${") > colon &&
                             inner.substr(0, colon).find_first_of(" .") == std::string::npos;
    if (!is_resolver) {
      const std::string target = absolute(inner, parent);
      Resolved t = get(target, depth + 1);
      if (!t.present && target.rfind("training.", 0) == 0) t = get(target.substr(9), depth + 1);
      if (!t.present) {
        v.known = false;
        v.why = fmt::format("${{{}}} ({}, line {}) is not in the file (the launcher's config gives it)", inner, at.path,
                            at.line);
        return v;
      }
      if (t.null) {
        v.text = "null";
        return v;
      }
      return t;
    }
    const std::string name = inner.substr(0, colon);
    // Arguments: split on commas outside ${...}.
    std::vector<std::string> args;
    int d = 0;
    std::string cur;
    for (size_t k = colon + 1; k < inner.size(); ++k) {
      if (inner.compare(k, 2, "${") == 0) ++d;
      if (inner[k] == '}') --d;
      if (inner[k] == ',' && d == 0) {
        args.push_back(cur);
        cur.clear();
        continue;
      }
      cur += inner[k];
    }
    args.push_back(cur);
    std::vector<std::string> vals;
    for (std::string a : args) {
      a.erase(0, a.find_first_not_of(" \t"));
      a.erase(a.find_last_not_of(" \t") + 1);
      Resolved sub;
      sub.line = at.line;
      sub.path = at.path;
      interpolate(a, parent, sub, depth + 1);
      if (!sub.known) return sub;
      vals.push_back(sub.text);
    }
    if (name == "oc.env") {
      const auto it = o_.env.find(vals.empty() ? "" : vals[0]);
      if (it != o_.env.end()) {
        v.text = it->second;
      } else if (vals.size() > 1) {
        v.text = vals[1];
      } else {
        v.known = false;
        v.why = fmt::format("${{{}}} ({}, line {}) reads the environment, which is not read; pass --job-env {}=VALUE",
                            inner, at.path, at.line, vals.empty() ? "VAR" : vals[0]);
      }
      return v;
    }
    if ((name == "multiply" || name == "divide_ceil" || name == "divide_floor") && vals.size() == 2) {
      try {
        size_t u0 = 0, u1 = 0;
        const double a = std::stod(vals[0], &u0), b = std::stod(vals[1], &u1);
        if (u0 == vals[0].size() && u1 == vals[1].size() && (name == "multiply" || b != 0)) {
          const double x = name == "multiply" ? a * b : name == "divide_ceil" ? std::ceil(a / b) : std::floor(a / b);
          v.text = x == std::floor(x) && std::abs(x) < 9e15 ? std::to_string(static_cast<int64_t>(x)) : fmt::format("{}", x);
          return v;
        }
      } catch (const std::exception&) {
      }
    }
    v.known = false;
    v.why = fmt::format("${{{}}} ({}, line {}) is a resolver flopscope does not evaluate (it knows multiply, "
                        "divide_ceil, divide_floor, oc.env)",
                        inner, at.path, at.line);
    return v;
  }

  // ${.x} and ${..x} relative to the value's parent; anything else from the root.
  static std::string absolute(const std::string& ref, const std::string& parent) {
    if (ref.empty() || ref[0] != '.') return ref;
    size_t dots = 0;
    while (dots < ref.size() && ref[dots] == '.') ++dots;
    std::string base = parent;
    for (size_t up = 1; up < dots; ++up) base = base.find('.') == std::string::npos ? "" : base.substr(0, base.rfind('.'));
    return base.empty() ? ref.substr(dots) : base + "." + ref.substr(dots);
  }

  const YAML::Node& root_;
  const std::string& file_;
  const ReadOptions& o_;
};

class NemoReader {
 public:
  NemoReader(Job& j, const Yaml& y, const YAML::Node& root, bool bridge, const ReadOptions& o)
      : j_(j), y_(y), root_(root), bridge_(bridge), o_(o) {}

  void read() {
    defaults_list();
    read_model();
    read_layout();
    list_the_rest();
  }

 private:
  const char* dflt() const { return bridge_ ? kBridge : kNemo; }

  static std::string where(const Resolved& r) { return fmt::format("line {}: {}: {}", r.line, r.path, r.text); }

  // A value of the first of `paths` present; a problem when not known.
  Resolved value(std::initializer_list<const char*> paths, const std::string& settled_by) {
    for (const char* p : paths) used_.insert(p);
    for (const char* p : paths) {
      Resolved r = y_.get(p);
      if (!r.present) continue;
      if (!r.known) {
        j_.problem(fmt::format("{} has no known value: {}{}", p, r.why,
                               settled_by.empty() ? "" : fmt::format("; pass the flag for {}", settled_by)),
                   settled_by.empty() ? std::set<std::string>{} : std::set<std::string>{settled_by});
        r.present = false;
      }
      return r;
    }
    return {};
  }

  std::optional<int64_t> count(const Resolved& r) {
    if (!r.present || r.null) return std::nullopt;
    if (const auto v = positive_whole(r.text)) return v;
    throw UsageError(fmt::format("{}: {}: '{}' is not a positive whole number", j_.file, where(r), r.text));
  }

  std::optional<bool> boolean(const Resolved& r) {
    if (!r.present || r.null) return std::nullopt;
    static const std::set<std::string> yes = {"true", "True", "TRUE", "yes", "on"}, no = {"false", "False", "FALSE", "no", "off"};
    if (yes.count(r.text)) return true;
    if (no.count(r.text)) return false;
    throw UsageError(fmt::format("{}: {}: '{}' is not true or false", j_.file, where(r), r.text));
  }

  void model_count(std::initializer_list<const char*> paths, std::optional<int64_t> ModelOverrides::*field,
                   const std::string& name, bool required) {
    const Resolved r = value(paths, name);
    if (const auto v = count(r)) {
      set_model(j_, field, name, *v, *v, From::file, where(r));
    } else if (required && !r.present) {
      j_.problem(fmt::format("{} is not given; pass the flag for {}", *paths.begin(), name), {name});
    }
  }

  void defaults_list() {
    used_.insert("defaults");
    const YAML::Node d = root_["defaults"];
    if (!d.IsDefined()) return;
    const int line = static_cast<int>(d.Mark().line) + 1;
    if (!d.IsSequence()) throw UsageError(fmt::format("{}: line {}: defaults must be a list", j_.file, line));
    for (const auto& e : d) {
      const int el = static_cast<int>(e.Mark().line) + 1;
      if (e.IsScalar()) {
        if (e.Scalar() == "_self_") continue;
        j_.not_given.push_back({"defaults: " + e.Scalar(), fmt::format("line {}", el),
                                "another file of the launcher's config groups: not read"});
        continue;
      }
      if (!e.IsMap()) continue;
      for (auto it = e.begin(); it != e.end(); ++it) {
        const std::string key = it->first.as<std::string>();
        const std::string val = it->second.IsScalar() ? it->second.Scalar() : "";
        // "optional tp_overlap@model.ub_tp_comm_overlap_cfg: ub_cfg_...": the package it fills.
        const size_t at = key.find('@');
        const std::string package = at == std::string::npos ? key.substr(key.rfind(' ') + 1) : key.substr(at + 1);
        const bool harmless = package.find("ub_tp_comm_overlap_cfg") != std::string::npos ||
                              package.rfind("hydra", 0) == 0 || package.rfind("run", 0) == 0 ||
                              package.rfind("exp_manager", 0) == 0 || package.rfind("cluster", 0) == 0;
        if (harmless) {
          j_.not_given.push_back({fmt::format("defaults: {}: {}", key, val), fmt::format("line {}", el),
                                  "another file of the launcher's config groups: not read (it sets " + package +
                                      ", which does not change the modelled cost)"});
        } else {
          j_.problem(fmt::format("the defaults list (line {}) composes {} from '{}: {}', another file flopscope does "
                                 "not read; write its values into the recipe",
                                 el, package, key, val));
        }
      }
    }
  }

  void read_model() {
    const char* seq = bridge_ ? "model.seq_length" : "model.encoder_seq_length";
    model_count({"model.num_layers"}, &ModelOverrides::n_layers, "layers", true);
    model_count({"model.hidden_size"}, &ModelOverrides::d_model, "d_model", true);
    model_count({"model.num_attention_heads"}, &ModelOverrides::n_heads, "heads", true);
    model_count({seq}, &ModelOverrides::n_ctx, "seq", true);
    if (!bridge_) {
      const Resolved ds = value({"model.data.seq_length"}, "seq");
      if (ds.present && !ds.null && j_.model.n_ctx && count(ds) != j_.model.n_ctx)
        throw UsageError(fmt::format("{}: {} differs from {} ({}); the recipe contradicts itself: pass --seq N",
                                     j_.file, where(ds), seq, j_.find("seq")->where));
    }
    const int64_t h = j_.model.d_model.value_or(0), heads = j_.model.n_heads.value_or(0);
    const Resolved kv = value({"model.kv_channels"}, "d_head");
    if (const auto d = count(kv)) {
      set_model(j_, &ModelOverrides::d_head, "d_head", *d, *d, From::file, where(kv));
    } else if (h && heads && h % heads == 0) {
      j_.record("d_head", h / heads, From::framework_default, fmt::format("{}: kv_channels null = hidden / heads", dflt()));
    }
    const Resolved g = value({"model.num_query_groups"}, "kv_heads");
    if (const auto q = count(g)) {
      set_model(j_, &ModelOverrides::n_kv_heads, "kv_heads", *q, *q, From::file, where(g));
    } else if (heads) {
      j_.record("kv_heads", heads, From::framework_default, fmt::format("{}: num_query_groups null = heads", dflt()));
    }

    // FFN: NeMo's activation (gelu default), Bridge's gated_linear_unit.
    bool swiglu = false;
    std::string ffn_where;
    if (bridge_) {
      const Resolved glu = value({"model.gated_linear_unit"}, "ffn");
      swiglu = boolean(glu).value_or(false);
      ffn_where = glu.present ? where(glu) : fmt::format("{}: gated_linear_unit false", dflt());
      used_.insert("model.activation_func");
    } else {
      const Resolved act = value({"model.activation"}, "ffn");
      const std::string a = act.present && !act.null ? act.text : "gelu";
      if (a == "swiglu" || a == "fast-swiglu") {
        swiglu = true;
      } else if (a != "gelu" && a != "fast-gelu" && a != "approx-gelu") {
        j_.problem(fmt::format("{}: only gelu and swiglu are modelled; pass --ffn KIND", where(act)), {"ffn"});
      }
      ffn_where = act.present ? where(act) : fmt::format("{}: activation gelu", dflt());
    }
    set_model(j_, &ModelOverrides::ffn, "ffn", swiglu ? FfnKind::swiglu : FfnKind::gelu, swiglu ? "swiglu" : "gelu",
              ffn_where.rfind("line", 0) == 0 ? From::file : From::framework_default, ffn_where);
    model_count({"model.ffn_hidden_size"}, &ModelOverrides::d_ff, "d_ff", true);

    const Resolved nm = value({"model.normalization"}, "norm");
    const std::string n = nm.present && !nm.null ? nm.text : "layernorm";
    if (n != "layernorm" && n != "rmsnorm" && n != "LayerNorm" && n != "RMSNorm")
      j_.problem(fmt::format("{}: only layernorm and rmsnorm are modelled; pass --norm KIND", where(nm)), {"norm"});
    const bool rms = n == "rmsnorm" || n == "RMSNorm";
    set_model(j_, &ModelOverrides::norm, "norm", rms ? NormKind::rmsnorm : NormKind::layernorm, rms ? "rmsnorm" : "layernorm",
              nm.present ? From::file : From::framework_default,
              nm.present ? where(nm) : fmt::format("{}: normalization layernorm", dflt()));

    const Resolved pe = value({"model.position_embedding_type"}, "position");
    const std::string p = pe.present && !pe.null ? pe.text : "learned_absolute";
    if (p == "rope") {
      set_model(j_, &ModelOverrides::position, "position", PositionKind::rope, "rope", From::file, where(pe));
      const Resolved rb = value({"model.rotary_base"}, "rope_theta");
      const double theta = rb.present && !rb.null ? std::stod(rb.text) : 10000.0;
      set_model(j_, &ModelOverrides::rope_theta, "rope_theta", theta, theta, rb.present ? From::file : From::framework_default,
                rb.present ? where(rb) : fmt::format("{}: rotary_base 10000", dflt()));
      const Resolved rp = value({"model.rotary_percentage", "model.rotary_percent"}, "position");
      if (rp.present && !rp.null && std::stod(rp.text) != 1.0)
        j_.problem(fmt::format("{}: RoPE on part of each head is not modelled", where(rp)), {"position"});
      used_.insert("model.max_position_embeddings");
    } else if (p == "learned_absolute") {
      set_model(j_, &ModelOverrides::position, "position", PositionKind::learned, "learned",
                pe.present ? From::file : From::framework_default,
                pe.present ? where(pe) : fmt::format("{}: position_embedding_type learned_absolute", dflt()));
      const Resolved mp = value({"model.max_position_embeddings"}, "");
      if (const auto rows = count(mp)) set_model(j_, &ModelOverrides::n_positions, "position_rows", *rows, *rows, From::file, where(mp));
      used_.insert("model.rotary_base");
      used_.insert("model.rotary_percentage");
    } else {
      j_.problem(fmt::format("{}: only rope and learned_absolute are modelled; pass --position KIND", where(pe)), {"position"});
    }

    const Resolved bias = value({bridge_ ? "model.add_bias_linear" : "model.bias"}, "bias");
    const bool with_bias = boolean(bias).value_or(true);
    LinearBiases b = with_bias ? LinearBiases{} : LinearBiases{false, false, false};
    if (bridge_ && boolean(value({"model.add_qkv_bias"}, "bias")).value_or(false)) b.qkv = true;
    set_model(j_, &ModelOverrides::biases, "bias", b, to_string(b), bias.present ? From::file : From::framework_default,
              bias.present ? where(bias) : fmt::format("{}: every linear layer has a bias", dflt()));
    const Resolved tie = value({"model.share_embeddings_and_output_weights"}, "tie_embeddings");
    const bool tied = boolean(tie).value_or(true);
    set_model(j_, &ModelOverrides::tied_embeddings, "tie_embeddings", tied, tied ? "on" : "off",
              tie.present ? From::file : From::framework_default,
              tie.present ? where(tie) : fmt::format("{}: share_embeddings_and_output_weights true", dflt()));
    j_.model.count_final_norm = true;

    read_vocab();

    read_moe();
  }

  // Mixture of experts: Megatron Core's settings (moe.cpp) as model.<name>; without
  // model.num_moe_experts (or with 1) the model.moe_* keys do nothing (a dense model).
  void read_moe() {
    const Resolved ex = value({"model.num_moe_experts"}, "");
    const bool moe = ex.present && !ex.null && count(ex).value_or(1) > 1;
    MoeGiven given;
    for (const MoeKey& k : megatron_core_moe_keys()) {
      const std::string path = "model." + k.name;
      const Resolved r = value({path.c_str()}, "");  // read even in a dense model: not listed as unknown
      if (!r.present || !moe) continue;
      if (!k.ignored_why.empty()) {
        j_.ignored.push_back({path, fmt::format("line {}", r.line), k.ignored_why});
        continue;
      }
      given[k.name] = {r.null ? "null" : r.text, where(r)};
    }
    read_megatron_core_moe(j_, given, j_.model.n_layers.value_or(0), j_.model.d_ff);
  }

  void read_vocab() {
    const Resolved div = value({"model.make_vocab_size_divisible_by"}, "vocab");
    j_.vocab_divisible_by = count(div).value_or(128);
    j_.divisible_where = div.present ? where(div) : fmt::format("{}: make_vocab_size_divisible_by 128", dflt());
    if (bridge_) {
      const Resolved vs = value({"model.vocab_size"}, "vocab");
      if (const auto v = count(vs)) {
        j_.tokenizer_vocab = *v;
        j_.tokenizer_where = where(vs);
      } else {
        j_.problem("model.vocab_size is not given (the tokenizer sets it); pass --vocab N", {"vocab"});
      }
      return;
    }
    const Resolved type = value({"model.tokenizer.type"}, "vocab");
    const Resolved lib = value({"model.tokenizer.library"}, "vocab");
    for (const char* k : {"model.tokenizer.model", "model.tokenizer.vocab_file", "model.tokenizer.merge_file",
                          "model.tokenizer.delimiter", "model.tokenizer.sentencepiece_legacy", "model.tokenizer.use_fast"})
      used_.insert(k);
    if (type.present && !type.null && type.text == "GPT2BPETokenizer") {
      j_.tokenizer_vocab = 50257;
      j_.tokenizer_where = where(type) + ": GPT-2 BPE's 50257 tokens";
    } else {
      j_.problem(fmt::format("the vocabulary: the tokenizer ({}{}) reads its size from its own files, which a recipe "
                             "does not give; pass --vocab N (the size NeMo runs: the tokenizer's, padded to a multiple "
                             "of make_vocab_size_divisible_by x tp)",
                             lib.present ? "library " + lib.text : "model.tokenizer",
                             type.present && !type.null ? ", type " + type.text + fmt::format(", line {}", type.line)
                                                        : fmt::format(", line {}", lib.line)),
                 {"vocab"});
    }
  }

  void layout_count(std::initializer_list<const char*> paths, std::optional<int64_t> JobLayout::*field,
                    const std::string& name, std::optional<int64_t> fallback) {
    const Resolved r = value(paths, name);
    if (const auto v = count(r)) {
      j_.layout.*field = *v;
      j_.record(name, *v, From::file, where(r));
    } else if (fallback && (r.null || !r.present)) {
      j_.layout.*field = *fallback;
      j_.record(name, *fallback, r.null ? From::file : From::framework_default,
                r.null ? fmt::format("line {}: {}: null", r.line, r.path)
                       : fmt::format("{}: {} {}", dflt(), *paths.begin(), *fallback));
    }
  }

  void layout_bool(std::initializer_list<const char*> paths, std::optional<bool> JobLayout::*field, const std::string& name,
                   bool fallback) {
    const Resolved r = value(paths, name);
    const auto v = boolean(r);
    j_.layout.*field = v.value_or(fallback);
    j_.record(name, v.value_or(fallback) ? "on" : "off", v ? From::file : From::framework_default,
              v ? where(r) : fmt::format("{}: {} {}", dflt(), *paths.begin(), fallback ? "true" : "false"));
  }

  void read_layout() {
    if (!bridge_) {
      const Resolved nodes = value({"trainer.num_nodes"}, "gpus"), dev = value({"trainer.devices"}, "gpus");
      const auto nn = count(nodes).value_or(1), nd = count(dev).value_or(1);
      if (nodes.present || dev.present) {
        j_.layout.gpus = nn * nd;
        j_.record("gpus", nn * nd, From::derived,
                  fmt::format("{} nodes ({}) x {} devices ({})", nn,
                              nodes.present ? where(nodes) : "trainer.num_nodes default 1", nd,
                              dev.present ? where(dev) : "trainer.devices default 1"));
      }
    }
    layout_count({"model.tensor_model_parallel_size"}, &JobLayout::tp, "tp", 1);
    layout_count({"model.pipeline_model_parallel_size"}, &JobLayout::pp, "pp", 1);
    layout_count({"model.virtual_pipeline_model_parallel_size"}, &JobLayout::vpp, "vpp", 1);
    layout_count({"model.context_parallel_size"}, &JobLayout::cp, "cp", 1);
    layout_count({"model.expert_model_parallel_size"}, &JobLayout::ep, "ep", 1);
    layout_count({"model.expert_tensor_parallel_size"}, &JobLayout::etp, "etp", std::nullopt);  // default: tp
    const char* mb = bridge_ ? "train.micro_batch_size" : "model.micro_batch_size";
    const char* gb = bridge_ ? "train.global_batch_size" : "model.global_batch_size";
    layout_count({mb}, &JobLayout::micro_batch, "micro_batch", std::nullopt);
    if (!j_.layout.micro_batch) j_.problem(fmt::format("{} is not given; pass --micro-batch N", mb), {"micro_batch"});
    layout_count({gb}, &JobLayout::global_batch, "global_batch", std::nullopt);
    if (!j_.layout.global_batch) j_.problem(fmt::format("{} is not given; pass --global-batch N", gb), {"global_batch"});
    const Resolved ramp = value({"model.rampup_batch_size"}, "");
    if (ramp.present && !ramp.null)
      j_.ignored.push_back({"model.rampup_batch_size", fmt::format("line {}", ramp.line),
                            "the batch ramp-up at the start: the steady state (global_batch_size) is modelled"});
    layout_bool({"model.sequence_parallel"}, &JobLayout::sequence_parallel, "sequence_parallel", false);
    layout_bool({"model.account_for_embedding_in_pipeline_split"}, &JobLayout::embedding_in_split,
                "account_for_embedding_in_pipeline_split", false);
    layout_bool({"model.account_for_loss_in_pipeline_split"}, &JobLayout::loss_in_split,
                "account_for_loss_in_pipeline_split", false);

    // Precision.
    const Resolved fp8 = value({"model.fp8"}, "precision");
    for (const char* k : {"model.fp8_e4m3", "model.fp8_hybrid", "model.fp8_margin", "model.fp8_interval",
                          "model.fp8_amax_history_len", "model.fp8_amax_compute_algo", "model.fp8_wgrad",
                          "model.fp8_params", "model.reduce_amax", "model.fp8_recipe"})
      used_.insert(k);
    if (boolean(fp8).value_or(false)) {
      j_.layout.precision = "fp8";
      j_.record("precision", "fp8", From::file, where(fp8));
      used_.insert("trainer.precision");
      used_.insert("model.precision");
    } else {
      const Resolved pr = value({bridge_ ? "mixed_precision" : "trainer.precision"}, "precision");
      used_.insert("model.precision");
      const std::string t = pr.present && !pr.null ? pr.text : (bridge_ ? "" : "16");
      if (t == "bf16" || t == "bf16-mixed" || t == "bf16_mixed" || t == "bf16_with_fp8_delayed_scaling_mixed") {
        j_.layout.precision = "bf16";
      } else if (t == "16" || t == "16-mixed" || t == "fp16" || t == "fp16-mixed" || t == "16_mixed" || t == "fp16_mixed") {
        j_.layout.precision = "fp16";
      } else {
        j_.problem(fmt::format("precision '{}' ({}) is not a training precision predict models; pass --precision "
                               "bf16|fp16|fp8",
                               t, pr.present ? fmt::format("line {}", pr.line) : "not given"),
                   {"precision"});
      }
      if (j_.layout.precision)
        j_.record("precision", *j_.layout.precision, pr.present ? From::file : From::framework_default,
                  pr.present ? where(pr) : fmt::format("{}: trainer.precision 16", dflt()));
    }

    // Activation recompute.
    const Resolved gran = value({bridge_ ? "model.recompute_granularity" : "model.activations_checkpoint_granularity"},
                                "recompute");
    const Resolved method = value({bridge_ ? "model.recompute_method" : "model.activations_checkpoint_method"}, "recompute");
    const Resolved layers = value({bridge_ ? "model.recompute_num_layers" : "model.activations_checkpoint_num_layers"},
                                  "recompute");
    for (const char* k : {"model.num_micro_batches_with_partial_activation_checkpoints",
                          "model.activations_checkpoint_layers_per_pipeline"})
      used_.insert(k);
    if (!gran.present || gran.null) {
      j_.layout.recompute = "none";
      j_.record("recompute", "none", gran.present ? From::file : From::framework_default,
                gran.present ? fmt::format("line {}: {}: null (method and layers apply only with a granularity)",
                                           gran.line, gran.path)
                             : fmt::format("{}: no activation checkpointing", dflt()));
    } else if (gran.text == "selective") {
      j_.layout.recompute = "selective";
      j_.record("recompute", "selective", From::file, where(gran));
    } else if (gran.text == "full") {
      const int64_t L = j_.model.n_layers.value_or(0), pp = j_.layout.pp.value_or(1);
      const int64_t per_stage = pp > 0 ? (L + pp - 1) / pp : L;
      const std::string m = method.present && !method.null ? method.text : "";
      const int64_t n = method.present ? count(layers).value_or(1) : 1;
      if (m == "uniform" || (m == "block" && n >= per_stage)) {
        j_.layout.recompute = "full";
        j_.record("recompute", "full", From::file, where(gran) + "; " + where(method));
      } else {
        j_.problem(fmt::format("{} with method '{}' and {} layers: only every layer (uniform, or block over all {} "
                               "layers a stage) is modelled; pass --recompute MODE",
                               where(gran), m, n, per_stage),
                   {"recompute"});
      }
    } else {
      j_.problem(fmt::format("{}: unknown granularity; pass --recompute MODE", where(gran)), {"recompute"});
    }

    // Attention kernel, optimizer, overlap.
    read_attention();
    if (bridge_) {
      layout_bool({"optimizer.use_distributed_optimizer", "ddp.use_distributed_optimizer"}, &JobLayout::distributed_optimizer,
                  "distributed_optimizer", false);
      layout_bool({"ddp.overlap_grad_reduce"}, &JobLayout::dp_overlap, "dp_overlap", false);
      layout_bool({"comm_overlap.tp_comm_overlap"}, &JobLayout::tp_comm_overlap, "tp_comm_overlap", false);
      layout_bool({"comm_overlap.overlap_moe_expert_parallel_comm", "model.overlap_moe_expert_parallel_comm"},
                  &JobLayout::ep_comm_overlap, "ep_comm_overlap", false);
    } else {
      const Resolved opt = value({"model.optim.name"}, "distributed_optimizer");
      const bool dist = opt.present && (opt.text == "distributed_fused_adam" || opt.text == "mcore_distributed_optim");
      if (opt.present && !dist && opt.text != "fused_adam" && opt.text != "adam" && opt.text != "adamw")
        j_.problem(fmt::format("{}: predict models Adam's optimizer step", where(opt)), {});
      j_.layout.distributed_optimizer = dist;
      j_.record("distributed_optimizer", dist ? "on" : "off", opt.present ? From::file : From::framework_default,
                opt.present ? where(opt) : fmt::format("{}: optim.name fused_adam", dflt()));
      layout_bool({"model.optim.overlap_grad_sync"}, &JobLayout::dp_overlap, "dp_overlap", false);
      layout_bool({"model.ub_tp_comm_overlap"}, &JobLayout::tp_comm_overlap, "tp_comm_overlap", false);
      layout_bool({"model.overlap_moe_expert_parallel_comm"}, &JobLayout::ep_comm_overlap, "ep_comm_overlap", false);
    }
    const Resolved fsdp = value({"model.fsdp"}, "fsdp");
    if (boolean(fsdp).value_or(false)) {
      j_.layout.fsdp = -1;
      j_.record("fsdp", "every data-parallel GPU", From::file, where(fsdp));
    }
    for (const char* k : {"model.fsdp_sharding_strategy", "model.fsdp_grad_reduce_dtype", "model.fsdp_sharded_checkpoint"})
      used_.insert(k);
    const Resolved steps = value({bridge_ ? "train.train_iters" : "trainer.max_steps"}, "");
    if (const auto s = count(steps)) {
      j_.layout.train_steps = *s;
      j_.record("train_steps", *s, From::file, where(steps));
    }
  }

  // The attention kernel. Megatron-Bridge, and NeMo with Megatron Core and Transformer Engine
  // (model.mcore_gpt and model.transformer_engine, both false by MegatronGPTModel's cfg.get):
  // Transformer Engine's DotProductAttention under model.attention_backend (auto, the default,
  // picks its flash or cuDNN fused kernel; megatron_base_model.py build_transformer_config), where
  // model.use_flash_attention "does nothing" (megatron_gpt_config.yaml). Megatron Core without
  // Transformer Engine: its local DotProductAttention, unfused. NeMo's legacy model (no
  // mcore_gpt): model.use_flash_attention.
  void read_attention() {
    auto fused = [](const Resolved& r) {
      return !r.present || r.null || r.text == "flash" || r.text == "fused" || r.text == "auto" ||
             r.text == "AttnBackend.auto" || r.text == "AttnBackend.flash" || r.text == "AttnBackend.fused";
    };
    if (bridge_) {
      const Resolved fa = value({"model.attention_backend"}, "attention");
      j_.layout.attention = fused(fa) ? "flash" : "unfused";
      j_.record("attention", *j_.layout.attention, fa.present ? From::file : From::framework_default,
                fa.present ? where(fa) : fmt::format("{}: attention_backend auto (a fused kernel)", dflt()));
      return;
    }
    const Resolved mc = value({"model.mcore_gpt"}, "attention"), te = value({"model.transformer_engine"}, "attention");
    const bool mcore = boolean(mc).value_or(false), with_te = boolean(te).value_or(false);
    auto said = [&](const Resolved& r, const char* key) {
      return r.present ? where(r) : fmt::format("{}: {} false", dflt(), key);
    };
    if (mcore && with_te) {
      const Resolved ab = value({"model.attention_backend"}, "attention");
      const Resolved fa = value({"model.use_flash_attention"}, "");
      j_.layout.attention = fused(ab) ? "flash" : "unfused";
      std::string why = fmt::format("Transformer Engine's attention ({}; {}): {}", said(mc, "mcore_gpt"),
                                    said(te, "transformer_engine"),
                                    ab.present ? where(ab) : "attention_backend auto (a flash or cuDNN fused kernel)");
      if (fa.present) why += fmt::format("; {} does nothing with Transformer Engine", where(fa));
      j_.record("attention", *j_.layout.attention, ab.present ? From::file : From::framework_default, why);
    } else if (mcore) {
      value({"model.use_flash_attention"}, "");
      j_.layout.attention = "unfused";
      j_.record("attention", "unfused", From::file,
                fmt::format("Megatron Core's local attention, unfused ({}; {})", said(mc, "mcore_gpt"),
                            said(te, "transformer_engine")));
    } else {
      const Resolved fa = value({"model.use_flash_attention"}, "attention");
      j_.layout.attention = boolean(fa).value_or(false) ? "flash" : "unfused";
      j_.record("attention", *j_.layout.attention, fa.present ? From::file : From::framework_default,
                fa.present ? where(fa) : fmt::format("{}: use_flash_attention false", dflt()));
    }
  }

  // Every leaf not read: ignored (whole sections collapsed), or a problem when its name says it
  // may change the cost.
  void list_the_rest() {
    static const std::vector<std::pair<std::string, std::string>> sections = {
        {"hydra", "hydra's search path"}, {"run", "the launcher's run settings"},
        {"exp_manager", "logging and checkpoints"}, {"model.data", "data"}, {"model.optim", "optimizer hyperparameters"},
        {"model.nsys_profile", "profiling"}, {"model.ub_tp_comm_overlap_cfg", "tensor-parallel communication overlap tuning"},
        {"model.tokenizer", "the tokenizer's files"}, {"model.mcore_customization_config", "implementation options"},
        {"logger", "logging"}, {"checkpoint", "checkpoints"}, {"dataset", "data"}, {"tokenizer", "the tokenizer's files"},
        {"scheduler", "learning-rate schedule"}, {"profiling", "profiling"}, {"rng", "random seeds"}, {"rerun_state_machine", "fault handling"},
        {"optimizer", "optimizer hyperparameters"}, {"ddp", "DDP settings"}, {"train", "training-loop settings"},
        {"dist", "process-group settings"}, {"comm_overlap", "communication overlap tuning"},
    };
    static const std::map<std::string, std::string> irrelevant = {
        {"trainer.accelerator", "gpu"}, {"trainer.logger", "logging"}, {"trainer.enable_checkpointing", "checkpoints"},
        {"trainer.use_distributed_sampler", "data"}, {"trainer.replace_sampler_ddp", "data"}, {"trainer.max_epochs", "the run's length (max_steps is read)"},
        {"trainer.max_time", "the run's length"}, {"trainer.log_every_n_steps", "logging"},
        {"trainer.val_check_interval", "evaluation"}, {"trainer.limit_val_batches", "evaluation"},
        {"trainer.limit_test_batches", "evaluation"}, {"trainer.accumulate_grad_batches", "NeMo sets it from the global batch"},
        {"trainer.gradient_clip_val", "gradient clipping"}, {"trainer.num_sanity_val_steps", "evaluation"}, {"trainer.benchmark", "cuDNN autotuning"},
        {"model.init_method_std", "initialisation"},
        {"model.use_scaled_init_method", "initialisation"}, {"model.hidden_dropout", "dropout"},
        {"model.attention_dropout", "dropout"}, {"model.ffn_dropout", "dropout"},
        {"model.apply_query_key_layer_scaling", "numerics"}, {"model.layernorm_epsilon", "numerics"},
        {"model.do_layer_norm_weight_decay", "optimizer"}, {"model.pre_process", "the first stage's embedding (read)"},
        {"model.post_process", "the last stage's head (read)"}, {"model.persist_layer_norm", "a kernel choice"},
        {"model.headscale", "off"}, {"model.transformer_block_type", "pre-LN (what is modelled)"},
        {"model.openai_gelu", "a GeLU variant (same cost)"}, {"model.normalize_attention_scores", "numerics"},
        {"model.apply_rope_fusion", "a kernel fusion"}, {"model.attention_type", "multihead (what is modelled)"},
        {"model.scale_positional_embedding", "RoPE scaling (same cost)"}, {"model.native_amp_init_scale", "loss scaling"},
        {"model.native_amp_growth_interval", "loss scaling"}, {"model.hysteresis", "loss scaling"},
        {"model.fp32_residual_connection", "numerics"}, {"model.fp16_lm_cross_entropy", "numerics"},
        {"model.megatron_amp_O2", "mixed-precision bookkeeping"}, {"model.grad_allreduce_chunk_size_mb", "reduction bucket size"},
        {"model.grad_div_ar_fusion", "a fusion"}, {"model.gradient_accumulation_fusion", "a fusion"},
        {"model.bias_activation_fusion", "a fusion"}, {"model.bias_dropout_add_fusion", "a fusion"},
        {"model.masked_softmax_fusion", "a fusion"}, {"model.cross_entropy_loss_fusion", "a fusion"},
        {"model.get_attention_mask_from_fusion", "a fusion"}, {"model.seed", "random seed"},
        {"model.resume_from_checkpoint", "checkpoints"}, {"model.use_cpu_initialization", "initialisation"},
        {"model.onnx_safe", "export"}, {"model.apex_transformer_log_level", "logging"},
        {"model.gradient_as_bucket_view", "DDP memory layout"}, {"model.sync_batch_comm", "a communication detail"},
        {"model.defer_embedding_wgrad_compute", "scheduling of the embedding's weight gradient"},
        {"model.wgrad_deferral_limit", "scheduling of the embedding's weight gradient"},
        {"model.deterministic_mode", "determinism"},
        {"model.use_emha", "off"},
        {"model.tp_comm_atomic_ag", "tensor-parallel communication detail"}, {"model.tp_comm_atomic_rs", "tensor-parallel communication detail"},
        {"model.overlap_p2p_comm", "pipeline send overlap (not modelled)"}, {"model.batch_p2p_comm", "pipeline send batching"},
        {"model.gc_interval", "Python garbage collection"}, {"model.sharp", "SHARP reductions (not modelled)"},
        {"model.seq_len_interpolation_factor", "RoPE interpolation (same cost)"},
        {"model.moe_grouped_gemm", "MoE kernel choice"}, {"model.moe_token_dispatcher_type", "MoE dispatch"},
        {"model.moe_pad_expert_input_to_capacity", "MoE padding"}, {"model.moe_expert_capacity_factor", "MoE capacity"},
        {"model.moe_aux_loss_coeff", "MoE loss"}, {"model.moe_router_topk", "MoE routing (with num_moe_experts)"},
        {"model.rampup_batch_size", "read"}, {"model.precision", "read"},
    };
    std::function<void(const YAML::Node&, const std::string&)> walk = [&](const YAML::Node& n, const std::string& path) {
      for (const auto& [prefix, why] : sections) {
        if (path == prefix) {
          bool any_unused = false;
          std::function<void(const YAML::Node&, const std::string&)> check = [&](const YAML::Node& m, const std::string& p) {
            if (m.IsMap()) {
              for (auto it = m.begin(); it != m.end(); ++it) check(it->second, p + "." + it->first.as<std::string>());
            } else if (!used_.count(p)) {
              any_unused = true;
            }
          };
          check(n, path);
          if (any_unused) j_.ignored.push_back({path + " (the section)", fmt::format("line {}", n.Mark().line + 1), why});
          return;
        }
      }
      if (n.IsMap()) {
        for (auto it = n.begin(); it != n.end(); ++it) {
          const std::string key = it->first.as<std::string>();
          walk(it->second, path.empty() ? key : path + "." + key);
        }
        return;
      }
      if (used_.count(path)) return;
      const int line = static_cast<int>(n.Mark().line) + 1;
      if (auto it = irrelevant.find(path); it != irrelevant.end()) {
        j_.ignored.push_back({path, fmt::format("line {}", line), it->second});
      } else if (o_.ignore.count(path)) {
        j_.ignored.push_back({path, fmt::format("line {}", line), "--job-ignore: you said it does not change the cost"});
      } else if (may_change_cost(path)) {
        j_.problem(fmt::format("{} (line {}) may change the cost and is not understood; pass --job-ignore {} if it "
                               "does not",
                               path, line, path));
      } else {
        j_.ignored.push_back({path, fmt::format("line {}", line), "not a key flopscope knows; read as not changing the cost"});
      }
    };
    walk(root_, "");
  }

  Job& j_;
  const Yaml& y_;
  const YAML::Node& root_;
  bool bridge_;
  const ReadOptions& o_;
  std::set<std::string> used_;
};

}  // namespace

Job read_nemo(const std::string& text, const std::string& path, const ReadOptions& o) {
  YAML::Node root;
  try {
    root = YAML::Load(text);
  } catch (const YAML::Exception& e) {
    throw UsageError(fmt::format("{}: line {}: not valid YAML ({})", path, e.mark.line + 1, e.msg));
  }
  if (!root.IsMap()) throw UsageError(fmt::format("{}: a recipe must be a YAML mapping", path));
  const YAML::Node& croot = root;  // const access: never inserts a key
  if (!croot["model"].IsDefined() || !croot["model"].IsMap())
    throw UsageError(fmt::format("{}: no 'model' section: flopscope reads NeMo and Megatron-Bridge recipes (docs/predict.md)",
                                 path));
  Job j;
  j.file = path;
  const bool bridge =
      !croot["trainer"].IsDefined() && (croot["train"].IsDefined() || croot["model"]["seq_length"].IsDefined());
  j.format = bridge ? "Megatron-Bridge YAML" : "NeMo hydra YAML";
  j.base = preset("gpt3-small");  // every field the reader gives replaces it; the rest are problems
  j.base.name = job_name(path);
  j.base.batch_tokens = 0;  // no published batch: the job gives its own
  const Yaml y(root, path, o);
  NemoReader r(j, y, root, bridge, o);
  r.read();
  j.model.name = j.base.name;
  return j;
}

}  // namespace flopscope::job
