// Analytic models of a whole training run, each a named function with its source.
// FLOPs count 2 per multiply-add and are doubles: GPT-3's 3.1e23 overflows 64-bit integers.
#pragma once

#include <string>
#include <vector>

#include "graph/graph.hpp"
#include "model/model.hpp"

namespace flopscope {

// Parameters from the architecture, GPT-3/Kaplan style: per layer (4 + 2 f) d^2 weights
// plus (9 + f) d biases and layernorm gains (12 d^2 + 13 d for f = 4), plus token (V d) and
// position (s d) embeddings. 174.6B for GPT-3 175B.
double parameter_count(const ModelConfig& m);
// Kaplan et al.'s non-embedding count: 2 L d (2 d_attn + d_ff) = 12 L d^2 for f = 4.
double non_embedding_parameters(const ModelConfig& m);

struct Formula {
  std::string id;        // seed, 6nd, kaplan, palm, megatron, megatron_recompute, chinchilla, graph, graph_model
  std::string title;     // one line for tables
  double flops_per_token = 0;  // training FLOPs per token
  double total_flops = 0;      // x model.train_tokens
  std::string source;          // citation
};

// Each formula for one model. `seed`: 10 d^2 per layer per token forward, backward = forward.
Formula formula_seed(const ModelConfig& m);
// GPT-3 paper / Kaplan et al. 2020: 6 N D with N from the architecture.
Formula formula_6nd(const ModelConfig& m);
// Kaplan et al. 2020 (Table 1): 6 N + 6 L s d per token, N non-embedding.
Formula formula_kaplan(const ModelConfig& m);
// PaLM (Chowdhery et al. 2022, appendix B): 6 N + 12 L H Q T per token.
Formula formula_palm(const ModelConfig& m);
// Narayanan et al. 2021 (Megatron-LM, eq. 3): 72 B s l h^2 (1 + s/6h + V/12lh) per iteration
// of B sequences, without recompute; with recompute 96 B s l h^2 (1 + s/6h + V/16lh).
Formula formula_megatron(const ModelConfig& m);
Formula formula_megatron_recompute(const ModelConfig& m);
// Hoffmann et al. 2022 (Chinchilla), appendix F: per-op forward count, backward = 2 x forward.
Formula formula_chinchilla(const ModelConfig& m);
// The layer graph at full width (b = 1, s = n_ctx) x layers + LM head, forward + backward.
// `model_flops` selects Megatron's convention (causal attention square halved).
Formula formula_graph(const ModelConfig& m, bool model_flops);

std::vector<Formula> all_formulas(const ModelConfig& m);

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
  double seed_total = 0;        // the seed's estimate
  std::vector<SeedFactor> factors;
  double corrected_total = 0;   // seed x all factors = graph GEMM FLOPs, executed
  double product = 0;           // the product of the factors
  double six_nd_total = 0;      // for reference
  double graph_total = 0;       // formula_graph(executed), all ops and the LM head
};
SeedCheck seed_check(const ModelConfig& m);

}  // namespace flopscope
