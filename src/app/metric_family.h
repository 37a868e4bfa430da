// Building prometheus-cpp metric families by hand, for the collectors that read counters
// owned by other threads at scrape time (timer_jobs.cc, api_metrics.cc).
#pragma once

#include <prometheus/metric_family.h>

#include <utility>
#include <vector>

namespace klined {

// Appends a family of one unlabelled sample (a counter or a gauge) to *out.
inline void AddSample(std::vector<prometheus::MetricFamily>* out, const char* name,
                      const char* help, prometheus::MetricType type, double value) {
  prometheus::MetricFamily f;
  f.name = name;
  f.help = help;
  f.type = type;
  prometheus::ClientMetric m;
  if (type == prometheus::MetricType::Counter) {
    m.counter.value = value;
  } else {
    m.gauge.value = value;
  }
  f.metric.push_back(m);
  out->push_back(std::move(f));
}

}  // namespace klined
