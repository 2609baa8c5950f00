// src/util/parse.hpp: every number a user types goes through these parsers, so every bad
// value (zero, negative, non-numeric, fractional count, overflow, nan, inf) must become a
// UsageError that names the option.
#include <cstdint>
#include <limits>
#include <string>

#include <gtest/gtest.h>

#include "util/error.hpp"
#include "util/parse.hpp"

namespace flopscope {
namespace {

// Expects a UsageError whose message names the option and quotes the text.
template <class F>
void expect_usage_error(F&& f, const std::string& option, const std::string& text) {
  try {
    f();
    ADD_FAILURE() << option << " '" << text << "' was accepted";
  } catch (const UsageError& e) {
    const std::string what = e.what();
    EXPECT_NE(what.find(option), std::string::npos) << what;
    EXPECT_NE(what.find("'" + text + "'"), std::string::npos) << what;
  }
}

TEST(ParseCount, AcceptsWholePositiveNumbers) {
  EXPECT_EQ(parse_count("--layers", "1"), 1);
  EXPECT_EQ(parse_count("--layers", "96"), 96);
  EXPECT_EQ(parse_count("--d-model", "12288"), 12288);
  EXPECT_EQ(parse_count("--seq", "2e3"), 2000);     // exponent notation of a whole number
  EXPECT_EQ(parse_count("--seq", "2048.0"), 2048);  // a whole number written with a decimal point
  EXPECT_EQ(parse_count("--layers", "1099511627776"), INT64_C(1) << 40);  // the default maximum
}

TEST(ParseCount, RejectsBadText) {
  for (const char* text : {"0", "-3", "abc", "", "1.5", "1e400", "nan", "inf", "-inf", "99999999999999999999",
                           "12abc", "1e30", "1099511627777"}) {
    SCOPED_TRACE(text);
    expect_usage_error([&] { parse_count("--layers", text); }, "--layers", text);
  }
}

TEST(ParseCount, RespectsTheGivenMaximum) {
  EXPECT_EQ(parse_count("--ffn-mult", "1024", 1024), 1024);
  expect_usage_error([] { parse_count("--ffn-mult", "1025", 1024); }, "--ffn-mult", "1025");
}

TEST(ParseCount, ReasonsSayWhatIsWrong) {
  auto message = [](const char* text) {
    try {
      parse_count("--layers", text);
    } catch (const UsageError& e) {
      return std::string(e.what());
    }
    return std::string("(accepted)");
  };
  EXPECT_NE(message("0").find("at least 1"), std::string::npos) << message("0");
  EXPECT_NE(message("-3").find("negative"), std::string::npos) << message("-3");
  EXPECT_NE(message("1.5").find("whole number"), std::string::npos) << message("1.5");
  EXPECT_NE(message("1e400").find("out of range"), std::string::npos) << message("1e400");
  EXPECT_NE(message("99999999999999999999").find("too large"), std::string::npos);
  EXPECT_NE(message("abc").find("not a number"), std::string::npos) << message("abc");
  // strtod alone would read these; flopscope takes decimal notation only.
  EXPECT_NE(message("0x10").find("not a number"), std::string::npos) << message("0x10");
  EXPECT_NE(message("inf").find("not a number"), std::string::npos) << message("inf");
  EXPECT_NE(message("nan").find("not a number"), std::string::npos) << message("nan");
  EXPECT_NE(message("").find("empty"), std::string::npos) << message("");
}

TEST(ParseNonnegative, AcceptsZeroRejectsNegative) {
  EXPECT_EQ(parse_nonnegative("--warmup", "0"), 0);
  EXPECT_EQ(parse_nonnegative("--warmup", "5"), 5);
  for (const char* text : {"-1", "0.5", "abc", "", "nan", "inf", "1e400"}) {
    SCOPED_TRACE(text);
    expect_usage_error([&] { parse_nonnegative("--warmup", text); }, "--warmup", text);
  }
}

TEST(ParsePositiveReal, AcceptsPositiveFiniteValues) {
  EXPECT_DOUBLE_EQ(parse_positive_real("--tokens", "300e9"), 300e9);
  EXPECT_DOUBLE_EQ(parse_positive_real("--tokens", "3.2e6"), 3.2e6);
  EXPECT_DOUBLE_EQ(parse_positive_real("--utilization", "0.5", 1.0), 0.5);
  EXPECT_DOUBLE_EQ(parse_positive_real("--utilization", "1", 1.0), 1.0);
  EXPECT_DOUBLE_EQ(parse_positive_real("--tokens", "1e30"), 1e30);  // the default maximum
}

TEST(ParsePositiveReal, RejectsBadText) {
  for (const char* text : {"0", "-3", "abc", "", "1e400", "nan", "inf", "-inf", "1e31", "3x"}) {
    SCOPED_TRACE(text);
    expect_usage_error([&] { parse_positive_real("--tokens", text); }, "--tokens", text);
  }
  expect_usage_error([] { parse_positive_real("--utilization", "1.01", 1.0); }, "--utilization", "1.01");
}

TEST(ParseFraction, ReadsExactFractions) {
  auto f = parse_fraction("--width", "1/8");
  EXPECT_EQ(f.num, 1);
  EXPECT_EQ(f.den, 8);
  f = parse_fraction("--width", "0.125");  // a decimal read as digits over a power of ten
  EXPECT_EQ(f.num, 1);
  EXPECT_EQ(f.den, 8);
  f = parse_fraction("--width", "2/16");  // reduced
  EXPECT_EQ(f.num, 1);
  EXPECT_EQ(f.den, 8);
  f = parse_fraction("--width", "1");
  EXPECT_EQ(f.num, 1);
  EXPECT_EQ(f.den, 1);
  f = parse_fraction("--width", "0.5");
  EXPECT_EQ(f.num, 1);
  EXPECT_EQ(f.den, 2);
  f = parse_fraction("--width", "3/4");
  EXPECT_EQ(f.num, 3);
  EXPECT_EQ(f.den, 4);
  EXPECT_DOUBLE_EQ(f.value(), 0.75);
  EXPECT_EQ(f.str(), "3/4");
  EXPECT_EQ(parse_fraction("--width", "1").str(), "1");
}

TEST(ParseFraction, RejectsBadText) {
  for (const char* text : {"0", "0/8", "1/0", "-1/8", "1/-8", "9/8", "2", "1.5", "abc", "", "/8", "1/", "nan", "inf",
                           "1e400", "0.1234567891", "1e-1", "-0.5"}) {
    SCOPED_TRACE(text);
    try {
      parse_fraction("--width", text);
      ADD_FAILURE() << "--width '" << text << "' was accepted";
    } catch (const UsageError& e) {
      // Parts of "a/b" are reported as the part; the option is always named.
      EXPECT_NE(std::string(e.what()).find("--width"), std::string::npos) << e.what();
    }
  }
}

TEST(CheckedMul, MultipliesOrThrows) {
  EXPECT_EQ(checked_mul(INT64_C(1) << 31, INT64_C(1) << 31, "test"), INT64_C(1) << 62);
  EXPECT_EQ(checked_mul(-3, 4, "test"), -12);
  EXPECT_EQ(checked_mul(0, std::numeric_limits<int64_t>::max(), "test"), 0);
  EXPECT_THROW(checked_mul(INT64_C(1) << 32, INT64_C(1) << 31, "test"), UsageError);  // 2^63
  EXPECT_THROW(checked_mul(std::numeric_limits<int64_t>::max(), 2, "test"), UsageError);
  EXPECT_THROW(checked_mul(-1, std::numeric_limits<int64_t>::min(), "test"), UsageError);
  try {
    checked_mul(INT64_C(3037000500), INT64_C(3037000500), "attention scores");  // just over sqrt(2^63)
    ADD_FAILURE() << "overflow not detected";
  } catch (const UsageError& e) {
    EXPECT_NE(std::string(e.what()).find("attention scores"), std::string::npos) << e.what();
  }
}

}  // namespace
}  // namespace flopscope
