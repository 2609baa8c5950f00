// FP8 E4M3 (OCP "E4M3FN", the format of NVIDIA's __nv_fp8_e4m3), the host model of the device
// cast (kernels/cast_fp8.cu) and of the scales it is used with. Header-only, no CUDA includes.
//
// Format: 1 sign bit s, 4 exponent bits e (bias 7), 3 mantissa bits m; no infinities.
//   e > 0:            (-1)^s * 2^(e-7) * (1 + m/8)    (largest: e = 15, m = 6: 448)
//   e = 0:            (-1)^s * 2^-6 * m/8             (subnormals; smallest 2^-9)
//   e = 15, m = 7:    NaN (codes 0x7F and 0xFF)
//
// Encoding (e4m3_from_float) is exactly what CUDA's
// __nv_cvt_float_to_fp8(x, __NV_SATFINITE, __NV_E4M3) returns, both its software path (host,
// sm_80) and the cvt.rn.satfinite.e4m3x2.f32 instruction (sm_89+):
//  - round to nearest, ties to even, at every magnitude (subnormals included);
//  - |x| <= 2^-10 (half the smallest subnormal; the tie rounds to the even 0) gives a zero
//    with the sign of x (0x00 or 0x80);
//  - saturating: every |x| >= 448, infinity included, gives +-448 (0x7E / 0xFE). (In
//    (448, 464] round to nearest already gives 448; above, SATFINITE clamps.)
//  - NaN (any sign, any payload) gives 0x7F, the positive NaN.
#pragma once

#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>

namespace flopscope::fp8 {

inline constexpr float kE4M3Max = 448.0f;
inline constexpr uint8_t kE4M3MaxCode = 0x7E;  // 448
inline constexpr uint8_t kE4M3NaNCode = 0x7F;  // what e4m3_from_float gives for NaN

inline bool e4m3_is_nan(uint8_t v) { return (v & 0x7Fu) == 0x7Fu; }

inline uint8_t e4m3_from_float(float x) {
  uint32_t bits;
  std::memcpy(&bits, &x, sizeof bits);
  const auto sign = static_cast<uint8_t>((bits >> 24) & 0x80u);
  const uint32_t mag = bits & 0x7FFFFFFFu;
  if (mag > 0x7F800000u) return kE4M3NaNCode;                           // NaN
  if (mag >= 0x43E00000u) return static_cast<uint8_t>(sign | kE4M3MaxCode);  // |x| >= 448, inf
  const int biased = static_cast<int>(mag >> 23);                          // float exponent field
  if (biased >= 127 - 6) {
    // Normal in E4M3 (|x| >= 2^-6): keep the top 3 of the 23 mantissa bits, round the 20
    // dropped ones to nearest even. A carry out of the mantissa moves into the exponent field,
    // which is the right code (1.111|1 -> 10.000); it cannot pass 0x7E since |x| < 448.
    const uint32_t code = ((static_cast<uint32_t>(biased - 127 + 7)) << 3) | ((mag >> 20) & 7u);
    const uint32_t rest = mag & 0xFFFFFu, half = 0x80000u;
    const uint32_t up = (rest > half || (rest == half && (code & 1u))) ? 1u : 0u;
    return static_cast<uint8_t>(sign | (code + up));
  }
  // Subnormal or zero (|x| < 2^-6): the code is |x| / 2^-9 rounded to nearest even, in [0, 8]
  // (8 is the smallest normal, 0x08). |x| = M * 2^(biased - 150) with M the 24-bit significand,
  // so |x| / 2^-9 = M >> (141 - biased). Float subnormals and zero (biased = 0) give 0.
  if (biased == 0) return sign;
  const uint64_t sig = (mag & 0x7FFFFFu) | 0x800000u;
  const int shift = 141 - biased;  // >= 21
  if (shift > 40) return sign;
  const uint64_t q = sig >> shift;
  const uint64_t rest = sig & ((uint64_t{1} << shift) - 1), half = uint64_t{1} << (shift - 1);
  const uint64_t up = (rest > half || (rest == half && (q & 1u))) ? 1u : 0u;
  return static_cast<uint8_t>(sign | static_cast<uint8_t>(q + up));
}

// Exact decode; 0x7F and 0xFF are NaN.
inline float e4m3_to_float(uint8_t v) {
  if (e4m3_is_nan(v)) return std::numeric_limits<float>::quiet_NaN();
  const int e = (v >> 3) & 0xF, m = v & 7;
  const float mag = e == 0 ? std::ldexp(static_cast<float>(m), -9) : std::ldexp(static_cast<float>(8 + m), e - 10);
  return (v & 0x80u) ? -mag : mag;
}

// The value a cast kernel stores for x with scale s, decoded back (so in the scaled domain):
// the product x * scale is rounded to float first, as on the device.
inline float e4m3_quantize(float x, float scale = 1.0f) { return e4m3_to_float(e4m3_from_float(x * scale)); }

// The largest power of two s with amax * s <= 448 (= 2^floor(log2(448 / amax)), computed
// exactly, without a rounded division), divided by 2^margin; clamped to [2^-64, 2^64].
// 1 when amax is 0, negative or not finite (no information to scale by).
inline float e4m3_scale_for_amax(float amax, int margin = 0) {
  if (!(amax > 0.0f) || !std::isfinite(amax)) return 1.0f;
  int e = 0;
  const float f = std::frexp(amax, &e);  // amax = f * 2^e, f in [0.5, 1); 448 = 0.875 * 2^9
  // amax * 2^k <= 0.875 * 2^9  <=>  f * 2^(e + k - 9) <= 0.875
  long long k = (f <= 0.875f ? 9 : 8) - static_cast<long long>(e);
  k -= margin;
  if (k > 64) k = 64;
  if (k < -64) k = -64;
  return std::ldexp(1.0f, static_cast<int>(k));
}

}  // namespace flopscope::fp8
