// The host model of FP8 E4M3 (src/util/fp8.hpp): decode against the format's formula, encode
// round trips, rounding (ties to even, subnormals, saturation, NaN), monotonicity, the scale
// from an amax, and bit-for-bit agreement with CUDA's own __nv_cvt_float_to_fp8(x,
// __NV_SATFINITE, __NV_E4M3) -- the header's host (software) implementation, the same code the
// sm_80 build runs on the device; sm_89+ runs cvt.rn.satfinite.e4m3x2.f32, whose rounding the
// software path reproduces. No GPU needed.
#include <gtest/gtest.h>

#include <cuda_fp16.h>
#include <cuda_fp8.h>

#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <vector>

#include "util/fp8.hpp"
#include "util/random_fill.hpp"

namespace flopscope {
namespace {

using fp8::e4m3_from_float;
using fp8::e4m3_is_nan;
using fp8::e4m3_to_float;

float from_bits(uint32_t b) {
  float f;
  std::memcpy(&f, &b, sizeof f);
  return f;
}
uint32_t bits_of(float f) {
  uint32_t b;
  std::memcpy(&b, &f, sizeof b);
  return b;
}

uint8_t cuda_e4m3(float x) { return static_cast<uint8_t>(__nv_cvt_float_to_fp8(x, __NV_SATFINITE, __NV_E4M3)); }

// The format's formula, in double.
double formula(int code) {
  const int s = code >> 7, e = (code >> 3) & 0xF, m = code & 7;
  const double mag = e == 0 ? std::ldexp(m / 8.0, -6) : std::ldexp(1.0 + m / 8.0, e - 7);
  return s ? -mag : mag;
}

TEST(Fp8E4M3, DecodesEveryCodeByTheFormula) {
  for (int c = 0; c < 256; ++c) {
    SCOPED_TRACE(c);
    const auto v = static_cast<uint8_t>(c);
    if ((c & 0x7F) == 0x7F) {
      EXPECT_TRUE(e4m3_is_nan(v));
      EXPECT_TRUE(std::isnan(e4m3_to_float(v)));
      continue;
    }
    EXPECT_FALSE(e4m3_is_nan(v));
    EXPECT_EQ(static_cast<double>(e4m3_to_float(v)), formula(c));
    EXPECT_EQ(std::signbit(e4m3_to_float(v)), c >= 0x80);  // -0 decodes to -0
  }
  EXPECT_EQ(e4m3_to_float(0x7E), 448.0f);
  EXPECT_EQ(e4m3_to_float(0xFE), -448.0f);
  EXPECT_EQ(e4m3_to_float(0x01), 0x1p-9f);
  EXPECT_EQ(e4m3_to_float(0x08), 0x1p-6f);
  EXPECT_EQ(e4m3_to_float(0x38), 1.0f);
}

TEST(Fp8E4M3, EncodeOfDecodeIsTheCodeForEveryNonNaNCode) {
  // -0 included: the sign of a zero is kept (0x80 -> -0.0f -> 0x80).
  for (int c = 0; c < 256; ++c) {
    const auto v = static_cast<uint8_t>(c);
    if (e4m3_is_nan(v)) continue;
    EXPECT_EQ(e4m3_from_float(e4m3_to_float(v)), v) << "code " << c;
  }
}

TEST(Fp8E4M3, RoundsToNearestTiesToEven) {
  // Around 1 the step is 1/8.
  EXPECT_EQ(e4m3_to_float(e4m3_from_float(1.0625f)), 1.0f);   // tie between 1 (even) and 1.125
  EXPECT_EQ(e4m3_to_float(e4m3_from_float(1.1875f)), 1.25f);  // tie between 1.125 and 1.25 (even)
  EXPECT_EQ(e4m3_to_float(e4m3_from_float(std::nextafter(1.0625f, 2.0f))), 1.125f);
  EXPECT_EQ(e4m3_to_float(e4m3_from_float(std::nextafter(1.1875f, 0.0f))), 1.125f);
  EXPECT_EQ(e4m3_to_float(e4m3_from_float(-1.0625f)), -1.0f);
  // A tie that carries into the exponent: 1.9375 between 1.875 (odd) and 2.
  EXPECT_EQ(e4m3_to_float(e4m3_from_float(1.9375f)), 2.0f);
  // 432 is halfway between 416 (0x7D, odd) and 448 (even).
  EXPECT_EQ(e4m3_to_float(e4m3_from_float(432.0f)), 448.0f);
  EXPECT_EQ(e4m3_to_float(e4m3_from_float(std::nextafter(432.0f, 0.0f))), 416.0f);
  // Largest subnormal (7/8 * 2^-6) and the smallest normal: 15/16 * 2^-6 is their tie -> 2^-6 (even).
  EXPECT_EQ(e4m3_from_float(0x1.ep-7f), 0x08);
}

TEST(Fp8E4M3, SaturatesFiniteAndInfiniteValuesTo448) {
  EXPECT_EQ(e4m3_from_float(448.0f), 0x7E);
  EXPECT_EQ(e4m3_from_float(460.0f), 0x7E);
  EXPECT_EQ(e4m3_from_float(464.0f), 0x7E);  // the tie 448 | 480: 448 is even (and 480 is NaN)
  EXPECT_EQ(e4m3_from_float(std::nextafter(464.0f, 1e9f)), 0x7E);
  EXPECT_EQ(e4m3_from_float(500.0f), 0x7E);
  EXPECT_EQ(e4m3_from_float(-1e30f), 0xFE);
  EXPECT_EQ(e4m3_from_float(std::numeric_limits<float>::max()), 0x7E);
  EXPECT_EQ(e4m3_from_float(std::numeric_limits<float>::infinity()), 0x7E);  // SATFINITE: inf -> max
  EXPECT_EQ(e4m3_from_float(-std::numeric_limits<float>::infinity()), 0xFE);
}

TEST(Fp8E4M3, NaNGivesThePositiveNaNCode) {
  EXPECT_EQ(e4m3_from_float(std::numeric_limits<float>::quiet_NaN()), 0x7F);
  EXPECT_EQ(e4m3_from_float(-std::numeric_limits<float>::quiet_NaN()), 0x7F);
  EXPECT_EQ(e4m3_from_float(from_bits(0x7F800001u)), 0x7F);  // signalling
  EXPECT_EQ(e4m3_from_float(from_bits(0xFFFFFFFFu)), 0x7F);
}

TEST(Fp8E4M3, SubnormalsRoundToNearestEvenAndUnderflowToSignedZero) {
  EXPECT_EQ(e4m3_from_float(0x1p-9f), 0x01);                                // smallest subnormal
  EXPECT_EQ(e4m3_from_float(0x1p-10f), 0x00);                               // tie 0 | 2^-9 -> 0
  EXPECT_EQ(e4m3_from_float(std::nextafter(0x1p-10f, 1.0f)), 0x01);         // just above -> 2^-9
  EXPECT_EQ(e4m3_from_float(-0x1p-10f), 0x80);                              // -0
  EXPECT_EQ(e4m3_from_float(0x1.8p-9f), 0x02);                              // 1.5 * 2^-9: tie 1 | 2 -> 2
  EXPECT_EQ(e4m3_from_float(0x1.4p-8f), 0x02);                              // 2.5 * 2^-9: tie 2 | 3 -> 2
  EXPECT_EQ(e4m3_from_float(0x1.cp-8f), 0x04);                              // 3.5 * 2^-9: tie 3 | 4 -> 4
  EXPECT_EQ(e4m3_from_float(std::nextafter(0x1.4p-8f, 1.0f)), 0x03);
  EXPECT_EQ(e4m3_from_float(1e-30f), 0x00);
  EXPECT_EQ(e4m3_from_float(-1e-30f), 0x80);
  EXPECT_EQ(e4m3_from_float(from_bits(1u)), 0x00);  // float subnormal
  EXPECT_EQ(e4m3_from_float(0.0f), 0x00);
  EXPECT_EQ(e4m3_from_float(-0.0f), 0x80);
}

TEST(Fp8E4M3, EncodeIsMonotoneAndWithinHalfAStep) {
  // 100k floats from -600 to 600 (through every binade down to the subnormals near 0).
  const int n = 100000;
  float prev_decoded = -std::numeric_limits<float>::infinity();
  for (int i = 0; i <= n; ++i) {
    const double t = -1.0 + 2.0 * i / n;  // [-1, 1]
    const float x = static_cast<float>(std::copysign(600.0 * std::pow(std::abs(t), 6.0), t));
    const float d = e4m3_to_float(e4m3_from_float(x));
    ASSERT_FALSE(std::isnan(d)) << x;
    ASSERT_GE(d, prev_decoded) << "not monotone at " << x;
    prev_decoded = d;
    if (std::abs(x) <= 448.0f) {
      // Half a step: 2^(floor(log2|x|) - 4) in the normal range, 2^-10 among the subnormals.
      const double ax = std::abs(static_cast<double>(x));
      const double half = ax >= 0x1p-6 ? std::ldexp(1.0, std::ilogb(ax) - 4) : 0x1p-10;
      ASSERT_LE(std::abs(static_cast<double>(d) - x), half) << x;
    } else {
      ASSERT_EQ(std::abs(d), 448.0f) << x;
    }
  }
}

TEST(Fp8E4M3, QuantizeIsEncodeThenDecodeOfTheScaledValue) {
  EXPECT_EQ(fp8::e4m3_quantize(1.0625f), 1.0f);
  EXPECT_EQ(fp8::e4m3_quantize(100.0f, 8.0f), 448.0f);  // 800 saturates
  EXPECT_EQ(fp8::e4m3_quantize(0.3f, 16.0f), 5.0f);     // 4.8 -> 5 (step 0.5 in [4, 8))
  EXPECT_EQ(fp8::e4m3_quantize(0.3f), 0.3125f);         // step 2^-5 in [0.25, 0.5)
  EXPECT_TRUE(std::isnan(fp8::e4m3_quantize(std::numeric_limits<float>::quiet_NaN())));
}

TEST(Fp8E4M3, ScaleForAmaxIsTheLargestPowerOfTwoThatFits) {
  using fp8::e4m3_scale_for_amax;
  EXPECT_EQ(e4m3_scale_for_amax(448.0f), 1.0f);
  EXPECT_EQ(e4m3_scale_for_amax(std::nextafter(448.0f, 1e9f)), 0.5f);
  EXPECT_EQ(e4m3_scale_for_amax(224.0f), 2.0f);
  EXPECT_EQ(e4m3_scale_for_amax(std::nextafter(224.0f, 1e9f)), 1.0f);
  EXPECT_EQ(e4m3_scale_for_amax(1.0f), 256.0f);  // 448 / 1 = 448 -> 2^8
  EXPECT_EQ(e4m3_scale_for_amax(1.0f, 2), 64.0f);
  EXPECT_EQ(e4m3_scale_for_amax(0.875f), 512.0f);  // 448 / 0.875 = 512 exactly
  EXPECT_EQ(e4m3_scale_for_amax(std::nextafter(0.875f, 1.0f)), 256.0f);
  EXPECT_EQ(e4m3_scale_for_amax(1e6f), 0x1p-12f);  // 448 / 1e6 = 4.48e-4, 2^-12 = 2.44e-4
  EXPECT_EQ(e4m3_scale_for_amax(0.0f), 1.0f);
  EXPECT_EQ(e4m3_scale_for_amax(-1.0f), 1.0f);
  EXPECT_EQ(e4m3_scale_for_amax(std::numeric_limits<float>::infinity()), 1.0f);
  EXPECT_EQ(e4m3_scale_for_amax(std::numeric_limits<float>::quiet_NaN()), 1.0f);
  EXPECT_EQ(e4m3_scale_for_amax(1e-30f), 0x1p64f);                       // clamped
  EXPECT_EQ(e4m3_scale_for_amax(from_bits(1u)), 0x1p64f);                // float subnormal
  EXPECT_EQ(e4m3_scale_for_amax(std::numeric_limits<float>::max()), 0x1p-64f);
  EXPECT_EQ(e4m3_scale_for_amax(1.0f, 1000), 0x1p-64f);
  // The definition, over a sweep: amax * s <= 448 < amax * 2s (away from the clamps).
  for (int i = 0; i < 20000; ++i) {
    const auto amax = static_cast<float>(std::ldexp(1.0 + uniform_pm1(7, 1, static_cast<uint64_t>(i)), (i % 61) - 30));
    const float s = e4m3_scale_for_amax(amax);
    ASSERT_LE(static_cast<double>(amax) * s, 448.0) << amax;
    ASSERT_GT(static_cast<double>(amax) * s * 2, 448.0) << amax;
  }
}

// ---- against CUDA's implementation ------------------------------------------------------------

TEST(Fp8E4M3, EqualsCudaSatfiniteConversionForEveryBf16AndF16Value) {
  // Every bf16 bit pattern (the top 16 bits of a float: all exponents, NaNs and infinities).
  for (uint32_t h = 0; h < 0x10000u; ++h) {
    const float x = from_bits(h << 16);
    ASSERT_EQ(e4m3_from_float(x), cuda_e4m3(x)) << "bf16 bits 0x" << std::hex << h;
  }
  // Every f16 value.
  for (uint32_t h = 0; h < 0x10000u; ++h) {
    __half_raw raw;
    raw.x = static_cast<unsigned short>(h);
    const float x = __half2float(__half(raw));
    ASSERT_EQ(e4m3_from_float(x), cuda_e4m3(x)) << "f16 bits 0x" << std::hex << h;
  }
}

TEST(Fp8E4M3, EqualsCudaSatfiniteConversionOnFloatsNearEveryRoundingBoundary) {
  // Around each midpoint between neighbouring codes, and each code: +-64 ulps of float.
  long long checked = 0;
  for (int c = 0; c < 0x7F; ++c) {
    const double v = formula(c);
    const double next = c < 0x7E ? formula(c + 1) : 480.0;
    for (double centre : {v, (v + next) / 2}) {
      for (double sgn : {1.0, -1.0}) {
        const uint32_t b = bits_of(static_cast<float>(sgn * centre));
        for (int d = -64; d <= 64; ++d) {
          const float x = from_bits(b + static_cast<uint32_t>(d));  // wraps harmlessly around 0
          ASSERT_EQ(e4m3_from_float(x), cuda_e4m3(x)) << x;
          ++checked;
        }
      }
    }
  }
  EXPECT_GT(checked, 60000);
}

TEST(Fp8E4M3, EqualsCudaSatfiniteConversionOnMillionsOfFloats) {
  // Every 997th float bit pattern (4.3 million, all exponents and signs, NaNs included), then
  // random bf16 values times the scales a cast uses (powers of two and not).
  long long checked = 0;
  for (uint64_t b = 0; b <= 0xFFFFFFFFull; b += 997) {
    const float x = from_bits(static_cast<uint32_t>(b));
    ASSERT_EQ(e4m3_from_float(x), cuda_e4m3(x)) << "bits 0x" << std::hex << b;
    ++checked;
  }
  const float scales[] = {1.0f, 0x1p-3f, 16.0f, 0x1p-20f, 0x1p20f, 3.0f, 0.1f};
  for (int i = 0; i < 200000; ++i) {
    const auto bf = static_cast<uint32_t>(splitmix64(static_cast<uint64_t>(i)) & 0xFFFFu);
    const float x = from_bits(bf << 16);
    for (float s : scales) {
      const float y = x * s;
      ASSERT_EQ(e4m3_from_float(y), cuda_e4m3(y)) << x << " * " << s;
      ++checked;
    }
  }
  EXPECT_GT(checked, 5000000);
}

}  // namespace
}  // namespace flopscope
