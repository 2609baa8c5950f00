// Where a run ran (src/measure/host.hpp): the Slurm job from the SLURM_* variables of this
// process, the GPU from the device's properties and CUDA_VISIBLE_DEVICES, recorded as given;
// and a GPU UUID written as nvidia-smi writes it (src/util/gpu_uuid.hpp).
#include <cstdlib>

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "measure/host.hpp"
#include "util/gpu_uuid.hpp"

namespace {

using nlohmann::json;

// Sets (or, with nullptr, unsets) a variable for one test; restores it after.
class Env {
 public:
  Env(const char* name, const char* value) : name_(name) {
    if (const char* old = std::getenv(name)) old_ = old, had_ = true;
    value ? ::setenv(name, value, 1) : ::unsetenv(name);
  }
  ~Env() { had_ ? ::setenv(name_, old_.c_str(), 1) : ::unsetenv(name_); }
  Env(const Env&) = delete;
  Env& operator=(const Env&) = delete;

 private:
  const char* name_;
  std::string old_;
  bool had_ = false;
};

TEST(GpuUuid, WrittenAsNvidiaSmiWritesIt) {
  const char bytes[16] = {'\x1a', '\x2b', '\x3c', '\x4d', '\x5e', '\x6f', '\x70', '\x81',
                          '\x92', '\xa3', '\xb4', '\xc5', '\xd6', '\xe7', '\xf8', '\x09'};
  EXPECT_EQ(flopscope::gpu_uuid_string(bytes), "GPU-1a2b3c4d-5e6f-7081-92a3-b4c5d6e7f809");
  const char zero[16] = {};
  EXPECT_EQ(flopscope::gpu_uuid_string(zero), "GPU-00000000-0000-0000-0000-000000000000");
}

TEST(HostFacts, SlurmJobFromTheEnvironment) {
  Env job("SLURM_JOB_ID", "77"), array("SLURM_ARRAY_JOB_ID", "70"), task("SLURM_ARRAY_TASK_ID", "7"),
      node("SLURMD_NODENAME", "n001"), name("SLURM_JOB_NAME", nullptr), part("SLURM_JOB_PARTITION", ""),
      cluster("SLURM_CLUSTER_NAME", nullptr), gpus("SLURM_JOB_GPUS", nullptr);
  const json h = flopscope::host_facts({{"kind", "cpu"}});
  EXPECT_EQ(h.at("slurm").at("job_id"), "77");
  EXPECT_EQ(h.at("slurm").at("array_job_id"), "70");
  EXPECT_EQ(h.at("slurm").at("array_task_id"), "7");
  EXPECT_EQ(h.at("slurm").at("node"), "n001");
  EXPECT_TRUE(h.at("slurm").at("job_name").is_null());
  EXPECT_TRUE(h.at("slurm").at("partition").is_null()) << "an empty variable is no value";
  EXPECT_TRUE(h.at("gpu").is_null());
  EXPECT_EQ(h.at("gpu_note"), "none: the cpu backend");
  EXPECT_FALSE(h.at("hostname").get<std::string>().empty());
}

TEST(HostFacts, NoSlurmOutsideAJob) {
  Env job("SLURM_JOB_ID", nullptr), node("SLURMD_NODENAME", "n001");
  EXPECT_TRUE(flopscope::host_facts({{"kind", "cpu"}}).at("slurm").is_null());
}

TEST(HostFacts, TheGpuFromTheDeviceAndCudaVisibleDevices) {
  Env visible("CUDA_VISIBLE_DEVICES", "2,3");
  const json device = {{"kind", "cuda"},
                       {"name", "NVIDIA H200"},
                       {"index", 1},
                       {"uuid", "GPU-1a2b3c4d-5e6f-7081-92a3-b4c5d6e7f809"},
                       {"pci_bus_id", "0000:19:00.0"}};
  const json g = flopscope::host_facts(device).at("gpu");
  EXPECT_EQ(g.at("index"), 1);
  EXPECT_EQ(g.at("uuid"), "GPU-1a2b3c4d-5e6f-7081-92a3-b4c5d6e7f809");
  EXPECT_EQ(g.at("pci_bus_id"), "0000:19:00.0");
  EXPECT_EQ(g.at("cuda_visible_devices"), "2,3");
}

}  // namespace
