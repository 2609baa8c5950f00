// Helpers for the tests that run the flopscope binary as a process (ctest label `cli`):
// run it with arguments in a folder and collect exit code, stdout and stderr; temporary
// folders; file helpers; the checks every bad input must pass (exit 2, one line on stderr,
// nothing on stdout, no file left behind). Header-only: each test file includes it.
#pragma once

#include <fcntl.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

extern char** environ;

#include <cerrno>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <set>
#include <sstream>
#include <stdexcept>
#include <string>
#include <vector>

#include <gtest/gtest.h>

#ifndef FLOPSCOPE_BIN
#error "FLOPSCOPE_BIN (the path of the flopscope binary) is set by tests/CMakeLists.txt"
#endif

namespace cli_test {

namespace fs = std::filesystem;

struct Outcome {
  int rc = -1;
  std::string out, err;
};

// The flopscope binary the GPU end-to-end tests run: $FLOPSCOPE_BIN when set (on a GPU machine
// the binary travels in device-bundle/, away from the build path baked in here), else this
// build's. The CLI tests keep this build's binary (run() below), whatever the environment says.
inline std::string flopscope_bin() {
  const char* e = std::getenv("FLOPSCOPE_BIN");
  return e != nullptr && *e != '\0' ? std::string(e) : std::string(FLOPSCOPE_BIN);
}

inline std::string slurp(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::ostringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

inline void spit(const std::string& path, const std::string& text) {
  std::ofstream(path, std::ios::binary) << text;
}

// A fresh folder under the system temp folder, removed (made writable first) at the end.
class TempDir {
 public:
  TempDir() {
    std::string t = (fs::temp_directory_path() / "flopscope-test-XXXXXX").string();
    if (::mkdtemp(t.data()) == nullptr) throw std::runtime_error(std::string("mkdtemp: ") + std::strerror(errno));
    path_ = t;
  }
  ~TempDir() {
    std::error_code ec;
    for (auto it = fs::recursive_directory_iterator(path_, ec); !ec && it != fs::recursive_directory_iterator();
         it.increment(ec))
      if (it->is_directory()) ::chmod(it->path().c_str(), 0700);
    fs::remove_all(path_, ec);
  }
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;

  std::string operator/(const std::string& name) const { return (fs::path(path_) / name).string(); }
  const std::string& path() const { return path_; }
  // Names in the folder, sorted.
  std::set<std::string> names() const {
    std::set<std::string> s;
    for (const auto& e : fs::directory_iterator(path_)) s.insert(e.path().filename().string());
    return s;
  }

 private:
  std::string path_;
};

// How to run the child, beyond its arguments: extra environment, variables removed, a file-size limit
// (RLIMIT_FSIZE, like `ulimit -f`), and a signal sent once the child has run a while.
struct RunOptions {
  std::vector<std::pair<std::string, std::string>> env;
  std::vector<std::string> unset;  // variables of ours the child does not get
  long file_size_limit = -1;  // bytes; -1: none
  int signal = 0;             // sent after signal_after_ms (0: none)
  int signal_after_ms = 0;
};

// Runs `program` (a path) with `args` in folder `cwd`; stdout and stderr go to files, read back.
inline Outcome run_program(const std::string& program, const std::vector<std::string>& args, const std::string& cwd,
                           const RunOptions& o = {}) {
  TempDir io;
  const std::string out_path = io / "stdout", err_path = io / "stderr";
  std::vector<std::string> argv_s = {program};
  argv_s.insert(argv_s.end(), args.begin(), args.end());
  std::vector<char*> argv;
  for (auto& a : argv_s) argv.push_back(a.data());
  argv.push_back(nullptr);
  // The child's environment: ours, with the extra variables replacing any of the same name
  // (built before fork).
  std::vector<std::string> env_s;
  for (char** e = environ; *e; ++e) {
    const std::string kv = *e;
    bool replaced = false;
    for (const auto& extra : o.env) replaced = replaced || kv.rfind(extra.first + "=", 0) == 0;
    for (const auto& name : o.unset) replaced = replaced || kv.rfind(name + "=", 0) == 0;
    if (!replaced) env_s.push_back(kv);
  }
  for (const auto& [k, v] : o.env) env_s.push_back(k + "=" + v);
  std::vector<char*> envp;
  for (auto& e : env_s) envp.push_back(e.data());
  envp.push_back(nullptr);

  const pid_t pid = ::fork();
  if (pid < 0) throw std::runtime_error(std::string("fork: ") + std::strerror(errno));
  if (pid == 0) {
    // Child: only async-signal-safe calls until exec.
    const int in = ::open("/dev/null", O_RDONLY);
    const int out = ::open(out_path.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0600);
    const int err = ::open(err_path.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0600);
    if (in < 0 || out < 0 || err < 0 || ::dup2(in, 0) < 0 || ::dup2(out, 1) < 0 || ::dup2(err, 2) < 0) ::_exit(126);
    if (::chdir(cwd.c_str()) != 0) ::_exit(126);
    if (o.file_size_limit >= 0) {
      const struct rlimit lim = {static_cast<rlim_t>(o.file_size_limit), static_cast<rlim_t>(o.file_size_limit)};
      if (::setrlimit(RLIMIT_FSIZE, &lim) != 0) ::_exit(126);
    }
    ::execve(argv[0], argv.data(), envp.data());
    ::_exit(127);
  }
  if (o.signal != 0) {
    ::usleep(static_cast<useconds_t>(o.signal_after_ms) * 1000);
    ::kill(pid, o.signal);
  }
  int status = 0;
  while (::waitpid(pid, &status, 0) < 0) {
    if (errno != EINTR) throw std::runtime_error(std::string("waitpid: ") + std::strerror(errno));
  }
  Outcome r;
  r.rc = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
  r.out = slurp(out_path);
  r.err = slurp(err_path);
  return r;
}

// Runs flopscope (this build's) with `args` in folder `cwd`.
inline Outcome run(const std::vector<std::string>& args, const std::string& cwd, const RunOptions& o = {}) {
  return run_program(FLOPSCOPE_BIN, args, cwd, o);
}

inline std::string describe(const Outcome& r) {
  return "exit " + std::to_string(r.rc) + "\n--- stdout (" + std::to_string(r.out.size()) + " bytes)\n" +
         r.out.substr(0, 2000) + "\n--- stderr\n" + r.err;
}

inline bool contains(const std::string& s, const std::string& part) { return s.find(part) != std::string::npos; }

inline size_t count_lines(const std::string& s) {
  size_t n = 0;
  for (char c : s) n += c == '\n';
  return n;
}

// One CSV record into fields (RFC 4180 quoting, as render_csv writes it).
inline std::vector<std::string> csv_fields(const std::string& line) {
  std::vector<std::string> f(1);
  bool quoted = false;
  for (size_t i = 0; i < line.size(); ++i) {
    const char c = line[i];
    if (quoted) {
      if (c == '"' && i + 1 < line.size() && line[i + 1] == '"') {
        f.back() += '"';
        ++i;
      } else if (c == '"') {
        quoted = false;
      } else {
        f.back() += c;
      }
    } else if (c == '"') {
      quoted = true;
    } else if (c == ',') {
      f.emplace_back();
    } else {
      f.back() += c;
    }
  }
  return f;
}

inline ::testing::AssertionResult within(double actual, double expected, double tol) {
  const double rel = std::abs(actual / expected - 1);
  if (rel <= tol) return ::testing::AssertionSuccess();
  return ::testing::AssertionFailure() << actual << " is " << rel * 100 << "% from " << expected;
}

struct BadCase {
  std::string why;
  std::vector<std::string> args;
  std::string mentions;  // the error line must name what is wrong
};

inline std::set<std::string> names_in(const std::string& folder) {
  std::set<std::string> s;
  for (const auto& e : fs::directory_iterator(folder)) s.insert(e.path().filename().string());
  return s;
}

// Exit 2, exactly one line on stderr, nothing on stdout, nothing created in `must_stay_empty`.
inline void expect_usage_error(const BadCase& c, const std::string& cwd, const std::string& must_stay_empty) {
  SCOPED_TRACE(c.why);
  const Outcome r = run(c.args, cwd);
  EXPECT_EQ(r.rc, 2) << describe(r);
  EXPECT_EQ(r.out, "") << describe(r);
  EXPECT_EQ(count_lines(r.err), 1u) << describe(r);
  EXPECT_EQ(r.err.back(), '\n') << describe(r);
  EXPECT_EQ(r.err.rfind("flopscope: error: ", 0), 0u) << describe(r);
  EXPECT_TRUE(contains(r.err, c.mentions)) << "expected the error to mention '" << c.mentions << "'\n" << describe(r);
  EXPECT_TRUE(names_in(must_stay_empty).empty()) << "a file was created by: " << c.why;
}

}  // namespace cli_test
