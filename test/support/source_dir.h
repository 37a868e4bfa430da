// Where the tests find the build and the source tree.
#pragma once

#include <cstdlib>
#include <filesystem>
#include <string>

#include "temp_dir.h"

namespace klined::test {

// The build directory under test: $KLINED_BUILD, else ./build.
inline std::string BuildDir() {
  const char* build = std::getenv("KLINED_BUILD");
  return build != nullptr ? build : "build";
}

// The source tree, from meson's record of the build directory (falls back to this file's
// location, test/support/ in the tree).
inline std::filesystem::path SourceDir() {
  namespace fs = std::filesystem;
  const std::string info = ReadFile(fs::path(BuildDir()) / "meson-info" / "meson-info.json");
  const std::string key = "\"source\": \"";
  const size_t at = info.find(key);
  if (at != std::string::npos) {
    const size_t begin = at + key.size();
    const fs::path dir = info.substr(begin, info.find('"', begin) - begin);
    if (fs::exists(dir / "meson.build")) return dir;
  }
  return fs::absolute(fs::path(__FILE__)).parent_path().parent_path().parent_path();
}

}  // namespace klined::test
