#include "util/atomic_file.hpp"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string_view>

#include <fmt/format.h>

#include "util/error.hpp"
#include "util/signals.hpp"

namespace flopscope {

namespace {

std::string folder_of(const std::string& path) {
  auto parent = std::filesystem::path(path).parent_path();
  return parent.empty() ? "." : parent.string();
}

// Creates a unique temporary file beside `path`; returns its fd and fills `tmp`.
int make_temp(const std::string& path, std::string& tmp) {
  tmp = path + ".tmp.XXXXXX";
  int fd = ::mkstemp(tmp.data());
  if (fd < 0) {
    throw UsageError(fmt::format("cannot write '{}': {} (folder '{}')", path, std::strerror(errno), folder_of(path)));
  }
  return fd;
}

}  // namespace

void check_writable(const std::string& path) {
  if (std::filesystem::is_directory(path)) throw UsageError(fmt::format("cannot write '{}': it is a folder", path));
  std::string tmp;
  int fd = make_temp(path, tmp);
  ::close(fd);
  ::unlink(tmp.c_str());
}

void write_file_atomic(const std::string& path, const std::string& content) {
  if (std::filesystem::is_directory(path)) throw UsageError(fmt::format("cannot write '{}': it is a folder", path));
  std::string tmp;
  int fd = make_temp(path, tmp);
  set_pending_temp_file(tmp.c_str());  // a second SIGINT/SIGTERM removes it before exiting
  struct Clear {
    ~Clear() { set_pending_temp_file(nullptr); }
  } clear;
  auto fail = [&](std::string_view what) {
    int err = errno;
    ::close(fd);
    ::unlink(tmp.c_str());
    throw UsageError(fmt::format("cannot write '{}': {} failed: {}", path, what, std::strerror(err)));
  };
  const char* p = content.data();
  size_t left = content.size();
  while (left > 0) {
    ssize_t n = ::write(fd, p, left);
    if (n < 0) {
      if (errno == EINTR) continue;
      fail("write");
    }
    if (n == 0) {
      errno = ENOSPC;
      fail("write");
    }
    p += n;
    left -= static_cast<size_t>(n);
  }
  if (::fsync(fd) != 0) fail("fsync");
  // mkstemp creates 0600; results are ordinary files.
  if (::fchmod(fd, 0644) != 0) fail("chmod");
  if (::close(fd) != 0) {
    int err = errno;
    ::unlink(tmp.c_str());
    throw UsageError(fmt::format("cannot write '{}': close failed: {}", path, std::strerror(err)));
  }
  if (std::rename(tmp.c_str(), path.c_str()) != 0) {
    int err = errno;
    ::unlink(tmp.c_str());
    throw UsageError(fmt::format("cannot write '{}': rename failed: {}", path, std::strerror(err)));
  }
}

std::string read_file(const std::string& path) {
  if (std::filesystem::is_directory(path)) throw UsageError(fmt::format("cannot read '{}': it is a folder", path));
  std::ifstream in(path, std::ios::binary);
  if (!in) throw UsageError(fmt::format("cannot read '{}': {}", path, std::strerror(errno)));
  std::ostringstream ss;
  ss << in.rdbuf();
  if (in.bad()) throw UsageError(fmt::format("cannot read '{}': read failed", path));
  return ss.str();
}

}  // namespace flopscope
