#include "report/table.hpp"

#include <algorithm>
#include <cmath>

#include <fmt/format.h>

#include "util/error.hpp"

namespace flopscope {

Table::Table(std::vector<std::string> headers) {
  for (auto& h : headers) {
    bool left = !h.empty() && h[0] == '<';
    left_.push_back(left);
    headers_.push_back(left ? h.substr(1) : h);
  }
}

void Table::add_row(std::vector<std::string> cells) {
  FLOPSCOPE_CHECK(cells.size() == headers_.size(), "table row has the wrong number of cells");
  rows_.push_back(std::move(cells));
}

std::string Table::text(const std::string& indent) const {
  std::vector<size_t> width(headers_.size());
  for (size_t c = 0; c < headers_.size(); ++c) {
    width[c] = headers_[c].size();
    for (const auto& r : rows_) width[c] = std::max(width[c], r[c].size());
  }
  auto line = [&](const std::vector<std::string>& cells) {
    std::string out = indent;
    for (size_t c = 0; c < cells.size(); ++c) {
      if (c) out += "  ";
      out += left_[c] ? fmt::format("{:<{}}", cells[c], width[c]) : fmt::format("{:>{}}", cells[c], width[c]);
    }
    while (!out.empty() && out.back() == ' ') out.pop_back();
    return out + "\n";
  };
  std::string out = line(headers_);
  std::string rule = indent;
  for (size_t c = 0; c < width.size(); ++c) rule += (c ? "  " : "") + std::string(width[c], '-');
  out += rule + "\n";
  for (const auto& r : rows_) out += line(r);
  return out;
}

std::string Table::markdown() const {
  // Appends a cell, escaping '|' (appends only: GCC 12 warns falsely on `" " + s + " |"`).
  auto cell_into = [](std::string& out, const std::string& s) {
    out.append(" ");
    for (char ch : s) {
      if (ch == '|') out.push_back('\\');
      out.push_back(ch);
    }
    out.append(" |");
  };
  std::string out = "|";
  for (const auto& h : headers_) cell_into(out, h);
  out += "\n|";
  for (size_t c = 0; c < headers_.size(); ++c) out += left_[c] ? " :--- |" : " ---: |";
  out += "\n";
  for (const auto& r : rows_) {
    out += "|";
    for (const auto& cell : r) cell_into(out, cell);
    out += "\n";
  }
  return out;
}

std::string fmt_flops(double v) {
  if (!std::isfinite(v)) return "n/a";
  if (v == 0) return "0";
  return fmt::format("{:.3g}", v);
}

std::string fmt_sig(double v, int digits) {
  if (!std::isfinite(v)) return "n/a";
  return fmt::format("{:.{}g}", v, digits);
}

std::string fmt_fixed(double v, int decimals) {
  if (!std::isfinite(v)) return "n/a";
  return fmt::format("{:.{}f}", v, decimals);
}

std::string fmt_bytes(double v) {
  if (!std::isfinite(v)) return "n/a";
  const char* units[] = {"B", "KiB", "MiB", "GiB", "TiB", "PiB"};
  int u = 0;
  while (std::fabs(v) >= 1024 && u < 5) {
    v /= 1024;
    ++u;
  }
  return u == 0 ? fmt::format("{:.0f} B", v) : fmt::format("{:.2f} {}", v, units[u]);
}

std::string fmt_percent(double fraction, int decimals) {
  if (!std::isfinite(fraction)) return "n/a";
  // Small shares keep two significant digits instead of printing 0.0%.
  if (fraction != 0 && std::fabs(fraction) < 0.001) return fmt::format("{:.2g}%", 100 * fraction);
  return fmt::format("{:.{}f}%", 100 * fraction, decimals);
}

std::string fmt_count(double v) {
  if (!std::isfinite(v)) return "n/a";
  const double a = std::fabs(v);
  if (a >= 1e12) return fmt::format("{:.4g}T", v / 1e12);
  if (a >= 1e9) return fmt::format("{:.4g}B", v / 1e9);
  if (a >= 1e6) return fmt::format("{:.4g}M", v / 1e6);
  if (a >= 1e3) return fmt::format("{:.4g}K", v / 1e3);
  return fmt::format("{:.4g}", v);
}

std::string fmt_duration_days(double days) {
  if (!std::isfinite(days)) return "n/a";
  const double seconds = days * 86400;
  if (seconds < 120) return fmt::format("{:.3g} s", seconds);
  if (seconds < 7200) return fmt::format("{:.3g} min", seconds / 60);
  if (days < 2) return fmt::format("{:.3g} h", days * 24);
  if (days < 730) return fmt::format("{:.3g} days", days);
  return fmt::format("{:.3g} years", days / 365.25);
}

}  // namespace flopscope
