// `--format html`: one self-contained page for any result. Inline CSS, the same tables as the
// text report (rendered from the same Document), and the figures as inline SVG. No script,
// no font, no image or style sheet from anywhere else: the file opens offline and can be
// mailed or attached to a ticket as it is.
#include <fmt/format.h>

#include "report/collections.hpp"
#include "report/plots.hpp"
#include "report/render_predict.hpp"
#include "report/result.hpp"
#include "report/svg.hpp"
#include "version.hpp"

namespace flopscope {

using nlohmann::json;

namespace {

constexpr const char* kCss = R"(
  :root { color-scheme: light; }
  body { font: 14px/1.45 -apple-system, "Segoe UI", Helvetica, Arial, sans-serif; color: #1b1b1b;
         margin: 0 auto; padding: 24px 32px 64px; max-width: 1400px; background: #fafafa; }
  h1 { font-size: 22px; margin: 0 0 4px; }
  h2 { font-size: 17px; margin: 32px 0 8px; padding-bottom: 4px; border-bottom: 1px solid #ddd; }
  p { margin: 4px 0; }
  p.meta { color: #555; font-size: 13px; }
  p.indent { padding-left: 2em; color: #444; }
  nav { font-size: 13px; margin: 12px 0 0; }
  nav a { margin-right: 14px; color: #2a5db0; text-decoration: none; }
  nav a:hover { text-decoration: underline; }
  .scroll { overflow-x: auto; margin: 8px 0; }
  table { border-collapse: collapse; font-size: 12.5px; background: #fff; }
  th, td { padding: 3px 9px; border-bottom: 1px solid #e6e6e6; white-space: nowrap; }
  th { background: #f0f2f5; font-weight: 600; border-bottom: 1px solid #cfd4db; position: sticky; top: 0; }
  td.num, th.num { text-align: right; font-variant-numeric: tabular-nums; }
  td.txt, th.txt { text-align: left; }
  tbody tr:nth-child(even) { background: #f7f8fa; }
  tbody tr:hover { background: #eef3fb; }
  figure { margin: 16px 0 28px; background: #fff; border: 1px solid #e2e2e2; padding: 8px; overflow-x: auto; }
  figure svg { display: block; max-width: 100%; height: auto; }
  figcaption { font-size: 13px; color: #444; margin: 6px 4px 0; }
  .sources { font-size: 12.5px; color: #444; background: #fff; border-left: 3px solid #4c72b0; padding: 6px 10px; }
)";

std::string esc(std::string_view s) { return svg::escape(s); }

// Cells of one row of Table::markdown() ("| a | b |", '|' inside a cell written "\|").
std::vector<std::string> markdown_cells(const std::string& line) {
  std::vector<std::string> cells;
  size_t i = 1;  // after the leading '|'
  while (i < line.size()) {
    if (line[i] == ' ') ++i;
    std::string cell;
    while (i < line.size()) {
      if (line[i] == '\\' && i + 1 < line.size() && line[i + 1] == '|') {
        cell.push_back('|');
        i += 2;
      } else if (line[i] == '|') {
        ++i;
        break;
      } else {
        cell.push_back(line[i++]);
      }
    }
    if (!cell.empty() && cell.back() == ' ') cell.pop_back();
    cells.push_back(std::move(cell));
  }
  return cells;
}

// The table as HTML, from its Markdown (the Table's one public view of its cells).
std::string table_html(const Table& t) {
  std::vector<std::vector<std::string>> rows;
  std::string md = t.markdown();
  size_t start = 0;
  while (start < md.size()) {
    const size_t end = md.find('\n', start);
    const std::string line = md.substr(start, end == std::string::npos ? std::string::npos : end - start);
    if (!line.empty()) rows.push_back(markdown_cells(line));
    if (end == std::string::npos) break;
    start = end + 1;
  }
  if (rows.size() < 2) return "";
  std::vector<bool> left;
  for (const auto& a : rows[1]) left.push_back(a.rfind(":", 0) == 0);
  auto cls = [&](size_t c) { return c < left.size() && left[c] ? "txt" : "num"; };
  std::string out = "<div class=\"scroll\"><table>\n<thead><tr>";
  for (size_t c = 0; c < rows[0].size(); ++c) out.append(fmt::format("<th class=\"{}\">{}</th>", cls(c), esc(rows[0][c])));
  out.append("</tr></thead>\n<tbody>\n");
  for (size_t r = 2; r < rows.size(); ++r) {
    out.append("<tr>");
    for (size_t c = 0; c < rows[r].size(); ++c) out.append(fmt::format("<td class=\"{}\">{}</td>", cls(c), esc(rows[r][c])));
    out.append("</tr>\n");
  }
  out.append("</tbody></table></div>\n");
  return out;
}

std::string notes_html(const std::vector<std::string>& lines) {
  std::string out;
  for (const auto& l : lines) {
    const bool indent = l.rfind("  ", 0) == 0;
    const size_t first = l.find_first_not_of(' ');
    out.append(indent ? "<p class=\"indent\">" : "<p>");
    out.append(esc(first == std::string::npos ? "" : l.substr(first)));
    out.append("</p>\n");
  }
  return out;
}

std::string section_html(const detail::Section& s, const std::string& anchor) {
  std::string out = fmt::format("<section id=\"{}\">\n<h2>{}</h2>\n", anchor, esc(s.heading));
  out.append(notes_html(s.before));
  if (s.table) out.append(table_html(*s.table));
  out.append(notes_html(s.after));
  out.append("</section>\n");
  return out;
}

// A section's heading up to its first ':' or '(' (the rest says where its numbers come from).
std::string nav_title(const std::string& heading) {
  std::string t = heading.substr(0, heading.find_first_of(":("));
  while (!t.empty() && (t.back() == ' ' || t.back() == ',')) t.pop_back();
  if (t.size() > 60) {
    t.resize(57);
    t.append("...");
  }
  return t;
}

detail::Document document_of(const json& r) {
  const std::string cmd = r.at("command").get<std::string>();
  if (cmd == "predict" || is_prediction_compare(r)) return detail::predict_document(r);
  if (cmd == "sweep") return detail::sweep_document(r);
  if (cmd == "compare") return detail::compare_document(r);
  detail::check_schema(r);
  return cmd == "estimate" ? detail::estimate_document(r) : detail::measure_document(r);
}

}  // namespace

std::string render_html(const json& r) {
  check_result(r);
  const detail::Document doc = document_of(r);
  const std::vector<Figure> figures = figures_for(r);

  std::string out = "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n";
  out.append("<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n");
  out.append(fmt::format("<meta name=\"generator\" content=\"flopscope {}\">\n", esc(kVersion)));
  out.append(fmt::format("<title>{}</title>\n<style>{}</style>\n</head>\n<body>\n", esc(doc.title), kCss));
  out.append(fmt::format("<header>\n<h1>{}</h1>\n", esc(doc.title)));
  const auto& tool = r.at("tool");
  out.append(fmt::format(
      "<p class=\"meta\">Result of <code>flopscope {}</code> (flopscope {}, commit {}; schema {}), rendered by "
      "flopscope {} from the result's JSON alone.</p>\n",
      esc(r.at("command").get<std::string>()), esc(tool.value("version", "?")), esc(tool.value("git_commit", "?")),
      esc(r.at("schema").get<std::string>()), esc(kVersion)));
  if (r.contains("command_line") && r.at("command_line").is_string())
    out.append(fmt::format("<p class=\"meta\">command line: <code>{}</code></p>\n", esc(r.at("command_line").get<std::string>())));
  out.append("<nav>");
  if (!figures.empty()) out.append("<a href=\"#figures\">Figures</a>");
  for (size_t i = 0; i < doc.sections.size(); ++i)
    out.append(fmt::format("<a href=\"#s{}\">{}</a>", i + 1, esc(nav_title(doc.sections[i].heading))));
  out.append("</nav>\n</header>\n");
  out.append("<p class=\"sources\">Every number names its source: <b>analytic</b> (a formula or the layer graph), "
             "<b>counted</b> (software counted each executed call), <b>measured</b> (hardware counters), "
             "<b>timed</b> (a clock), <b>assumed</b> (an input of yours).</p>\n");

  for (size_t i = 0; i < doc.sections.size(); ++i) {
    out.append(section_html(doc.sections[i], fmt::format("s{}", i + 1)));
    if (i == 0 && !figures.empty()) {
      out.append("<section id=\"figures\">\n<h2>Figures</h2>\n");
      for (const auto& f : figures) {
        out.append(fmt::format("<figure id=\"fig-{}\">\n", f.id));
        out.append(f.svg);
        out.append(fmt::format("<figcaption>{}</figcaption>\n</figure>\n", esc(f.caption)));
      }
      out.append("</section>\n");
    }
  }
  out.append("</body>\n</html>\n");
  return out;
}

}  // namespace flopscope
