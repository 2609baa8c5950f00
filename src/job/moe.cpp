// Megatron Core's mixture-of-experts settings, as a Megatron-LM launch script (--num-experts,
// --moe-router-topk, ...) or a NeMo / Megatron-Bridge recipe (model.num_moe_experts,
// model.moe_router_topk, ...) gives them: one table, one reading (readers.hpp). The defaults
// are TransformerConfig's (megatron/core/transformer/transformer_config.py), which
// Megatron-LM's arguments.py and NeMo pass through.
#include <algorithm>
#include <optional>
#include <vector>

#include <fmt/format.h>

#include "job/readers.hpp"
#include "util/error.hpp"

namespace flopscope::job {

namespace {

constexpr const char* kCore = "Megatron Core TransformerConfig (megatron/core/transformer/transformer_config.py)";

// The settings that do not change what the layer computes: how tokens travel and which kernels
// run them. With no capacity factor no token is dropped, so the drop policy does nothing.
constexpr const char* kKernels = "how the experts' tokens are moved or which kernels run them: the same FLOPs";

const std::string* text_of(const MoeGiven& g, const std::string& key) {
  auto it = g.find(key);
  return it == g.end() ? nullptr : &it->second.text;
}

std::string where_of(const MoeGiven& g, const std::string& key) {
  auto it = g.find(key);
  return it == g.end() ? fmt::format("{}: {} (default)", kCore, key) : it->second.where;
}

int64_t positive(const Job& j, const MoeGiven& g, const std::string& key) {
  const std::string& t = *text_of(g, key);
  if (const auto v = positive_whole(t)) return *v;
  throw UsageError(fmt::format("{}: {}: '{}' is not a positive whole number", j.file, where_of(g, key), t));
}

double real(const Job& j, const MoeGiven& g, const std::string& key) {
  const std::string& t = *text_of(g, key);
  if (const auto v = finite_number(t); v && *v >= 0) return *v;
  throw UsageError(fmt::format("{}: {}: '{}' is not a number at least 0", j.file, where_of(g, key), t));
}

bool truth(const Job& j, const MoeGiven& g, const std::string& key) {
  const std::string& t = *text_of(g, key);
  if (t == "true" || t == "True" || t == "1") return true;
  if (t == "false" || t == "False" || t == "0") return false;
  throw UsageError(fmt::format("{}: {}: '{}' is not true or false", j.file, where_of(g, key), t));
}

bool null_text(const std::string& t) { return t.empty() || t == "null" || t == "None" || t == "~"; }

// moe_layer_freq as Megatron Core reads it: an integer N (layer i is MoE when i % N == 0) or a
// Python list, written out ([1, 0, 1]) or as sums of repeats (([0]*3+[1]*58)), one entry a
// layer, 1 for MoE. nullopt when the text is neither.
std::optional<std::vector<int>> layer_pattern(const std::string& text, int64_t layers) {
  std::string s;
  for (char c : text)
    if (c != ' ' && c != '"' && c != '\'') s += c;
  if (s.empty()) return std::nullopt;
  if (std::all_of(s.begin(), s.end(), [](char c) { return c >= '0' && c <= '9'; })) {
    const auto n = positive_whole(s);
    if (!n || layers < 1) return std::nullopt;
    std::vector<int> p(static_cast<size_t>(layers));
    for (int64_t i = 0; i < layers; ++i) p[static_cast<size_t>(i)] = i % *n == 0;
    return p;
  }
  while (s.size() >= 2 && s.front() == '(' && s.back() == ')') s = s.substr(1, s.size() - 2);
  std::vector<int> p;
  size_t i = 0;
  while (i < s.size()) {
    if (s[i] != '[') return std::nullopt;
    const size_t close = s.find(']', i);
    if (close == std::string::npos) return std::nullopt;
    std::vector<int> items;
    for (size_t k = i + 1; k < close; ++k) {
      if (s[k] == '0' || s[k] == '1') {
        items.push_back(s[k] - '0');
      } else if (s[k] != ',') {
        return std::nullopt;
      }
    }
    i = close + 1;
    long long times = 1;
    if (i < s.size() && s[i] == '*') {
      size_t used = 0;
      try {
        times = std::stoll(s.substr(i + 1), &used);
      } catch (const std::exception&) {
        return std::nullopt;
      }
      if (times < 0 || times > 1'000'000) return std::nullopt;
      i += 1 + used;
    }
    for (long long t = 0; t < times; ++t) p.insert(p.end(), items.begin(), items.end());
    if (i < s.size()) {
      if (s[i] != '+') return std::nullopt;
      ++i;
    }
  }
  return p;
}

}  // namespace

const std::vector<MoeKey>& megatron_core_moe_keys() {
  static const std::vector<MoeKey> keys = {
      {"num_moe_experts", "--num-experts", ""},
      {"moe_router_topk", "--moe-router-topk", ""},
      {"moe_ffn_hidden_size", "--moe-ffn-hidden-size", ""},
      {"moe_shared_expert_intermediate_size", "--moe-shared-expert-intermediate-size", ""},
      {"moe_layer_freq", "--moe-layer-freq", ""},
      {"moe_router_score_function", "--moe-router-score-function", ""},
      {"moe_router_pre_softmax", "--moe-router-pre-softmax", ""},
      {"moe_router_num_groups", "--moe-router-num-groups", ""},
      {"moe_router_group_topk", "--moe-router-group-topk", ""},
      {"moe_router_load_balancing_type", "--moe-router-load-balancing-type", ""},
      {"moe_aux_loss_coeff", "--moe-aux-loss-coeff", ""},
      {"moe_expert_capacity_factor", "--moe-expert-capacity-factor", ""},
      {"moe_pad_expert_input_to_capacity", "--moe-pad-expert-input-to-capacity", ""},
      {"moe_grouped_gemm", "--moe-grouped-gemm", kKernels},
      {"moe_token_dispatcher_type", "--moe-token-dispatcher-type", ""},
      {"moe_permute_fusion", "--moe-permute-fusion", kKernels},
      {"moe_router_fusion", "--moe-router-fusion", kKernels},
      {"moe_router_dtype", "--moe-router-dtype", "the router's logits in fp32: a GEMM of d x E a token, counted the same"},
      {"moe_token_drop_policy", "--moe-token-drop-policy", "which tokens are dropped past the capacity: the same FLOPs"},
      {"moe_router_topk_scaling_factor", "--moe-router-topk-scaling-factor", ""},
      {"moe_router_enable_expert_bias", "--moe-router-enable-expert-bias",
       "a per-expert bias on the scores used to choose (aux-loss-free balancing): an add of E a token"},
      {"moe_router_bias_update_rate", "--moe-router-bias-update-rate", "the expert bias's update: outside the step's GEMMs"},
      {"moe_z_loss_coeff", "--moe-z-loss-coeff", "the router's z-loss: E operations a token, not counted"},
      {"moe_input_jitter_eps", "--moe-input-jitter-eps", "noise on the router's input: no FLOPs counted"},
      {"moe_per_layer_logging", "--moe-per-layer-logging", "logging"},
      {"moe_use_legacy_grouped_gemm", "--moe-use-legacy-grouped-gemm", kKernels},
      {"moe_extended_tp", "--moe-extended-tp",
       "a layout of the experts' weights over tp (deprecated in Megatron Core; predict takes --ep and --etp)"},
  };
  return keys;
}

void read_megatron_core_moe(Job& j, const MoeGiven& g, int64_t layers, std::optional<int64_t> d_ff) {
  const std::string* experts = text_of(g, "num_moe_experts");
  if (!experts || null_text(*experts)) return;
  const int64_t e = positive(j, g, "num_moe_experts");
  if (e < 2) return;  // NeMo's num_moe_experts 1: a dense model
  set_model(j, &ModelOverrides::n_experts, "experts", e, e, From::file, where_of(g, "num_moe_experts"));

  const bool has_k = text_of(g, "moe_router_topk") != nullptr;
  const int64_t k = has_k ? positive(j, g, "moe_router_topk") : 2;
  if (k > e)
    throw UsageError(fmt::format("{}: {}: top-k {} is more than the {} experts", j.file, where_of(g, "moe_router_topk"), k, e));
  set_model(j, &ModelOverrides::top_k, "top_k", k, k, has_k ? From::file : From::framework_default,
            where_of(g, "moe_router_topk") + (has_k ? "" : ": 2"));

  if (const std::string* w = text_of(g, "moe_ffn_hidden_size"); w && !null_text(*w)) {
    const int64_t f = positive(j, g, "moe_ffn_hidden_size");
    set_model(j, &ModelOverrides::d_ff_expert, "d_ff_expert", f, f, From::file, where_of(g, "moe_ffn_hidden_size"));
  } else if (d_ff) {
    set_model(j, &ModelOverrides::d_ff_expert, "d_ff_expert", *d_ff, *d_ff, From::framework_default,
              fmt::format("{}: moe_ffn_hidden_size None: the ffn_hidden_size ({})", kCore, *d_ff));
  } else {
    j.problem("the experts' FFN width: neither moe_ffn_hidden_size nor ffn_hidden_size is given; pass --d-ff-expert N",
              {"d_ff_expert"});
  }

  // Megatron Core's shared experts are one MLP of the given total width ("num_shared_experts x
  // each one's size"): the same FLOPs and parameters as that many of the smaller ones.
  if (const std::string* s = text_of(g, "moe_shared_expert_intermediate_size"); s && !null_text(*s)) {
    const int64_t w = positive(j, g, "moe_shared_expert_intermediate_size");
    const std::string at = where_of(g, "moe_shared_expert_intermediate_size");
    set_model(j, &ModelOverrides::n_shared_experts, "shared_experts", 1, 1, From::derived,
              at + ": one shared MLP of that total width");
    set_model(j, &ModelOverrides::d_ff_shared, "d_ff_shared", w, w, From::file, at);
  }

  // Which layers are MoE. flopscope's schedule: the first first_dense layers dense, then
  // layers i with (i + 1) % step == 0 MoE; a pattern outside that form is a problem.
  if (const std::string* f = text_of(g, "moe_layer_freq"); f && !null_text(*f)) {
    const std::string at = where_of(g, "moe_layer_freq");
    const auto p = layer_pattern(*f, layers);
    if (!p) throw UsageError(fmt::format("{}: {}: not an integer or a list of 0s and 1s", j.file, at));
    if (layers > 0 && static_cast<int64_t>(p->size()) != layers)
      throw UsageError(fmt::format("{}: {}: {} entries for {} layers", j.file, at, p->size(), layers));
    int64_t dense = 0;
    while (dense < static_cast<int64_t>(p->size()) && (*p)[static_cast<size_t>(dense)] == 0) ++dense;
    const bool rest_moe = std::all_of(p->begin() + dense, p->end(), [](int x) { return x == 1; });
    int64_t step = 0;
    for (int64_t s = 1; s <= static_cast<int64_t>(p->size()) && !step; ++s) {
      bool ok = true;
      for (size_t i = 0; i < p->size() && ok; ++i) ok = (*p)[i] == ((static_cast<int64_t>(i) + 1) % s == 0);
      if (ok) step = s;
    }
    if (rest_moe && dense < static_cast<int64_t>(p->size())) {
      set_model(j, &ModelOverrides::first_dense, "first_dense", dense, dense, From::file, at);
      set_model(j, &ModelOverrides::moe_layer_step, "moe_step", 1, 1, From::file, at);
    } else if (step > 0) {
      set_model(j, &ModelOverrides::moe_layer_step, "moe_step", step, step, From::file, at);
    } else {
      // Megatron's integer N makes layer 0 MoE (i % N == 0); flopscope's step makes layer N - 1
      // the first: the same count only when N divides the layers.
      j.problem(fmt::format("{}: this pattern of MoE layers is not modelled (flopscope's are: the first layers dense "
                            "and the rest MoE, or every N-th layer MoE counting from layer N - 1)",
                            at),
                {"moe_step"});
    }
  }

  // The router. Megatron Core: softmax scores of the top-k logits (topk then softmax; with
  // pre_softmax, softmax over all then top-k, not renormalised); sigmoid: scores of all, top-k,
  // renormalised when k > 1.
  const std::string score = text_of(g, "moe_router_score_function") ? *text_of(g, "moe_router_score_function") : "softmax";
  const bool pre_softmax = text_of(g, "moe_router_pre_softmax") && truth(j, g, "moe_router_pre_softmax");
  const std::string at_score = where_of(g, "moe_router_score_function");
  if (score == "softmax") {
    set_model(j, &ModelOverrides::router_score, "router_score", RouterScore::softmax, "softmax",
              text_of(g, "moe_router_score_function") ? From::file : From::framework_default, at_score + ": softmax");
    set_model(j, &ModelOverrides::router_topk_first, "router_topk_first", !pre_softmax, !pre_softmax,
              text_of(g, "moe_router_pre_softmax") ? From::file : From::framework_default,
              where_of(g, "moe_router_pre_softmax") + (pre_softmax ? ": softmax, then top-k" : ": top-k, then softmax"));
    set_model(j, &ModelOverrides::router_norm_topk, "router_norm_topk", false, false, From::derived,
              "Megatron Core's softmax router: the k weights are the softmax's, not renormalised");
  } else if (score == "sigmoid") {
    set_model(j, &ModelOverrides::router_score, "router_score", RouterScore::sigmoid, "sigmoid", From::file, at_score);
    set_model(j, &ModelOverrides::router_topk_first, "router_topk_first", false, false, From::derived,
              "Megatron Core's sigmoid router: scores of every expert, then top-k");
    set_model(j, &ModelOverrides::router_norm_topk, "router_norm_topk", k > 1, k > 1, From::derived,
              "Megatron Core's sigmoid router: the k scores renormalised when k > 1");
  } else {
    throw UsageError(fmt::format("{}: {}: '{}' is not softmax or sigmoid", j.file, at_score, score));
  }
  const std::string* groups = text_of(g, "moe_router_num_groups");
  const std::string* group_k = text_of(g, "moe_router_group_topk");
  if (groups && !null_text(*groups)) {
    const int64_t ng = positive(j, g, "moe_router_num_groups");
    if (!group_k || null_text(*group_k))
      throw UsageError(fmt::format("{}: {} without moe_router_group_topk", j.file, where_of(g, "moe_router_num_groups")));
    const int64_t gk = positive(j, g, "moe_router_group_topk");
    if (e % ng != 0 || gk > ng)
      throw UsageError(fmt::format("{}: {}: {} groups of {} experts, top {} of them: the groups must divide the experts "
                                   "and be at least the groups chosen",
                                   j.file, where_of(g, "moe_router_num_groups"), ng, e, gk));
    set_model(j, &ModelOverrides::n_group, "n_group", ng, ng, From::file, where_of(g, "moe_router_num_groups"));
    set_model(j, &ModelOverrides::topk_group, "topk_group", gk, gk, From::file, where_of(g, "moe_router_group_topk"));
  }

  // The load-balancing loss: its weight, none for "none" (sinkhorn balances by another algorithm).
  const std::string lb =
      text_of(g, "moe_router_load_balancing_type") ? *text_of(g, "moe_router_load_balancing_type") : "aux_loss";
  if (lb == "sinkhorn")
    j.problem(fmt::format("{}: the Sinkhorn router is not modelled", where_of(g, "moe_router_load_balancing_type")));
  const double coeff = text_of(g, "moe_aux_loss_coeff") ? real(j, g, "moe_aux_loss_coeff") : 0.0;
  const double aux = lb == "none" ? 0.0 : coeff;
  set_model(j, &ModelOverrides::aux_loss_coef, "aux_loss_coef", aux, aux,
            text_of(g, "moe_aux_loss_coeff") ? From::file : From::framework_default,
            lb == "none" ? where_of(g, "moe_router_load_balancing_type") + ": none"
                         : where_of(g, "moe_aux_loss_coeff") + (text_of(g, "moe_aux_loss_coeff") ? "" : ": 0.0"));

  // The token dispatcher: the same FLOPs, not the same communication (predict's --moe-dispatcher).
  // Megatron Core's default is allgather; its older alltoall_seq moves what alltoall does.
  const std::string* disp = text_of(g, "moe_token_dispatcher_type");
  std::string dispatcher = disp ? *disp : "allgather";
  if (dispatcher == "alltoall_seq") dispatcher = "alltoall";
  if (dispatcher != "allgather" && dispatcher != "alltoall" && dispatcher != "flex")
    throw UsageError(fmt::format("{}: {}: '{}' is not allgather, alltoall or flex", j.file,
                                 where_of(g, "moe_token_dispatcher_type"), *disp));
  j.layout.moe_dispatcher = dispatcher;
  j.record("moe_dispatcher", dispatcher, disp ? From::file : From::framework_default,
           where_of(g, "moe_token_dispatcher_type") + (disp ? "" : ": allgather"));

  // The scale on the top-k weights (after any renormalisation): k multiplies a token.
  if (const std::string* s = text_of(g, "moe_router_topk_scaling_factor"); s && !null_text(*s)) {
    const double f = real(j, g, "moe_router_topk_scaling_factor");
    set_model(j, &ModelOverrides::routed_scaling_factor, "routed_scaling_factor", f, f, From::file,
              where_of(g, "moe_router_topk_scaling_factor"));
  }
  // The capacity: tokens past it are dropped; padded to it, every expert runs its full capacity.
  if (const std::string* c = text_of(g, "moe_expert_capacity_factor"); c && !null_text(*c)) {
    const double cf = real(j, g, "moe_expert_capacity_factor");
    set_model(j, &ModelOverrides::capacity_factor, "capacity_factor", cf, cf, From::file,
              where_of(g, "moe_expert_capacity_factor"));
    const bool pad = text_of(g, "moe_pad_expert_input_to_capacity") && truth(j, g, "moe_pad_expert_input_to_capacity");
    if (pad && cf != 1.0)
      j.problem(fmt::format("{}: experts padded to a capacity factor of {} run {} x the balanced router's tokens: not "
                            "modelled (1.0 is)",
                            where_of(g, "moe_pad_expert_input_to_capacity"), cf, cf),
                {"capacity_factor"});
  }
}

}  // namespace flopscope::job
