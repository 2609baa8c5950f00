// The three readers behind read_job (job.hpp), and what they share.
#pragma once

#include <optional>
#include <string>

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

}  // namespace flopscope::job
