#include "report/svg.hpp"

#include <algorithm>
#include <cmath>

#include <fmt/format.h>

#include "util/error.hpp"

namespace flopscope::svg {

std::string escape(std::string_view text) {
  std::string out;
  out.reserve(text.size());
  for (char c : text) {
    switch (c) {
      case '&': out.append("&amp;"); break;
      case '<': out.append("&lt;"); break;
      case '>': out.append("&gt;"); break;
      case '"': out.append("&quot;"); break;
      case '\'': out.append("&apos;"); break;
      default:
        // Control characters other than tab and newline are not allowed in XML 1.0.
        if (static_cast<unsigned char>(c) < 0x20 && c != '\t' && c != '\n') out.push_back(' ');
        else out.push_back(c);
    }
  }
  return out;
}

std::string number(double v) {
  if (!std::isfinite(v)) return "nan";
  return fmt::format("{}", v);  // shortest representation that round-trips
}

std::string tick_label(double v) {
  if (v == 0) return "0";
  const double a = std::fabs(v);
  if (a >= 1 && a < 1e5 && v == std::round(v)) return fmt::format("{:.0f}", v);
  if (a >= 1e-2 && a < 1e5) return fmt::format("{:.4g}", v);
  const int e = static_cast<int>(std::floor(std::log10(a) + 1e-9));
  const double mant = v / std::pow(10.0, e);
  if (std::fabs(mant - std::round(mant)) < 1e-6) return fmt::format("{}e{}", static_cast<int>(std::round(mant)), e);
  return fmt::format("{:.3g}e{}", mant, e);
}

// ---- scales -----------------------------------------------------------------------------------

double Scale::operator()(double v) const {
  double t;
  if (log) {
    t = (std::log10(std::max(v, 1e-300)) - std::log10(lo)) / (std::log10(hi) - std::log10(lo));
  } else {
    t = (v - lo) / (hi - lo);
  }
  return from + t * (to - from);
}

namespace {

// The 1-2-5 step that gives about `target` intervals over `span`.
double nice_step(double span, int target) {
  const double raw = span / std::max(target, 1);
  const double mag = std::pow(10.0, std::floor(std::log10(raw)));
  for (double m : {1.0, 2.0, 2.5, 5.0, 10.0})
    if (m * mag >= raw) return m * mag;
  return 10 * mag;
}

}  // namespace

std::vector<double> Scale::ticks(int target) const {
  std::vector<double> out;
  if (!fixed_ticks.empty()) {
    for (double t : fixed_ticks)
      if (contains(t)) out.push_back(t);
    return out;
  }
  if (log) {
    const int e0 = static_cast<int>(std::floor(std::log10(lo) + 1e-9));
    const int e1 = static_cast<int>(std::ceil(std::log10(hi) - 1e-9));
    const bool fine = e1 - e0 <= 2;
    // Every decade, or every k-th when there are many.
    const int every = std::max(1, (e1 - e0 + target - 1) / std::max(target, 1));
    for (int e = e0; e <= e1; ++e) {
      const double d = std::pow(10.0, e);
      if (e % every == 0 && contains(d)) out.push_back(d);
      if (fine) {
        for (double m : {2.0, 5.0})
          if (contains(m * d)) out.push_back(m * d);
      }
    }
    std::sort(out.begin(), out.end());
    return out;
  }
  const double step = nice_step(hi - lo, target);
  for (double v = std::ceil(lo / step - 1e-9) * step; v <= hi + step * 1e-9; v += step)
    out.push_back(std::fabs(v) < step * 1e-9 ? 0.0 : v);
  return out;
}

Scale linear_scale(double lo, double hi, double from, double to) {
  FLOPSCOPE_CHECK(std::isfinite(lo) && std::isfinite(hi), "svg: a linear scale needs finite bounds");
  if (hi <= lo) hi = lo + (lo == 0 ? 1 : std::fabs(lo));
  const double step = nice_step(hi - lo, 5);
  Scale s;
  s.lo = std::floor(lo / step + 1e-9) * step;
  s.hi = std::ceil(hi / step - 1e-9) * step;
  s.from = from;
  s.to = to;
  return s;
}

Scale log_scale(double lo, double hi, double from, double to) {
  FLOPSCOPE_CHECK(lo > 0 && hi > 0 && std::isfinite(lo) && std::isfinite(hi), "svg: a log scale needs positive bounds");
  if (hi < lo) std::swap(lo, hi);
  Scale s;
  s.log = true;
  s.lo = std::pow(10.0, std::floor(std::log10(lo) + 1e-9));
  s.hi = std::pow(10.0, std::ceil(std::log10(hi) - 1e-9));
  if (s.hi <= s.lo) s.hi = s.lo * 10;
  s.from = from;
  s.to = to;
  return s;
}

const std::vector<std::string>& series_colors() {
  static const std::vector<std::string> c = {"#4c72b0", "#dd8452", "#55a868", "#c44e52", "#8172b3",
                                             "#937860", "#da8bc3", "#8c8c8c", "#ccb974", "#64b5cd"};
  return c;
}

double text_width(std::string_view s, double size) { return 0.58 * size * static_cast<double>(s.size()); }

// ---- canvas -----------------------------------------------------------------------------------

namespace {

std::string px(double v) { return fmt::format("{:.1f}", v); }

std::string attrs_text(const Attrs& attrs) {
  std::string out;
  for (const auto& [k, v] : attrs) {
    out.append(" ");
    out.append(k);
    out.append("=\"");
    out.append(escape(v));
    out.append("\"");
  }
  return out;
}

}  // namespace

Canvas::Canvas(double width, double height, std::string title, std::string description)
    : width_(width), height_(height), title_(std::move(title)), description_(std::move(description)) {}

void Canvas::element(const std::string& name, const Attrs& attrs, std::string_view text) {
  body_.append(static_cast<size_t>(depth_) * 2, ' ');
  body_.append("<");
  body_.append(name);
  body_.append(attrs_text(attrs));
  if (text.empty()) {
    body_.append("/>\n");
    return;
  }
  body_.append(">");
  body_.append(escape(text));
  body_.append("</");
  body_.append(name);
  body_.append(">\n");
}

void Canvas::open(const std::string& name, const Attrs& attrs) {
  body_.append(static_cast<size_t>(depth_) * 2, ' ');
  body_.append("<");
  body_.append(name);
  body_.append(attrs_text(attrs));
  body_.append(">\n");
  ++depth_;
}

void Canvas::close(const std::string& name) {
  --depth_;
  body_.append(static_cast<size_t>(depth_) * 2, ' ');
  body_.append("</");
  body_.append(name);
  body_.append(">\n");
}

void Canvas::rect(double x, double y, double w, double h, const Attrs& extra) {
  Attrs a = {{"x", px(x)}, {"y", px(y)}, {"width", px(std::max(w, 0.0))}, {"height", px(std::max(h, 0.0))}};
  a.insert(a.end(), extra.begin(), extra.end());
  element("rect", a);
}

void Canvas::line(double x1, double y1, double x2, double y2, const std::string& stroke, double stroke_width,
                  const Attrs& extra) {
  Attrs a = {{"x1", px(x1)}, {"y1", px(y1)}, {"x2", px(x2)}, {"y2", px(y2)}, {"stroke", stroke},
             {"stroke-width", fmt::format("{}", stroke_width)}};
  a.insert(a.end(), extra.begin(), extra.end());
  element("line", a);
}

void Canvas::text(double x, double y, std::string_view content, const std::string& anchor, double size,
                  const Attrs& extra, double rotate) {
  Attrs a = {{"x", px(x)}, {"y", px(y)}, {"font-size", fmt::format("{}", size)}};
  if (anchor != "start") a.emplace_back("text-anchor", anchor);
  if (rotate != 0) a.emplace_back("transform", fmt::format("rotate({} {} {})", rotate, px(x), px(y)));
  a.insert(a.end(), extra.begin(), extra.end());
  element("text", a, content.empty() ? std::string_view(" ") : content);
}

void Canvas::begin_series(const std::string& label, const std::string& source) {
  open("g", {{"class", "series"}, {"data-series", label}, {"data-source", source}});
}

void Canvas::end_series() { close("g"); }

void Canvas::bar(double x, double y, double w, double h, const std::string& color, const std::string& label,
                 double value, const std::string& tooltip) {
  open("rect", {{"class", "bar"},
                {"x", px(x)},
                {"y", px(y)},
                {"width", px(std::max(w, 0.0))},
                {"height", px(std::max(h, 0.0))},
                {"fill", color},
                {"data-label", label},
                {"data-value", number(value)}});
  element("title", {}, tooltip);
  close("rect");
}

void Canvas::point(double cx, double cy, double r, const std::string& color, const std::string& label, double x_value,
                   double y_value, const std::string& tooltip) {
  open("circle", {{"class", "point"},
                  {"cx", px(cx)},
                  {"cy", px(cy)},
                  {"r", px(r)},
                  {"fill", color},
                  {"fill-opacity", "0.85"},
                  {"stroke", "#ffffff"},
                  {"stroke-width", "0.8"},
                  {"data-label", label},
                  {"data-x", number(x_value)},
                  {"data-y", number(y_value)}});
  element("title", {}, tooltip);
  close("circle");
}

void Canvas::polyline(const std::vector<std::pair<double, double>>& pixels, const std::string& color,
                      double stroke_width, bool dashed, const std::string& label) {
  std::string pts;
  for (const auto& [x, y] : pixels) {
    if (!pts.empty()) pts.append(" ");
    pts.append(px(x));
    pts.append(",");
    pts.append(px(y));
  }
  Attrs a = {{"class", "line"}, {"points", pts}, {"fill", "none"}, {"stroke", color},
             {"stroke-width", fmt::format("{}", stroke_width)}, {"data-label", label}};
  if (dashed) a.emplace_back("stroke-dasharray", "6 4");
  element("polyline", a);
}

void Canvas::x_axis(const Area& a, const Scale& x, const std::string& title) {
  open("g", {{"class", "axis"}, {"data-axis", "x"}});
  for (double t : x.ticks()) {
    const double X = x(t);
    line(X, a.top, X, a.bottom(), "#e3e3e3");
    line(X, a.bottom(), X, a.bottom() + 4, "#555555");
    text(X, a.bottom() + 16, tick_label(t), "middle", 11, {{"class", "tick"}, {"fill", "#333333"}});
  }
  line(a.left, a.bottom(), a.right(), a.bottom(), "#555555");
  text(a.left + a.width / 2, a.bottom() + 36, title, "middle", 12,
       {{"class", "axis-label"}, {"data-axis", "x"}, {"fill", "#222222"}});
  close("g");
}

void Canvas::y_axis(const Area& a, const Scale& y, const std::string& title) {
  open("g", {{"class", "axis"}, {"data-axis", "y"}});
  double widest = 0;
  for (double t : y.ticks()) {
    const double Y = y(t);
    const std::string l = tick_label(t);
    widest = std::max(widest, text_width(l, 11));
    line(a.left, Y, a.right(), Y, "#e3e3e3");
    line(a.left - 4, Y, a.left, Y, "#555555");
    text(a.left - 7, Y + 4, l, "end", 11, {{"class", "tick"}, {"fill", "#333333"}});
  }
  line(a.left, a.top, a.left, a.bottom(), "#555555");
  const double X = a.left - widest - 18;
  text(X, a.top + a.height / 2, title, "middle", 12, {{"class", "axis-label"}, {"data-axis", "y"}, {"fill", "#222222"}},
       -90);
  close("g");
}

void Canvas::axes(const Area& a, const Scale& x, const Scale& y, const std::string& x_title,
                  const std::string& y_title) {
  x_axis(a, x, x_title);
  y_axis(a, y, y_title);
}

namespace {

void legend_mark(Canvas& c, double x, double cy, const LegendItem& it) {
  switch (it.mark) {
    case Mark::bar: c.rect(x + 2, cy - 5, 16, 10, {{"fill", it.color}}); break;
    case Mark::point: c.element("circle", {{"cx", px(x + 10)}, {"cy", px(cy)}, {"r", "4.5"}, {"fill", it.color}}); break;
    case Mark::line: c.line(x, cy, x + 20, cy, it.color, 2); break;
    case Mark::dashed: c.line(x, cy, x + 20, cy, it.color, 2, {{"stroke-dasharray", "6 4"}}); break;
  }
}

}  // namespace

double Canvas::legend_row(double x, double y, const std::vector<LegendItem>& items, double max_width) {
  const double row = 17;
  double cx = x, cy = y + row / 2;
  open("g", {{"class", "legend"}});
  for (const auto& it : items) {
    const double w = 28 + text_width(it.label, 11) + 18;
    if (cx > x && cx + w > x + max_width) {
      cx = x;
      cy += row;
    }
    legend_mark(*this, cx, cy, it);
    text(cx + 26, cy + 4, it.label, "start", 11, {{"class", "legend-label"}, {"fill", "#222222"}});
    cx += w;
  }
  close("g");
  return cy - y + row / 2;
}

double Canvas::legend(double x, double y, const std::vector<LegendItem>& items) {
  const double row = 17;
  double w = 0;
  for (const auto& it : items) w = std::max(w, text_width(it.label, 11));
  const double h = row * static_cast<double>(items.size()) + 8;
  widen_to(x + w + 40 + 12);
  open("g", {{"class", "legend"}});
  rect(x, y, w + 40, h, {{"fill", "#ffffff"}, {"fill-opacity", "0.9"}, {"stroke", "#cccccc"}});
  for (size_t i = 0; i < items.size(); ++i) {
    const auto& it = items[i];
    const double cy = y + 4 + row * static_cast<double>(i) + row / 2;
    legend_mark(*this, x + 6, cy, it);
    text(x + 32, cy + 4, it.label, "start", 11, {{"class", "legend-label"}, {"fill", "#222222"}});
  }
  close("g");
  return h;
}

std::string Canvas::str(bool standalone) const {
  std::string out;
  if (standalone) out.append("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n");
  out.append("<svg");
  if (standalone) out.append(" xmlns=\"http://www.w3.org/2000/svg\"");
  out.append(fmt::format(" width=\"{0:.0f}\" height=\"{1:.0f}\" viewBox=\"0 0 {0:.0f} {1:.0f}\"", width_, height_));
  out.append(" font-family=\"Helvetica, Arial, sans-serif\" role=\"img\">\n");
  out.append("  <title>");
  out.append(escape(title_));
  out.append("</title>\n  <desc>");
  out.append(escape(description_));
  out.append("</desc>\n");
  out.append(fmt::format("  <rect x=\"0\" y=\"0\" width=\"{:.0f}\" height=\"{:.0f}\" fill=\"#ffffff\"/>\n", width_, height_));
  out.append(body_);
  out.append("</svg>\n");
  return out;
}

}  // namespace flopscope::svg
