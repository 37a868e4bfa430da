#include "tools/klinectl/history_util.h"

#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <ctime>

namespace klined::klinectl {
namespace {

double Now() {
  return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch())
      .count();
}

}  // namespace

Progress::Progress(std::string tool, std::string what, size_t total)
    : tool_(std::move(tool)), what_(std::move(what)), total_(total), tty_(isatty(2) == 1),
      start_(Now()) {}

void Progress::Update(size_t done, uint64_t candles) {
  const double now = Now();
  if (now - last_ < (tty_ ? 0.2 : 5.0) && done != total_) return;
  last_ = now;
  const double elapsed = std::max(now - start_, 1e-3);
  const double rate = static_cast<double>(done) / elapsed;
  const double eta = rate > 0 ? static_cast<double>(total_ - done) / rate : 0;
  std::fprintf(stderr, "%s%s: %zu/%zu symbols, %llu candles %s, %.1f symbols/s, ETA %.0f s%s",
               tty_ ? "\r" : "", tool_.c_str(), done, total_,
               static_cast<unsigned long long>(candles), what_.c_str(), rate, eta,
               tty_ ? "   " : "\n");
  if (tty_ && done == total_) std::fputc('\n', stderr);
}

std::string IsoTime(int64_t ms) {
  const time_t secs = static_cast<time_t>(ms >= 0 ? ms / 1000 : (ms - 999) / 1000);
  tm t{};
  gmtime_r(&secs, &t);
  char buf[40];
  std::snprintf(buf, sizeof buf, "%04d-%02d-%02dT%02d:%02d:%02dZ", t.tm_year + 1900, t.tm_mon + 1,
                t.tm_mday, t.tm_hour, t.tm_min, t.tm_sec);
  return buf;
}

bool CurrentFence(MysqlConn* db, int64_t* epoch) {
  *epoch = 0;
  if (!db->Query("SELECT epoch FROM kline_fence WHERE id=1")) {
    // No fence table yet: klined never persisted here; nothing to be fenced against.
    return db->error_number() == 1146;
  }
  MysqlResult res = db->StoreResult();
  if (res == nullptr) return false;
  if (MYSQL_ROW r = mysql_fetch_row(res.get()); r != nullptr && r[0] != nullptr) {
    *epoch = std::strtoll(r[0], nullptr, 10);
  }
  return true;
}

bool PrepareWrites(KlineTable* table, MysqlConn* db, bool dry_run, int64_t* epoch) {
  if (!dry_run && !table->EnsureSchema()) {
    std::fprintf(stderr, "klinectl: creating klined's tables: %s\n", db->error().c_str());
    return false;
  }
  if (!CurrentFence(db, epoch)) {
    std::fprintf(stderr, "klinectl: reading kline_fence: %s\n", db->error().c_str());
    return false;
  }
  return true;
}

}  // namespace klined::klinectl
