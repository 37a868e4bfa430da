#include "io/mysql/mysql_conn.h"

#include <algorithm>
#include <chrono>
#include <mutex>

#include <errmsg.h>

namespace klined {
namespace {

// Client error numbers (CR_*) start here; below are server errors (ER_*).
constexpr unsigned kFirstClientError = 2000;

// mysql_library_init is not thread-safe; mysql_init would call it implicitly, racing when two
// threads open their first connection at once.
void InitLibrary() {
  static std::once_flag once;
  std::call_once(once, [] { mysql_library_init(0, nullptr, nullptr); });
}

}  // namespace

MysqlConn::MysqlConn(MysqlOptions options) : options_(std::move(options)) {}

MysqlConn::~MysqlConn() {
  if (conn_ != nullptr) mysql_close(conn_);
}

bool MysqlConn::EnsureConnected() {
  if (conn_ != nullptr) return true;
  const ReconnectBackoff::Attempt a = backoff_.Try([this] { return Connect(); });
  if (a == ReconnectBackoff::Attempt::kReconnected) reconnects_.Add();
  return a == ReconnectBackoff::Attempt::kConnected || a == ReconnectBackoff::Attempt::kReconnected;
}

bool MysqlConn::Connect() {
  InitLibrary();
  MYSQL* m = mysql_init(nullptr);
  if (m == nullptr) {
    error_ = "mysql_init: out of memory";
    errors_.Add();
    return false;
  }
  const unsigned connect_s = static_cast<unsigned>(options_.connect_timeout_s);
  const unsigned read_s = static_cast<unsigned>(options_.read_timeout_s);
  const unsigned write_s = static_cast<unsigned>(options_.write_timeout_s);
  const my_bool no_reconnect = 0;
  mysql_optionsv(m, MYSQL_OPT_CONNECT_TIMEOUT, &connect_s);
  mysql_optionsv(m, MYSQL_OPT_READ_TIMEOUT, &read_s);
  mysql_optionsv(m, MYSQL_OPT_WRITE_TIMEOUT, &write_s);
  mysql_optionsv(m, MYSQL_OPT_RECONNECT, &no_reconnect);
  mysql_optionsv(m, MYSQL_SET_CHARSET_NAME, "utf8mb4");
  const bool tcp = options_.unix_socket.empty();
  if (mysql_real_connect(m, tcp ? options_.host.c_str() : nullptr, options_.user.c_str(),
                         options_.password.c_str(), options_.database.c_str(),
                         tcp ? static_cast<unsigned>(options_.port) : 0,
                         tcp ? nullptr : options_.unix_socket.c_str(), 0) == nullptr) {
    error_ = mysql_error(m);
    errno_ = mysql_errno(m);
    errors_.Add();
    mysql_close(m);
    return false;
  }
  conn_ = m;
  return true;
}

bool MysqlConn::Query(std::string_view sql) {
  // Never reconnects by itself: a COMMIT sent on a fresh connection would "succeed" with
  // nothing in it. Callers call EnsureConnected() before a unit of work.
  if (conn_ == nullptr) {
    error_ = "not connected";
    errno_ = CR_SERVER_GONE_ERROR;
    return false;
  }
  if (mysql_real_query(conn_, sql.data(), sql.size()) != 0) {
    Fail();
    return false;
  }
  errno_ = 0;
  return true;
}

MysqlResult MysqlConn::StoreResult() {
  if (conn_ == nullptr) return nullptr;
  MysqlResult r(mysql_store_result(conn_));
  if (r == nullptr && mysql_field_count(conn_) != 0) Fail();
  return r;
}

uint64_t MysqlConn::AffectedRows() const {
  return conn_ != nullptr ? static_cast<uint64_t>(mysql_affected_rows(conn_)) : 0;
}

void MysqlConn::Rollback() {
  if (conn_ == nullptr) return;
  const std::string keep = error_;  // report the error that caused the rollback, not this
  const unsigned keep_no = errno_;
  if (mysql_real_query(conn_, "ROLLBACK", 8) != 0) Fail();
  if (keep_no != 0) {
    error_ = keep;
    errno_ = keep_no;
  }
}

void MysqlConn::AppendQuoted(std::string_view s, std::string* out) {
  escape_buf_.resize(s.size() * 2 + 1);
  unsigned long n;
  if (conn_ != nullptr) {
    n = mysql_real_escape_string(conn_, escape_buf_.data(), s.data(),
                                 static_cast<unsigned long>(s.size()));
  } else {
    n = mysql_escape_string(escape_buf_.data(), s.data(), static_cast<unsigned long>(s.size()));
  }
  out->push_back('\'');
  out->append(escape_buf_.data(), n);
  out->push_back('\'');
}

void MysqlConn::Fail() {
  error_ = mysql_error(conn_);
  errno_ = mysql_errno(conn_);
  errors_.Add();
  if (errno_ >= kFirstClientError) {
    mysql_close(conn_);
    conn_ = nullptr;
    backoff_.Dropped();
  }
}

void MysqlConn::Disconnect(std::string_view why) {
  error_.assign(why);
  errors_.Add();
  if (conn_ != nullptr) mysql_close(conn_);
  conn_ = nullptr;
  backoff_.Dropped();
}

}  // namespace klined
