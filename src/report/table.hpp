// A small table: headers, rows of cells, rendered as aligned text or Markdown.
#pragma once

#include <string>
#include <vector>

namespace flopscope {

class Table {
 public:
  // Columns whose header starts with '<' are left-aligned (the '<' is dropped); others right-aligned.
  explicit Table(std::vector<std::string> headers);
  void add_row(std::vector<std::string> cells);
  bool empty() const { return rows_.empty(); }
  std::string text(const std::string& indent = "  ") const;
  std::string markdown() const;

 private:
  std::vector<std::string> headers_;
  std::vector<bool> left_;
  std::vector<std::vector<std::string>> rows_;
};

// Number formatting shared by every renderer.
std::string fmt_flops(double v);    // 3.14e+23 style, 3 significant digits
std::string fmt_sig(double v, int digits = 3);  // %g with `digits` significant digits
std::string fmt_fixed(double v, int decimals);
std::string fmt_bytes(double v);    // 1.50 GiB
std::string fmt_percent(double fraction, int decimals = 1);
std::string fmt_count(double v);    // 174.6B, 300B, 3.2M
std::string fmt_duration_days(double days);  // "34.0 days", "1.2e+05 years"

}  // namespace flopscope
