// The 12 real job files in ../shared/data/jobs (SOURCES.md says where each comes from): each
// reads right, its key values checked here against the file by hand, or fails with the one
// clear line it should (mixture of experts not modelled yet in predict; a vocabulary only a
// tokenizer file gives; more model parallelism than the script launches). Context parallelism
// and FSDP are read as they are (predict models both).
// Skipped when ../shared/data/jobs is absent.
#include <gtest/gtest.h>

#include <filesystem>

#include "analytic/formulas.hpp"
#include "job/job.hpp"
#include "util/error.hpp"

namespace {

using namespace flopscope;
using namespace flopscope::job;

namespace fs = std::filesystem;

fs::path shared_jobs() { return fs::path(FLOPSCOPE_SOURCE_DIR) / ".." / "shared" / "data" / "jobs"; }

class JobShared : public ::testing::Test {
 protected:
  void SetUp() override {
    if (!fs::is_directory(shared_jobs())) GTEST_SKIP() << shared_jobs() << " is absent";
  }
  static std::string path(const char* name) { return (shared_jobs() / name).string(); }
  static Job read(const char* name) { return read_job(path(name), {}); }
};

std::string error_of(Job j, const Flags& flags = {}) {
  try {
    settle(j, flags, 8);
  } catch (const UsageError& e) {
    return e.what();
  }
  return "";
}

bool has(const std::string& s, const std::string& part) { return s.find(part) != std::string::npos; }

ModelConfig model_of(const Job& j, std::optional<int64_t> vocab = std::nullopt) {
  ModelOverrides o = j.model;
  if (vocab) o.vocab = vocab;
  return apply_overrides(j.base, o);
}

TEST_F(JobShared, MegatronGpt3_175b) {
  // 1 node x 8 GPUs launched for tp 8 x pp 16: the file contradicts itself.
  const std::string e = error_of(read("megatron-gpt3-175b.sh"));
  EXPECT_TRUE(has(e, "runs on 8 GPUs") && has(e, "tp x pp x cp = 8 x 16 x 1 = 128") && has(e, "pass --gpus N")) << e;
  Job j = read("megatron-gpt3-175b.sh");
  const Settled s = settle(j, {{"gpus", {"--gpus", "1024"}}}, 8);
  const ModelConfig m = model_of(j);
  EXPECT_EQ(m.n_layers, 96);        // line 29
  EXPECT_EQ(m.d_model, 12288);      // line 30
  EXPECT_EQ(m.n_heads, 96);         // line 31
  EXPECT_EQ(m.n_ctx, 2048);         // line 32
  EXPECT_EQ(m.d_ff(), 4 * 12288);   // no --ffn-hidden-size: Megatron's 4h
  EXPECT_EQ(m.vocab, 51200);        // GPT-2 BPE's 50257 padded to 128 x tp 8
  EXPECT_EQ(s.layout.tp, 8);        // line 56
  EXPECT_EQ(s.layout.pp, 16);       // line 57
  EXPECT_EQ(s.layout.micro_batch, 1);
  EXPECT_EQ(s.layout.global_batch, 1536);  // line 39
  EXPECT_EQ(s.layout.precision, "fp16");   // line 47
  EXPECT_DOUBLE_EQ(m.train_tokens, 500000.0 * 1536 * 2048);  // --train-iters 500000
}

TEST_F(JobShared, MegatronLlama3_8bFp8) {
  Job j = read("megatron-llama3-8b-fp8.sh");
  const Settled s = settle(j, {}, 8);
  const ModelConfig m = model_of(j);
  EXPECT_EQ(m.n_layers, 32);  // NUM_LAYERS=32
  EXPECT_EQ(m.d_model, 4096);
  EXPECT_EQ(m.d_ff(), 14336);
  EXPECT_EQ(m.n_heads, 32);
  EXPECT_EQ(m.kv_heads(), 8);  // --group-query-attention --num-query-groups 8
  EXPECT_EQ(m.d_head, 128);
  EXPECT_EQ(m.n_ctx, 8192);
  EXPECT_DOUBLE_EQ(m.rope_theta, 1e6);
  EXPECT_EQ(m.ffn, FfnKind::swiglu);
  EXPECT_EQ(m.norm, NormKind::rmsnorm);
  EXPECT_FALSE(m.tied_embeddings);
  EXPECT_EQ(m.biases, (LinearBiases{false, false, false}));
  EXPECT_EQ(m.vocab, 128384);  // MOCK data: NullTokenizer, --vocab-size 128256 + 1, padded to 128
  EXPECT_EQ(s.layout.gpus, 8);  // GPUS_PER_NODE=8 x NUM_NODES=1
  EXPECT_EQ(s.layout.tp, 1);
  EXPECT_EQ(s.layout.cp, 1);
  EXPECT_EQ(s.layout.pp, 1);   // the flag is commented out
  EXPECT_EQ(s.layout.global_batch, 128);
  EXPECT_EQ(s.layout.precision, "fp8");  // DTYPE="fp8": the if-block's --fp8-format hybrid
  EXPECT_EQ(s.layout.sequence_parallel, true);
  EXPECT_EQ(s.layout.distributed_optimizer, true);  // DDP_ARGS appended to TRAINING_ARGS
  EXPECT_EQ(s.layout.dp_overlap, true);
  EXPECT_DOUBLE_EQ(m.train_tokens, 1953125000.0 * 8192);  // --train-samples
}

TEST_F(JobShared, MegatronLlmJp172b) {
  const std::string e = error_of(read("megatron-llmjp-172b.sh"));
  EXPECT_TRUE(has(e, "--tokenizer-type Llama2Tokenizer (line 303)") && has(e, "pass --vocab N")) << e;
  Job j = read("megatron-llmjp-172b.sh");
  const Settled s = settle(j, {{"vocab", {"--vocab", "99584"}}}, 8);
  const ModelConfig m = model_of(j, 99584);
  EXPECT_EQ(s.layout.gpus, 512);  // mpirun -np $NUM_GPUS: #SBATCH --nodes 64 (Slurm's SLURM_JOB_NUM_NODES) x 8
  EXPECT_EQ(m.d_model, 12288);
  EXPECT_EQ(m.d_ff(), 38464);
  EXPECT_EQ(m.n_layers, 96);
  EXPECT_EQ(m.n_heads, 96);
  EXPECT_EQ(m.kv_heads(), 16);
  EXPECT_EQ(m.n_ctx, 4096);
  EXPECT_EQ(s.layout.tp, 4);
  EXPECT_EQ(s.layout.pp, 16);
  EXPECT_EQ(s.layout.global_batch, 1728);
  EXPECT_EQ(s.layout.precision, "fp8");  // --bf16 and, last, --fp8-format hybrid
  EXPECT_EQ(s.layout.recompute, "selective");
  EXPECT_EQ(s.layout.attention, "flash");  // --use-flash-attn
  EXPECT_DOUBLE_EQ(m.train_tokens, 296699.0 * 1728 * 4096);
}

// A job's mixture of experts against the preset of the same published model: the same
// experts, router width and layers, so the same total and active N as transformers counts them.
void expect_same_moe(const ModelConfig& m, const std::string& preset_name) {
  const ModelConfig p = preset(preset_name);
  EXPECT_EQ(m.n_experts, p.n_experts);
  EXPECT_EQ(m.top_k, p.top_k);
  EXPECT_EQ(m.d_ff_expert, p.d_ff_expert);
  EXPECT_EQ(m.n_shared_experts, p.n_shared_experts);
  EXPECT_EQ(m.d_ff_shared, p.d_ff_shared);
  EXPECT_EQ(m.layer_kinds().size(), p.layer_kinds().size());
  EXPECT_DOUBLE_EQ(parameter_count(m), parameter_count(p));
  EXPECT_DOUBLE_EQ(active_parameter_count(m), active_parameter_count(p));
}

TEST_F(JobShared, MegatronMixtral8x7b) {
  // The Llama 2 tokenizer's vocabulary is not in the file; the model is.
  // predict models expert parallelism: the experts settle, with the file's ep (checked below).
  const std::string e = error_of(read("megatron-mixtral-8x7b.sh"), {{"vocab", {"--vocab", "32000"}}});
  EXPECT_FALSE(has(e, "mixture of experts")) << e;
  Job j = read("megatron-mixtral-8x7b.sh");
  const Settled s = settle(j, {{"vocab", {"--vocab", "32000"}}}, 8, false);
  const ModelConfig m = model_of(j, 32000);
  expect_same_moe(m, "mixtral-8x7b");
  EXPECT_DOUBLE_EQ(m.aux_loss_coef, 1e-2);
  EXPECT_EQ(s.layout.ep, 8);
  EXPECT_EQ(s.layout.pp, 4);
}

TEST_F(JobShared, NemoGpt3_175b) {
  Job j = read("nemo-gpt3-175b.yaml");
  const Settled s = settle(j, {}, 8);
  const ModelConfig m = model_of(j);
  EXPECT_EQ(s.layout.gpus, 128);  // 16 nodes x 8 devices
  EXPECT_EQ(s.layout.tp, 4);
  EXPECT_EQ(s.layout.pp, 8);
  EXPECT_EQ(s.layout.vpp, 6);
  EXPECT_EQ(s.layout.global_batch, 256);
  EXPECT_EQ(s.layout.precision, "fp8");  // model.fp8: true
  EXPECT_EQ(s.layout.recompute, "none");
  EXPECT_EQ(s.layout.distributed_optimizer, true);  // distributed_fused_adam
  EXPECT_EQ(m.n_layers, 96);
  EXPECT_EQ(m.d_ff(), 49152);
  EXPECT_EQ(m.vocab, 50688);  // GPT2BPETokenizer, padded to 128 x 4
}

TEST_F(JobShared, NemoLlama2_70b) {
  const std::string e = error_of(read("nemo-llama2-70b.yaml"));
  EXPECT_TRUE(has(e, "library sentencepiece") && has(e, "pass --vocab N")) << e;
  Job j = read("nemo-llama2-70b.yaml");
  const Settled s = settle(j, {{"vocab", {"--vocab", "32000"}}}, 8);
  const ModelConfig m = model_of(j, 32000);
  EXPECT_EQ(s.layout.gpus, 1024);  // 128 x 8
  EXPECT_EQ(s.layout.tp, 4);
  EXPECT_EQ(s.layout.pp, 4);
  EXPECT_EQ(s.layout.vpp, 5);
  EXPECT_EQ(s.layout.global_batch, 2048);
  EXPECT_EQ(s.layout.recompute, "none");  // granularity null (method block, 0 layers)
  EXPECT_EQ(s.layout.attention, "flash");
  EXPECT_EQ(s.layout.precision, "bf16");
  EXPECT_EQ(m.n_layers, 80);
  EXPECT_EQ(m.kv_heads(), 8);
  EXPECT_EQ(m.d_ff(), 28672);
  EXPECT_EQ(m.ffn, FfnKind::swiglu);  // fast-swiglu
  EXPECT_EQ(m.n_ctx, 4096);
  bool defaults = false;
  for (const NotGiven& n : j.not_given) defaults = defaults || has(n.what, "tp_overlap@model.ub_tp_comm_overlap_cfg");
  EXPECT_TRUE(defaults);
}

TEST_F(JobShared, NemoLlama3_1_405b) {
  Job j = read("nemo-llama3.1-405b.yaml");
  const Settled s = settle(j, {}, 8);
  EXPECT_EQ(s.layout.cp, 2);  // line 57: model.context_parallel_size: 2
  EXPECT_EQ(s.layout.gpus, 576);  // 72 x 8
  EXPECT_EQ(s.layout.tp, 8);
  EXPECT_EQ(s.layout.pp, 9);
  EXPECT_EQ(s.layout.vpp, 7);
  EXPECT_EQ(s.layout.global_batch, 252);
  EXPECT_EQ(s.layout.precision, "bf16");  // bf16-mixed, fp8 False
  const ModelConfig m = model_of(j);
  EXPECT_EQ(m.n_layers, 126);
  EXPECT_EQ(m.kv_heads(), 16);
  EXPECT_EQ(m.d_ff(), 53248);
  EXPECT_EQ(m.vocab, 51200);  // GPT2BPETokenizer, padded to 128 x 8
}

TEST_F(JobShared, NemoMixtral8x7b) {
  const std::string e = error_of(read("nemo-mixtral-8x7b.yaml"), {{"vocab", {"--vocab", "32000"}}});
  EXPECT_FALSE(has(e, "mixture of experts")) << e;
  Job j = read("nemo-mixtral-8x7b.yaml");
  const Settled s = settle(j, {{"vocab", {"--vocab", "32000"}}}, 8, false);
  const ModelConfig m = model_of(j, 32000);
  expect_same_moe(m, "mixtral-8x7b");
  EXPECT_DOUBLE_EQ(m.capacity_factor, 1.0);  // padded to it: the balanced router's tokens
  EXPECT_DOUBLE_EQ(m.aux_loss_coef, 0.01);
  EXPECT_EQ(s.layout.ep, 8);
  EXPECT_EQ(s.layout.gpus, 64);
}

TEST_F(JobShared, TorchtitanLlama2_70bLegacy) {
  const std::string e = error_of(read("torchtitan-llama2-70b-legacy.toml"));
  EXPECT_TRUE(has(e, "line 22: model.tokenizer_path") && has(e, "pass --vocab N")) << e;
  Job j = read("torchtitan-llama2-70b-legacy.toml");
  const Settled s = settle(j, {{"vocab", {"--vocab", "32000"}}}, 8);
  const ModelConfig m = model_of(j, 32000);
  EXPECT_EQ(m.n_layers, 80);
  EXPECT_EQ(m.d_model, 8192);
  EXPECT_EQ(m.kv_heads(), 8);
  EXPECT_EQ(m.d_ff(), 28672);
  EXPECT_DOUBLE_EQ(m.rope_theta, 10000);
  EXPECT_EQ(m.n_ctx, 4096);
  EXPECT_EQ(s.layout.tp, 8);        // [training] tensor_parallel_degree = 8
  EXPECT_EQ(s.layout.pp, 1);        // [experimental]
  EXPECT_EQ(s.layout.fsdp, 1);      // shard -1 over the 8 / 8 = 1 data-parallel GPU
  EXPECT_EQ(s.layout.global_batch, 16);
  EXPECT_EQ(s.layout.recompute, "full");
  EXPECT_EQ(s.layout.precision, "bf16");
}

TEST_F(JobShared, TorchtitanLlama3_8b) {
  Job j = read("torchtitan-llama3-8b.toml");
  const Settled s = settle(j, {}, 8);
  EXPECT_EQ(s.layout.fsdp, 8);  // line 40: data_parallel_shard_degree = -1, over the 8 data-parallel GPUs
  const ModelConfig m = model_of(j);
  EXPECT_EQ(m.d_ff(), 14336);
  EXPECT_EQ(m.vocab, 128256);
  EXPECT_EQ(m.n_ctx, 8192);
  EXPECT_EQ(s.layout.recompute, "selective");  // selective, op
  EXPECT_EQ(s.layout.global_batch, 8);        // local 1 x dp 8
}

TEST_F(JobShared, TorchtitanLlama3_405b) {
  Job j = read("torchtitan-llama3-405b.toml");
  const Settled s = settle(j, {}, 8);
  const ModelConfig m = model_of(j);
  EXPECT_EQ(m.n_layers, 126);
  EXPECT_EQ(m.d_ff(), 53248);
  EXPECT_EQ(s.layout.tp, 8);
  EXPECT_EQ(s.layout.precision, "fp8");  // converters = ["float8"]
  EXPECT_EQ(s.layout.recompute, "full");
  EXPECT_EQ(s.layout.global_batch, 2);   // local 2 x dp 1 on run_train.sh's 8 GPUs
  // On the 128 GPUs its comment names, dp 16 is sharded: FSDP 16.
  Job k = read("torchtitan-llama3-405b.toml");
  EXPECT_EQ(settle(k, {{"gpus", {"--gpus", "128"}}}, 8).layout.fsdp, 16);
}

TEST_F(JobShared, TorchtitanLlama4) {
  // tp 8 x pp 4 needs 32 GPUs (run_train.sh's default is 8).
  const std::string e = error_of(read("torchtitan-llama4-17bx128e.toml"), {{"gpus", {"--gpus", "32"}}});
  EXPECT_FALSE(has(e, "mixture of experts")) << e;
  Job j = read("torchtitan-llama4-17bx128e.toml");
  const Settled s = settle(j, {}, 8, false);
  const ModelConfig m = model_of(j);
  expect_same_moe(m, "llama4-maverick");  // compute_moe_hidden_dim's 8192, every 2nd layer MoE
  EXPECT_EQ(m.d_ff(), 16384);             // the dense layers' FeedForward
  EXPECT_EQ(m.vocab, 202048);
  EXPECT_EQ(m.nope_layer_step, 4);
  EXPECT_EQ(m.attention_chunk, 8192);
  EXPECT_EQ(s.layout.etp, 8);
  EXPECT_EQ(s.layout.tp, 8);
  EXPECT_EQ(s.layout.pp, 4);
}

}  // namespace
