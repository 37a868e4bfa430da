// Temporary directories and free loopback ports for integration tests.
#pragma once

#include <filesystem>
#include <string>

namespace klined::test {

// A fresh directory under $TMPDIR (default /tmp), removed recursively on
// destruction unless the environment has KLINED_KEEP_TMP=1 (then its path is
// printed to stderr so a failed run can be inspected). Move-only.
class TempDir {
 public:
  explicit TempDir(const std::string& prefix = "klined-test");
  ~TempDir();
  TempDir(TempDir&& other) noexcept;
  TempDir& operator=(TempDir&& other) noexcept;
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;

  const std::filesystem::path& path() const { return path_; }
  std::filesystem::path operator/(const std::string& name) const { return path_ / name; }

 private:
  void Remove();
  std::filesystem::path path_;
};

// A TCP port on 127.0.0.1 that was free a moment ago (bind to port 0, read it,
// close). Another process may take it before the caller binds it; servers started
// by this library retry with a new port when that happens.
int FreePort();

// True when KLINED_KEEP_TMP=1.
bool KeepTemporaryFiles();

// Reads a whole file; empty string if it does not exist.
std::string ReadFile(const std::filesystem::path& path);
void WriteFile(const std::filesystem::path& path, const std::string& content);

}  // namespace klined::test
