// Data types a layer can run in. The CPU backend runs fp32 and fp64; the CUDA backend
// bf16 (default), fp16, tf32, fp32 and fp8 (e4m3 linear layers, bf16 attention; Hopper).
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

namespace flopscope {

enum class Precision { fp64, fp32, tf32, fp16, bf16, fp8 };

std::string_view to_string(Precision p);
// Throws UsageError listing the choices.
Precision parse_precision(std::string_view text);
// Bytes per element of activations/weights stored in this precision (fp8: the linear
// layers' inputs are 1 byte, everything else bf16; this is the activation size).
int64_t element_bytes(Precision p);

}  // namespace flopscope
