// One MySQL/MariaDB connection (libmariadb), owned by one thread: the persistence worker.
//
// DESIGN
// Blocking Connector/C calls with connect, read and write timeouts, so a dead server costs at
// most those timeouts, never a hang. Never used on a shard: only the persistence thread (or a
// test) talks to MySQL. A client-side error (CR_*, errno >= 2000: server gone, lost,
// timeout) drops the connection; the next EnsureConnected() reconnects after an exponential
// backoff (100 ms doubling to 5 s), like RedisConn. Server-side errors (duplicate key,
// deadlock, ...) keep the connection: the caller decides (ROLLBACK, retry later).
// Connector/C's own auto-reconnect is off: a silent reconnect inside a transaction would
// split it. TLS follows MysqlOptions::tls (see MysqlTlsMode). The session runs utf8mb4 with
// autocommit on; callers open transactions explicitly with Begin()/Commit()/Rollback().
#pragma once

#include <mysql.h>

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "base/backoff.h"
#include "base/counter.h"

namespace klined {

// TLS to the server, as MySQL's client --ssl-mode. Connector/C alone enforces only the
// verify steps: it falls back to a clear connection when the server offers no TLS, so from
// kRequired on the connection is also checked for a cipher right after the handshake.
enum class MysqlTlsMode : uint8_t {
  kDisabled,        // no TLS (Connector/C's default)
  kPreferred,       // TLS when the server offers it, else clear
  kRequired,        // TLS or no connection; a tls_ca, if set, is verified too
  kVerifyCa,        // and the server's certificate chains to tls_ca
  kVerifyIdentity,  // and its name matches host (tls_ca, or the system's CAs)
};

struct MysqlOptions {
  std::string host = "127.0.0.1";
  int port = 3306;
  std::string user = "klined";
  std::string password;  // the config already applied KLINED_MYSQL_PASSWORD
  std::string database = "klined";
  std::string unix_socket;  // empty = TCP to host:port
  int connect_timeout_s = 2;
  int read_timeout_s = 30;  // a 500-row upsert takes milliseconds; this bounds a hang
  int write_timeout_s = 30;
  MysqlTlsMode tls = MysqlTlsMode::kDisabled;
  std::string tls_ca;  // CA file (PEM); empty = none
};

// "disabled", "preferred", ... (the config's spelling).
const char* TlsModeName(MysqlTlsMode mode);

struct MysqlResultFree {
  void operator()(MYSQL_RES* r) const { mysql_free_result(r); }
};
using MysqlResult = std::unique_ptr<MYSQL_RES, MysqlResultFree>;

class MysqlConn {
 public:
  explicit MysqlConn(MysqlOptions options);
  ~MysqlConn();
  MysqlConn(const MysqlConn&) = delete;
  MysqlConn& operator=(const MysqlConn&) = delete;

  // Connects if needed (honouring the backoff). False while MySQL is unreachable.
  bool EnsureConnected();
  bool connected() const { return conn_ != nullptr; }

  // Runs one statement. False on any error (error()/error_number() say which); a client-side
  // error also drops the connection. Never reconnects by itself (a COMMIT on a fresh
  // connection would "succeed" with nothing in it): call EnsureConnected() before a unit of
  // work. A result set, if any, must be taken with StoreResult().
  [[nodiscard]] bool Query(std::string_view sql);
  // The result set of the last Query (null if none or on error).
  MysqlResult StoreResult();
  // Rows changed by the last statement (ON DUPLICATE KEY UPDATE counts 2 per updated row).
  uint64_t AffectedRows() const;

  [[nodiscard]] bool Begin() { return Query("START TRANSACTION"); }
  [[nodiscard]] bool Commit() { return Query("COMMIT"); }
  // Best effort: a lost connection rolls back on the server by itself.
  void Rollback();

  // Appends `s` as a quoted SQL string literal ('...'), escaped for the connection's charset
  // with mysql_real_escape_string. Requires a connection (call after EnsureConnected).
  void AppendQuoted(std::string_view s, std::string* out);

  // Drops the connection; the next EnsureConnected reconnects (after the backoff).
  void Disconnect(std::string_view why);

  const std::string& error() const { return error_; }
  unsigned error_number() const { return errno_; }
  uint64_t errors() const { return errors_.Get(); }
  uint64_t reconnects() const { return reconnects_.Get(); }

 private:
  bool Connect();
  // Sets the TLS options on a handle before connecting; "" or why they cannot be honoured.
  std::string ApplyTls(MYSQL* m) const;
  void Fail();  // records mysql_error/mysql_errno, counts, drops the connection on CR_*

  MysqlOptions options_;
  MYSQL* conn_ = nullptr;
  std::string error_;
  unsigned errno_ = 0;
  ReconnectBackoff backoff_;
  std::vector<char> escape_buf_;
  OwnedCounter errors_;
  OwnedCounter reconnects_;
};

// MySQL server error numbers the callers act on.
inline constexpr unsigned kMysqlDuplicateKey = 1062;  // ER_DUP_ENTRY

}  // namespace klined
