#include "util/parse.hpp"

#include <cmath>
#include <cstdlib>
#include <numeric>

#include <fmt/format.h>

#include "util/error.hpp"

namespace flopscope {

namespace {

[[noreturn]] void bad(std::string_view option, std::string_view text, std::string_view why) {
  throw UsageError(fmt::format("{}: '{}' {}", option, text, why));
}

// Strict strtod: the whole string must be a finite number.
double to_double(std::string_view option, std::string_view text) {
  std::string s(text);
  if (s.empty()) bad(option, text, "is empty; expected a number");
  // Decimal notation only (strtod would also read hexadecimal, "inf" and "nan").
  for (char c : s) {
    if (!((c >= '0' && c <= '9') || c == '.' || c == 'e' || c == 'E' || c == '+' || c == '-'))
      bad(option, text, "is not a number (write it in decimal, e.g. 2048 or 2.5e11)");
  }
  char* end = nullptr;
  errno = 0;
  double v = std::strtod(s.c_str(), &end);
  if (end == s.c_str() || *end != '\0') bad(option, text, "is not a number");
  if (std::isnan(v)) bad(option, text, "is not a number");
  if (std::isinf(v) || errno == ERANGE) bad(option, text, "is out of range");
  return v;
}

}  // namespace

int64_t parse_nonnegative(std::string_view option, std::string_view text, int64_t max) {
  double v = to_double(option, text);
  if (v < 0) bad(option, text, "must not be negative");
  if (v != std::floor(v)) bad(option, text, "must be a whole number");
  if (v > static_cast<double>(max)) bad(option, text, fmt::format("is too large (at most {})", max));
  return static_cast<int64_t>(v);
}

int64_t parse_count(std::string_view option, std::string_view text, int64_t max) {
  int64_t v = parse_nonnegative(option, text, max);
  if (v == 0) bad(option, text, "must be at least 1");
  return v;
}

double parse_positive_real(std::string_view option, std::string_view text, double max) {
  double v = to_double(option, text);
  if (v <= 0) bad(option, text, "must be positive");
  if (v > max) bad(option, text, fmt::format("is too large (at most {:g})", max));
  return v;
}

std::string Fraction::str() const {
  return den == 1 ? fmt::format("{}", num) : fmt::format("{}/{}", num, den);
}

Fraction parse_fraction(std::string_view option, std::string_view text) {
  Fraction f;
  auto slash = text.find('/');
  if (slash != std::string_view::npos) {
    f.num = parse_count(option, text.substr(0, slash), INT64_C(1) << 30);
    f.den = parse_count(option, text.substr(slash + 1), INT64_C(1) << 30);
  } else {
    // A decimal: read it as digits over a power of ten so 0.125 is exactly 1/8.
    double v = to_double(option, text);
    if (v <= 0) bad(option, text, "must be positive");
    auto dot = text.find('.');
    int64_t scale = 1;
    if (dot != std::string_view::npos && text.find_first_of("eE") == std::string_view::npos) {
      size_t decimals = text.size() - dot - 1;
      if (decimals > 9) bad(option, text, "has too many decimals; write it as a fraction such as 1/8");
      for (size_t i = 0; i < decimals; ++i) scale *= 10;
    }
    double scaled = v * static_cast<double>(scale);
    if (scaled != std::floor(scaled) || scaled > 1e12)
      bad(option, text, "is not an exact fraction; write it as a fraction such as 1/8");
    f.num = static_cast<int64_t>(scaled);
    f.den = scale;
  }
  int64_t g = std::gcd(f.num, f.den);
  f.num /= g;
  f.den /= g;
  if (f.num > f.den) bad(option, text, "must be at most 1 (the layer is scaled down, not up)");
  return f;
}

int64_t checked_mul(int64_t a, int64_t b, std::string_view what) {
  int64_t r = 0;
  if (__builtin_mul_overflow(a, b, &r))
    throw UsageError(fmt::format("{} overflows a 64-bit integer ({} x {})", what, a, b));
  return r;
}

}  // namespace flopscope
