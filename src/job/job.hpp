// A user's own training job as the input of `predict` and `estimate`: a Megatron-LM launch
// script or command line, a NeMo (hydra) or Megatron-Bridge YAML recipe, or a torchtitan TOML.
// Each reader (megatron.cpp, nemo.cpp, torchtitan.cpp) gives the model (a base and
// ModelOverrides), the layout values the file sets (JobLayout) and where every value came
// from: the file (line and key), the framework's default (and where that default lives), or,
// once the CLI has applied them, a flag. What does not change the cost is listed as ignored;
// what the reader could not know (a command substitution, an unset variable) as not given.
//
// A job file is data: no shell is started, nothing in it is executed, the environment is not
// read (only --job-env), and the YAML/TOML parsers construct nothing from tags.
//
// Problems that a flag could settle (a vocabulary the file leaves to a tokenizer file, a
// selective-checkpointing policy predict does not model) are kept, not thrown: the CLI throws
// the first one no flag settles (raise_unsettled), so `--vocab 32000` beside the job works.
#pragma once

#include <cstdint>
#include <map>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "model/model.hpp"

namespace flopscope::job {

// Where a value came from.
enum class From { file, flag, framework_default, derived, environment };
std::string_view to_string(From f);

struct Value {
  std::string name;     // flopscope's name: layers, d_model, ..., gpus, tp, pp, micro_batch, ...
  nlohmann::json value;
  From from = From::file;
  std::string where;    // "line 29: --num-layers 96"; "Megatron-LM megatron/training/arguments.py: ..."
};

struct Ignored {
  std::string key;
  std::string where;  // "line 48" or "lines 26-49"
  std::string why;
};

struct NotGiven {
  std::string what;
  std::string where;
  std::string why;
};

// A cost-relevant value the file gives in a way predict cannot use. `settled_by`: the
// flopscope value names whose flag replaces it (empty: nothing does; always an error).
struct Problem {
  std::string message;
  std::set<std::string> settled_by;
};

// The layout values a job gives (all optional; the CLI's defaulting path fills the rest).
struct JobLayout {
  std::optional<int64_t> gpus, tp, pp, vpp, cp, ep, etp, micro_batch, global_batch;  // ep, etp: expert (tensor) parallel
  // Sequences a data-parallel rank takes a step when the file gives no global batch (Megatron:
  // the micro-batch; torchtitan: local_batch_size): global batch = this x dp.
  std::optional<int64_t> batch_per_dp_rank;
  bool batch_per_dp_rank_is_micro_batch = false;  // Megatron-LM: it follows --micro-batch
  // FSDP shard degree; -1: every data-parallel rank left (torchtitan's data_parallel_shard_degree
  // -1); dp_replicate: torchtitan's data_parallel_replicate_degree (HSDP's replicas).
  std::optional<int64_t> fsdp, dp_replicate;
  std::optional<std::string> precision;  // bf16 | fp16 | fp8
  std::optional<std::string> recompute;  // none | selective | full
  std::optional<std::string> attention;  // unfused | flash
  std::optional<std::string> moe_dispatcher;  // allgather | alltoall | flex (a mixture of experts only)
  std::optional<bool> sequence_parallel, distributed_optimizer, dp_overlap, tp_comm_overlap, ep_comm_overlap;
  std::optional<bool> torch_compile;  // torchtitan's compile
  std::optional<bool> embedding_in_split, loss_in_split;  // account_for_{embedding,loss}_in_pipeline_split
  // Training steps (global batches), for the training tokens.
  std::optional<int64_t> train_steps, train_samples;
};

struct Job {
  std::string file;
  std::string format;  // "Megatron-LM launch script", "NeMo hydra YAML", "Megatron-Bridge YAML", "torchtitan TOML"
  ModelConfig base;    // the model before `model` (a custom base named after the file)
  ModelOverrides model;
  JobLayout layout;
  // The tokenizer's vocabulary, when the model's is that padded (Megatron-LM, NeMo): settle()
  // pads it to a multiple of vocab_divisible_by x tp once tp is final. No divisor: no padding.
  std::optional<int64_t> tokenizer_vocab;
  std::string tokenizer_where;
  From tokenizer_from = From::file;
  std::optional<int64_t> vocab_divisible_by;
  std::string divisible_where;
  std::vector<Value> values;
  std::vector<Ignored> ignored;
  std::vector<NotGiven> not_given;
  std::vector<Problem> problems;
  std::map<std::string, std::string> env;  // what --job-env passed

  // Records (or replaces) where a value came from.
  void record(const std::string& name, const nlohmann::json& value, From from, const std::string& where);
  const Value* find(const std::string& name) const;
  void problem(const std::string& message, std::set<std::string> settled_by = {});
  // Throws the first problem none of `given` (flopscope value names set by flags) settles, those
  // no flag can settle first.
  // `layout`: false leaves out the problems only the layout's flags settle (estimate).
  void raise_unsettled(const std::set<std::string>& given, bool with_layout = true) const;

  nlohmann::json to_json() const;
};

struct ReadOptions {
  std::map<std::string, std::string> env;  // --job-env VAR=VALUE: the only environment a job sees
  std::set<std::string> ignore;            // --job-ignore KEY: keys the user says do not change the cost
};

// A flag given beside --job: its name as typed and its text ("--tp", "4").
struct FlagValue {
  std::string flag;
  std::string text;
};
// By flopscope value name (tp, gpus, vocab, ...; model_flag_names() for the model's).
using Flags = std::map<std::string, FlagValue>;

struct Settled {
  JobLayout layout;         // the job's values with the flags' in their place, derived ones computed
  int64_t vocab_multiple = 128;  // for the megatron_lm formula: divisible-by x tp (1: no padding)
};

// Settles the job against the flags beside it: each flag's value replaces the file's (recorded
// as from the flag); derived values are computed from the final ones (the global batch from
// the batch a data-parallel rank takes x dp, FSDP -1 as the data-parallel ranks left, the padded
// vocabulary from the final tp, the training tokens from steps x global batch x seq). A file
// that contradicts itself (tp x pp x cp not dividing the GPUs it launches) and every problem no
// flag settles throw UsageError. `fallback_gpus`: the CLI's default when neither gives a count.
// `layout` false (estimate): the layout's consistency and its problems are not checked.
Settled settle(Job& j, const Flags& flags, int64_t fallback_gpus, bool layout = true);

// flopscope's layout value names (gpus, tp, ..., dp_overlap): a problem only they settle is a
// layout problem.
const std::set<std::string>& layout_names();

// Reads a job file; the format from its name (.sh/.bash/.txt or a command line: Megatron-LM;
// .yaml/.yml: NeMo or Megatron-Bridge; .toml: torchtitan). Throws UsageError on a file it
// cannot read or parse, naming the file and line.
Job read_job(const std::string& path, const ReadOptions& o);

// Whether a key the reader does not know might change the cost (its name mentions layers,
// heads, parallelism, batch, precision, ...): such a key is a problem (pass --job-ignore KEY
// when it does not), any other unknown key is listed as ignored.
bool may_change_cost(const std::string& key);

// The flopscope value names the model flags set (--layers: layers, ...), for raise_unsettled.
const std::vector<std::pair<std::string, std::string>>& model_flag_names();

}  // namespace flopscope::job
