// Where a run ran, for results: the host, the Slurm job (SLURM_* variables) and the GPU
// (index, UUID, CUDA_VISIBLE_DEVICES). Recorded as facts only: nothing here changes what
// runs, so a sweep's page can say which node and GPU gave which point (a slow node shows).
//
//   "host": {"hostname": "gpu17",
//            "slurm": {"job_id": "1235", "array_job_id": "1234", "array_task_id": "1", "node": "gpu17", ...}
//                     (null outside a Slurm job),
//            "gpu": {"index": 0, "uuid": "GPU-...", "pci_bus_id": "...", "cuda_visible_devices": "3"}
//                   (null on the cpu backend, with "gpu_note" saying so),
//            "source": ...}
#pragma once

#include <nlohmann/json.hpp>

namespace flopscope {

// `device`: the backend's device_json() (kind "cuda" carries index, uuid and pci_bus_id).
// Reads the environment at the call; values are kept as the variables give them (text).
nlohmann::json host_facts(const nlohmann::json& device);

}  // namespace flopscope
