// torchtitan TOML job configs, read with toml++: [model] name and flavor mapped to the
// flavor's architecture in torchtitan's own tables, [training], [parallelism] (or the 2024
// layout's [training] and [experimental] keys), [activation_checkpoint], float8. Defaults are
// torchtitan's (torchtitan/config/job_config.py), named where used.
#include <toml++/toml.h>

#include <cmath>
#include <functional>
#include <set>

#include <fmt/format.h>

#include "job/readers.hpp"
#include "util/error.hpp"

namespace flopscope::job {

namespace {

constexpr const char* kConfig = "torchtitan torchtitan/config/job_config.py";

// A flavor's TransformerModelArgs as torchtitan publishes them:
//   llama3: torchtitan/models/llama3/__init__.py, llama3_args (pytorch/torchtitan @ 238fa99);
//           vocab_size 128256 from torchtitan/models/llama3/model/args.py
//   llama2: torchtitan/models/llama/__init__.py, llama2_configs (@ 6a6f755, the 2024 layout);
//           vocab_size from the tokenizer (train.py: model_config.vocab_size = tokenizer.n_words)
//   llama4: torchtitan/models/llama4/__init__.py (@ 238fa99): mixture-of-experts flavors;
//           vocab_size 202048 from torchtitan/models/llama4/model/args.py
struct Flavor {
  const char* model;
  const char* flavor;
  int64_t dim, n_layers, n_heads, n_kv_heads;  // n_kv_heads 0: n_heads
  double ffn_dim_multiplier;                   // 0: None
  int64_t multiple_of;
  double rope_theta;
  int64_t vocab;    // 0: the tokenizer's
  int64_t experts;  // > 0: mixture-of-experts
  const char* source;
  // Llama 4 (torchtitan/models/llama4): layers i with (i + 1) % moe_step == 0 MoE
  // (interleave_moe_layer_step, default 2), with (i + 1) % nope_step == 0 without RoPE
  // (every_n_layers_nope), the others attending within blocks of attn_block tokens
  // (fixed_attn_block_size).
  int64_t moe_step = 0, nope_step = 0, attn_block = 0;
};

constexpr const char* kLlama3 = "torchtitan/models/llama3/__init__.py (pytorch/torchtitan @ 238fa99)";
constexpr const char* kLlama2 = "torchtitan/models/llama/__init__.py (pytorch/torchtitan @ 6a6f755)";
constexpr const char* kLlama4 = "torchtitan/models/llama4/__init__.py (pytorch/torchtitan @ 238fa99)";

constexpr Flavor kFlavors[] = {
    {"llama3", "debugmodel", 256, 6, 16, 0, 0, 256, 500000, 2048, 0, kLlama3},
    {"llama3", "8B", 4096, 32, 32, 8, 1.3, 1024, 500000, 128256, 0, kLlama3},
    {"llama3", "70B", 8192, 80, 64, 8, 1.3, 4096, 500000, 128256, 0, kLlama3},
    {"llama3", "405B", 16384, 126, 128, 8, 1.2, 4096, 500000, 128256, 0, kLlama3},
    {"llama2", "debugmodel", 256, 8, 16, 0, 0, 256, 10000, 0, 0, kLlama2},
    {"llama2", "271M", 1024, 16, 8, 0, 0, 256, 10000, 0, 0, kLlama2},
    {"llama2", "1B", 2048, 18, 16, 0, 0, 256, 10000, 0, 0, kLlama2},
    {"llama2", "7B", 4096, 32, 32, 0, 0, 256, 10000, 0, 0, kLlama2},
    {"llama2", "13B", 5120, 40, 40, 0, 0, 256, 10000, 0, 0, kLlama2},
    {"llama2", "26B", 5120, 80, 40, 0, 0, 256, 10000, 0, 0, kLlama2},
    {"llama2", "70B", 8192, 80, 64, 8, 1.3, 4096, 10000, 0, 0, kLlama2},
    {"llama4", "17bx16e", 5120, 48, 40, 8, 1.2, 2048, 500000, 202048, 16, kLlama4, 1, 4, 8192},
    {"llama4", "17bx128e", 5120, 48, 40, 8, 1.2, 2048, 500000, 202048, 128, kLlama4, 2, 4, 8192},
};

// torchtitan's FeedForward: hidden = int(2 x 4 dim / 3), x ffn_dim_multiplier (int), rounded up
// to a multiple of multiple_of.
int64_t ffn_hidden(const Flavor& f) {
  int64_t hidden = static_cast<int64_t>(2.0 * static_cast<double>(4 * f.dim) / 3.0);
  if (f.ffn_dim_multiplier > 0) hidden = static_cast<int64_t>(f.ffn_dim_multiplier * static_cast<double>(hidden));
  return f.multiple_of * ((hidden + f.multiple_of - 1) / f.multiple_of);
}

// Llama 4's routed (and shared) expert width, compute_moe_hidden_dim: int(2 x 4 dim / 3), x
// ffn_dim_multiplier (int), / (top_k + shared experts) (int; auto_scale_hidden_dim), rounded
// up to a multiple of multiple_of. 17bx128e: 8192, as Maverick's config.json intermediate_size.
constexpr int64_t kLlama4TopK = 1, kLlama4Shared = 1;  // MoE.Config(top_k=1, num_shared_experts=1)
int64_t moe_hidden(const Flavor& f) {
  int64_t hidden = static_cast<int64_t>(2.0 * static_cast<double>(4 * f.dim) / 3.0);
  if (f.ffn_dim_multiplier > 0) hidden = static_cast<int64_t>(f.ffn_dim_multiplier * static_cast<double>(hidden));
  hidden /= kLlama4TopK + kLlama4Shared;
  return f.multiple_of * ((hidden + f.multiple_of - 1) / f.multiple_of);
}

struct Got {
  bool present = false;
  const toml::node* node = nullptr;
  int line = 0;
  std::string path;
};

class TitanReader {
 public:
  TitanReader(Job& j, const toml::table& t, const ReadOptions& o) : j_(j), t_(t), o_(o) {}

  void read() {
    legacy_ = t_.contains("experimental") || (t_["training"].as_table() && t_["training"]["tensor_parallel_degree"]);
    read_model();
    read_layout();
    list_the_rest();
  }

 private:
  Got get(std::initializer_list<const char*> paths) {
    for (const char* p : paths) used_.insert(p);
    for (const char* p : paths) {
      const toml::node_view<const toml::node> v = t_.at_path(p);
      if (v) {
        Got g;
        g.present = true;
        g.node = v.node();
        g.line = static_cast<int>(v.node()->source().begin.line);
        g.path = p;
        return g;
      }
    }
    return {};
  }

  std::string where(const Got& g) const {
    std::string shown;
    if (auto s = g.node->value<std::string>()) {
      shown = "\"" + *s + "\"";
    } else if (auto b = g.node->value_exact<bool>()) {  // before the integers: value<int64_t> converts a bool
      shown = *b ? "true" : "false";
    } else if (auto i = g.node->value<int64_t>()) {
      shown = std::to_string(*i);
    } else if (g.node->is_array()) {
      shown = "[...]";
    }
    return fmt::format("line {}: {} = {}", g.line, g.path, shown);
  }

  std::optional<int64_t> integer(const Got& g) {
    if (!g.present) return std::nullopt;
    if (auto i = g.node->value_exact<int64_t>()) return *i;
    throw UsageError(fmt::format("{}: line {}: {} must be a whole number", j_.file, g.line, g.path));
  }
  std::optional<std::string> text(const Got& g) {
    if (!g.present) return std::nullopt;
    if (auto s = g.node->value_exact<std::string>()) return *s;
    throw UsageError(fmt::format("{}: line {}: {} must be a string", j_.file, g.line, g.path));
  }
  std::optional<bool> boolean(const Got& g) {
    if (!g.present) return std::nullopt;
    if (auto b = g.node->value_exact<bool>()) return *b;
    throw UsageError(fmt::format("{}: line {}: {} must be true or false", j_.file, g.line, g.path));
  }

  void read_model() {
    const Got name = get({"model.name"}), flavor = get({"model.flavor"});
    const std::string n = text(name).value_or("llama3"), f = text(flavor).value_or("debugmodel");
    const Flavor* fl = nullptr;
    for (const Flavor& x : kFlavors)
      if (n == x.model && f == x.flavor) fl = &x;
    if (!fl) {
      std::string known;
      for (const Flavor& x : kFlavors) known += (known.empty() ? "" : ", ") + std::string(x.model) + "/" + x.flavor;
      throw UsageError(fmt::format("{}: [model] name \"{}\", flavor \"{}\" ({}) is not in torchtitan's tables that "
                                   "flopscope knows ({}); give the model with --config or --hf-config instead of --job",
                                   j_.file, n, f, name.present ? fmt::format("line {}", name.line) : kConfig, known));
    }
    const std::string src = fmt::format("[model] {}/{} ({}; {}): {}", n, f,
                                        name.present ? fmt::format("line {}", name.line) : "default",
                                        flavor.present ? fmt::format("line {}", flavor.line) : "default", fl->source);
    if (fl->experts > 0) read_llama4_moe(*fl, src);
    set_model(j_, &ModelOverrides::n_layers, "layers", fl->n_layers, fl->n_layers, From::file, src + ": n_layers");
    set_model(j_, &ModelOverrides::d_model, "d_model", fl->dim, fl->dim, From::file, src + ": dim");
    set_model(j_, &ModelOverrides::n_heads, "heads", fl->n_heads, fl->n_heads, From::file, src + ": n_heads");
    const int64_t kv = fl->n_kv_heads > 0 ? fl->n_kv_heads : fl->n_heads;
    set_model(j_, &ModelOverrides::n_kv_heads, "kv_heads", kv, kv, From::file,
              src + (fl->n_kv_heads > 0 ? ": n_kv_heads" : ": n_kv_heads None = n_heads"));
    const int64_t ff = ffn_hidden(*fl);
    set_model(j_, &ModelOverrides::d_ff, "d_ff", ff, ff, From::derived,
              src + fmt::format(": FeedForward's hidden size from dim {}, ffn_dim_multiplier {}, multiple_of {}", fl->dim,
                                fl->ffn_dim_multiplier > 0 ? fmt::format("{}", fl->ffn_dim_multiplier) : "None",
                                fl->multiple_of));
    set_model(j_, &ModelOverrides::rope_theta, "rope_theta", fl->rope_theta, fl->rope_theta, From::file, src + ": rope_theta");
    set_model(j_, &ModelOverrides::ffn, "ffn", FfnKind::swiglu, "swiglu", From::file, src + ": FeedForward w1, w2, w3 (SwiGLU)");
    set_model(j_, &ModelOverrides::position, "position", PositionKind::rope, "rope", From::file, src + ": RoPE");
    set_model(j_, &ModelOverrides::biases, "bias", LinearBiases{false, false, false}, "none", From::file,
              src + ": nn.Linear(..., bias=False)");
    set_model(j_, &ModelOverrides::tied_embeddings, "tie_embeddings", false, "off", From::file,
              src + ": a separate output nn.Linear");
    const Got norm = get({"model.norm_type"});
    const std::string nt = text(norm).value_or("rmsnorm");
    const bool rms = nt == "rmsnorm" || nt == "fused_rmsnorm";
    if (!rms && nt != "layernorm" && nt != "np_layernorm")
      j_.problem(fmt::format("{}: unknown norm; pass --norm KIND", where(norm)), {"norm"});
    set_model(j_, &ModelOverrides::norm, "norm", rms ? NormKind::rmsnorm : NormKind::layernorm, rms ? "rmsnorm" : "layernorm",
              From::file, norm.present ? where(norm) : src + ": nn.RMSNorm");
    j_.model.count_final_norm = true;
    if (fl->vocab > 0) {
      set_model(j_, &ModelOverrides::vocab, "vocab", fl->vocab, fl->vocab, From::framework_default,
                src + (fl->vocab == 128256   ? "; vocab_size 128256 (torchtitan/models/llama3/model/args.py)"
                     : fl->vocab == 202048 ? "; vocab_size 202048 (torchtitan/models/llama4/model/args.py)"
                                           : ": vocab_size"));
    } else {
      const Got tok = get({"model.tokenizer_path", "model.hf_assets_path"});
      j_.problem(fmt::format("the vocabulary: torchtitan takes {}'s from its tokenizer ({}), which a job file does not "
                             "give; pass --vocab N (Llama 2's tokenizer: 32000)",
                             n, tok.present ? where(tok) : "not named"),
                 {"vocab"});
    }
  }

  // Llama 4's experts, router and layers as torchtitan builds them (its TokenChoiceTopKRouter:
  // sigmoid scores of the top-k, not renormalised; no load-balancing loss, the experts balanced
  // by a bias on their scores instead; one shared expert of the routed width).
  void read_llama4_moe(const Flavor& fl, const std::string& src) {
    set_model(j_, &ModelOverrides::n_experts, "experts", fl.experts, fl.experts, From::file, src + ": num_experts");
    set_model(j_, &ModelOverrides::top_k, "top_k", kLlama4TopK, kLlama4TopK, From::file, src + ": top_k");
    const int64_t w = moe_hidden(fl);
    const std::string how = fmt::format(": compute_moe_hidden_dim from dim {}, ffn_dim_multiplier {}, multiple_of {}, "
                                        "top_k {}, num_shared_experts {}",
                                        fl.dim, fl.ffn_dim_multiplier, fl.multiple_of, kLlama4TopK, kLlama4Shared);
    set_model(j_, &ModelOverrides::d_ff_expert, "d_ff_expert", w, w, From::derived, src + how);
    set_model(j_, &ModelOverrides::n_shared_experts, "shared_experts", kLlama4Shared, kLlama4Shared, From::file,
              src + ": num_shared_experts");
    set_model(j_, &ModelOverrides::d_ff_shared, "d_ff_shared", w, w, From::derived, src + how);
    set_model(j_, &ModelOverrides::router_score, "router_score", RouterScore::sigmoid, "sigmoid", From::framework_default,
              src + ": MoEArgs score_func sigmoid");
    set_model(j_, &ModelOverrides::router_topk_first, "router_topk_first", true, true, From::derived,
              src + ": the top-k of sigmoid scores are those of the logits");
    set_model(j_, &ModelOverrides::router_norm_topk, "router_norm_topk", false, false, From::framework_default,
              src + ": MoEArgs route_norm False");
    set_model(j_, &ModelOverrides::aux_loss_coef, "aux_loss_coef", 0.0, 0.0, From::framework_default,
              src + ": no load-balancing loss (load_balance_coeff updates the expert bias)");
    set_model(j_, &ModelOverrides::moe_layer_step, "moe_step", fl.moe_step, fl.moe_step, From::file,
              src + ": interleave_moe_layer_step");
    set_model(j_, &ModelOverrides::nope_layer_step, "nope_step", fl.nope_step, fl.nope_step, From::file,
              src + ": every_n_layers_nope");
    set_model(j_, &ModelOverrides::attention_chunk, "attention_chunk", fl.attn_block, fl.attn_block, From::framework_default,
              src + ": fixed_attn_block_size on the RoPE layers");
  }

  void count_value(std::initializer_list<const char*> paths, std::optional<int64_t> JobLayout::*field,
                   const std::string& name, int64_t fallback) {
    const Got g = get(paths);
    const int64_t v = integer(g).value_or(fallback);
    if (v < 1)
      throw UsageError(fmt::format("{}: {}: must be at least 1", j_.file, where(g)));
    j_.layout.*field = v;
    j_.record(name, v, g.present ? From::file : From::framework_default,
              g.present ? where(g) : fmt::format("{}: {} {}", kConfig, *paths.begin(), fallback));
  }

  void read_layout() {
    j_.layout.gpus = 8;
    j_.record("gpus", 8, From::framework_default,
              "torchtitan run_train.sh: NGPU=${NGPU:-\"8\"}, torchrun --nproc_per_node ${NGPU} (the TOML does not say)");
    const char* par = legacy_ ? "training" : "parallelism";
    count_value({legacy_ ? "training.tensor_parallel_degree" : "parallelism.tensor_parallel_degree"}, &JobLayout::tp, "tp", 1);
    count_value({legacy_ ? "experimental.pipeline_parallel_degree" : "parallelism.pipeline_parallel_degree"}, &JobLayout::pp,
                "pp", 1);
    count_value({legacy_ ? "experimental.context_parallel_degree" : "parallelism.context_parallel_degree"}, &JobLayout::cp,
                "cp", 1);
    if (!legacy_) count_value({"parallelism.expert_parallel_degree"}, &JobLayout::ep, "ep", 1);
    if (!legacy_) {
      const Got etp = get({"parallelism.expert_tensor_parallel_degree"});
      if (const auto v = integer(etp)) {
        if (*v < 1) throw UsageError(fmt::format("{}: {}: must be at least 1", j_.file, where(etp)));
        j_.layout.etp = *v;
        j_.record("etp", *v, From::file, where(etp));
      }
    }
    const Got rep = get({fmt::format("{}.data_parallel_replicate_degree", par).c_str()});
    const Got shard = get({fmt::format("{}.data_parallel_shard_degree", par).c_str()});
    used_.insert(std::string(par) + ".data_parallel_replicate_degree");
    used_.insert(std::string(par) + ".data_parallel_shard_degree");
    const int64_t r = integer(rep).value_or(1), s = integer(shard).value_or(-1);
    if (r < 1) throw UsageError(fmt::format("{}: {}: must be at least 1", j_.file, where(rep)));
    if (s == 0 || s < -1) throw UsageError(fmt::format("{}: {}: must be -1 or at least 1", j_.file, where(shard)));
    j_.layout.dp_replicate = r;
    j_.record("dp_replicate", r, rep.present ? From::file : From::framework_default,
              rep.present ? where(rep) : fmt::format("{}: data_parallel_replicate_degree 1", kConfig));
    j_.layout.fsdp = s;
    j_.record("fsdp", s == -1 ? nlohmann::json("every data-parallel GPU left") : nlohmann::json(s),
              shard.present ? From::file : From::framework_default,
              shard.present ? where(shard) : fmt::format("{}: data_parallel_shard_degree -1", kConfig));

    // Batch: local_batch_size (batch_size in 2024) a data-parallel rank; the global batch
    // local x dp unless global_batch_size is given (then gradient accumulation).
    const Got local = get({legacy_ ? "training.batch_size" : "training.local_batch_size", "training.batch_size"});
    const int64_t lb = integer(local).value_or(8);
    const std::string lb_where = local.present ? where(local) : fmt::format("{}: local_batch_size 8", kConfig);
    const Got global = get({"training.global_batch_size"});
    const int64_t gb = integer(global).value_or(-1);
    if (gb > 0) {
      j_.layout.global_batch = gb;
      j_.record("global_batch", gb, From::file, where(global));
    } else {
      j_.layout.batch_per_dp_rank = lb;
      j_.record("global_batch", "local batch x dp", local.present ? From::file : From::framework_default,
                lb_where + (global.present ? "; " + where(global) : fmt::format("; {}: global_batch_size -1", kConfig)));
    }
    const int64_t pp = j_.layout.pp.value_or(1);
    if (pp > 1) {
      const Got mbs = get({"parallelism.pipeline_parallel_microbatch_size"});
      const int64_t m = integer(mbs).value_or(1);
      j_.layout.micro_batch = m;
      j_.record("micro_batch", m, mbs.present ? From::file : From::framework_default,
                mbs.present ? where(mbs) : fmt::format("{}: pipeline_parallel_microbatch_size 1", kConfig));
      const Got sched = get({"parallelism.pipeline_parallel_schedule", "experimental.pipeline_parallel_schedule"});
      const std::string sc = text(sched).value_or("1F1B");
      if (sc != "1F1B" && sc != "GPipe")
        j_.problem(fmt::format("{}: only the 1F1B schedule is modelled here (interleaved stages: pass --vpp N)",
                               sched.present ? where(sched) : sc),
                   {"vpp"});
      j_.layout.vpp = 1;
      j_.record("vpp", 1, sched.present ? From::file : From::framework_default,
                sched.present ? where(sched) : fmt::format("{}: pipeline_parallel_schedule 1F1B", kConfig));
    } else {
      j_.layout.micro_batch = lb;
      j_.record("micro_batch", lb, local.present ? From::file : From::framework_default, lb_where);
      j_.layout.vpp = 1;
      for (const char* k : {"parallelism.pipeline_parallel_schedule", "parallelism.pipeline_parallel_microbatch_size",
                            "experimental.pipeline_parallel_schedule", "experimental.pipeline_parallel_microbatches"})
        used_.insert(k);
    }
    const Got sl = get({"training.seq_len"});
    const int64_t seq = integer(sl).value_or(2048);
    set_model(j_, &ModelOverrides::n_ctx, "seq", seq, seq, sl.present ? From::file : From::framework_default,
              sl.present ? where(sl) : fmt::format("{}: seq_len 2048", kConfig));
    const Got steps = get({"training.steps"});
    j_.layout.train_steps = integer(steps).value_or(10000);
    j_.record("train_steps", *j_.layout.train_steps, steps.present ? From::file : From::framework_default,
              steps.present ? where(steps) : fmt::format("{}: steps 10000", kConfig));

    // Precision: float8 converters over the bf16 mixed-precision parameters.
    const Got conv = get({"model.converters"});
    bool fp8 = false;
    std::string fp8_where;
    if (conv.present && conv.node->is_array()) {
      for (const auto& e : *conv.node->as_array()) {
        const auto c = e.value<std::string>();
        if (c && (*c == "float8" || *c == "quantize.linear.float8")) fp8 = true;
        else if (c && c->find("mx") != std::string::npos)
          j_.problem(fmt::format("{}: MX formats are not modelled; pass --precision bf16|fp8", where(conv)), {"precision"});
      }
      fp8_where = where(conv);
    }
    const Got legacy8 = get({"float8.enable_float8_linear"});
    if (boolean(legacy8).value_or(false)) {
      fp8 = true;
      fp8_where = where(legacy8);
    }
    const Got mp = get({"training.mixed_precision_param"});
    const std::string param = text(mp).value_or("bfloat16");
    if (fp8) {
      j_.layout.precision = "fp8";
      j_.record("precision", "fp8", From::file, fp8_where);
    } else if (param == "bfloat16") {
      j_.layout.precision = "bf16";
      j_.record("precision", "bf16", mp.present ? From::file : From::framework_default,
                mp.present ? where(mp) : fmt::format("{}: mixed_precision_param bfloat16", kConfig));
    } else {
      j_.problem(fmt::format("{}: fp32 training is not modelled; pass --precision bf16|fp16|fp8", where(mp)), {"precision"});
    }

    // Activation checkpointing.
    const Got mode = get({"activation_checkpoint.mode"});
    const Got opt = get({"activation_checkpoint.selective_ac_option"});
    const std::string m = text(mode).value_or("selective");
    const std::string mw = mode.present ? where(mode) : fmt::format("{}: mode selective", kConfig);
    if (m == "none" || m == "full") {
      j_.layout.recompute = m;
      j_.record("recompute", m, mode.present ? From::file : From::framework_default, mw);
    } else if (m == "selective") {
      const std::string o = text(opt).value_or("2");
      const std::string ow = opt.present ? where(opt) : fmt::format("{}: selective_ac_option \"2\"", kConfig);
      if (o == "op") {
        j_.layout.recompute = "selective";
        j_.record("recompute", "selective", From::file, mw + "; " + ow + " (op-level: the attention's products)");
      } else if (o == "1") {
        j_.layout.recompute = "full";
        j_.record("recompute", "full", From::file, mw + "; " + ow + " (every layer)");
      } else {
        j_.problem(fmt::format("activation checkpointing of one layer in every {} ({}; {}) is not modelled (none, "
                               "selective op-level and full are); pass --recompute MODE",
                               o, mw, ow),
                   {"recompute"});
      }
    } else {
      j_.problem(fmt::format("{}: activation checkpointing mode '{}' is not modelled; pass --recompute MODE", mw, m),
                 {"recompute"});
    }
    const int64_t tp = j_.layout.tp.value_or(1);
    j_.layout.sequence_parallel = tp > 1;
    j_.record("sequence_parallel", tp > 1 ? "on" : "off", From::framework_default,
              "torchtitan's tensor-parallel plan (torchtitan/models/llama3/infra/parallelize.py) shards the norms "
              "over the sequence (SequenceParallel)");
    j_.layout.attention = "flash";
    j_.record("attention", "flash", From::framework_default,
              "torchtitan's attn_type sdpa (torchtitan/models/llama3/model/args.py): PyTorch's fused attention");
    j_.layout.distributed_optimizer = false;
    j_.record("distributed_optimizer", "off", From::framework_default,
              "torchtitan has no distributed optimizer; FSDP shards the optimizer states itself");
    j_.layout.dp_overlap = true;
    j_.record("dp_overlap", "on", From::framework_default, "PyTorch DDP and FSDP reduce gradients during the backward");
    // Async tensor parallelism (micro-pipelined all-gather and reduce-scatter with the matmuls).
    const Got async_tp = get({"parallelism.enable_async_tensor_parallel", "experimental.enable_async_tensor_parallel"});
    const bool overlap = boolean(async_tp).value_or(false);
    j_.layout.tp_comm_overlap = overlap;
    j_.record("tp_comm_overlap", overlap ? "on" : "off", async_tp.present ? From::file : From::framework_default,
              async_tp.present ? where(async_tp) : "torchtitan's default: enable_async_tensor_parallel false");
    // torch.compile: [compile] enable (its components, model and loss), or the older training.compile.
    // predict's torch_compile is the transformer blocks'; components without "model" leave them eager.
    const Got compile = get({"compile.enable", "training.compile"});
    bool compiled = boolean(compile).value_or(false);
    std::string at = compile.present ? where(compile) : "torchtitan's default: compile false";
    const Got parts = get({"compile.components"});
    if (compiled && parts.present) {
      bool model = false;
      if (const toml::array* a = parts.node->as_array())
        for (auto&& e : *a)
          if (const auto v = e.value<std::string>(); v && *v == "model") model = true;
      if (!model) {
        compiled = false;
        at += "; " + where(parts) + ": not the model, so its blocks run eager";
      }
    }
    j_.layout.torch_compile = compiled;
    j_.record("torch_compile", compiled ? "on" : "off", compile.present ? From::file : From::framework_default, at);
  }

  void list_the_rest() {
    static const std::vector<std::pair<std::string, std::string>> sections = {
        {"job", "the job's name and folders"}, {"profiling", "profiling"}, {"metrics", "logging"},
        {"optimizer", "optimizer hyperparameters"}, {"lr_scheduler", "learning-rate schedule"},
        {"checkpoint", "checkpoints"},
        {"validation", "evaluation"}, {"comm", "communication timeouts"}, {"memory_estimation", "a dry run"},
        {"fault_tolerance", "fault tolerance"}, {"quantize", "float8/MX recipe settings (read through [model] converters)"},
        {"float8", "float8 recipe settings"}, {"debug", "debugging"}, {"dataloader", "data loading"},
    };
    static const std::map<std::string, std::string> irrelevant = {
        {"model.hf_assets_path", "the tokenizer's files"}, {"model.tokenizer_path", "the tokenizer's file"},
        {"training.dataset", "data"}, {"training.dataset_path", "data"}, {"training.max_norm", "gradient clipping"},
        {"training.warmup_steps", "learning-rate schedule"},
        {"compile.backend", "torch.compile's backend"},
        {"training.seed", "random seed"}, {"training.deterministic", "determinism"},
        {"training.gc_freq", "Python garbage collection"}, {"parallelism.fsdp_reshard_after_forward",
        "FSDP's resharding policy (with FSDP)"}, {"training.mixed_precision_reduce", "numerics of the reduction"},
        {"parallelism.disable_loss_parallel", "the loss's sharding"}, {"training.enable_cpu_offload", "offload"},
    };
    std::function<void(const toml::table&, const std::string&)> walk = [&](const toml::table& tbl, const std::string& path) {
      for (auto&& [k, v] : tbl) {
        const std::string key = path.empty() ? std::string(k.str()) : path + "." + std::string(k.str());
        const int line = static_cast<int>(v.source().begin.line);
        bool sectioned = false;
        for (const auto& [prefix, why] : sections) {
          if (key == prefix) {
            j_.ignored.push_back({"[" + key + "] (the section)", fmt::format("line {}", line), why});
            sectioned = true;
          }
        }
        if (sectioned) continue;
        if (const toml::table* sub = v.as_table()) {
          walk(*sub, key);
          continue;
        }
        if (used_.count(key)) continue;
        if (auto it = irrelevant.find(key); it != irrelevant.end()) {
          j_.ignored.push_back({key, fmt::format("line {}", line), it->second});
        } else if (o_.ignore.count(key)) {
          j_.ignored.push_back({key, fmt::format("line {}", line), "--job-ignore: you said it does not change the cost"});
        } else if (may_change_cost(key)) {
          j_.problem(fmt::format("{} (line {}) may change the cost and is not understood; pass --job-ignore {} if it "
                                 "does not",
                                 key, line, key));
        } else {
          j_.ignored.push_back({key, fmt::format("line {}", line), "not a key flopscope knows; read as not changing the cost"});
        }
      }
    };
    walk(t_, "");
  }

  Job& j_;
  const toml::table& t_;
  const ReadOptions& o_;
  bool legacy_ = false;
  std::set<std::string> used_;
};

}  // namespace

Job read_torchtitan(const std::string& text, const std::string& path, const ReadOptions& o) {
  toml::table t;
  try {
    t = toml::parse(text, path);
  } catch (const toml::parse_error& e) {
    throw UsageError(fmt::format("{}: line {}: not valid TOML ({})", path, e.source().begin.line, e.description()));
  }
  Job j;
  j.file = path;
  j.format = "torchtitan TOML";
  j.base = preset("gpt3-small");  // every field the reader gives replaces it; the rest are problems
  j.base.name = job_name(path);
  j.base.batch_tokens = 0;  // no published batch: the job gives its own
  TitanReader r(j, t, o);
  r.read();
  j.model.name = j.base.name;
  return j;
}

}  // namespace flopscope::job
