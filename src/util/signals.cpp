#include "util/signals.hpp"

#include <unistd.h>

#include <atomic>
#include <csignal>
#include <cstring>

#include "util/error.hpp"

namespace flopscope {

namespace {

std::atomic<int> g_signal{0};
// Written only outside the handler; the handler reads it (async-signal-safe: unlink, _exit).
char g_temp[4096] = {0};
std::atomic<bool> g_has_temp{false};

extern "C" void on_signal(int sig) {
  if (g_signal.exchange(sig) != 0) {
    // Second signal: stop now.
    if (g_has_temp.load()) ::unlink(g_temp);
    ::_exit(128 + sig);
  }
}

}  // namespace

void install_signal_handlers() {
  struct sigaction sa {};
  sa.sa_handler = on_signal;
  sigemptyset(&sa.sa_mask);
  sa.sa_flags = 0;
  sigaction(SIGINT, &sa, nullptr);
  sigaction(SIGTERM, &sa, nullptr);
  // Past a file-size limit (ulimit -f) write() then fails with EFBIG, which the atomic writer
  // reports and cleans up after, instead of the process dying with a half-written temp file.
  std::signal(SIGXFSZ, SIG_IGN);
}

int interrupt_signal() { return g_signal.load(); }

void check_interrupted() {
  const int sig = g_signal.load();
  if (sig != 0) throw Interrupted(sig);
}

void set_pending_temp_file(const char* path) {
  g_has_temp.store(false);
  if (path && std::strlen(path) < sizeof g_temp) {
    std::strcpy(g_temp, path);
    g_has_temp.store(true);
  }
}

}  // namespace flopscope
