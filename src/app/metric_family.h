// Building prometheus-cpp metric families by hand, for the collectors that read counters
// owned by other threads at scrape time (timer_jobs.cc, api_metrics.cc).
#pragma once

#include <prometheus/metric_family.h>

#include <initializer_list>
#include <utility>
#include <vector>

namespace klined {

// One sample of a counter or a gauge family, with its labels.
inline prometheus::ClientMetric Sample(prometheus::MetricType type, double value,
                                       std::vector<prometheus::ClientMetric::Label> labels = {}) {
  prometheus::ClientMetric m;
  m.label = std::move(labels);
  if (type == prometheus::MetricType::Counter) {
    m.counter.value = value;
  } else {
    m.gauge.value = value;
  }
  return m;
}

// Appends a family of one unlabelled sample (a counter or a gauge) to *out.
inline void AddSample(std::vector<prometheus::MetricFamily>* out, const char* name,
                      const char* help, prometheus::MetricType type, double value) {
  prometheus::MetricFamily f;
  f.name = name;
  f.help = help;
  f.type = type;
  f.metric.push_back(Sample(type, value));
  out->push_back(std::move(f));
}

// Appends a family with one sample per value of one label: {{"candles", 3}, {"pages", 1}}.
inline void AddLabelled(std::vector<prometheus::MetricFamily>* out, const char* name,
                        const char* help, prometheus::MetricType type, const char* label,
                        std::initializer_list<std::pair<const char*, double>> values) {
  prometheus::MetricFamily f;
  f.name = name;
  f.help = help;
  f.type = type;
  for (const auto& [value, n] : values) f.metric.push_back(Sample(type, n, {{label, value}}));
  out->push_back(std::move(f));
}

}  // namespace klined
