// A GPU's UUID (cudaDeviceProp::uuid, 16 bytes) as nvidia-smi and CUDA_VISIBLE_DEVICES write
// it: "GPU-" then the bytes in hex, grouped 4-2-2-2-6 (GPU-1a2b3c4d-...-0123456789ab).
#pragma once

#include <cstdint>
#include <string>

namespace flopscope {

// `bytes`: cudaUUID_t::bytes (char[16]; read as unsigned).
inline std::string gpu_uuid_string(const char (&bytes)[16]) {
  static constexpr char kHex[] = "0123456789abcdef";
  std::string s = "GPU-";
  for (int i = 0; i < 16; ++i) {
    if (i == 4 || i == 6 || i == 8 || i == 10) s.push_back('-');
    const auto b = static_cast<unsigned char>(bytes[i]);
    s.push_back(kHex[b >> 4]);
    s.push_back(kHex[b & 0xf]);
  }
  return s;
}

}  // namespace flopscope
