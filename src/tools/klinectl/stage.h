// A step of klinectl's pipelines (derive's writers): worker threads fed through a bounded
// queue.
#pragma once

#include <condition_variable>
#include <cstddef>
#include <deque>
#include <functional>
#include <mutex>
#include <thread>
#include <vector>

namespace klined::klinectl {

// One step of a pipeline on `threads` threads of its own (worker 0, 1, ...), fed through a
// queue of at most `depth` items. `work` returns false to stop the stage (having printed
// why); Push returns false from then on, and Finish reports it.
template <typename Item>
class Stage {
 public:
  Stage(size_t depth, size_t threads, std::function<bool(Item&, size_t worker)> work)
      : depth_(depth), work_(std::move(work)) {
    for (size_t w = 0; w < threads; ++w) threads_.emplace_back([this, w] { Run(w); });
  }
  ~Stage() { Finish(); }
  Stage(const Stage&) = delete;
  Stage& operator=(const Stage&) = delete;

  // Blocks while the queue is full.
  bool Push(Item item) {
    std::unique_lock lock(mu_);
    space_.wait(lock, [this] { return queue_.size() < depth_ || failed_; });
    if (failed_) return false;
    queue_.push_back(std::move(item));
    ready_.notify_one();
    return true;
  }
  // Waits for everything pushed to be worked off. False if the stage stopped.
  bool Finish() {
    {
      std::lock_guard lock(mu_);
      done_ = true;
      ready_.notify_all();  // every worker
    }
    for (std::thread& t : threads_) {
      if (t.joinable()) t.join();
    }
    return !failed_;
  }

 private:
  void Run(size_t worker) {
    for (;;) {
      Item item;
      {
        std::unique_lock lock(mu_);
        ready_.wait(lock, [this] { return !queue_.empty() || done_ || failed_; });
        if (queue_.empty() || failed_) return;
        item = std::move(queue_.front());
        queue_.pop_front();
        space_.notify_one();
      }
      if (!work_(item, worker)) {
        std::lock_guard lock(mu_);
        failed_ = true;
        space_.notify_all();
        ready_.notify_all();
        return;
      }
    }
  }

  const size_t depth_;
  std::function<bool(Item&, size_t)> work_;
  std::mutex mu_;
  std::condition_variable ready_, space_;
  std::deque<Item> queue_;
  bool done_ = false;
  bool failed_ = false;
  std::vector<std::thread> threads_;  // last: started once every other member is
};

}  // namespace klined::klinectl
