#include "measure/host.hpp"

#include <unistd.h>

#include <cstdlib>
#include <string>

#include <fmt/format.h>

namespace flopscope {

using nlohmann::json;

namespace {

// An environment variable's value; null when unset or empty.
json env(const char* name) {
  const char* v = std::getenv(name);
  return v != nullptr && *v != '\0' ? json(v) : json(nullptr);
}

std::string hostname() {
  char name[256] = {0};
  if (::gethostname(name, sizeof name - 1) != 0) return "";
  return name;
}

json slurm_facts() {
  if (env("SLURM_JOB_ID").is_null()) return nullptr;
  return {{"job_id", env("SLURM_JOB_ID")},
          {"array_job_id", env("SLURM_ARRAY_JOB_ID")},
          {"array_task_id", env("SLURM_ARRAY_TASK_ID")},
          {"job_name", env("SLURM_JOB_NAME")},
          {"node", env("SLURMD_NODENAME")},
          {"partition", env("SLURM_JOB_PARTITION")},
          {"cluster", env("SLURM_CLUSTER_NAME")},
          {"job_gpus", env("SLURM_JOB_GPUS")}};
}

}  // namespace

json host_facts(const json& device) {
  json h = {{"source", "recorded from the environment (hostname, SLURM_* variables, CUDA_VISIBLE_DEVICES) and the "
                       "device's properties; facts only, they change nothing in the run"},
            {"hostname", hostname()},
            {"slurm", slurm_facts()}};
  if (device.value("kind", "") == "cuda") {
    h["gpu"] = {{"index", device.value("index", json(nullptr))},
                {"uuid", device.value("uuid", json(nullptr))},
                {"pci_bus_id", device.value("pci_bus_id", json(nullptr))},
                {"cuda_visible_devices", env("CUDA_VISIBLE_DEVICES")}};
    h["gpu_note"] = "index: the CUDA device ordinal as this process saw it (--gpu), among CUDA_VISIBLE_DEVICES";
  } else {
    h["gpu"] = nullptr;
    h["gpu_note"] = fmt::format("none: the {} backend", device.value("kind", "cpu"));
  }
  return h;
}

}  // namespace flopscope
