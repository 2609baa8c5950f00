// Job files read as data (src/job): the shell subset, and each reader on small files written for
// the tests (tests/data/jobs), the values checked against the files by hand, line numbers too.
#include <gtest/gtest.h>

#include <cmath>
#include <filesystem>
#include <string>

#include "analytic/formulas.hpp"
#include "cli_util.hpp"
#include "job/job.hpp"
#include "job/shell.hpp"
#include "util/error.hpp"

namespace {

using namespace flopscope;
using namespace flopscope::job;
using nlohmann::json;

std::string data(const std::string& name) { return std::string(FLOPSCOPE_SOURCE_DIR) + "/tests/data/jobs/" + name; }

const Value& value(const Job& j, const std::string& name) {
  const Value* v = j.find(name);
  if (!v) throw std::runtime_error("no value " + name);
  return *v;
}

bool has(const std::string& s, const std::string& part) { return s.find(part) != std::string::npos; }

// Expects UsageError mentioning every one of `parts`.
template <typename F>
void expect_usage(F&& f, std::initializer_list<const char*> parts) {
  try {
    f();
    ADD_FAILURE() << "no UsageError";
  } catch (const UsageError& e) {
    for (const char* p : parts) EXPECT_TRUE(has(e.what(), p)) << "'" << p << "' not in: " << e.what();
  }
}

// ---- the shell subset ------------------------------------------------------------------------

std::vector<std::string> texts(const ShellCommand& c) {
  std::vector<std::string> out;
  for (const Word& w : c.words) out.push_back(w.known ? w.text : "?");
  return out;
}

TEST(JobShell, VariablesDefaultsArraysArithmeticAndContinuations) {
  const std::string script =
      "A=${A:-4}\n"
      "B=${UNSET_ONE:-\"two words\"}\n"
      "N=$(($A * 2 + 1))\n"
      "ARR=(\n"
      "  --x $A   # a comment inside the array\n"
      "  \"--y $B\"\n"
      ")\n"
      "ARR+=(--z)\n"
      "run.py ${ARR[@]} \\\n"
      "  \"${ARR[@]}\" --n $N ${1:-first}\n";
  const ShellResult r = read_shell(script, "t.sh", {});
  ASSERT_EQ(r.commands.size(), 1u);
  // Unquoted: each element split again; quoted: one word an element.
  EXPECT_EQ(texts(r.commands[0]),
            (std::vector<std::string>{"run.py", "--x", "4", "--y", "two", "words", "--z", "--x", "4", "--y two words",
                                      "--z", "--n", "9", "first"}));
  EXPECT_EQ(r.commands[0].words[1].line, 5);  // an array element keeps the line it was written on
  EXPECT_EQ(r.commands[0].words[12].value_line, 3);  // $N's value was assigned on line 3
  EXPECT_EQ(r.commands[0].line, 9);
}

TEST(JobShell, IfBlocksTakeTheKnownBranchAndUnknownOnesAreNotGuessed) {
  const std::string script =
      "MODE=fp8\n"
      "if [[ \"$MODE\" == \"bf16\" ]]; then\n"
      "  P=bf16\n"
      "elif [ \"$MODE\" = fp8 ] && [ -z \"$NOTHING_SET\" ]; then\n"
      "  P=fp8\n"
      "else\n"
      "  P=fp32\n"
      "fi\n"
      "if [ -f /etc/passwd ]; then Q=yes; fi\n"
      "[[ ${MODE} != fp8 ]] && R=no || R=yes\n"
      "echo $P $Q $R\n";
  const ShellResult r = read_shell(script, "t.sh", {});
  ASSERT_EQ(r.commands.size(), 1u);
  const auto& w = r.commands[0].words;
  // -z on an unset variable: unknown (the environment is not read), so P is not guessed...
  EXPECT_FALSE(w[1].known);
  EXPECT_TRUE(has(w[1].why, "condition (line 2)")) << w[1].why;
  EXPECT_FALSE(w[2].known);
  EXPECT_TRUE(has(w[2].why, "line 9")) << w[2].why;  // a file test: not evaluated
  EXPECT_EQ(w[3].text, "yes");
  const ShellResult passed = read_shell(script, "t.sh", {{"NOTHING_SET", ""}});
  EXPECT_EQ(passed.commands[0].words[1].text, "fp8");  // ... unless it is passed (--job-env)
}

TEST(JobShell, UnsetVariableAloneIsUnknownButAnElifOnItIsNotTaken) {
  const ShellResult r = read_shell("if [ -n \"$X\" ]; then Y=1; else Y=2; fi\necho $Y\n", "t.sh", {});
  EXPECT_FALSE(r.commands[0].words[1].known);
  EXPECT_TRUE(has(r.commands[0].words[1].why, "not known")) << r.commands[0].words[1].why;
  const ShellResult given = read_shell("if [ -n \"$X\" ]; then Y=1; else Y=2; fi\necho $Y\n", "t.sh", {{"X", "a"}});
  EXPECT_EQ(given.commands[0].words[1].text, "1");
}

TEST(JobShell, NothingIsRunCommandSubstitutionAndSourceAreNotes) {
  const ShellResult r = read_shell("H=$(hostname)\nB=`date`\nsource env.sh\nrun.py --host $H --b \"$B\"\n", "t.sh", {});
  ASSERT_EQ(r.commands.size(), 1u);
  EXPECT_FALSE(r.commands[0].words[2].known);
  EXPECT_TRUE(has(r.commands[0].words[2].why, "$(hostname)")) << r.commands[0].words[2].why;
  EXPECT_FALSE(r.commands[0].words[4].known);
  ASSERT_EQ(r.notes.size(), 3u);
  EXPECT_EQ(r.notes[0].line, 1);
  EXPECT_TRUE(has(r.notes[2].what, "source env.sh"));
}

TEST(JobShell, SbatchDirectivesSetSlurmsVariables) {
  const ShellResult r = read_shell("#!/bin/bash\n#SBATCH --nodes 4\n#SBATCH --gpus-per-node=8\nN=$SLURM_JOB_NUM_NODES\necho $(($N * 8))\n",
                                   "t.sh", {});
  EXPECT_EQ(r.sbatch.at("--nodes").first, "4");
  EXPECT_EQ(r.sbatch.at("--nodes").second, 2);
  EXPECT_EQ(r.commands[0].words[1].text, "32");
}

TEST(JobShell, BadSyntaxIsOneLineNamingIt) {
  expect_usage([] { read_shell("A=\"open\nB=2\n", "bad.sh", {}); }, {"bad.sh:1", "double quote"});
  expect_usage([] { read_shell("ARR=(\n --x 1\n", "bad.sh", {}); }, {"bad.sh:1", "array"});
  expect_usage([] { read_shell("if true; then\n A=1\n", "bad.sh", {}); }, {"bad.sh"});
}

// ---- Megatron-LM -----------------------------------------------------------------------------

TEST(JobMegatron, ReadsTheLaunchScriptWithWhereEachValueCameFrom) {
  Job j = read_job(data("megatron-gqa-fp8.sh"), {});
  EXPECT_EQ(j.format, "Megatron-LM launch script");
  const Settled s = settle(j, {}, 8);
  const ModelConfig m = apply_overrides(j.base, j.model);
  EXPECT_EQ(m.n_layers, 8);
  EXPECT_EQ(m.d_model, 1024);
  EXPECT_EQ(m.n_heads, 16);
  EXPECT_EQ(m.kv_heads(), 4);
  EXPECT_EQ(m.d_head, 64);
  EXPECT_EQ(m.d_ff(), 2816);
  EXPECT_EQ(m.n_ctx, 2048);
  EXPECT_EQ(m.norm, NormKind::rmsnorm);
  EXPECT_EQ(m.ffn, FfnKind::swiglu);
  EXPECT_EQ(m.position, PositionKind::rope);
  EXPECT_DOUBLE_EQ(m.rope_theta, 500000);
  EXPECT_EQ(m.biases, (LinearBiases{false, false, false}));
  EXPECT_FALSE(m.tied_embeddings);
  // NullTokenizer: --vocab-size + 1, padded to a multiple of 128 x tp 2.
  EXPECT_EQ(m.vocab, 32256);
  EXPECT_EQ(s.vocab_multiple, 256);
  EXPECT_DOUBLE_EQ(m.train_tokens, 1000.0 * 64 * 2048);
  EXPECT_EQ(s.layout.gpus, 8);  // 2 nodes x 4 a node, both from ${VAR:-default}
  EXPECT_EQ(s.layout.tp, 2);
  EXPECT_EQ(s.layout.pp, 2);
  EXPECT_EQ(s.layout.micro_batch, 2);
  EXPECT_EQ(s.layout.global_batch, 64);
  EXPECT_EQ(s.layout.precision, "fp8");  // inside the if-block
  EXPECT_EQ(s.layout.recompute, "selective");
  EXPECT_EQ(s.layout.sequence_parallel, true);
  EXPECT_EQ(s.layout.distributed_optimizer, true);
  EXPECT_EQ(s.layout.dp_overlap, true);
  EXPECT_EQ(s.layout.tp_comm_overlap, true);
  EXPECT_TRUE(has(value(j, "tp_comm_overlap").where, "line 46: --tp-comm-overlap")) << value(j, "tp_comm_overlap").where;
  EXPECT_EQ(s.layout.attention, "flash");
  EXPECT_EQ(value(j, "layers").where, "line 17: --num-layers 8 (value set at line 9)");
  EXPECT_EQ(value(j, "layers").from, From::file);
  EXPECT_TRUE(has(value(j, "precision").where, "line 35: --fp8-format hybrid")) << value(j, "precision").where;
  EXPECT_EQ(value(j, "gpus").from, From::derived);
  EXPECT_TRUE(has(value(j, "gpus").where, "line 13: --nnodes 2 (value set at line 4)")) << value(j, "gpus").where;
  EXPECT_EQ(value(j, "attention").from, From::framework_default);
  EXPECT_TRUE(has(value(j, "attention").where, "megatron/training/arguments.py"));
  bool lr = false, maxpos = false;
  for (const Ignored& i : j.ignored) {
    lr = lr || (i.key == "--lr" && i.where == "line 44");
    maxpos = maxpos || i.key == "--max-position-embeddings";
  }
  EXPECT_TRUE(lr);
  EXPECT_TRUE(maxpos);
}

TEST(JobMegatron, FlagsReplaceTheFilesValuesAndTheDerivedOnesFollow) {
  Job j = read_job(data("megatron-gqa-fp8.sh"), {});
  const Settled s = settle(j, {{"tp", {"--tp", "8"}}, {"gpus", {"--gpus", "16"}}}, 8);
  EXPECT_EQ(s.layout.tp, 8);
  EXPECT_EQ(value(j, "tp").from, From::flag);
  EXPECT_EQ(value(j, "tp").where, "--tp 8");
  // The padding follows the flag's tp: a multiple of 128 x 8 = 1024.
  EXPECT_EQ(apply_overrides(j.base, j.model).vocab, 32768);
  EXPECT_EQ(s.vocab_multiple, 1024);
}

TEST(JobMegatron, TheEmbeddingAndLossCountedInThePipelineSplit) {
  // 14 layers + the embedding + the loss = 16 = pp 4 x 2 layers a chunk x vpp 2.
  Job j = read_job(data("megatron-pipeline-split.sh"), {});
  const Settled s = settle(j, {}, 8);
  EXPECT_EQ(s.layout.vpp, 2);
  EXPECT_EQ(s.layout.embedding_in_split, true);
  EXPECT_EQ(s.layout.loss_in_split, true);
  EXPECT_EQ(value(j, "account_for_embedding_in_pipeline_split").from, From::file);
  EXPECT_TRUE(has(value(j, "vpp").where, "with the embedding and the loss")) << value(j, "vpp").where;
  EXPECT_TRUE(j.problems.empty()) << j.problems.front().message;
  // Without them (the gqa job): off, as Megatron-LM defaults them.
  Job g = read_job(data("megatron-gqa-fp8.sh"), {});
  EXPECT_EQ(settle(g, {}, 8).layout.embedding_in_split, false);
  EXPECT_EQ(value(g, "account_for_loss_in_pipeline_split").from, From::framework_default);
}

TEST(JobMegatron, AMixtureOfExpertsIsReadButPredictStopsWithOneLine) {
  Job j = read_job(data("megatron-moe.sh"), {});
  const ModelConfig m = apply_overrides(j.base, j.model);
  EXPECT_EQ(m.n_experts, 8);
  EXPECT_EQ(m.top_k, 2);
  EXPECT_EQ(m.d_ff_expert, 2048);  // moe_ffn_hidden_size None: the ffn_hidden_size, 4 x 512
  EXPECT_EQ(value(j, "d_ff_expert").from, From::framework_default);
  EXPECT_EQ(m.n_shared_experts, 0);
  EXPECT_EQ(m.moe_layer_step, 1);
  EXPECT_EQ(m.router_score, RouterScore::softmax);
  EXPECT_TRUE(m.router_topk_first);  // Megatron Core: top-k of the logits, then their softmax
  EXPECT_FALSE(m.router_norm_topk);
  EXPECT_EQ(m.aux_loss_coef, 0.0);   // TransformerConfig's moe_aux_loss_coeff default
  EXPECT_EQ(j.layout.ep, 8);
  EXPECT_EQ(value(j, "experts").where, "line 4: --num-experts 8");
  // Settled for estimate (the layout not checked) and for predict (which models expert
  // parallelism: the file's ep goes to it), nothing stops it.
  Job e = read_job(data("megatron-moe.sh"), {});
  EXPECT_NO_THROW(settle(e, {}, 8, false));
  const Settled s = settle(j, {}, 8);
  EXPECT_EQ(s.layout.ep, 8);
}

TEST(JobMegatron, MegatronCoresMoeSettings) {
  Job j = read_job(data("megatron-moe-full.sh"), {});
  const ModelConfig m = apply_overrides(j.base, j.model);
  EXPECT_EQ(m.n_experts, 64);
  EXPECT_EQ(m.top_k, 6);
  EXPECT_EQ(m.d_ff_expert, 1408);
  EXPECT_EQ(m.n_shared_experts, 1);  // one MLP of the total shared width
  EXPECT_EQ(m.d_ff_shared, 2816);
  EXPECT_EQ(m.first_dense, 1);       // ([0]*1+[1]*3)
  EXPECT_EQ(m.moe_layer_step, 1);
  EXPECT_EQ(m.router_score, RouterScore::sigmoid);
  EXPECT_FALSE(m.router_topk_first);
  EXPECT_TRUE(m.router_norm_topk);   // sigmoid, k > 1
  EXPECT_EQ(m.n_group, 8);
  EXPECT_EQ(m.topk_group, 4);
  EXPECT_DOUBLE_EQ(m.aux_loss_coef, 1e-3);
  EXPECT_DOUBLE_EQ(m.capacity_factor, 1.0);
  EXPECT_DOUBLE_EQ(m.routed_scaling_factor, 2.5);
  EXPECT_TRUE(has(value(j, "routed_scaling_factor").where, "--moe-router-topk-scaling-factor"))
      << value(j, "routed_scaling_factor").where;
  EXPECT_EQ(j.layout.etp, 1);
  EXPECT_EQ(j.layout.ep_comm_overlap, true);
  EXPECT_TRUE(has(value(j, "ep_comm_overlap").where, "line 10: --overlap-moe-expert-parallel-comm"))
      << value(j, "ep_comm_overlap").where;
  Job plain = read_job(data("megatron-moe.sh"), {});
  EXPECT_DOUBLE_EQ(apply_overrides(plain.base, plain.model).routed_scaling_factor, 1.0);  // None: no scale
  EXPECT_EQ(plain.layout.ep_comm_overlap, false);  // Megatron Core's default
  EXPECT_EQ(value(plain, "ep_comm_overlap").from, From::framework_default);
  int kernels = 0;
  for (const Ignored& i : j.ignored) kernels += i.key == "--moe-grouped-gemm" || i.key == "--moe-token-dispatcher-type";
  EXPECT_EQ(kernels, 1);  // the grouped GEMM's kernel choice; the dispatcher is read
  EXPECT_EQ(j.layout.moe_dispatcher, "alltoall");
  EXPECT_TRUE(has(value(j, "moe_dispatcher").where, "--moe-token-dispatcher-type")) << value(j, "moe_dispatcher").where;
  EXPECT_EQ(plain.layout.moe_dispatcher, "allgather");  // Megatron Core's default
  EXPECT_EQ(value(plain, "moe_dispatcher").from, From::framework_default);
}

TEST(JobMegatron, UnknownTokenDispatcherIsOneLine) {
  expect_usage([&] { read_job(data("megatron-moe-bad-dispatcher.sh"), {}); },
               {"--moe-token-dispatcher-type", "'alltoall2' is not allgather, alltoall or flex"});
}

TEST(JobMegatron, MoeLayerFrequencyForms) {
  // Every second layer from an integer: Megatron's layer 0 is MoE, which flopscope's step does
  // not count from: the clear line.
  Job a = read_job(data("megatron-moe-freq2.sh"), {});
  expect_usage([&] { settle(a, {}, 8, false); }, {"line 6: --moe-layer-freq 2", "this pattern of MoE layers"});
  // The same as a list counting from layer 1 is flopscope's step 2; --moe-step replaces it.
  Job b = read_job(data("megatron-moe-list.sh"), {});
  EXPECT_EQ(apply_overrides(b.base, b.model).moe_layer_step, 2);
  Job c = read_job(data("megatron-moe-freq2.sh"), {});
  EXPECT_NO_THROW(settle(c, {{"moe_step", {"--moe-step", "2"}}}, 8, false));
  // Past any integer: the same one line, not an out-of-range exception.
  expect_usage([&] { read_job(data("megatron-moe-freq-huge.sh"), {}); },
               {"--moe-layer-freq 99999999999999999999999", "not an integer or a list of 0s and 1s"});
}

TEST(JobMegatron, AFileThatContradictsItselfNamesBothSides) {
  Job j = read_job(data("megatron-contradiction.sh"), {});
  expect_usage([&] { settle(j, {}, 8); },
               {"runs on 8 GPUs", "tp x pp x cp = 8 x 4 x 1 = 32", "line 5: --tensor-model-parallel-size 8",
                "pass --gpus N"});
  Job ok = read_job(data("megatron-contradiction.sh"), {});
  EXPECT_EQ(settle(ok, {{"gpus", {"--gpus", "64"}}}, 8).layout.gpus, 64);
}

TEST(JobMegatron, AnUnknownFlagThatMayChangeTheCostStopsUnlessIgnored) {
  Job j = read_job(data("megatron-unknown-flag.sh"), {});
  expect_usage([&] { settle(j, {}, 8); }, {"--my-fork-expert-layers (line 4)", "--job-ignore --my-fork-expert-layers"});
  ReadOptions o;
  o.ignore = {"--my-fork-expert-layers"};
  Job k = read_job(data("megatron-unknown-flag.sh"), o);
  settle(k, {}, 8);
  int listed = 0;
  for (const Ignored& i : k.ignored) listed += i.key == "--my-fork-expert-layers" || i.key == "--my-fork-banner";
  EXPECT_EQ(listed, 2);
}

TEST(JobMegatron, AValueThatNeedsACommandIsNotGivenWithItsLine) {
  Job j = read_job(data("megatron-cmdsubst.sh"), {});
  expect_usage([&] { settle(j, {}, 8); }, {"--num-layers (line 14)", "$(cat layers.txt) (line 10)", "pass --layers N"});
  Job k = read_job(data("megatron-cmdsubst.sh"), {});
  settle(k, {{"layers", {"--layers", "4"}}}, 8);
  EXPECT_EQ(apply_overrides(k.base, k.model).vocab, 50304);  // GPT-2 BPE's files, padded at tp 1
  std::string notes;
  for (const NotGiven& n : k.not_given) notes += n.what + " @ " + n.where + "\n";
  for (const char* part : {"$(touch CREATED_BY_COMMAND_SUBSTITUTION; echo 1) @ line 4", "`touch CREATED_BY_BACKTICKS` @ line 5",
                           "source ./evil-settings.sh @ line 6", ". ./more-settings.sh @ line 7"})
    EXPECT_TRUE(has(notes, part)) << part << "\n" << notes;
}

// ---- NeMo and Megatron-Bridge ----------------------------------------------------------------

TEST(JobNemo, ResolvesInterpolationsWithinTheFile) {
  Job j = read_job(data("nemo-interp.yaml"), {});
  EXPECT_EQ(j.format, "NeMo hydra YAML");
  const Settled s = settle(j, {}, 8);
  const ModelConfig m = apply_overrides(j.base, j.model);
  EXPECT_EQ(s.layout.gpus, 32);  // ${multiply:2, 2} nodes x 8
  EXPECT_EQ(value(j, "gpus").where, "4 nodes (line 10: trainer.num_nodes: 4) x 8 devices (line 11: trainer.devices: 8)");
  EXPECT_EQ(s.layout.global_batch, 128);  // ${multiply:${.micro_batch_size}, 128}
  EXPECT_EQ(s.layout.tp, 4);
  EXPECT_EQ(s.layout.pp, 2);
  EXPECT_EQ(s.layout.vpp, 1);  // null
  EXPECT_EQ(s.layout.precision, "fp8");
  EXPECT_EQ(s.layout.recompute, "full");
  EXPECT_EQ(s.layout.attention, "flash");
  EXPECT_EQ(s.layout.distributed_optimizer, true);
  EXPECT_EQ(s.layout.dp_overlap, true);
  // No model.ub_tp_comm_overlap: NeMo's default, off (its tuning package alone turns nothing on).
  EXPECT_EQ(s.layout.tp_comm_overlap, false);
  EXPECT_EQ(value(j, "tp_comm_overlap").from, From::framework_default);
  EXPECT_EQ(m.n_layers, 16);
  EXPECT_EQ(m.kv_heads(), 8);
  EXPECT_EQ(m.ffn, FfnKind::swiglu);
  EXPECT_EQ(m.norm, NormKind::rmsnorm);
  EXPECT_EQ(m.n_ctx, 4096);
  EXPECT_EQ(m.vocab, 50688);  // GPT2BPETokenizer 50257 padded to a multiple of 128 x 4
  EXPECT_DOUBLE_EQ(m.train_tokens, 500.0 * 128 * 4096);
  EXPECT_EQ(value(j, "layers").where, "line 26: model.num_layers: 16");
  bool defaults_listed = false, exp_ignored = false;
  for (const NotGiven& n : j.not_given) defaults_listed = defaults_listed || (has(n.what, "tp_overlap") && n.where == "line 5");
  for (const Ignored& i : j.ignored) exp_ignored = exp_ignored || has(i.key, "exp_manager");
  EXPECT_TRUE(defaults_listed);
  EXPECT_TRUE(exp_ignored);
}

TEST(JobNemo, AnUnknownCostlyKeyAndATagAreProblemsNotGuesses) {
  Job j = read_job(data("nemo-unknown-key.yaml"), {});
  expect_usage([&] { settle(j, {}, 8); }, {"model.shiny_new_parallel_size (line 11)", "--job-ignore"});
  Job t = read_job(data("nemo-tag.yaml"), {});
  expect_usage([&] { settle(t, {}, 8); }, {"model.num_layers", "tag", "constructs nothing"});
  Job u = read_job(data("nemo-tag.yaml"), {});
  settle(u, {{"layers", {"--layers", "4"}}}, 8);
  EXPECT_FALSE(std::filesystem::exists("CREATED_BY_YAML_TAG"));
}

TEST(JobNemo, ContextParallelismGoesToPredictAsItIs) {
  // predict models context parallelism: the job's cp is settled like tp and pp, and a flag beside
  // the job still wins.
  Job j = read_job(data("nemo-cp.yaml"), {});
  const Settled s = settle(j, {}, 8);
  EXPECT_EQ(s.layout.cp, 2);
  EXPECT_EQ(s.layout.tp, 2);
  EXPECT_EQ(s.layout.gpus, 16);  // 2 nodes x 8
  EXPECT_EQ(value(j, "cp").where, "line 6: model.context_parallel_size: 2");
  Job k = read_job(data("nemo-cp.yaml"), {});
  EXPECT_EQ(settle(k, {{"cp", {"--cp", "1"}}}, 8).layout.cp, 1);
}

// NeMo's attention kernel follows the implementation: with Megatron Core and Transformer Engine
// it is TE's (model.attention_backend, auto by default: flash or cuDNN fused) whatever
// use_flash_attention says; Megatron Core alone runs its unfused local attention; the legacy
// model reads use_flash_attention.
TEST(JobNemo, TheAttentionKernelFollowsTheImplementation) {
  cli_test::TempDir dir;
  auto attention = [&](const std::string& keys) {
    const std::string path = dir / "nemo.yaml";
    cli_test::spit(path, "trainer: {num_nodes: 1, devices: 8, precision: bf16-mixed}\n"
                         "model:\n  micro_batch_size: 1\n  global_batch_size: 16\n  encoder_seq_length: 2048\n"
                         "  num_layers: 4\n  hidden_size: 1024\n  ffn_hidden_size: 4096\n  num_attention_heads: 16\n"
                         "  tokenizer: {library: megatron, type: GPT2BPETokenizer}\n" +
                             keys);
    Job j = read_job(path, {});
    const Settled s = settle(j, {}, 8);
    return std::make_pair(*s.layout.attention, value(j, "attention").where);
  };
  auto [te, te_where] = attention("  mcore_gpt: true\n  transformer_engine: true\n  use_flash_attention: false\n");
  EXPECT_EQ(te, "flash");
  EXPECT_TRUE(has(te_where, "attention_backend auto")) << te_where;
  EXPECT_TRUE(has(te_where, "model.use_flash_attention: false does nothing")) << te_where;
  EXPECT_EQ(attention("  mcore_gpt: true\n  transformer_engine: true\n  attention_backend: unfused\n").first, "unfused");
  EXPECT_EQ(attention("  mcore_gpt: true\n  transformer_engine: true\n  attention_backend: fused\n").first, "flash");
  auto [local, local_where] = attention("  mcore_gpt: true\n  use_flash_attention: true\n");
  EXPECT_EQ(local, "unfused");
  EXPECT_TRUE(has(local_where, "transformer_engine false")) << local_where;
  EXPECT_EQ(attention("  use_flash_attention: true\n").first, "flash");
  EXPECT_EQ(attention("  transformer_engine: true\n").first, "unfused");  // the legacy model: use_flash_attention false
}

TEST(JobNemo, MegatronBridgeRecipe) {
  Job j = read_job(data("bridge-tiny.yaml"), {});
  EXPECT_EQ(j.format, "Megatron-Bridge YAML");
  const Settled s = settle(j, {}, 8);
  const ModelConfig m = apply_overrides(j.base, j.model);
  EXPECT_EQ(m.n_layers, 8);
  EXPECT_EQ(m.kv_heads(), 4);
  EXPECT_EQ(m.ffn, FfnKind::swiglu);
  EXPECT_EQ(m.vocab, 32000);  // already a multiple of 128 x tp 2
  EXPECT_EQ(s.layout.micro_batch, 2);
  EXPECT_EQ(s.layout.global_batch, 32);
  EXPECT_EQ(s.layout.precision, "bf16");
  EXPECT_EQ(s.layout.recompute, "selective");
  EXPECT_EQ(s.layout.distributed_optimizer, true);
  EXPECT_EQ(s.layout.tp_comm_overlap, true);  // comm_overlap.tp_comm_overlap
  EXPECT_EQ(value(j, "tp_comm_overlap").from, From::file);
  EXPECT_EQ(s.layout.ep_comm_overlap, false);  // comm_overlap.overlap_moe_expert_parallel_comm
  EXPECT_EQ(value(j, "ep_comm_overlap").from, From::file);
  EXPECT_EQ(value(j, "gpus").from, From::framework_default);  // a recipe does not say
}

// ---- torchtitan --------------------------------------------------------------------------------

TEST(JobTorchtitan, FlavorFromTorchtitansTableAndTheLayout) {
  Job j = read_job(data("titan-tiny.toml"), {});
  const Settled s = settle(j, {}, 8);
  const ModelConfig m = apply_overrides(j.base, j.model);
  // llama3 debugmodel: dim 256, 6 layers, 16 heads, vocab 2048; d_ff = 256 x ceil(int(2 x 1024 / 3) / 256) = 768.
  EXPECT_EQ(m.d_model, 256);
  EXPECT_EQ(m.n_layers, 6);
  EXPECT_EQ(m.n_heads, 16);
  EXPECT_EQ(m.kv_heads(), 16);
  EXPECT_EQ(m.d_ff(), 768);
  EXPECT_EQ(m.vocab, 2048);
  EXPECT_EQ(m.n_ctx, 1024);
  EXPECT_EQ(s.layout.gpus, 8);  // run_train.sh's NGPU default
  EXPECT_EQ(s.layout.tp, 2);
  EXPECT_EQ(s.layout.micro_batch, 4);
  EXPECT_EQ(s.layout.global_batch, 16);  // local 4 x dp 4
  EXPECT_EQ(s.layout.precision, "fp8");
  EXPECT_EQ(s.layout.recompute, "selective");
  EXPECT_EQ(s.layout.fsdp, 1);  // shard degree 1: no FSDP
  EXPECT_DOUBLE_EQ(m.train_tokens, 50.0 * 16 * 1024);
  EXPECT_EQ(value(j, "tp").where, "line 15: parallelism.tensor_parallel_degree = 2");
  EXPECT_EQ(s.layout.tp_comm_overlap, true);  // async tensor parallelism
  EXPECT_EQ(value(j, "tp_comm_overlap").where, "line 16: parallelism.enable_async_tensor_parallel = true");
  EXPECT_EQ(s.layout.torch_compile, true);  // [compile] enable
  EXPECT_EQ(value(j, "torch_compile").where, "line 26: compile.enable = true");
  Job f = read_job(data("titan-fsdp.toml"), {});
  EXPECT_EQ(f.layout.torch_compile, false);  // no [compile]: torchtitan's default
  EXPECT_EQ(value(f, "torch_compile").from, From::framework_default);
  Job loss = read_job(data("titan-compile-loss.toml"), {});
  EXPECT_EQ(loss.layout.torch_compile, false);  // components = ["loss"]: the blocks eager
  EXPECT_TRUE(has(value(loss, "torch_compile").where, "not the model")) << value(loss, "torch_compile").where;
}

TEST(JobTorchtitan, The2024LayoutAndATokenizerVocabularyToPass) {
  Job j = read_job(data("titan-legacy.toml"), {});
  expect_usage([&] { settle(j, {}, 8); }, {"the vocabulary", "pass --vocab N"});
  Job k = read_job(data("titan-legacy.toml"), {});
  const Settled s = settle(k, {{"vocab", {"--vocab", "32000"}}}, 8);
  k.model.vocab = 32000;  // as the CLI's flag does
  const ModelConfig m = apply_overrides(k.base, k.model);
  EXPECT_EQ(m.d_ff(), 11008);  // llama2 7B: int(2 x 16384 / 3) rounded up to 256
  EXPECT_EQ(s.layout.tp, 8);
  EXPECT_EQ(s.layout.recompute, "full");
  EXPECT_EQ(s.layout.global_batch, 2);  // batch_size 2 x dp 1
  EXPECT_EQ(value(k, "tp").where, "line 13: training.tensor_parallel_degree = 8");
}

TEST(JobTorchtitan, BadInputs) {
  expect_usage([] { read_job(data("titan-bad-flavor.toml"), {}); }, {"flavor \"3B\"", "llama3/8B"});
  expect_usage([] { read_job(data("titan-broken.toml"), {}); }, {"titan-broken.toml: line 1", "TOML"});
  Job j = read_job(data("titan-every-2nd.toml"), {});
  expect_usage([&] { settle(j, {}, 8); }, {"one layer in every 2", "pass --recompute MODE"});
  expect_usage([] { read_job(data("no-such-file.sh"), {}); }, {"no-such-file.sh"});
}

TEST(JobJson, ListsValuesIgnoredAndNotGiven) {
  Job j = read_job(data("megatron-gqa-fp8.sh"), {});
  settle(j, {}, 8);
  const json out = j.to_json();
  EXPECT_EQ(out.at("format"), "Megatron-LM launch script");
  bool layers = false;
  for (const auto& v : out.at("values"))
    layers = layers || (v.at("name") == "layers" && v.at("value") == 8 && v.at("from") == "file");
  EXPECT_TRUE(layers);
  EXPECT_FALSE(out.at("ignored").empty());
  EXPECT_TRUE(has(out.at("note").get<std::string>(), "nothing in the file was run"));
}

}  // namespace
