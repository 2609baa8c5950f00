// A small XML parser for the tests: enough to check that flopscope's SVG is well-formed and
// to query it. It checks what a browser's XML parser would reject: one root element, tags
// that match, names that are names, attributes quoted and not repeated, '<' never raw in
// text or attributes, '&' only as one of the five entities or a character reference, and
// nothing but comments, processing instructions and white space outside the root.
// Throws std::runtime_error with the offset and the reason.
#pragma once

#include <cctype>
#include <functional>
#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

namespace xml_test {

struct Node {
  std::string name;
  std::vector<std::pair<std::string, std::string>> attrs;  // values with entities decoded
  std::vector<Node> children;
  std::string text;  // the text directly inside this element, entities decoded

  bool has(const std::string& key) const {
    for (const auto& [k, v] : attrs)
      if (k == key) return true;
    return false;
  }
  std::string attr(const std::string& key) const {
    for (const auto& [k, v] : attrs)
      if (k == key) return v;
    return "";
  }
  double num(const std::string& key) const { return std::stod(attr(key)); }
  // This element and every element below it that `pred` accepts, in document order.
  void find_all(const std::function<bool(const Node&)>& pred, std::vector<const Node*>& out) const {
    if (pred(*this)) out.push_back(this);
    for (const auto& c : children) c.find_all(pred, out);
  }
  std::vector<const Node*> find_all(const std::function<bool(const Node&)>& pred) const {
    std::vector<const Node*> out;
    find_all(pred, out);
    return out;
  }
  // All text below this element, concatenated.
  std::string all_text() const {
    std::string s = text;
    for (const auto& c : children) s += c.all_text();
    return s;
  }
};

class Parser {
 public:
  explicit Parser(const std::string& s) : s_(s) {}

  Node document() {
    skip_misc();
    if (!starts("<")) fail("no root element");
    Node root = element();
    skip_misc();
    if (i_ != s_.size()) fail("content after the root element");
    return root;
  }

 private:
  [[noreturn]] void fail(const std::string& why) const {
    throw std::runtime_error("XML not well-formed at offset " + std::to_string(i_) + ": " + why + " near '" +
                             s_.substr(i_ > 20 ? i_ - 20 : 0, 60) + "'");
  }
  bool starts(const char* t) const { return s_.compare(i_, std::char_traits<char>::length(t), t) == 0; }
  void skip_space() {
    while (i_ < s_.size() && std::isspace(static_cast<unsigned char>(s_[i_]))) ++i_;
  }
  // White space, comments and processing instructions (the XML declaration) outside the root.
  void skip_misc() {
    while (true) {
      skip_space();
      if (starts("<!--")) {
        comment();
      } else if (starts("<?")) {
        const size_t end = s_.find("?>", i_);
        if (end == std::string::npos) fail("unterminated processing instruction");
        i_ = end + 2;
      } else {
        return;
      }
    }
  }
  void comment() {
    const size_t end = s_.find("-->", i_ + 4);
    if (end == std::string::npos) fail("unterminated comment");
    if (s_.substr(i_ + 4, end - i_ - 4).find("--") != std::string::npos) fail("'--' inside a comment");
    i_ = end + 3;
  }
  static bool name_start(char c) { return std::isalpha(static_cast<unsigned char>(c)) || c == '_' || c == ':'; }
  static bool name_char(char c) {
    return name_start(c) || std::isdigit(static_cast<unsigned char>(c)) || c == '-' || c == '.';
  }
  std::string name() {
    if (i_ >= s_.size() || !name_start(s_[i_])) fail("expected a name");
    const size_t start = i_;
    while (i_ < s_.size() && name_char(s_[i_])) ++i_;
    return s_.substr(start, i_ - start);
  }
  // Text up to `stop`, with entities decoded; '<' is an error inside attribute values.
  std::string chars(char stop, bool in_attr) {
    std::string out;
    while (i_ < s_.size() && s_[i_] != stop) {
      const char c = s_[i_];
      if (c == '<' && in_attr) fail("'<' in an attribute value");
      if (c == '&') {
        const size_t semi = s_.find(';', i_);
        if (semi == std::string::npos || semi - i_ > 10) fail("'&' that is not an entity");
        const std::string ent = s_.substr(i_ + 1, semi - i_ - 1);
        if (ent == "amp") out += '&';
        else if (ent == "lt") out += '<';
        else if (ent == "gt") out += '>';
        else if (ent == "quot") out += '"';
        else if (ent == "apos") out += '\'';
        else if (ent.size() > 1 && ent[0] == '#') {
          const bool hex = ent[1] == 'x';
          const std::string digits = ent.substr(hex ? 2 : 1);
          if (digits.empty()) fail("empty character reference");
          for (char d : digits)
            if (!(hex ? std::isxdigit(static_cast<unsigned char>(d)) : std::isdigit(static_cast<unsigned char>(d))))
              fail("bad character reference");
          const long cp = std::stol(digits, nullptr, hex ? 16 : 10);
          if (cp < 0x80) out += static_cast<char>(cp);
          else out += '?';
        } else {
          fail("unknown entity &" + ent + ";");
        }
        i_ = semi + 1;
        continue;
      }
      if (static_cast<unsigned char>(c) < 0x20 && c != '\t' && c != '\n' && c != '\r') fail("control character");
      out += c;
      ++i_;
    }
    return out;
  }
  Node element() {
    ++i_;  // '<'
    Node n;
    n.name = name();
    while (true) {
      const size_t before = i_;
      skip_space();
      if (starts("/>")) {
        i_ += 2;
        return n;
      }
      if (starts(">")) {
        ++i_;
        break;
      }
      if (i_ == before) fail("expected white space before an attribute");
      const std::string key = name();
      if (n.has(key)) fail("attribute '" + key + "' repeated");
      skip_space();
      if (!starts("=")) fail("attribute without '='");
      ++i_;
      skip_space();
      if (i_ >= s_.size() || (s_[i_] != '"' && s_[i_] != '\'')) fail("attribute value not quoted");
      const char q = s_[i_++];
      std::string v = chars(q, true);
      if (i_ >= s_.size()) fail("unterminated attribute value");
      ++i_;
      n.attrs.emplace_back(key, std::move(v));
    }
    // Content: text, comments, CDATA and child elements, up to the matching end tag.
    while (true) {
      if (i_ >= s_.size()) fail("element <" + n.name + "> not closed");
      if (starts("</")) {
        i_ += 2;
        const std::string end = name();
        if (end != n.name) fail("</" + end + "> closes <" + n.name + ">");
        skip_space();
        if (!starts(">")) fail("bad end tag");
        ++i_;
        return n;
      }
      if (starts("<!--")) {
        comment();
      } else if (starts("<![CDATA[")) {
        const size_t end = s_.find("]]>", i_);
        if (end == std::string::npos) fail("unterminated CDATA");
        n.text += s_.substr(i_ + 9, end - i_ - 9);
        i_ = end + 3;
      } else if (starts("<")) {
        n.children.push_back(element());
      } else {
        const std::string t = chars('<', false);
        if (t.find("]]>") != std::string::npos) fail("']]>' in text");
        n.text += t;
      }
    }
  }

  const std::string& s_;
  size_t i_ = 0;
};

inline Node parse(const std::string& text) { return Parser(text).document(); }

// Every <svg>...</svg> inside an HTML page, as text (inline SVG is XML inside HTML).
inline std::vector<std::string> inline_svgs(const std::string& html) {
  std::vector<std::string> out;
  size_t at = 0;
  while ((at = html.find("<svg", at)) != std::string::npos) {
    const size_t end = html.find("</svg>", at);
    if (end == std::string::npos) break;
    out.push_back(html.substr(at, end + 6 - at));
    at = end + 6;
  }
  return out;
}

}  // namespace xml_test
