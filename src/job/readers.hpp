// The three readers behind read_job (job.hpp), and what they share.
#pragma once

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "job/job.hpp"

namespace flopscope::job {

Job read_megatron(const std::string& text, const std::string& path, const ReadOptions& o);
Job read_nemo(const std::string& text, const std::string& path, const ReadOptions& o);
Job read_torchtitan(const std::string& text, const std::string& path, const ReadOptions& o);

// The model's name: the file's name without its folder and extension.
std::string job_name(const std::string& path);

// Sets one field of the job's model and records where it came from; `shown` is the value as
// the output lists it.
template <typename T, typename U>
void set_model(Job& j, std::optional<T> ModelOverrides::*field, const std::string& name, const U& value,
               const nlohmann::json& shown, From from, const std::string& where) {
  j.model.*field = static_cast<T>(value);
  j.record(name, shown, from, where);
}

// Megatron Core's mixture-of-experts settings (moe.cpp), which Megatron-LM's flags and NeMo's
// model keys both pass to TransformerConfig: by TransformerConfig's name, the flag that gives it
// and, for one that does not change the cost, why (empty: read).
struct MoeKey {
  std::string name;  // num_moe_experts, moe_router_topk, ...: NeMo's model.<name>
  std::string flag;  // --num-experts, --moe-router-topk, ...: Megatron-LM's
  std::string ignored_why;
};
const std::vector<MoeKey>& megatron_core_moe_keys();

// The text, whole, as a whole number of at least 1 / as a finite number; nullopt when it is not
// one (the readers' own messages name where it stands).
std::optional<int64_t> positive_whole(const std::string& text);
std::optional<double> finite_number(const std::string& text);

// A setting as the file gives it: its text ("true" for a flag without a value) and where.
struct MoeSetting {
  std::string text;
  std::string where;
};
using MoeGiven = std::map<std::string, MoeSetting>;  // by MoeKey::name

// Sets the job's experts, router, MoE layers, aux loss and capacity from the settings given
// (nothing when num_moe_experts is absent, null or 1), each recorded with where it came from
// or as TransformerConfig's default. `layers`: the model's (0: not known); `d_ff`: the dense
// FFN's width, the experts' when moe_ffn_hidden_size is not given.
void read_megatron_core_moe(Job& j, const MoeGiven& given, int64_t layers, std::optional<int64_t> d_ff);

}  // namespace flopscope::job
