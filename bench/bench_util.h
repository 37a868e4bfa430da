// Small helpers the stack benches share (api_bench, ws_bench): integer flags and percentiles.
#pragma once

#include <algorithm>
#include <cstdlib>
#include <string>
#include <utility>
#include <vector>

namespace klined::bench {

// "--name value" pairs of argv into the ints named; unknown names are ignored.
inline void IntFlags(int argc, char** argv,
                     const std::vector<std::pair<std::string, int*>>& flags) {
  for (int i = 1; i + 1 < argc; i += 2) {
    for (const auto& [name, value] : flags) {
      if (name == argv[i]) *value = std::atoi(argv[i + 1]);
    }
  }
}

// The p-quantile (0..1) of v by rank; 0 when v is empty.
inline double Percentile(std::vector<double> v, double p) {
  if (v.empty()) return 0;
  std::sort(v.begin(), v.end());
  return v[std::min(v.size() - 1, static_cast<size_t>(p * static_cast<double>(v.size())))];
}

}  // namespace klined::bench
