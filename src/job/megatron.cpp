// Megatron-LM launch scripts and command lines: the arguments of pretrain_gpt.py (and its kin),
// after the script's variables are expanded (shell.hpp), and the launcher's process count
// (torchrun, mpirun, srun, deepspeed; #SBATCH directives for Slurm). Defaults are Megatron-LM's
// (megatron/training/arguments.py, core_v0.17.0), named where they are used.
#include <algorithm>
#include <cmath>
#include <map>
#include <set>

#include <fmt/format.h>

#include "job/readers.hpp"
#include "job/shell.hpp"
#include "util/error.hpp"

namespace flopscope::job {

namespace {

constexpr const char* kArgs = "Megatron-LM megatron/training/arguments.py";

struct Arg {
  std::string name;  // "--num-layers"
  std::vector<Word> values;
  int line = 0;
};

std::string basename_of(const std::string& s) {
  const size_t slash = s.find_last_of('/');
  return slash == std::string::npos ? s : s.substr(slash + 1);
}

bool is_training_script(const Word& w) {
  if (!w.known) return false;
  const std::string b = basename_of(w.text);
  return b.size() > 3 && b.compare(b.size() - 3, 3, ".py") == 0 && b.rfind("pretrain_", 0) == 0;
}

// Keys that do not change a step's cost, with why. Checked by exact name, then by prefix.
const std::map<std::string, std::string>& ignored_exact() {
  static const std::map<std::string, std::string> m = {
      {"--lr", "learning rate"}, {"--min-lr", "learning rate"}, {"--weight-decay", "optimizer hyperparameter"},
      {"--clip-grad", "gradient clipping"}, {"--init-method-std", "initialisation"},
      {"--attention-dropout", "dropout (no FLOPs modelled for it)"}, {"--hidden-dropout", "dropout (no FLOPs modelled for it)"},
      {"--seed", "random seed"}, {"--save", "checkpoints"}, {"--load", "checkpoints"},
      {"--split", "data"}, {"--vocab-file", "the tokenizer's files (its size is read from --tokenizer-type)"},
      {"--merge-file", "the tokenizer's files (its size is read from --tokenizer-type)"},
      {"--tokenizer-model", "the tokenizer's file (its size is read from --tokenizer-type)"},
      {"--mock-data", "data"}, {"--num-workers", "data loading"}, {"--profile", "profiling"},
      {"--distributed-timeout-minutes", "timeouts"}, {"--distributed-backend", "NCCL is what predict models"},
      {"--manual-gc", "Python garbage collection"}, {"--empty-unused-memory-level", "allocator housekeeping"},
      {"--use-mcore-models", "the implementation (Megatron Core), not the cost"},
      {"--transformer-impl", "the implementation, not the cost"},
      {"--attention-softmax-in-fp32", "numerics of the softmax"}, {"--no-masked-softmax-fusion", "a kernel fusion"},
      {"--masked-softmax-fusion", "a kernel fusion"}, {"--cross-entropy-loss-fusion", "a kernel fusion"},
      {"--calculate-per-token-loss", "loss scaling"}, {"--grad-reduce-in-bf16", "numerics of the gradient reduction"},
      {"--overlap-param-gather", "the distributed optimizer's all-gather overlap (not modelled separately)"},
      {"--fp8-param-gather", "fp8 all-gather of parameters (not modelled separately)"},
      {"--norm-epsilon", "numerics"}, {"--apply-layernorm-1p", "the norm's parameterisation (same cost)"},
      {"--use-mpi", "how ranks find each other"}, {"--use-z-loss", "a loss term (a few FLOPs a token)"},
      {"--use-gcp-dynamic-checkpointing", "a fork's checkpointing flag"}, {"--split-sentences", "data"},
      {"--no-create-attention-mask-in-dataloader", "data loading"}, {"--no-mmap-bin-files", "data loading"},
      {"--rampup-batch-size", "the batch ramp-up at the start: the steady state (--global-batch-size) is modelled"},
      {"--train-iters", "used for the training tokens"}, {"--train-samples", "used for the training tokens"},
      {"--no-position-embedding", "no learned position table (RoPE is read from --position-embedding-type)"},
      {"--moe-grouped-gemm", "an MoE kernel choice"}, {"--optimizer", "read as Adam (what predict's optimizer step models)"},
      {"--tiktoken-pattern", "the tokenizer's split pattern"}, {"--log-throughput", "logging"},
      {"--check-for-nan-in-loss-and-grad", "checks"},
  };
  return m;
}

const std::vector<std::pair<std::string, std::string>>& ignored_prefixes() {
  static const std::vector<std::pair<std::string, std::string>> m = {
      {"--lr-", "learning-rate schedule"},   {"--adam-", "optimizer hyperparameter"},
      {"--decoupled-", "learning rate"},     {"--save-", "checkpoints"},
      {"--no-load-", "checkpoints"},         {"--ckpt-", "checkpoints"},
      {"--eval-", "evaluation"},             {"--log-", "logging"},
      {"--tensorboard", "logging"},          {"--wandb-", "logging"},
      {"--data-", "data"},                   {"--profile-", "profiling"},
      {"--exit-", "when the run stops"},     {"--fp8-amax-", "fp8 scaling recipe (same FLOPs)"},
      {"--moe-", "mixture-of-experts settings (read with --num-experts)"},
      {"--timing-", "logging"},              {"--valid-", "data"},
      {"--train-data-", "data"},             {"--test-data-", "data"},
  };
  return m;
}

bool cost_irrelevant(const std::string& name, std::string& why) {
  const auto& ex = ignored_exact();
  if (auto it = ex.find(name); it != ex.end()) {
    why = it->second;
    return true;
  }
  for (const auto& [p, w] : ignored_prefixes()) {
    if (name.rfind(p, 0) == 0) {
      why = w;
      return true;
    }
  }
  return false;
}

class MegatronReader {
 public:
  MegatronReader(Job& j, const ShellResult& sh, const ReadOptions& o) : j_(j), sh_(sh), o_(o) {}

  void read() {
    find_command();
    parse_args();
    read_launcher();
    read_model();
    read_layout();
    list_the_rest();
  }

 private:
  // ---- the command --------------------------------------------------------------------------
  void find_command() {
    for (const ShellCommand& c : sh_.commands) {
      for (size_t i = 0; i < c.words.size(); ++i) {
        if (is_training_script(c.words[i])) {
          cmd_ = &c;
          script_ = i;
          return;
        }
      }
    }
    // A variable holding the script whose value is not known.
    throw UsageError(fmt::format("{}: no Megatron-LM training command found (a launcher or python running "
                                 "pretrain_gpt.py or its kin, pretrain_*.py); flopscope reads Megatron-LM launch "
                                 "scripts and command lines (docs/predict.md)",
                                 j_.file));
  }

  void parse_args() {
    Arg* cur = nullptr;
    for (size_t i = script_ + 1; i < cmd_->words.size(); ++i) {
      const Word& w = cmd_->words[i];
      if (!w.known) {
        // An unknown word may be a value or several flags: say so.
        j_.not_given.push_back({w.why.substr(0, w.why.find(" (line")), fmt::format("line {}", w.line),
                                cur ? fmt::format("a value of {} or further flags: not read", cur->name)
                                    : "words of the command: not read"});
        if (cur) cur->values.push_back(w);
        continue;
      }
      if (w.text.rfind("--", 0) == 0 && w.text.size() > 2) {
        const size_t eq = w.text.find('=');
        Arg a;
        a.name = w.text.substr(0, eq);
        a.line = w.line;
        if (eq != std::string::npos) {
          Word v = w;
          v.text = w.text.substr(eq + 1);
          a.values.push_back(v);
        }
        args_[a.name] = a;  // argparse: the last one wins
        order_.push_back(a.name);
        cur = &args_[a.name];
      } else if (cur) {
        cur->values.push_back(w);
      } else {
        j_.not_given.push_back({w.text, fmt::format("line {}", w.line), "a word before the first flag: not read"});
      }
    }
  }

  const Arg* arg(const std::string& name) {
    used_.insert(name);
    auto it = args_.find(name);
    return it == args_.end() ? nullptr : &it->second;
  }

  static std::string where(const Arg& a) {
    std::string vals;
    int value_line = 0;
    for (const Word& v : a.values) {
      vals += " " + (v.known ? v.text : std::string("?"));
      if (v.value_line && v.value_line != a.line && !value_line) value_line = v.value_line;
    }
    if (vals.size() > 60) vals = vals.substr(0, 57) + "...";
    std::string s = fmt::format("line {}: {}{}", a.line, a.name, vals);
    if (value_line) s += fmt::format(" (value set at line {})", value_line);
    return s;
  }

  // The single value of a flag: nullopt when absent; a problem when not known.
  std::optional<std::string> text(const std::string& name, const std::string& settled_by = "") {
    const Arg* a = arg(name);
    if (!a) return std::nullopt;
    if (a->values.empty()) throw UsageError(fmt::format("{}: line {}: {} has no value", j_.file, a->line, name));
    const Word& v = a->values.front();
    if (!v.known) {
      j_.problem(fmt::format("{} (line {}) has no known value: {}{}", name, a->line, v.why,
                             settled_by.empty() ? "" : fmt::format("; pass --{}", flag_of(settled_by))),
                 settled_by.empty() ? std::set<std::string>{} : std::set<std::string>{settled_by});
      return std::nullopt;
    }
    return v.text;
  }

  static std::string flag_of(const std::string& name) {
    for (const auto& [flag, n] : model_flag_names())
      if (n == name) return flag.substr(2) + " N";
    std::string f = name;
    std::replace(f.begin(), f.end(), '_', '-');
    return f;
  }

  std::optional<int64_t> count(const std::string& name, const std::string& settled_by = "") {
    const auto t = text(name, settled_by);
    if (!t) return std::nullopt;
    if (const auto v = positive_whole(*t)) return v;
    throw UsageError(fmt::format("{}: {}: '{}' is not a positive whole number", j_.file, where(*arg(name)), *t));
  }

  std::optional<double> real(const std::string& name) {
    const auto t = text(name);
    if (!t) return std::nullopt;
    if (const auto v = finite_number(*t)) return v;
    throw UsageError(fmt::format("{}: {}: '{}' is not a number", j_.file, where(*arg(name)), *t));
  }

  bool flag(const std::string& name) { return arg(name) != nullptr; }

  // ---- the launcher ----------------------------------------------------------------------------
  struct Launch {
    std::optional<int64_t> procs;  // total, when the launcher says so
    std::optional<int64_t> nodes, per_node;
    std::string where_nodes, where_per_node, where_procs;
  };

  std::optional<int64_t> launcher_int(size_t i, std::string& where_out) {
    if (i >= script_) return std::nullopt;
    const Word& w = cmd_->words[i];
    if (!w.known) {
      j_.not_given.push_back({cmd_->words[i - 1].text, fmt::format("line {}", w.line), w.why});
      return std::nullopt;
    }
    std::string t = w.text;
    if (t.find(':') != std::string::npos) {
      j_.problem(fmt::format("the launcher's {} {} (line {}) is an elastic range; pass --gpus N",
                             cmd_->words[i - 1].text, t, w.line),
                 {"gpus"});
      return std::nullopt;
    }
    try {
      size_t used = 0;
      const long long v = std::stoll(t, &used);
      if (used == t.size() && v >= 1) {
        where_out = fmt::format("line {}: {} {}{}", w.line, cmd_->words[i - 1].text, t,
                                w.value_line && w.value_line != w.line ? fmt::format(" (value set at line {})", w.value_line) : "");
        return v;
      }
    } catch (const std::exception&) {
    }
    j_.not_given.push_back({cmd_->words[i - 1].text + " " + t, fmt::format("line {}", w.line), "not a process count"});
    return std::nullopt;
  }

  void read_launcher() {
    Launch l;
    std::string launcher;
    for (size_t i = 0; i < script_; ++i) {
      const Word& w = cmd_->words[i];
      if (!w.known) continue;
      const std::string b = basename_of(w.text);
      std::string key = w.text, inline_value;
      if (const size_t eq = key.find('='); eq != std::string::npos && key.rfind("-", 0) == 0) {
        inline_value = key.substr(eq + 1);
        key = key.substr(0, eq);
      }
      if (b == "torchrun" || b == "mpirun" || b == "mpiexec" || b == "srun" || b == "deepspeed") launcher = b;
      if (w.text == "torch.distributed.run" || w.text == "torch.distributed.launch") launcher = "torchrun";
      auto take = [&](std::optional<int64_t>& slot, std::string& where_slot) {
        if (!inline_value.empty()) {
          Word v = w;
          v.text = inline_value;
          try {
            slot = std::stoll(inline_value);
            where_slot = fmt::format("line {}: {}", w.line, w.text);
          } catch (const std::exception&) {
          }
        } else {
          slot = launcher_int(i + 1, where_slot);
        }
      };
      if (launcher == "torchrun" || launcher == "deepspeed") {
        if (key == "--nproc_per_node" || key == "--nproc-per-node" || key == "--num_gpus") take(l.per_node, l.where_per_node);
        if (key == "--nnodes" || key == "--num_nodes") take(l.nodes, l.where_nodes);
        if (key == "--standalone") {
          l.nodes = 1;
          l.where_nodes = fmt::format("line {}: --standalone", w.line);
        }
      } else if (launcher == "mpirun" || launcher == "mpiexec") {
        if (key == "-np" || key == "-n" || key == "--np" || key == "-c") take(l.procs, l.where_procs);
        if (key == "-npernode" || key == "--npernode" || key == "-N") take(l.per_node, l.where_per_node);
      } else if (launcher == "srun") {
        if (key == "-N" || key == "--nodes") take(l.nodes, l.where_nodes);
        if (key == "--ntasks-per-node" || key == "--gpus-per-node") take(l.per_node, l.where_per_node);
        if (key == "-n" || key == "--ntasks") take(l.procs, l.where_procs);
      }
    }
    if (launcher.empty()) {
      j_.not_given.push_back({"the GPU count", fmt::format("line {}", cmd_->line),
                              "no launcher (torchrun, mpirun, srun, deepspeed) before the script"});
      return;
    }
    // Slurm's allocation when srun names neither.
    auto sb = [&](const char* k, std::optional<int64_t>& slot, std::string& w) {
      auto it = sh_.sbatch.find(k);
      if (slot || it == sh_.sbatch.end()) return;
      try {
        slot = std::stoll(it->second.first);
        w = fmt::format("line {}: #SBATCH {} {}", it->second.second, k, it->second.first);
      } catch (const std::exception&) {
      }
    };
    if (launcher == "srun") {
      sb("--nodes", l.nodes, l.where_nodes);
      sb("--ntasks-per-node", l.per_node, l.where_per_node);
    }
    if (launcher == "torchrun" && l.per_node && !l.nodes) {
      l.nodes = 1;
      l.where_nodes = "torchrun's default --nnodes 1";
    }
    if (l.procs) {
      j_.layout.gpus = *l.procs;
      j_.record("gpus", *l.procs, From::file, l.where_procs);
    } else if (l.nodes && l.per_node) {
      j_.layout.gpus = *l.nodes * *l.per_node;
      j_.record("gpus", *j_.layout.gpus, From::derived,
                fmt::format("{} nodes ({}) x {} a node ({})", *l.nodes, l.where_nodes, *l.per_node, l.where_per_node));
    } else {
      j_.not_given.push_back({"the GPU count", fmt::format("line {}", cmd_->line),
                              fmt::format("{} with no known process count", launcher)});
    }
  }

  // ---- the model -----------------------------------------------------------------------------
  void required(const std::string& flag, std::optional<int64_t> ModelOverrides::*field, const std::string& name) {
    if (const auto v = count(flag, name)) {
      set_model(j_, field, name, *v, *v, From::file, where(*arg(flag)));
    } else if (!arg(flag)) {
      j_.problem(fmt::format("{} is not given (Megatron-LM has no default for it); pass --{}", flag, flag_of(name)),
                 {name});
    }
  }

  void read_model() {
    required("--num-layers", &ModelOverrides::n_layers, "layers");
    required("--hidden-size", &ModelOverrides::d_model, "d_model");
    required("--num-attention-heads", &ModelOverrides::n_heads, "heads");
    required("--seq-length", &ModelOverrides::n_ctx, "seq");
    const int64_t h = j_.model.d_model.value_or(0), heads = j_.model.n_heads.value_or(0);

    if (const auto d = count("--kv-channels", "d_head")) {
      set_model(j_, &ModelOverrides::d_head, "d_head", *d, *d, From::file, where(*arg("--kv-channels")));
    } else if (h && heads && h % heads == 0) {
      j_.record("d_head", h / heads, From::framework_default,
                fmt::format("{}: --kv-channels defaults to hidden / heads = {}", kArgs, h / heads));
    }

    // Attention: grouped-query only with --group-query-attention.
    const bool gqa = flag("--group-query-attention");
    if (gqa) {
      if (const auto g = count("--num-query-groups", "kv_heads")) {
        set_model(j_, &ModelOverrides::n_kv_heads, "kv_heads", *g, *g, From::file,
                  fmt::format("{} with --group-query-attention (line {})", where(*arg("--num-query-groups")),
                              arg("--group-query-attention")->line));
      } else if (!arg("--num-query-groups")) {
        set_model(j_, &ModelOverrides::n_kv_heads, "kv_heads", 1, 1, From::framework_default,
                  fmt::format("{}: --num-query-groups defaults to 1 with --group-query-attention (line {})", kArgs,
                              arg("--group-query-attention")->line));
      }
    } else {
      if (const Arg* g = arg("--num-query-groups"))
        j_.ignored.push_back({"--num-query-groups", fmt::format("line {}", g->line),
                              "without --group-query-attention Megatron-LM runs multi-head attention"});
      if (heads) j_.record("kv_heads", heads, From::framework_default, fmt::format("{}: multi-head attention (no --group-query-attention)", kArgs));
    }

    // FFN.
    const bool swiglu = flag("--swiglu");
    if (flag("--squared-relu"))
      j_.problem(fmt::format("--squared-relu (line {}) is not modelled (gelu, relu and swiglu are); pass --ffn KIND",
                             arg("--squared-relu")->line),
                 {"ffn"});
    set_model(j_, &ModelOverrides::ffn, "ffn", swiglu ? FfnKind::swiglu : FfnKind::gelu, swiglu ? "swiglu" : "gelu",
              swiglu ? From::file : From::framework_default,
              swiglu ? where(*arg("--swiglu")) : fmt::format("{}: GeLU unless --swiglu", kArgs));
    if (const auto f = count("--ffn-hidden-size", "d_ff")) {
      set_model(j_, &ModelOverrides::d_ff, "d_ff", *f, *f, From::file, where(*arg("--ffn-hidden-size")));
    } else if (h && !arg("--ffn-hidden-size")) {
      // validate_args: 4h, or with SwiGLU int((4h x 2/3) / 64) x 64.
      const int64_t f2 = swiglu ? static_cast<int64_t>((4.0 * static_cast<double>(h) * 2 / 3) / 64) * 64 : 4 * h;
      set_model(j_, &ModelOverrides::d_ff, "d_ff", f2, f2, From::framework_default,
                fmt::format("{}: --ffn-hidden-size defaults to {}", kArgs,
                            swiglu ? "int((4 x hidden x 2/3) / 64) x 64 with --swiglu" : "4 x hidden"));
    }

    // Norm, positions, biases, embeddings.
    if (const auto n = text("--normalization", "norm")) {
      if (*n != "LayerNorm" && *n != "RMSNorm")
        j_.problem(fmt::format("{}: only LayerNorm and RMSNorm are modelled; pass --norm KIND", where(*arg("--normalization"))),
                   {"norm"});
      set_model(j_, &ModelOverrides::norm, "norm", *n == "RMSNorm" ? NormKind::rmsnorm : NormKind::layernorm,
                *n == "RMSNorm" ? "rmsnorm" : "layernorm", From::file, where(*arg("--normalization")));
    } else if (!arg("--normalization")) {
      set_model(j_, &ModelOverrides::norm, "norm", NormKind::layernorm, "layernorm", From::framework_default,
                fmt::format("{}: --normalization LayerNorm", kArgs));
    }
    const auto pos = text("--position-embedding-type", "position");
    const std::string p = pos.value_or("learned_absolute");
    if (p == "rope") {
      set_model(j_, &ModelOverrides::position, "position", PositionKind::rope, "rope", From::file,
                where(*arg("--position-embedding-type")));
    } else if (p == "learned_absolute") {
      if (flag("--no-position-embedding"))
        j_.problem(fmt::format("--no-position-embedding (line {}) with learned positions leaves none, which is not "
                               "modelled; pass --position KIND",
                               arg("--no-position-embedding")->line),
                   {"position"});
      set_model(j_, &ModelOverrides::position, "position", PositionKind::learned, "learned", pos ? From::file : From::framework_default,
                pos ? where(*arg("--position-embedding-type"))
                    : fmt::format("{}: --position-embedding-type learned_absolute", kArgs));
      if (const auto mp = count("--max-position-embeddings")) {
        set_model(j_, &ModelOverrides::n_positions, "position_rows", *mp, *mp, From::file,
                  where(*arg("--max-position-embeddings")));
      }
    } else if (pos) {
      j_.problem(fmt::format("{}: only rope and learned_absolute are modelled; pass --position KIND",
                             where(*arg("--position-embedding-type"))),
                 {"position"});
    }
    if (p != "learned_absolute") {
      if (const Arg* mp = arg("--max-position-embeddings"))
        j_.ignored.push_back({"--max-position-embeddings", fmt::format("line {}", mp->line),
                              "no learned position table with " + p});
    }
    if (p == "rope") {
      if (const auto t = real("--rotary-base")) {
        set_model(j_, &ModelOverrides::rope_theta, "rope_theta", *t, *t, From::file, where(*arg("--rotary-base")));
      } else {
        set_model(j_, &ModelOverrides::rope_theta, "rope_theta", 10000.0, 10000.0, From::framework_default,
                  fmt::format("{}: --rotary-base 10000", kArgs));
      }
      if (const auto rp = real("--rotary-percent"); rp && *rp != 1.0)
        j_.problem(fmt::format("{}: RoPE on part of each head is not modelled", where(*arg("--rotary-percent"))),
                   {"position"});
    } else {
      for (const char* k : {"--rotary-base", "--rotary-percent"})
        if (const Arg* a = arg(k)) j_.ignored.push_back({k, fmt::format("line {}", a->line), "no RoPE"});
    }
    const bool no_bias = flag("--disable-bias-linear");
    LinearBiases b = no_bias ? LinearBiases{false, false, false} : LinearBiases{};
    if (flag("--add-qkv-bias")) b.qkv = true;
    set_model(j_, &ModelOverrides::biases, "bias", b, to_string(b), no_bias || flag("--add-qkv-bias") ? From::file : From::framework_default,
              no_bias ? where(*arg("--disable-bias-linear")) : fmt::format("{}: every linear layer has a bias", kArgs));
    const bool untied = flag("--untie-embeddings-and-output-weights");
    set_model(j_, &ModelOverrides::tied_embeddings, "tie_embeddings", !untied, !untied ? "on" : "off",
              untied ? From::file : From::framework_default,
              untied ? where(*arg("--untie-embeddings-and-output-weights"))
                     : fmt::format("{}: the output layer shares the embedding", kArgs));
    j_.model.count_final_norm = true;  // Megatron's final layernorm

    read_vocab();

    read_moe();
  }

  // Mixture of experts: Megatron Core's settings (moe.cpp), a flag each; --moe-* flags without
  // --num-experts do nothing (a dense model).
  void read_moe() {
    MoeGiven given;
    const bool moe = arg("--num-experts") != nullptr;
    for (const MoeKey& k : megatron_core_moe_keys()) {
      const Arg* a = moe ? arg(k.flag) : nullptr;
      if (!a) continue;
      if (!k.ignored_why.empty()) {
        j_.ignored.push_back({k.flag, fmt::format("line {}", a->line), k.ignored_why});
        continue;
      }
      std::string t = "true";  // a flag without a value (--moe-router-pre-softmax)
      if (!a->values.empty()) {
        if (!a->values.front().known) {
          j_.problem(fmt::format("{} (line {}) has no known value: {}", k.flag, a->line, a->values.front().why));
          continue;
        }
        t = a->values.front().text;
        for (size_t i = 1; i < a->values.size(); ++i) t += " " + a->values[i].text;
      }
      given[k.name] = {t, where(*a)};
    }
    if (!moe) {
      for (const auto& name : order_)
        if (name.rfind("--moe-", 0) == 0) used_.insert(name);
    }
    read_megatron_core_moe(j_, given, j_.model.n_layers.value_or(0), j_.model.d_ff);
    if (const auto ep = count("--expert-model-parallel-size"); ep) {
      j_.layout.ep = *ep;
      j_.record("ep", *ep, From::file, where(*arg("--expert-model-parallel-size")));
    }
    if (const auto etp = count("--expert-tensor-parallel-size"); etp) {
      j_.layout.etp = *etp;
      j_.record("etp", *etp, From::file, where(*arg("--expert-tensor-parallel-size")));
    }
  }

  void read_vocab() {
    const auto divisible = count("--make-vocab-size-divisible-by");
    j_.vocab_divisible_by = divisible.value_or(128);
    j_.divisible_where = divisible ? where(*arg("--make-vocab-size-divisible-by"))
                                   : fmt::format("{}: --make-vocab-size-divisible-by 128", kArgs);
    const auto type = text("--tokenizer-type", "vocab");
    const Arg* vs = arg("--vocab-size");
    const auto size = count("--vocab-size", "vocab");
    const std::string t = type.value_or("");
    const char* tk = "megatron/training/tokenizer/tokenizer.py";
    if (t == "NullTokenizer") {
      if (size) {
        j_.tokenizer_vocab = *size + 1;  // _NullTokenizer.vocab_size: --vocab-size + 1 (its end-of-document id)
        j_.tokenizer_where = fmt::format("{} with --tokenizer-type NullTokenizer (line {}): {} + 1 (Megatron-LM {}, "
                                         "_NullTokenizer.vocab_size)",
                                         where(*vs), arg("--tokenizer-type")->line, *size, tk);
      } else if (!vs) {
        j_.problem("--tokenizer-type NullTokenizer without --vocab-size; pass --vocab N", {"vocab"});
      }
    } else if (t == "GPT2BPETokenizer" || (t.empty() && !arg("--tokenizer-type") && arg("--vocab-file") && arg("--merge-file"))) {
      j_.tokenizer_vocab = 50257;
      j_.tokenizer_from = t.empty() ? From::derived : From::file;
      j_.tokenizer_where =
          t.empty() ? fmt::format("GPT-2 BPE's 50257 tokens: --vocab-file (line {}) and --merge-file (line {}) are "
                                  "GPT2BPETokenizer's files (the only Megatron-LM tokenizer with a merge file)",
                                  arg("--vocab-file")->line, arg("--merge-file")->line)
                    : fmt::format("line {}: --tokenizer-type GPT2BPETokenizer: GPT-2 BPE's 50257 tokens",
                                  arg("--tokenizer-type")->line);
      if (vs) j_.ignored.push_back({"--vocab-size", fmt::format("line {}", vs->line), "GPT2BPETokenizer reads its own size"});
    } else if (t == "TikTokenizer" && size) {
      j_.tokenizer_vocab = *size;
      j_.tokenizer_where = where(*vs) + fmt::format(" with --tokenizer-type TikTokenizer (line {})", arg("--tokenizer-type")->line);
    } else if (!t.empty()) {
      const Arg* model = arg("--tokenizer-model");
      j_.problem(fmt::format("the vocabulary: --tokenizer-type {} (line {}) reads its size from {}, which a job file "
                             "does not give; pass --vocab N (the size Megatron-LM runs: the tokenizer's, padded to a "
                             "multiple of --make-vocab-size-divisible-by x tp)",
                             t, arg("--tokenizer-type")->line,
                             model ? fmt::format("--tokenizer-model (line {})", model->line) : "its tokenizer files"),
                 {"vocab"});
      if (vs) j_.ignored.push_back({"--vocab-size", fmt::format("line {}", vs->line), "used only by NullTokenizer and TikTokenizer"});
    } else if (!arg("--tokenizer-type")) {
      j_.problem("the vocabulary: no --tokenizer-type (and no GPT-2 --vocab-file with --merge-file); pass --vocab N",
                 {"vocab"});
    }
  }

  // ---- the layout ----------------------------------------------------------------------------
  void layout_count(const std::string& flag, std::optional<int64_t> JobLayout::*field, const std::string& name,
                    int64_t fallback) {
    if (const auto v = count(flag, name)) {
      j_.layout.*field = *v;
      j_.record(name, *v, From::file, where(*arg(flag)));
    } else if (!arg(flag)) {
      j_.layout.*field = fallback;
      j_.record(name, fallback, From::framework_default, fmt::format("{}: {} {}", kArgs, flag, fallback));
    }
  }

  void layout_flag(const std::string& flag, std::optional<bool> JobLayout::*field, const std::string& name,
                   const std::string& default_text) {
    const bool on = this->flag(flag);
    j_.layout.*field = on;
    j_.record(name, on ? "on" : "off", on ? From::file : From::framework_default,
              on ? where(*arg(flag)) : fmt::format("{}: {}", kArgs, default_text));
  }

  void read_layout() {
    layout_count("--tensor-model-parallel-size", &JobLayout::tp, "tp", 1);
    layout_count("--pipeline-model-parallel-size", &JobLayout::pp, "pp", 1);
    layout_count("--context-parallel-size", &JobLayout::cp, "cp", 1);
    // The embedding and the loss counted as layers of the first and last stage's split.
    layout_flag("--account-for-embedding-in-pipeline-split", &JobLayout::embedding_in_split,
                "account_for_embedding_in_pipeline_split", "no --account-for-embedding-in-pipeline-split");
    layout_flag("--account-for-loss-in-pipeline-split", &JobLayout::loss_in_split, "account_for_loss_in_pipeline_split",
                "no --account-for-loss-in-pipeline-split");
    // Interleaving: chunks a stage.
    if (const auto per = count("--num-layers-per-virtual-pipeline-stage", "vpp")) {
      const int64_t L = j_.model.n_layers.value_or(0), pp = j_.layout.pp.value_or(1);
      const int64_t counted = L + (*j_.layout.embedding_in_split ? 1 : 0) + (*j_.layout.loss_in_split ? 1 : 0);
      if (L && counted % (pp * *per) == 0) {
        j_.layout.vpp = counted / (pp * *per);
        j_.record("vpp", *j_.layout.vpp, From::derived,
                  fmt::format("{} layers{} / (pp {} x {}) ({})", counted,
                              counted != L ? " (with the embedding and the loss)" : "", pp, *per,
                              where(*arg("--num-layers-per-virtual-pipeline-stage"))));
      } else {
        j_.problem(fmt::format("{}: the {} layers do not divide into pp x that; pass --vpp N",
                               where(*arg("--num-layers-per-virtual-pipeline-stage")), L),
                   {"vpp"});
      }
    } else if (const auto v = count("--virtual-pipeline-model-parallel-size", "vpp")) {
      j_.layout.vpp = *v;
      j_.record("vpp", *v, From::file, where(*arg("--virtual-pipeline-model-parallel-size")));
    } else {
      j_.layout.vpp = 1;
      j_.record("vpp", 1, From::framework_default, fmt::format("{}: no interleaving", kArgs));
    }
    for (const char* k : {"--decoder-first-pipeline-num-layers", "--decoder-last-pipeline-num-layers",
                          "--pipeline-model-parallel-layout"})
      if (const Arg* a = arg(k))
        j_.problem(fmt::format("{}: an uneven pipeline split is not modelled (the first stages take one more layer "
                               "when pp does not divide them); pass --pp N",
                               where(*a)),
                   {"pp"});

    if (const auto mb = count("--micro-batch-size", "micro_batch")) {
      j_.layout.micro_batch = *mb;
      j_.record("micro_batch", *mb, From::file, where(*arg("--micro-batch-size")));
    } else if (!arg("--micro-batch-size")) {
      j_.problem("--micro-batch-size is not given (Megatron-LM has no default for it); pass --micro-batch N",
                 {"micro_batch"});
    }
    if (const auto gb = count("--global-batch-size", "global_batch")) {
      j_.layout.global_batch = *gb;
      j_.record("global_batch", *gb, From::file, where(*arg("--global-batch-size")));
    } else if (!arg("--global-batch-size")) {
      j_.layout.batch_per_dp_rank = j_.layout.micro_batch.value_or(1);
      j_.layout.batch_per_dp_rank_is_micro_batch = true;
      j_.record("global_batch", "micro-batch x dp", From::framework_default,
                fmt::format("{}: --global-batch-size defaults to micro-batch x data-parallel size", kArgs));
    }

    layout_flag("--sequence-parallel", &JobLayout::sequence_parallel, "sequence_parallel", "no --sequence-parallel");
    layout_flag("--use-distributed-optimizer", &JobLayout::distributed_optimizer, "distributed_optimizer",
                "no --use-distributed-optimizer");
    layout_flag("--overlap-grad-reduce", &JobLayout::dp_overlap, "dp_overlap",
                "no --overlap-grad-reduce (the gradient reduction waits for the backward)");
    layout_flag("--tp-comm-overlap", &JobLayout::tp_comm_overlap, "tp_comm_overlap",
                "no --tp-comm-overlap (the tensor-parallel collectives wait for their GEMMs)");
    layout_flag("--overlap-moe-expert-parallel-comm", &JobLayout::ep_comm_overlap, "ep_comm_overlap",
                "no --overlap-moe-expert-parallel-comm (the all-to-alls wait for their compute)");

    // Precision: fp8 over bf16/fp16; Megatron-LM's default is fp32.
    const bool bf16 = flag("--bf16"), fp16 = flag("--fp16");
    if (const auto f = text("--fp8-format", "precision")) {
      j_.layout.precision = "fp8";
      j_.record("precision", "fp8", From::file,
                where(*arg("--fp8-format")) + (bf16 ? fmt::format(" (its other GEMMs bf16, line {})", arg("--bf16")->line) : ""));
    } else if (bf16) {
      j_.layout.precision = "bf16";
      j_.record("precision", "bf16", From::file, where(*arg("--bf16")));
    } else if (fp16) {
      j_.layout.precision = "fp16";
      j_.record("precision", "fp16", From::file, where(*arg("--fp16")));
    } else if (!arg("--fp8-format")) {
      j_.problem(fmt::format("no --bf16, --fp16 or --fp8-format: Megatron-LM trains in fp32 then ({}), which predict "
                             "does not model; pass --precision bf16|fp16|fp8",
                             kArgs),
                 {"precision"});
    }

    // Recompute.
    std::optional<std::string> gran = text("--recompute-granularity", "recompute");
    std::string gran_where = gran ? where(*arg("--recompute-granularity")) : "";
    if (flag("--recompute-activations")) {
      gran = "selective";
      gran_where = where(*arg("--recompute-activations"));
    }
    const auto method = text("--recompute-method", "recompute");
    const auto layers = count("--recompute-num-layers", "recompute");
    if (!gran && !arg("--recompute-granularity")) {
      j_.layout.recompute = "none";
      j_.record("recompute", "none", From::framework_default, fmt::format("{}: --recompute-granularity None", kArgs));
    } else if (gran && *gran == "selective") {
      j_.layout.recompute = "selective";
      j_.record("recompute", "selective", From::file, gran_where);
    } else if (gran && *gran == "full") {
      const int64_t L = j_.model.n_layers.value_or(0), pp = j_.layout.pp.value_or(1);
      const int64_t per_stage = pp > 0 ? (L + pp - 1) / pp : L;
      if (method && *method == "uniform") {
        j_.layout.recompute = "full";
        j_.record("recompute", "full", From::file, gran_where + "; " + where(*arg("--recompute-method")));
      } else if (method && *method == "block" && layers.value_or(1) >= per_stage) {
        j_.layout.recompute = "full";
        j_.record("recompute", "full", From::file, gran_where + "; " + where(*arg("--recompute-method")));
      } else if (method && *method == "block") {
        j_.problem(fmt::format("{} with {}: {} of the {} layers a stage recomputed is not modelled; pass --recompute MODE",
                               gran_where, where(*arg("--recompute-method")), layers.value_or(1), per_stage),
                   {"recompute"});
      } else if (!arg("--recompute-method")) {
        j_.problem(fmt::format("{} without --recompute-method (Megatron-LM requires uniform or block); pass --recompute MODE",
                               gran_where),
                   {"recompute"});
      }
    } else if (gran) {
      j_.problem(fmt::format("{}: unknown recompute granularity; pass --recompute MODE", gran_where), {"recompute"});
    }

    // Attention kernel.
    if (flag("--use-flash-attn")) {
      j_.layout.attention = "flash";
      j_.record("attention", "flash", From::file, where(*arg("--use-flash-attn")));
    } else if (const auto ab = text("--attention-backend", "attention")) {
      const bool fused = *ab == "flash" || *ab == "fused" || *ab == "auto";
      if (!fused && *ab != "unfused" && *ab != "local")
        j_.problem(fmt::format("{}: unknown attention backend; pass --attention KIND", where(*arg("--attention-backend"))),
                   {"attention"});
      j_.layout.attention = fused ? "flash" : "unfused";
      j_.record("attention", *j_.layout.attention, From::file,
                where(*arg("--attention-backend")) + (fused ? " (a fused kernel: no s x s tensor)" : ""));
    } else if (!arg("--attention-backend")) {
      j_.layout.attention = "flash";
      j_.record("attention", "flash", From::framework_default,
                fmt::format("{} (core_v0.17.0): --attention-backend auto, Transformer Engine's flash or fused "
                            "attention (no s x s tensor)",
                            kArgs));
    }

    if (const auto it = count("--train-iters")) {
      j_.layout.train_steps = *it;
      j_.record("train_steps", *it, From::file, where(*arg("--train-iters")));
    } else if (const auto s = count("--train-samples")) {
      j_.layout.train_samples = *s;
      j_.record("train_samples", *s, From::file, where(*arg("--train-samples")));
    }
    if (const auto o = text("--optimizer"); o && *o != "adam")
      j_.problem(fmt::format("{}: predict models Adam's optimizer step", where(*arg("--optimizer"))));
  }

  void list_the_rest() {
    for (const auto& name : order_) {
      if (used_.count(name)) continue;
      used_.insert(name);
      const Arg& a = args_.at(name);
      std::string why;
      if (cost_irrelevant(name, why)) {
        j_.ignored.push_back({name, fmt::format("line {}", a.line), why});
      } else if (o_.ignore.count(name)) {
        j_.ignored.push_back({name, fmt::format("line {}", a.line), "--job-ignore: you said it does not change the cost"});
      } else if (may_change_cost(name)) {
        j_.problem(fmt::format("{} (line {}) may change the cost and is not understood; pass --job-ignore {} if it "
                               "does not",
                               name, a.line, name));
      } else {
        j_.ignored.push_back({name, fmt::format("line {}", a.line), "not a key flopscope knows; read as not changing the cost"});
      }
    }
  }

  Job& j_;
  const ShellResult& sh_;
  const ReadOptions& o_;
  const ShellCommand* cmd_ = nullptr;
  size_t script_ = 0;
  std::map<std::string, Arg> args_;
  std::vector<std::string> order_;
  std::set<std::string> used_;
};

}  // namespace

Job read_megatron(const std::string& text, const std::string& path, const ReadOptions& o) {
  Job j;
  j.file = path;
  j.format = "Megatron-LM launch script";
  j.base = preset("gpt3-small");  // every field the reader gives replaces it; the rest are problems
  j.base.name = job_name(path);
  j.base.batch_tokens = 0;  // no published batch: the job gives its own
  const ShellResult sh = read_shell(text, path, o.env);
  for (const ShellNote& n : sh.notes) j.not_given.push_back({n.what, fmt::format("line {}", n.line), n.why});
  MegatronReader r(j, sh, o);
  r.read();
  j.model.name = j.base.name;
  return j;
}

}  // namespace flopscope::job
