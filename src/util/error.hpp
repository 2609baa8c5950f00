// Errors: one exception type carrying context (the call, the op, the shape).
// Library code throws; the CLI boundary turns it into one line and a non-zero exit.
#pragma once

#include <stdexcept>
#include <string>

namespace flopscope {

class Error : public std::runtime_error {
 public:
  explicit Error(const std::string& what) : std::runtime_error(what) {}
};

// Bad input from the user (flags, config files, result files): exit code 2.
class UsageError : public Error {
 public:
  explicit UsageError(const std::string& what) : Error(what) {}
};

// A run stopped by SIGINT or SIGTERM: exit code 128 + signal.
class Interrupted : public Error {
 public:
  explicit Interrupted(int sig)
      : Error(sig == 2 ? "interrupted (SIGINT); no output was written" : "terminated (SIGTERM); no output was written"),
        signal_(sig) {}
  int signal() const { return signal_; }

 private:
  int signal_;
};

}  // namespace flopscope

// Throws flopscope::Error when `cond` is false; `msg` is any expression convertible to std::string.
#define FLOPSCOPE_CHECK(cond, msg)                 \
  do {                                             \
    if (!(cond)) throw ::flopscope::Error(msg);    \
  } while (0)
