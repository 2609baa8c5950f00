// A tiny SVG writer, enough for flopscope's figures: a canvas of elements, linear and log10
// scales with ticks, axes with grid lines and titles, bars, points, lines, text and a legend.
// No plotting dependency: the SVG text is written here and a browser renders it.
//
// Every mark that carries data says so in attributes (class="bar|point|line",
// data-label, data-value / data-x, data-y) inside a <g class="series" data-series=...>,
// so tests can parse a figure and check its series and values, and <title> children give
// the numbers on hover.
#pragma once

#include <algorithm>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace flopscope::svg {

// Text for XML content and attribute values: & < > " ' escaped.
std::string escape(std::string_view text);

// A number for a data-* attribute: round-trips a double (%.17g trimmed).
std::string number(double v);

// A tick label: 0.5, 20, 1500, 1e9 (powers of ten as 1e9), 2.5e+11 for others.
std::string tick_label(double v);

// Maps data to pixels, linearly or by log10. `from` is the pixel of `lo`, `to` of `hi`.
struct Scale {
  double lo = 0, hi = 1;
  double from = 0, to = 1;
  bool log = false;
  std::vector<double> fixed_ticks;  // when set, ticks() returns these (those inside the domain)
  double operator()(double v) const;
  bool contains(double v) const { return v >= lo * (1 - 1e-12) && v <= hi * (1 + 1e-12); }
  // Tick values inside [lo, hi]: 1-2-5 steps (linear), decades (log; with 2 and 5 between
  // when the domain spans two decades or less).
  std::vector<double> ticks(int target = 6) const;
};
// A linear scale whose domain covers [lo, hi], widened to round numbers (0 stays 0).
Scale linear_scale(double lo, double hi, double from, double to);
// A log10 scale whose domain covers [lo, hi] (both > 0), widened to whole decades.
Scale log_scale(double lo, double hi, double from, double to);

// Attributes of one element, in order.
using Attrs = std::vector<std::pair<std::string, std::string>>;

// The plot area of a chart, in pixels.
struct Area {
  double left, top, width, height;
  double right() const { return left + width; }
  double bottom() const { return top + height; }
};

// Palette: one colour per source, so a colour means the same thing in every figure.
inline constexpr const char* kAnalytic = "#4c72b0";  // blue
inline constexpr const char* kModel = "#8fa9d6";     // light blue: analytic model FLOPs
inline constexpr const char* kCounted = "#dd8452";   // orange
inline constexpr const char* kMeasured = "#c44e52";  // red
inline constexpr const char* kTimed = "#55a868";     // green
inline constexpr const char* kAssumed = "#8c8c8c";   // grey
// Colours for series that are not sources (configurations, inputs, op kinds).
const std::vector<std::string>& series_colors();

enum class Mark { bar, point, line, dashed };
struct LegendItem {
  std::string label;
  std::string color;
  Mark mark = Mark::bar;
};

class Canvas {
 public:
  Canvas(double width, double height, std::string title, std::string description);

  double width() const { return width_; }
  double height() const { return height_; }
  // Widens the canvas to at least `width` (a legend wider than planned).
  void widen_to(double width) { width_ = std::max(width_, width); }

  // A raw element; `text` (escaped here) is its content, or it is self-closing when empty.
  void element(const std::string& name, const Attrs& attrs, std::string_view text = {});
  void open(const std::string& name, const Attrs& attrs);
  void close(const std::string& name);

  void rect(double x, double y, double w, double h, const Attrs& extra);
  void line(double x1, double y1, double x2, double y2, const std::string& stroke, double stroke_width = 1,
            const Attrs& extra = {});
  // anchor: start, middle, end. `rotate` in degrees about (x, y).
  void text(double x, double y, std::string_view content, const std::string& anchor = "start", double size = 12,
            const Attrs& extra = {}, double rotate = 0);

  // A series group: <g class="series" data-series=label data-source=source>; close with end_series().
  void begin_series(const std::string& label, const std::string& source);
  void end_series();
  // A data bar from (x, y) with size (w, h); `value` goes into data-value, `tooltip` into <title>.
  void bar(double x, double y, double w, double h, const std::string& color, const std::string& label, double value,
           const std::string& tooltip);
  void point(double cx, double cy, double r, const std::string& color, const std::string& label, double x_value,
             double y_value, const std::string& tooltip);
  // A polyline through data points (pixels), with data-values of the points.
  void polyline(const std::vector<std::pair<double, double>>& pixels, const std::string& color, double stroke_width,
                bool dashed, const std::string& label);

  // Axes of a chart: grid lines and ticks from the scales, tick labels, and each axis's title
  // (class="axis-label", data-axis="x"|"y"); the x axis at the bottom, the y axis at the left.
  void axes(const Area& a, const Scale& x, const Scale& y, const std::string& x_title, const std::string& y_title);
  void x_axis(const Area& a, const Scale& x, const std::string& title);
  void y_axis(const Area& a, const Scale& y, const std::string& title);
  // A legend box at (x, y), one row per item; returns its height. The canvas widens to hold it.
  double legend(double x, double y, const std::vector<LegendItem>& items);
  // A legend on one line from (x, y), wrapping at `max_width`; returns its height.
  double legend_row(double x, double y, const std::vector<LegendItem>& items, double max_width);

  // The document. Standalone files carry the SVG namespace and an XML declaration; inline
  // SVG in HTML needs neither (and so names no http:// URL).
  std::string str(bool standalone) const;

 private:
  double width_, height_;
  std::string title_, description_;
  std::string body_;
  int depth_ = 1;
};

// Roughly how wide a text is in pixels (sans-serif), for layout.
double text_width(std::string_view s, double size);

}  // namespace flopscope::svg
