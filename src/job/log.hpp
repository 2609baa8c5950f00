// A training run's own log beside its prediction (`predict --log FILE`): the step times the run
// printed, read line by line (the log is data; nothing else in it is used), in the formats of
//   Megatron-LM  megatron/training/training.py, training_log():
//                " iteration   N/ M | ... | elapsed time per iteration (ms): X | throughput per GPU
//                (TFLOP/s/GPU): Y | ... | global batch size: B | ..." (an average over --log-interval)
//   NeMo         the step's train_step_timing in s: NeMo 2's progress printer
//                (nemo/lightning/pytorch/callbacks/progress_printer.py) "... | global_step: N | ... |
//                train_step_timing in s: X", NeMo 1's progress bar "global_step=N, ...,
//                train_step_timing in s=X", and DLLogger JSON ("train_step_timing in s": X)
//   torchtitan   torchtitan/components/metrics.py, log(): "step: N  loss: ...  tps: T  tflops: F
//                mfu: M%" (tps and tflops per GPU; colour codes stripped; rank 0 when ranks prefix lines)
//   MLPerf       mlperf-logging ":::MLLOG {json}": a train_step_timing (or train_step_time) event,
//                or tracked_stats with train_step_time / throughput (samples/s, mlperf-common)
// and the steady state: warm-up entries skipped, median and spread.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

namespace flopscope::job {

struct LogEntry {
  int64_t step = 0;
  int line = 0;
  std::optional<double> step_time_s;          // printed (Megatron ms / 1000; NeMo, MLPerf seconds)
  std::optional<double> tflops_per_gpu;       // printed (Megatron, torchtitan)
  std::optional<double> tokens_per_s_per_gpu; // printed (torchtitan tps)
  std::optional<double> samples_per_s;        // printed (MLPerf throughput)
  std::optional<double> mfu;                  // printed, a fraction (torchtitan's %)
  std::optional<int64_t> global_batch;        // printed (Megatron)
};

struct RunLog {
  std::string file;
  std::string format;  // "Megatron-LM", "NeMo", "torchtitan", "MLPerf MLLOG"
  std::vector<LogEntry> entries;
  int64_t lines = 0;
};

// Reads the step lines of a log. Throws UsageError when the file cannot be read or holds no step
// line of any of the formats above.
RunLog read_log(const std::string& path);

// The log beside a `predict` result (its layout and prediction): the steady-state measured step
// time (the first `warmup` entries skipped; -1: the first 10%, at least 1, when there are 3 or
// more), tokens/s and MFU (model FLOPs of the predicted step over the measured time, the same
// peak), the difference, and which parts of the predicted step could explain it.
nlohmann::json log_vs_prediction(const RunLog& log, const nlohmann::json& result, int64_t warmup = -1);

}  // namespace flopscope::job
