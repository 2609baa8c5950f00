#include "job/shell.hpp"

#include <algorithm>
#include <cctype>
#include <set>

#include <fmt/format.h>

#include "util/error.hpp"

namespace flopscope::job {

namespace {

// ---- tokens --------------------------------------------------------------------------------

enum class Tok { word, newline, semi, and_if, or_if, pipe, amp, lparen, rparen, redirect };

struct Token {
  Tok kind;
  std::string raw;  // a word's source text, quotes included
  int line;
};

bool is_name_start(char c) { return std::isalpha(static_cast<unsigned char>(c)) || c == '_'; }
bool is_name_char(char c) { return std::isalnum(static_cast<unsigned char>(c)) || c == '_'; }

class Lexer {
 public:
  Lexer(const std::string& text, const std::string& origin) : s_(text), origin_(origin) {}

  std::vector<Token> run(std::map<std::string, std::pair<std::string, int>>& sbatch) {
    std::vector<Token> out;
    while (i_ < s_.size()) {
      const char c = s_[i_];
      if (c == '\\' && i_ + 1 < s_.size() && s_[i_ + 1] == '\n') {  // a continuation between words
        i_ += 2;
        ++line_;
      } else if (c == ' ' || c == '\t' || c == '\r') {
        ++i_;
      } else if (c == '\n') {
        out.push_back({Tok::newline, "", line_});
        ++line_;
        ++i_;
      } else if (c == '#') {
        const size_t end = s_.find('\n', i_);
        const std::string comment = s_.substr(i_, end == std::string::npos ? std::string::npos : end - i_);
        if (comment.rfind("#SBATCH", 0) == 0) sbatch_directive(comment.substr(7), sbatch);
        i_ = end == std::string::npos ? s_.size() : end;
      } else if (c == ';') {
        out.push_back({Tok::semi, ";", line_});
        i_ += (i_ + 1 < s_.size() && s_[i_ + 1] == ';') ? 2 : 1;
      } else if (c == '&' && peek(1) == '&') {
        out.push_back({Tok::and_if, "&&", line_});
        i_ += 2;
      } else if (c == '|' && peek(1) == '|') {
        out.push_back({Tok::or_if, "||", line_});
        i_ += 2;
      } else if (c == '|') {
        out.push_back({Tok::pipe, "|", line_});
        ++i_;
      } else if (c == '&' && peek(1) != '>') {
        out.push_back({Tok::amp, "&", line_});
        ++i_;
      } else if (c == '(') {
        out.push_back({Tok::lparen, "(", line_});
        ++i_;
      } else if (c == ')') {
        out.push_back({Tok::rparen, ")", line_});
        ++i_;
      } else if (c == '>' || c == '<' || (c == '&' && peek(1) == '>') ||
                 (std::isdigit(static_cast<unsigned char>(c)) && (peek(1) == '>' || peek(1) == '<'))) {
        const size_t start = i_;
        while (i_ < s_.size() && std::string_view("0123456789<>&-").find(s_[i_]) != std::string_view::npos) ++i_;
        out.push_back({Tok::redirect, s_.substr(start, i_ - start), line_});
      } else {
        const int line = line_;
        out.push_back({Tok::word, word(), line});
      }
    }
    out.push_back({Tok::newline, "", line_});
    return out;
  }

 private:
  char peek(size_t k) const { return i_ + k < s_.size() ? s_[i_ + k] : '\0'; }

  [[noreturn]] void fail(int line, const std::string& what) const {
    throw UsageError(fmt::format("{}:{}: {}; flopscope reads launch scripts as data (docs/predict.md)", origin_, line,
                                 what));
  }

  // One word: up to unquoted whitespace or an operator, with its quotes, $(...), ${...} and
  // `...` kept whole (they may hold spaces).
  std::string word() {
    const size_t start = i_;
    const int start_line = line_;
    while (i_ < s_.size()) {
      const char c = s_[i_];
      if (c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == ';' || c == '|' || c == '&' || c == '<' ||
          c == '>' || c == ')')
        break;
      if (c == '(') {
        // NAME=( starts an array: the word ends before the parenthesis.
        if (i_ > start && s_[i_ - 1] == '=') break;
        if (i_ == start) break;
        skip_group('(', ')', start_line);
        continue;
      }
      if (c == '\\') {
        if (peek(1) == '\n') {
          ++line_;
        }
        i_ += 2;
      } else if (c == '\'') {
        const size_t end = s_.find('\'', i_ + 1);
        if (end == std::string::npos) fail(start_line, "an unterminated single quote");
        count_lines(i_, end);
        i_ = end + 1;
      } else if (c == '"') {
        skip_double_quoted(start_line);
      } else if (c == '`') {
        const size_t end = s_.find('`', i_ + 1);
        if (end == std::string::npos) fail(start_line, "an unterminated backtick");
        count_lines(i_, end);
        i_ = end + 1;
      } else if (c == '$' && (peek(1) == '(' || peek(1) == '{')) {
        ++i_;
        skip_group(s_[i_], s_[i_] == '(' ? ')' : '}', start_line);
      } else {
        ++i_;
      }
    }
    return s_.substr(start, i_ - start);
  }

  void count_lines(size_t from, size_t to) {
    for (size_t k = from; k < to; ++k) line_ += s_[k] == '\n';
  }

  void skip_double_quoted(int start_line) {
    ++i_;  // the opening quote
    while (i_ < s_.size() && s_[i_] != '"') {
      if (s_[i_] == '\\') {
        line_ += peek(1) == '\n';
        i_ += 2;
      } else if (s_[i_] == '$' && (peek(1) == '(' || peek(1) == '{')) {
        ++i_;
        skip_group(s_[i_], s_[i_] == '(' ? ')' : '}', start_line);
      } else if (s_[i_] == '`') {
        const size_t end = s_.find('`', i_ + 1);
        if (end == std::string::npos) fail(start_line, "an unterminated backtick");
        count_lines(i_, end);
        i_ = end + 1;
      } else {
        line_ += s_[i_] == '\n';
        ++i_;
      }
    }
    if (i_ >= s_.size()) fail(start_line, "an unterminated double quote");
    ++i_;
  }

  // From an opening bracket at i_ to past its match, quotes respected.
  void skip_group(char open, char close, int start_line) {
    int depth = 0;
    while (i_ < s_.size()) {
      const char c = s_[i_];
      if (c == '\\') {
        i_ += 2;
        continue;
      }
      if (c == '\'') {
        const size_t end = s_.find('\'', i_ + 1);
        if (end == std::string::npos) fail(start_line, "an unterminated single quote");
        count_lines(i_, end);
        i_ = end + 1;
        continue;
      }
      if (c == '"') {
        skip_double_quoted(start_line);
        continue;
      }
      line_ += c == '\n';
      if (c == open) ++depth;
      if (c == close && --depth == 0) {
        ++i_;
        return;
      }
      ++i_;
    }
    fail(start_line, fmt::format("an unterminated '{}'", open));
  }

  void sbatch_directive(const std::string& rest, std::map<std::string, std::pair<std::string, int>>& sbatch) {
    // "--nodes 64", "--nodes=64", "-N 64", "--gpus-per-node=8"
    size_t a = rest.find_first_not_of(" \t");
    if (a == std::string::npos) return;
    size_t b = rest.find_first_of(" \t=", a);
    std::string key = rest.substr(a, b == std::string::npos ? std::string::npos : b - a);
    std::string value;
    if (b != std::string::npos) {
      size_t v = rest.find_first_not_of(" \t=", b);
      if (v != std::string::npos) {
        size_t e = rest.find_first_of(" \t#", v);
        value = rest.substr(v, e == std::string::npos ? std::string::npos : e - v);
      }
    }
    if (key == "-N") key = "--nodes";
    if (key == "-n") key = "--ntasks";
    if (key == "-G") key = "--gpus";
    sbatch[key] = {value, line_};
  }

  const std::string& s_;
  const std::string& origin_;
  size_t i_ = 0;
  int line_ = 1;
};

// ---- variables and expansion -----------------------------------------------------------------

struct Var {
  std::vector<Word> elems;  // a scalar has one
  bool array = false;
  int line = 0;
};

// Inside an unknown word's text, where the unknown part was (split keeps known neighbours).
constexpr char kUnknownMark = '\x01';

Word unknown_word(const std::string& why, int line) {
  Word w;
  w.text = std::string(1, kUnknownMark);
  w.known = false;
  w.why = why;
  w.line = line;
  return w;
}

class Shell {
 public:
  Shell(const std::string& origin, ShellResult& out) : origin_(origin), out_(out) {}

  std::map<std::string, Var> vars;

  void note(const std::string& what, int line, const std::string& why) {
    for (const auto& n : out_.notes)
      if (n.what == what && n.line == line) return;
    out_.notes.push_back({what, line, why});
  }

  // The fields one raw word expands to. `split`: unquoted expansions split on whitespace (a
  // command's words, an array's elements); off for an assignment's value.
  std::vector<Word> expand(const std::string& raw, int line, bool split) {
    Builder b{line, {}, false};
    size_t i = 0;
    expand_into(raw, i, raw.size(), line, split, /*quoted=*/false, b);
    return b.finish();
  }

  // One word, fields joined by spaces (an assignment, a test's operand).
  Word expand_one(const std::string& raw, int line) {
    std::vector<Word> f = expand(raw, line, false);
    if (f.empty()) {
      Word w;
      w.line = line;
      return w;
    }
    Word w = f.front();
    for (size_t k = 1; k < f.size(); ++k) {
      w.text += " " + f[k].text;
      if (!f[k].known && w.known) {
        w.known = false;
        w.why = f[k].why;
      }
    }
    return w;
  }

 private:
  // Accumulates fields: text, whether all of it is known, where it came from.
  struct Builder {
    int line;
    std::vector<Word> fields;
    bool open = false;  // a field is being built (an empty quoted "" still makes one)

    Word& current() {
      if (!open) {
        Word w;
        w.line = line;
        fields.push_back(w);
        open = true;
      }
      return fields.back();
    }
    void add_text(const std::string& t) { current().text += t; }
    void add_word(const Word& w) {
      Word& c = current();
      const bool fresh = c.text.empty() && c.known;
      c.text += w.text;
      if (!w.known && c.known) {
        c.known = false;
        c.why = w.why;
      }
      if (fresh && w.line) c.line = w.line;
      if (w.value_line) c.value_line = w.value_line;
    }
    void break_field() { open = false; }
    std::vector<Word> finish() { return fields; }
  };

  // A value's text into fields, split on whitespace when unquoted.
  void add_value(const Word& w, bool split, bool quoted, Builder& b) {
    if (!split || quoted) {
      b.add_word(w);
      return;
    }
    size_t k = 0;
    const std::string& t = w.text;
    bool first = true;
    while (k <= t.size()) {
      const size_t sp = t.find_first_of(" \t\n", k);
      const std::string part = t.substr(k, sp == std::string::npos ? std::string::npos : sp - k);
      if (!first) b.break_field();
      if (!part.empty()) {
        Word p = w;
        p.text = part;
        // Split words of a partly unknown value: only those holding the unknown part are unknown.
        if (!w.known && part.find(kUnknownMark) == std::string::npos) {
          p.known = true;
          p.why.clear();
        }
        b.add_word(p);
      }
      first = false;
      if (sp == std::string::npos) break;
      k = sp + 1;
    }
  }

  void expand_into(const std::string& s, size_t& i, size_t end, int line, bool split, bool quoted, Builder& b) {
    while (i < end) {
      const char c = s[i];
      if (!quoted && c == '\'') {
        const size_t close = s.find('\'', i + 1);
        b.add_text(s.substr(i + 1, close - i - 1));
        i = close + 1;
      } else if (!quoted && c == '"') {
        const size_t close = matching_quote(s, i);
        b.current();  // "" is a field
        size_t k = i + 1;
        // "${A[@]}" alone: one field per element.
        expand_into(s, k, close, line, split, /*quoted=*/true, b);
        i = close + 1;
      } else if (c == '\\') {
        if (i + 1 < end) {
          const char n = s[i + 1];
          if (n == '\n') {
          } else if (!quoted || n == '"' || n == '$' || n == '\\' || n == '`') {
            b.add_text(std::string(1, n));
          } else {
            b.add_text(s.substr(i, 2));
          }
        }
        i += 2;
      } else if (c == '`') {
        const size_t close = s.find('`', i + 1);
        const std::string cmd = s.substr(i, close - i + 1);
        note(cmd, line, "command substitution: not run");
        add_value(unknown_word(fmt::format("{} (line {}) is a command substitution, not run", cmd, line), line), split,
                  quoted, b);
        i = close + 1;
      } else if (c == '$' && i + 1 < end) {
        expand_dollar(s, i, end, line, split, quoted, b);
      } else {
        b.add_text(std::string(1, c));
        ++i;
      }
    }
  }

  static size_t matching_quote(const std::string& s, size_t open) {
    size_t k = open + 1;
    while (k < s.size() && s[k] != '"') {
      if (s[k] == '\\') {
        k += 2;
      } else if (s[k] == '$' && k + 1 < s.size() && (s[k + 1] == '(' || s[k + 1] == '{')) {
        k = matching_bracket(s, k + 1) + 1;
      } else {
        ++k;
      }
    }
    return k;
  }

  static size_t matching_bracket(const std::string& s, size_t open) {
    const char o = s[open], cl = o == '(' ? ')' : '}';
    int depth = 0;
    for (size_t k = open; k < s.size(); ++k) {
      if (s[k] == '\\') {
        ++k;
        continue;
      }
      if (s[k] == '\'') {
        k = s.find('\'', k + 1);
        if (k == std::string::npos) return s.size() - 1;
        continue;
      }
      if (s[k] == '"' && o == '(') {
        k = matching_quote(s, k);
        continue;
      }
      if (s[k] == o) ++depth;
      if (s[k] == cl && --depth == 0) return k;
    }
    return s.size() - 1;
  }

  void expand_dollar(const std::string& s, size_t& i, size_t end, int line, bool split, bool quoted, Builder& b) {
    const char n = s[i + 1];
    if (n == '(' && i + 2 < end && s[i + 2] == '(') {  // $((arithmetic))
      const size_t close = matching_bracket(s, i + 1);
      const std::string expr = s.substr(i + 3, close - i - 4);
      add_value(arithmetic(expr, line), split, quoted, b);
      i = close + 1;
    } else if (n == '(') {
      const size_t close = matching_bracket(s, i + 1);
      const std::string cmd = s.substr(i, close - i + 1);
      note(cmd, line, "command substitution: not run");
      add_value(unknown_word(fmt::format("{} (line {}) is a command substitution, not run", cmd, line), line), split,
                quoted, b);
      i = close + 1;
    } else if (n == '{') {
      const size_t close = matching_bracket(s, i + 1);
      braced(s.substr(i + 2, close - i - 2), line, split, quoted, b);
      i = close + 1;
    } else if (is_name_start(n)) {
      size_t k = i + 1;
      while (k < end && is_name_char(s[k])) ++k;
      add_value(scalar(s.substr(i + 1, k - i - 1), line), split, quoted, b);
      i = k;
    } else if (std::isdigit(static_cast<unsigned char>(n)) || n == '@' || n == '*' || n == '#' || n == '?' ||
               n == '$' || n == '!') {
      add_value(special(std::string(1, n), line), split, quoted, b);
      i += 2;
    } else {
      b.add_text("$");
      ++i;
    }
  }

  Word special(const std::string& name, int line) {
    if (std::isdigit(static_cast<unsigned char>(name[0])) || name == "@" || name == "*" || name == "#")
      return unknown_word(fmt::format("${} (line {}) is an argument of the script, not given", name, line), line);
    return unknown_word(fmt::format("${} (line {}) is known only when the script runs", name, line), line);
  }

  // $NAME or ${NAME}: its value, or unknown when the file never sets it.
  Word scalar(const std::string& name, int line) {
    auto it = vars.find(name);
    if (it == vars.end())
      return unknown_word(fmt::format("${} (line {}) is not set in the file; pass --job-env {}=VALUE", name, line, name),
                          line);
    const Var& v = it->second;
    Word w = v.elems.empty() ? Word{} : v.elems.front();
    w.line = line;
    if (!w.value_line) w.value_line = v.line;
    return w;
  }

  void braced(const std::string& inner, int line, bool split, bool quoted, Builder& b) {
    // ${A[@]}, ${A[*]}, ${A[0]}
    const size_t bracket = inner.find('[');
    if (bracket != std::string::npos && !inner.empty() && inner.back() == ']' && is_name_start(inner[0])) {
      const std::string name = inner.substr(0, bracket), index = inner.substr(bracket + 1, inner.size() - bracket - 2);
      auto it = vars.find(name);
      if (it == vars.end()) {
        add_value(unknown_word(fmt::format("${{{}}} (line {}) is not set in the file", inner, line), line), split,
                  quoted, b);
        return;
      }
      if (index == "@" || index == "*") {
        bool first = true;
        for (const Word& e : it->second.elems) {
          if (!first) {
            if (!quoted || index == "@") {
              b.break_field();
            } else {
              b.add_text(" ");
            }
          }
          add_value(e, split, quoted, b);
          first = false;
        }
        return;
      }
      if (!index.empty() && std::all_of(index.begin(), index.end(), [](char c) { return std::isdigit(static_cast<unsigned char>(c)); })) {
        const size_t k = std::stoul(index);
        if (k < it->second.elems.size()) add_value(it->second.elems[k], split, quoted, b);
        return;
      }
      add_value(unknown_word(fmt::format("${{{}}} (line {}) is not evaluated", inner, line), line), split, quoted, b);
      return;
    }
    // ${NAME}, ${NAME:-default}, ${NAME-default}, ${NAME:=default}, ${NAME=default}
    size_t k = 0;
    if (!inner.empty() && std::isdigit(static_cast<unsigned char>(inner[0]))) {
      while (k < inner.size() && std::isdigit(static_cast<unsigned char>(inner[k]))) ++k;
    } else {
      while (k < inner.size() && is_name_char(inner[k])) ++k;
    }
    const std::string name = inner.substr(0, k);
    if (name.empty()) {
      add_value(unknown_word(fmt::format("${{{}}} (line {}) is not evaluated", inner, line), line), split, quoted, b);
      return;
    }
    const bool positional = std::isdigit(static_cast<unsigned char>(name[0]));
    const bool set = !positional && vars.count(name) > 0;
    if (k == inner.size()) {
      add_value(positional ? special(name, line) : scalar(name, line), split, quoted, b);
      return;
    }
    const std::string rest = inner.substr(k);
    const bool colon = rest.size() >= 2 && rest[0] == ':' && (rest[1] == '-' || rest[1] == '=');
    const bool plain = !rest.empty() && (rest[0] == '-' || rest[0] == '=');
    if (colon || plain) {
      const char op = colon ? rest[1] : rest[0];
      const std::string def = rest.substr(colon ? 2 : 1);
      bool use_default = !set;
      if (set && colon) {
        const Word& v = vars.at(name).elems.empty() ? Word{} : vars.at(name).elems.front();
        use_default = v.known && v.text.empty();
      }
      if (!use_default) {
        add_value(scalar(name, line), split, quoted, b);
        return;
      }
      Word d = expand_one(def, line);
      d.line = line;
      if (op == '=' && !positional) vars[name] = Var{{d}, false, line};
      add_value(d, split, quoted, b);
      return;
    }
    add_value(unknown_word(fmt::format("${{{}}} (line {}) is a form flopscope does not evaluate", inner, line), line),
              split, quoted, b);
  }

  // ---- $((...)): + - * / % and parentheses over integers; no assignment ----
  Word arithmetic(const std::string& expr, int line) {
    // Expand $NAME and ${...} first; bare names are variables too.
    Word e = expand_one(expr, line);
    if (!e.known) return unknown_word(e.why, line);
    Arith a{e.text, 0, this, line, {}};
    Word w;
    w.line = line;
    try {
      const int64_t v = a.sum();
      a.space();
      if (a.p != a.t.size()) throw UsageError("");
      if (!a.unknown.empty()) return unknown_word(a.unknown, line);
      w.text = std::to_string(v);
    } catch (const UsageError&) {
      if (!a.unknown.empty()) return unknown_word(a.unknown, line);
      return unknown_word(fmt::format("$(({})) (line {}) is arithmetic flopscope does not evaluate", expr, line), line);
    }
    return w;
  }

  struct Arith {
    std::string t;
    size_t p;
    Shell* sh;
    int line;
    std::string unknown;
    void space() {
      while (p < t.size() && std::isspace(static_cast<unsigned char>(t[p]))) ++p;
    }
    int64_t sum() {
      int64_t v = product();
      for (space(); p < t.size() && (t[p] == '+' || t[p] == '-'); space()) {
        const char op = t[p++];
        const int64_t r = product();
        v = op == '+' ? v + r : v - r;
      }
      return v;
    }
    int64_t product() {
      int64_t v = unary();
      for (space(); p < t.size() && (t[p] == '*' || t[p] == '/' || t[p] == '%'); space()) {
        const char op = t[p++];
        const int64_t r = unary();
        if (op == '*') {
          v *= r;
        } else {
          if (r == 0) throw UsageError("");
          v = op == '/' ? v / r : v % r;
        }
      }
      return v;
    }
    int64_t unary() {
      space();
      if (p < t.size() && t[p] == '-') {
        ++p;
        return -unary();
      }
      if (p < t.size() && t[p] == '+') {
        ++p;
        return unary();
      }
      if (p < t.size() && t[p] == '(') {
        ++p;
        const int64_t v = sum();
        space();
        if (p >= t.size() || t[p] != ')') throw UsageError("");
        ++p;
        return v;
      }
      if (p < t.size() && std::isdigit(static_cast<unsigned char>(t[p]))) {
        size_t q = p;
        while (q < t.size() && std::isdigit(static_cast<unsigned char>(t[q]))) ++q;
        if (q - p > 18) throw UsageError("");
        const int64_t v = std::stoll(t.substr(p, q - p));
        p = q;
        return v;
      }
      if (p < t.size() && is_name_start(t[p])) {
        size_t q = p;
        while (q < t.size() && is_name_char(t[q])) ++q;
        const std::string name = t.substr(p, q - p);
        p = q;
        const Word w = sh->scalar(name, line);
        if (!w.known) {
          if (unknown.empty()) unknown = w.why;
          return 0;
        }
        size_t used = 0;
        try {
          const int64_t v = std::stoll(w.text, &used);
          if (used == w.text.size()) return v;
        } catch (const std::exception&) {
        }
        if (unknown.empty())
          unknown = fmt::format("{} = '{}' (line {}) is not a number in $((...))", name, w.text, line);
        return 0;
      }
      throw UsageError("");
    }
  };

  const std::string& origin_;
  ShellResult& out_;
};

// ---- statements ----------------------------------------------------------------------------

bool is_assignment(const std::string& raw, std::string& name, bool& append, std::string& value) {
  if (raw.empty() || !is_name_start(raw[0])) return false;
  size_t k = 0;
  while (k < raw.size() && is_name_char(raw[k])) ++k;
  if (k < raw.size() && raw[k] == '+' && k + 1 < raw.size() && raw[k + 1] == '=') {
    append = true;
    name = raw.substr(0, k);
    value = raw.substr(k + 2);
    return true;
  }
  if (k < raw.size() && raw[k] == '=') {
    append = false;
    name = raw.substr(0, k);
    value = raw.substr(k + 1);
    return true;
  }
  return false;
}

enum class Status { yes, no, unknown };

class Interpreter {
 public:
  Interpreter(const std::vector<Token>& toks, const std::string& origin, ShellResult& out)
      : t_(toks), origin_(origin), out_(out), sh_(origin, out) {}

  Shell& shell() { return sh_; }

  void run() {
    while (p_ < t_.size() && !stopped_) statement(/*live=*/true);
  }

 private:
  const Token& at() const { return t_[p_]; }
  bool at_word(const char* w) const { return p_ < t_.size() && at().kind == Tok::word && at().raw == w; }
  [[noreturn]] void fail(int line, const std::string& what) const {
    throw UsageError(fmt::format("{}:{}: {}; flopscope reads launch scripts as data (docs/predict.md)", origin_, line,
                                 what));
  }
  void skip_separators() {
    while (p_ < t_.size() && (at().kind == Tok::newline || at().kind == Tok::semi)) ++p_;
  }

  // Statements until one of `ends` (a keyword at a command's start) or the end.
  void block(bool live, std::initializer_list<const char*> ends) {
    while (true) {
      skip_separators();
      if (p_ >= t_.size()) fail(t_.empty() ? 1 : t_.back().line, fmt::format("missing '{}'", *ends.begin()));
      for (const char* e : ends)
        if (at_word(e)) return;
      statement(live);
      if (stopped_) return;
    }
  }

  // Every variable a statement range would assign, so an unknown branch marks them unknown.
  // An append keeps what is known and adds one unknown element (an array) or makes the value
  // unknown (a scalar).
  void mark_unknown(size_t from, size_t to, const std::string& why) {
    for (size_t k = from; k < to; ++k) {
      if (t_[k].kind != Tok::word) continue;
      std::string name, value;
      bool append = false;
      if (!is_assignment(t_[k].raw, name, append, value)) continue;
      const bool array = !t_[k].raw.empty() && t_[k].raw.back() == '=' && k + 1 < to && t_[k + 1].kind == Tok::lparen;
      const Word u = unknown_word(fmt::format("{} {} at line {} inside {}", name, append ? "is appended to" : "is set",
                                              t_[k].line, why),
                                  t_[k].line);
      auto it = sh_.vars.find(name);
      if (append && array && it != sh_.vars.end() && it->second.array) {
        it->second.elems.push_back(u);
      } else {
        Var v;
        v.line = t_[k].line;
        v.array = array;
        v.elems.push_back(u);
        sh_.vars[name] = v;
      }
      if (array)
        while (k < to && t_[k].kind != Tok::rparen) ++k;
    }
  }

  void statement(bool live) {
    skip_separators();
    if (p_ >= t_.size()) return;
    const Token& first = at();
    if (first.kind != Tok::word) {
      ++p_;
      return;
    }
    if (first.raw == "if") return if_statement(live);
    if (first.raw == "for" || first.raw == "while" || first.raw == "until" || first.raw == "select")
      return loop_statement(live);
    if (first.raw == "case") return case_statement(live);
    if (first.raw == "function" || (first.raw.back() != '=' && is_name_start(first.raw[0]) && p_ + 2 < t_.size() &&
                                    t_[p_ + 1].kind == Tok::lparen && t_[p_ + 2].kind == Tok::rparen))
      return function_definition();
    and_or_list(live);
  }

  // cmd && cmd || cmd ...: evaluated left to right with what is known of each status.
  void and_or_list(bool live) {
    const size_t start = p_;
    Status last = pipeline(live);
    while (p_ < t_.size() && (at().kind == Tok::and_if || at().kind == Tok::or_if)) {
      const bool is_and = at().kind == Tok::and_if;
      ++p_;
      while (p_ < t_.size() && at().kind == Tok::newline) ++p_;
      const bool run_it = last == Status::unknown ? false : (is_and ? last == Status::yes : last == Status::no);
      if (last == Status::unknown) {
        const size_t from = p_;
        pipeline(false);
        mark_unknown(from, p_, fmt::format("a list whose status is not known (line {})", t_[start].line));
        continue;
      }
      if (run_it) {
        last = pipeline(live);
      } else {
        pipeline(false);
      }
    }
  }

  Status pipeline(bool live) {
    Status s = simple_command(live);
    while (p_ < t_.size() && (at().kind == Tok::pipe || at().kind == Tok::amp)) {
      ++p_;
      if (p_ < t_.size() && at().kind != Tok::newline) s = simple_command(live);
    }
    return s;
  }

  // Words of one simple command (arrays in assignments kept as their own tokens).
  Status simple_command(bool live) {
    struct Item {
      std::string raw;
      int line;
      bool array = false;
      std::vector<std::pair<std::string, int>> elems;
    };
    std::vector<Item> items;
    while (p_ < t_.size()) {
      const Token& k = at();
      if (k.kind == Tok::word) {
        Item it{k.raw, k.line, false, {}};
        ++p_;
        if (!k.raw.empty() && k.raw.back() == '=' && p_ < t_.size() && at().kind == Tok::lparen) {
          ++p_;
          it.array = true;
          while (p_ < t_.size() && at().kind != Tok::rparen) {
            if (at().kind == Tok::word) it.elems.push_back({at().raw, at().line});
            ++p_;
          }
          if (p_ >= t_.size()) fail(k.line, "an array without its closing ')'");
          ++p_;
        }
        items.push_back(std::move(it));
      } else if (k.kind == Tok::redirect) {
        ++p_;
        if (p_ < t_.size() && at().kind == Tok::word && !k.raw.empty() && k.raw.back() != '&') ++p_;
      } else if (k.kind == Tok::lparen || k.kind == Tok::rparen) {
        ++p_;  // a subshell's parentheses: its commands are read as if at top level
      } else {
        break;
      }
    }
    if (items.empty()) return Status::yes;
    // Leading assignments.
    size_t k = 0;
    std::vector<std::pair<std::string, Var>> assigns;
    for (; k < items.size(); ++k) {
      std::string name, value;
      bool append = false;
      if (!is_assignment(items[k].raw, name, append, value)) break;
      if (live) assign(name, append, value, items[k].line, items[k].array, items[k].elems);
    }
    if (k == items.size()) return Status::yes;
    const std::string cmd = items[k].raw;
    if (!live) return Status::unknown;
    if (cmd == "export" || cmd == "declare" || cmd == "typeset" || cmd == "local" || cmd == "readonly") {
      for (size_t j = k + 1; j < items.size(); ++j) {
        std::string name, value;
        bool append = false;
        if (is_assignment(items[j].raw, name, append, value))
          assign(name, append, value, items[j].line, items[j].array, items[j].elems);
      }
      return Status::yes;
    }
    if (cmd == "unset") {
      for (size_t j = k + 1; j < items.size(); ++j)
        if (items[j].raw.rfind('-', 0) != 0) sh_.vars.erase(items[j].raw);
      return Status::yes;
    }
    if (cmd == "source" || cmd == ".") {
      std::string what = cmd;
      for (size_t j = k + 1; j < items.size(); ++j) what += " " + items[j].raw;
      sh_.note(what, items[k].line, "another file: not read (variables it would set are not given)");
      return Status::unknown;
    }
    if (cmd == "exit") {
      stopped_ = true;
      return Status::yes;
    }
    if (cmd == "[[" || cmd == "[" || cmd == "test") {
      std::vector<Item> rest(items.begin() + static_cast<long>(k) + 1, items.end());
      std::vector<std::pair<std::string, int>> args;
      for (const auto& r : rest) args.push_back({r.raw, r.line});
      if (!args.empty() && (args.back().first == "]]" || args.back().first == "]")) args.pop_back();
      return test(args, items[k].line);
    }
    if (cmd == "true" || cmd == ":") return Status::yes;
    if (cmd == "false") return Status::no;
    ShellCommand c;
    c.line = items[k].line;
    for (size_t j = k; j < items.size(); ++j)
      for (Word& w : sh_.expand(items[j].raw, items[j].line, true)) c.words.push_back(std::move(w));
    out_.commands.push_back(std::move(c));
    return Status::unknown;  // not run
  }

  void assign(const std::string& name, bool append, const std::string& value, int line, bool array,
              const std::vector<std::pair<std::string, int>>& elems) {
    Var v;
    v.line = line;
    if (array) {
      v.array = true;
      for (const auto& [raw, l] : elems)
        for (Word& w : sh_.expand(raw, l, true)) v.elems.push_back(std::move(w));
    } else {
      Word w = sh_.expand_one(value, line);
      w.line = line;
      v.elems.push_back(std::move(w));
    }
    auto it = sh_.vars.find(name);
    if (append && it != sh_.vars.end()) {
      Var& old = it->second;
      if (array) {
        for (Word& w : v.elems) old.elems.push_back(std::move(w));
        old.array = true;
      } else if (!old.elems.empty()) {
        Word& o = old.elems.front();
        o.text += v.elems.front().text;
        if (!v.elems.front().known && o.known) {
          o.known = false;
          o.why = v.elems.front().why;
        }
      } else {
        old.elems = v.elems;
      }
      old.line = line;
      return;
    }
    sh_.vars[name] = std::move(v);
  }

  // [[ ... ]] / [ ... ]: tri-state.
  Status test(const std::vector<std::pair<std::string, int>>& a, int line) {
    size_t i = 0;
    const Status s = test_or(a, i, line);
    return i == a.size() ? s : Status::unknown;
  }
  Status test_or(const std::vector<std::pair<std::string, int>>& a, size_t& i, int line) {
    Status s = test_and(a, i, line);
    while (i < a.size() && (a[i].first == "||" || a[i].first == "-o")) {
      ++i;
      const Status r = test_and(a, i, line);
      s = (s == Status::yes || r == Status::yes) ? Status::yes
          : (s == Status::no && r == Status::no) ? Status::no
                                                 : Status::unknown;
    }
    return s;
  }
  Status test_and(const std::vector<std::pair<std::string, int>>& a, size_t& i, int line) {
    Status s = test_not(a, i, line);
    while (i < a.size() && (a[i].first == "&&" || a[i].first == "-a")) {
      ++i;
      const Status r = test_not(a, i, line);
      s = (s == Status::no || r == Status::no) ? Status::no
          : (s == Status::yes && r == Status::yes) ? Status::yes
                                                   : Status::unknown;
    }
    return s;
  }
  Status test_not(const std::vector<std::pair<std::string, int>>& a, size_t& i, int line) {
    if (i < a.size() && a[i].first == "!") {
      ++i;
      const Status s = test_not(a, i, line);
      return s == Status::unknown ? s : s == Status::yes ? Status::no : Status::yes;
    }
    return test_primary(a, i, line);
  }
  Status test_primary(const std::vector<std::pair<std::string, int>>& a, size_t& i, int line) {
    if (i >= a.size()) return Status::unknown;
    const std::string& op0 = a[i].first;
    if ((op0 == "-z" || op0 == "-n") && i + 1 < a.size()) {
      const Word w = sh_.expand_one(a[i + 1].first, a[i + 1].second);
      i += 2;
      if (!w.known) return Status::unknown;
      return (w.text.empty() == (op0 == "-z")) ? Status::yes : Status::no;
    }
    if (op0.size() == 2 && op0[0] == '-' && i + 1 < a.size() && std::string("fdexrwsLh").find(op0[1]) != std::string::npos) {
      i += 2;
      return Status::unknown;  // a file test: the file system is not read
    }
    if (i + 2 < a.size()) {
      const std::string& op = a[i + 1].first;
      static const std::set<std::string> ops = {"==", "=", "!=", "-eq", "-ne", "-gt", "-ge", "-lt", "-le"};
      if (ops.count(op)) {
        const Word l = sh_.expand_one(a[i].first, a[i].second);
        const Word r = sh_.expand_one(a[i + 2].first, a[i + 2].second);
        i += 3;
        if (!l.known || !r.known) return Status::unknown;
        if (op == "==" || op == "=") return l.text == r.text ? Status::yes : Status::no;
        if (op == "!=") return l.text != r.text ? Status::yes : Status::no;
        try {
          const long long x = std::stoll(l.text), y = std::stoll(r.text);
          const bool v = op == "-eq" ? x == y : op == "-ne" ? x != y : op == "-gt" ? x > y : op == "-ge" ? x >= y
                         : op == "-lt" ? x < y : x <= y;
          return v ? Status::yes : Status::no;
        } catch (const std::exception&) {
          return Status::unknown;
        }
      }
    }
    // A lone word: true when not empty.
    const Word w = sh_.expand_one(a[i].first, a[i].second);
    ++i;
    (void)line;
    if (!w.known) return Status::unknown;
    return w.text.empty() ? Status::no : Status::yes;
  }

  // Condition tokens up to `then` (or `do`), evaluated as an and-or list of tests.
  Status condition(bool live, const char* until) {
    Status s = Status::yes;
    bool first = true;
    Tok joiner = Tok::semi;
    while (p_ < t_.size() && !at_word(until)) {
      if (at().kind == Tok::newline || at().kind == Tok::semi) {
        ++p_;
        continue;
      }
      if (at().kind == Tok::and_if || at().kind == Tok::or_if) {
        joiner = at().kind;
        ++p_;
        continue;
      }
      const Status r = pipeline(live);
      if (first) {
        s = r;
      } else if (joiner == Tok::and_if) {
        s = (s == Status::no || r == Status::no) ? Status::no
            : (s == Status::yes && r == Status::yes) ? Status::yes
                                                     : Status::unknown;
      } else if (joiner == Tok::or_if) {
        s = (s == Status::yes || r == Status::yes) ? Status::yes
            : (s == Status::no && r == Status::no) ? Status::no
                                                   : Status::unknown;
      } else {
        s = r;
      }
      first = false;
      joiner = Tok::semi;
    }
    return s;
  }

  void if_statement(bool live) {
    const int line = at().line;
    ++p_;  // if
    bool taken = false;     // a branch ran
    bool unknown = false;   // a condition could not be evaluated
    while (true) {
      const Status c = condition(live && !taken && !unknown, "then");
      if (p_ >= t_.size()) fail(line, "an if without 'then'");
      ++p_;  // then
      const bool run = live && !taken && !unknown && c == Status::yes;
      if (live && !taken && !unknown && c == Status::unknown) unknown = true;
      const size_t from = p_;
      block(run, {"elif", "else", "fi"});
      if (unknown && !run) mark_unknown(from, p_, fmt::format("an if whose condition (line {}) is not known", line));
      if (run) taken = true;
      if (at_word("elif")) {
        ++p_;
        continue;
      }
      if (at_word("else")) {
        ++p_;
        const bool run_else = live && !taken && !unknown;
        const size_t from2 = p_;
        block(run_else, {"fi"});
        if (unknown) mark_unknown(from2, p_, fmt::format("an if whose condition (line {}) is not known", line));
      }
      ++p_;  // fi
      return;
    }
  }

  void loop_statement(bool live) {
    const int line = at().line;
    const size_t from = p_;
    int depth = 0;
    while (p_ < t_.size()) {
      if (at_word("do")) ++depth;
      if (at_word("done") && --depth == 0) {
        ++p_;
        break;
      }
      ++p_;
    }
    if (depth != 0) fail(line, "a loop without 'done'");
    if (live) {
      mark_unknown(from, p_, fmt::format("a loop (line {}), not run", line));
      sh_.note(t_[from].raw + " ...", line, "a loop: not run (variables it sets are not given)");
    }
  }

  void case_statement(bool live) {
    const int line = at().line;
    const size_t from = p_;
    while (p_ < t_.size() && !at_word("esac")) ++p_;
    if (p_ >= t_.size()) fail(line, "a case without 'esac'");
    ++p_;
    if (live) {
      mark_unknown(from, p_, fmt::format("a case (line {}), not evaluated", line));
      sh_.note("case ...", line, "a case statement: not evaluated (variables it sets are not given)");
    }
  }

  void function_definition() {
    const int line = at().line;
    int depth = 0;
    bool opened = false;
    while (p_ < t_.size()) {
      if (at_word("{")) {
        ++depth;
        opened = true;
      }
      if (at_word("}") && --depth == 0 && opened) {
        ++p_;
        sh_.note("a function", line, "function bodies are not run");
        return;
      }
      ++p_;
    }
    fail(line, "a function without its closing '}'");
  }

  const std::vector<Token>& t_;
  const std::string& origin_;
  ShellResult& out_;
  Shell sh_;
  size_t p_ = 0;
  bool stopped_ = false;
};

}  // namespace

ShellResult read_shell(const std::string& text, const std::string& origin, const std::map<std::string, std::string>& env) {
  ShellResult out;
  Lexer lex(text, origin);
  const std::vector<Token> toks = lex.run(out.sbatch);
  Interpreter in(toks, origin, out);
  for (const auto& [k, v] : env) {
    Word w;
    w.text = v;
    in.shell().vars[k] = Var{{w}, false, 0};
  }
  // Slurm sets these from the script's own #SBATCH directives when it runs the job.
  auto from_sbatch = [&](const char* key, std::initializer_list<const char*> names) {
    auto it = out.sbatch.find(key);
    if (it == out.sbatch.end() || it->second.first.empty()) return;
    for (const char* n : names) {
      if (env.count(n)) continue;
      Word w;
      w.text = it->second.first;
      w.line = it->second.second;
      w.value_line = it->second.second;
      in.shell().vars[n] = Var{{w}, false, it->second.second};
    }
  };
  from_sbatch("--nodes", {"SLURM_JOB_NUM_NODES", "SLURM_NNODES"});
  from_sbatch("--gpus-per-node", {"SLURM_GPUS_PER_NODE"});
  from_sbatch("--ntasks-per-node", {"SLURM_NTASKS_PER_NODE"});
  in.run();
  for (const auto& [name, v] : in.shell().vars)
    if (!v.array && !v.elems.empty()) out.final_scalars[name] = v.elems.front();
  return out;
}

}  // namespace flopscope::job
