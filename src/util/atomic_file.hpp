// Output files are written atomically: into a temporary file beside the target, flushed,
// then renamed into place, so a reader never sees a half-written result.
#pragma once

#include <string>

namespace flopscope {

// Throws UsageError when `path`'s folder cannot take a new file (checked before a long run).
void check_writable(const std::string& path);
// Writes `content` to `path` atomically; throws UsageError on any failure, leaving no file.
void write_file_atomic(const std::string& path, const std::string& content);
// Reads a whole file; throws UsageError when it cannot be read.
std::string read_file(const std::string& path);

}  // namespace flopscope
