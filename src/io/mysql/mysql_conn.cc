#include "io/mysql/mysql_conn.h"

#include <algorithm>
#include <chrono>
#include <mutex>

#include <errmsg.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

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

const char* TlsModeName(MysqlTlsMode mode) {
  switch (mode) {
    case MysqlTlsMode::kDisabled:
      return "disabled";
    case MysqlTlsMode::kPreferred:
      return "preferred";
    case MysqlTlsMode::kRequired:
      return "required";
    case MysqlTlsMode::kVerifyCa:
      return "verify_ca";
    case MysqlTlsMode::kVerifyIdentity:
      return "verify_identity";
  }
  return "?";
}

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
  if (const std::string why = ApplyTls(m); !why.empty()) {
    error_ = why;
    errno_ = CR_SSL_CONNECTION_ERROR;
    errors_.Add();
    mysql_close(m);
    return false;
  }
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
  if (options_.tls >= MysqlTlsMode::kRequired && mysql_get_ssl_cipher(m) == nullptr) {
    error_ = std::string("TLS required (mysql.ssl_mode ") + TlsModeName(options_.tls) +
             ") but the server did not offer it";
    errno_ = CR_SSL_CONNECTION_ERROR;
    errors_.Add();
    mysql_close(m);
    return false;
  }
  conn_ = m;
  return true;
}

std::string MysqlConn::ApplyTls(MYSQL* m) const {
  if (options_.tls == MysqlTlsMode::kDisabled) return "";
  if (!options_.tls_ca.empty() && access(options_.tls_ca.c_str(), R_OK) != 0) {
    return "mysql.ssl_ca " + options_.tls_ca + ": cannot read: " + std::strerror(errno);
  }
  // MYSQL_OPT_SSL_ENFORCE only asks for TLS (Connector/C's use_ssl); Connect checks the result.
  const my_bool on = 1;
  const my_bool verify_identity = options_.tls == MysqlTlsMode::kVerifyIdentity;
  mysql_optionsv(m, MYSQL_OPT_SSL_ENFORCE, &on);
  // With a CA set, Connector/C verifies the certificate chain (OpenSSL SSL_VERIFY_PEER);
  // VERIFY_SERVER_CERT adds the host name check.
  mysql_optionsv(m, MYSQL_OPT_SSL_VERIFY_SERVER_CERT, &verify_identity);
  if (!options_.tls_ca.empty()) mysql_optionsv(m, MYSQL_OPT_SSL_CA, options_.tls_ca.c_str());
  return "";
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
