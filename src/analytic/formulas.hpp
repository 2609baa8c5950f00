// Analytic models of a whole training run, each a named function with its source.
// FLOPs count 2 per multiply-add and are doubles: GPT-3's 3.1e23 overflows 64-bit integers.
#pragma once

#include <string>
#include <vector>

#include "graph/graph.hpp"
#include "model/model.hpp"

namespace flopscope {

// The parameter count N from the architecture, group by group, as the model's framework
// counts it (Hugging Face's sum(p.numel()), tied weights once). Per layer: attention weights
// d dq + 2 d dkv + dq d (dq = heads x d_head, dkv = kv heads x d_head), their biases, the FFN's
// c d d_ff weights (c = 3 for SwiGLU, else 2) and biases, two norms (2 d each for LayerNorm,
// d for RMSNorm). Once: token embeddings V d, the learned position table (rows x d), the final
// norm (when count_final_norm; GPT-3's presets leave it out, see ModelConfig), and the LM
// head V d when untied. GPT-3 175B: 174.6B; Llama 3.1 405B: 405,853,388,800.
// One layer of one kind (LayerSpec): its parameters by group. MoE layers: the routed experts
// (all E, with their biases), the active ones (top-k of them), the shared experts (with
// Qwen2-MoE's gate) and the router (E x d, plus its bias); the dense FFN is 0. MLA: Q's
// down/up projections (or Q straight from d), K and V's joint down projection and up
// projection, the output; its latent norms are in attention_extra with QK-norm's weights
// and the attention sinks.
struct LayerParameters {
  double attention = 0;         // weight matrices of Q, K, V and output (MLA: its projections)
  double attention_biases = 0;
  double attention_extra = 0;   // QK-norm weights, MLA's latent norms, attention sinks
  double ffn = 0;               // the dense FFN's up (and gate) and down weights
  double ffn_biases = 0;
  double norms = 0;             // the two norms
  double routed_experts = 0;    // every routed expert, weights and biases
  double active_experts = 0;    // top-k of them
  double shared_experts = 0;    // and the shared experts' gate
  double router = 0;
  double total() const {
    return attention + attention_biases + ffn + ffn_biases + norms + attention_extra + routed_experts + shared_experts +
           router;
  }
  // What one token runs through: every weight but the routed experts it is not sent to.
  double active() const { return total() - routed_experts + active_experts; }
};
LayerParameters layer_parameters(const ModelConfig& m, const LayerSpec& l);

struct ParameterBreakdown {
  double embeddings = 0;        // token embedding table, V d
  double positions = 0;         // learned position table (0 with RoPE)
  // Per layer of the model's first kind of layer (a dense model's only one): the groups below.
  double attention = 0;         // Q, K, V and output weights
  double attention_biases = 0;
  double ffn = 0;               // up (and gate) and down weights
  double ffn_biases = 0;
  double norms = 0;             // the two norms
  double final_norm = 0;        // once, after the last layer
  double lm_head = 0;           // untied LM head, V d (0 when tied)
  double n_layers = 0;
  // Each kind of layer of the schedule with its count.
  std::vector<std::pair<LayerKind, LayerParameters>> kinds;
  double per_layer() const { return attention + attention_biases + ffn + ffn_biases + norms; }
  double layers() const;         // sum over the kinds: count x LayerParameters::total
  double active_layers() const;  // count x LayerParameters::active
  double total() const { return embeddings + positions + layers() + final_norm + lm_head; }
  // Active per token (convention stated in docs/method.md): embeddings, LM head, norms,
  // attention, router, shared experts and top-k routed experts. A dense model: total().
  double active() const { return embeddings + positions + active_layers() + final_norm + lm_head; }
};
ParameterBreakdown parameter_breakdown(const ModelConfig& m);
double parameter_count(const ModelConfig& m);  // parameter_breakdown(m).total()
double active_parameter_count(const ModelConfig& m);  // parameter_breakdown(m).active()
// Kaplan et al.'s non-embedding count, the layers' weight matrices only (no biases, norms or
// embeddings): 2 L d (2 d_attn + d_ff) = 12 L d^2 for GPT-3; L (d dq + 2 d dkv + dq d + c d d_ff)
// in general.
double non_embedding_parameters(const ModelConfig& m);

// Whether the model has GPT-3's architecture (multi-head attention, GeLU MLP at d_ff = 4 d,
// LayerNorm, learned positions, every bias, d = heads x d_head): the seed check is GPT-3's and
// applies only to such models.
bool gpt3_shaped(const ModelConfig& m);
// Whether Chinchilla's appendix F count applies: multi-head attention and a two-matrix FFN
// (it has no term for grouped-query K/V projections or SwiGLU's gate).
bool chinchilla_applies(const ModelConfig& m);

// Megatron-LM pads the vocabulary to a multiple of --make-vocab-size-divisible-by (default
// 128) x the tensor-parallel size (megatron/training/tokenizer/tokenizer.py,
// _vocab_size_with_padding): ceil(V / multiple) x multiple.
inline constexpr int64_t kMegatronVocabDivisibleBy = 128;
int64_t megatron_padded_vocab(int64_t vocab, int64_t multiple);

struct Formula {
  std::string id;        // seed, 6nd, kaplan, palm, megatron, megatron_recompute, megatron_lm, chinchilla, graph, graph_model
  std::string title;     // one line for tables
  double flops_per_token = 0;  // training FLOPs per token
  double total_flops = 0;      // x model.train_tokens
  std::string source;          // citation
};

// Each formula for one model. `seed`: 10 d^2 per layer per token forward, backward = forward.
Formula formula_seed(const ModelConfig& m);
// GPT-3 paper / Kaplan et al. 2020: 6 N D with N the total parameter count from the
// architecture (embeddings included), as the Llama 3 paper's 3.8e25 = 6 x 405B x 15.6T does;
// for a mixture of experts N is the active count (6 N_active D).
Formula formula_6nd(const ModelConfig& m);
// Kaplan et al. 2020 (Table 1): 6 N + 6 L s d_attn per token, N non-embedding, d_attn = dq.
Formula formula_kaplan(const ModelConfig& m);
// PaLM (Chowdhery et al. 2022, appendix B): 6 N + 12 L H Q T per token, N all parameters.
Formula formula_palm(const ModelConfig& m);
// Narayanan et al. 2021 (Megatron-LM, eq. 3): 72 B s l h^2 (1 + s/6h + V/12lh) per iteration
// of B sequences, without recompute; with recompute 96 B s l h^2 (1 + s/6h + V/16lh).
// Generalised from the same derivation (every GEMM 3 times, forward 2 FLOPs per multiply-add,
// the full s x s square): per token 3 L (2 (d dq + 2 d dkv + dq d) + 2 c d d_ff + 4 s dq)
// + 6 V d, which is eq. 3 exactly for GPT-3's shape; with recompute the layers' 3 becomes 4.
Formula formula_megatron(const ModelConfig& m);
Formula formula_megatron_recompute(const ModelConfig& m);
// Megatron-LM's current num_floating_point_operations (megatron/training/training.py, dense
// transformer): 6 per token per weight of the QKV (query groups, kv channels), output and FFN
// GEMMs (ffn expansion 3 with SwiGLU, else 2), the core attention with the causal square
// halved (dq s per token, both products), and the logits 6 d V.
// The logits use Megatron-LM's padded vocabulary (megatron_padded_vocab), as its
// num_floating_point_operations does (args.padded_vocab_size): GPT-2's 50257 counts as 50304.
// `vocab_multiple` is --make-vocab-size-divisible-by x tp (default 128 x 1).
Formula formula_megatron_lm(const ModelConfig& m, int64_t vocab_multiple = kMegatronVocabDivisibleBy);
// Hoffmann et al. 2022 (Chinchilla), appendix F: per-op forward count, backward = 2 x forward.
// Only where chinchilla_applies(m); all_formulas leaves it out elsewhere.
Formula formula_chinchilla(const ModelConfig& m);
// The layer graph at full width (b = 1, s = n_ctx) x layers + LM head, forward + backward.
// `model_flops` selects Megatron's convention (causal attention square halved).
Formula formula_graph(const ModelConfig& m, bool model_flops);

// `megatron_vocab_multiple`: the megatron_lm line's vocabulary padding (divisible-by x tp).
std::vector<Formula> all_formulas(const ModelConfig& m, int64_t megatron_vocab_multiple = kMegatronVocabDivisibleBy);

// Why the seed's figure is too low: each factor computed from the graph at full width.
struct SeedFactor {
  std::string id;           // mac_as_one_flop, attention_projections, ffn, attention_scores, backward_2x
  std::string description;  // what the seed assumed and what the graph says
  double seed_value = 0;    // the seed's figure (per token per layer, or ratio)
  double graph_value = 0;   // the graph's
  double factor = 0;        // multiplies the running total
  double running_total = 0; // total training FLOPs after this correction
};
struct SeedCheck {
  bool applies = true;          // false for a model not GPT-3-shaped (then only `note` is set)
  std::string note;             // why not, when it does not apply
  double seed_total = 0;        // the seed's estimate
  std::vector<SeedFactor> factors;
  double corrected_total = 0;   // seed x all factors = graph GEMM FLOPs, executed
  double product = 0;           // the product of the factors
  double six_nd_total = 0;      // for reference
  double graph_total = 0;       // formula_graph(executed), all ops and the LM head
};
SeedCheck seed_check(const ModelConfig& m);

}  // namespace flopscope
