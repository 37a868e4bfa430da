// Which malloc this process runs on, for the start log line and klined_build_info.
#pragma once

#include <string>

namespace klined {

// "jemalloc <version>" when the process's malloc is jemalloc's (checked, not assumed: a
// malloc made here must show up in jemalloc's per-thread count), otherwise "system".
// Checked once per process, on the first call.
const std::string& AllocatorName();

}  // namespace klined
