// SIGINT and SIGTERM: a long run stops at the next op boundary with a clear message and exit
// code 128 + signal (130 for Ctrl-C, 143 for SIGTERM), leaving no partial output file. A second
// signal exits at once, removing any temporary output file being written.
#pragma once

namespace flopscope {

// Also ignores SIGXFSZ, so exceeding a file-size limit is an ordinary write error.
void install_signal_handlers();
// The signal received (SIGINT, SIGTERM), or 0.
int interrupt_signal();
// Throws Interrupted when a signal has arrived.
void check_interrupted();
// The temporary file being written (removed by the handler on a second signal), or nullptr.
void set_pending_temp_file(const char* path);

}  // namespace flopscope
