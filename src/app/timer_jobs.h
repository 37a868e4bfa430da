// The lease-holder's jobs, wired from the config: TimerLoop (lease, rollover, trimming) and
// the MySQL PersistWorker, which runs only while this instance holds the lease.
#pragma once

#include <memory>

#include "app/config.h"
#include "jobs/persist.h"
#include "jobs/timer_loop.h"
#include "klined/series.h"

namespace prometheus {
class Collectable;
}

namespace klined {

class TimerJobs {
 public:
  // layout and topology (the process's Redis routing) must outlive this object.
  TimerJobs(const Config& config, const SeriesLayout* layout, cluster::Topology* topology);
  ~TimerJobs();
  TimerJobs(const TimerJobs&) = delete;
  TimerJobs& operator=(const TimerJobs&) = delete;

  void Start();
  // Stops the jobs and releases the lease so a standby takes over at once.
  void Stop();
  // SIGHUP: the reloadable keys these jobs use (history limit, persist interval).
  void Reload(const Config& config);

  bool holding() const { return loop_.active(); }
  // Prometheus collector for lease, rollover, trim and persistence metrics. Owned here:
  // prometheus-cpp's Exposer only keeps a weak_ptr.
  std::shared_ptr<prometheus::Collectable> Collector() const { return collector_; }

 private:
  PersistWorker persist_;
  TimerLoop loop_;
  std::shared_ptr<prometheus::Collectable> collector_;
};

}  // namespace klined
