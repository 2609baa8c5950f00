// Parsers for numbers given on the command line or in config files. Every parser rejects
// zero, negative, non-numeric, fractional (where a count is expected) and overflowing values
// with a UsageError naming the option, so the CLI can print one clear line.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

namespace flopscope {

// A positive whole number: "2048", "2e3", "12288". Range [1, max].
int64_t parse_count(std::string_view option, std::string_view text, int64_t max = INT64_C(1) << 40);

// A non-negative whole number (warm-up runs, for instance).
int64_t parse_nonnegative(std::string_view option, std::string_view text, int64_t max = INT64_C(1) << 40);

// A positive finite real: "300e9", "3.2e6", "0.5". Range (0, max].
double parse_positive_real(std::string_view option, std::string_view text, double max = 1e30);

// A width factor in (0, 1] as an exact fraction: "1/8", "0.125", "1".
struct Fraction {
  int64_t num = 1;
  int64_t den = 1;
  double value() const { return static_cast<double>(num) / static_cast<double>(den); }
  std::string str() const;
};
Fraction parse_fraction(std::string_view option, std::string_view text);

// a * b, throwing a UsageError mentioning `what` if it overflows int64.
int64_t checked_mul(int64_t a, int64_t b, std::string_view what);

}  // namespace flopscope
