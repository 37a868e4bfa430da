// A real mariadbd on 127.0.0.1 for integration tests, with database `klined` and
// user 'klined'@'127.0.0.1' (password auth, grants on klined.*). Never
// skip-grant-tables.
//
// Startup cost: the first server in a test process installs a pristine datadir
// (mariadb-install-db, then one start to create the database and user) into a
// process-wide template; every server copies that template (~25 MB) and starts in
// a fraction of a second.
#pragma once

#include <mysql.h>

#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "subprocess.h"
#include "temp_dir.h"

namespace klined::test {

struct MysqlClose {
  void operator()(MYSQL* m) const { mysql_close(m); }
};
using MysqlConnection = std::unique_ptr<MYSQL, MysqlClose>;

using Row = std::vector<std::string>;  // SQL NULL reads as "NULL"

// Runs `sql` (several ';'-separated statements allowed) and returns the rows of
// every result set in order. Throws std::runtime_error with the server's message.
std::vector<Row> RunQuery(MYSQL* conn, const std::string& sql);

// Writes a test CA (ca.pem, ca.key) and a server certificate it signed (server.pem,
// server.key; CN localhost, subjectAltName IP:127.0.0.1 and DNS:localhost) into `dir`, with
// the openssl command line tool. Throws if openssl fails.
void MakeTestCertificates(const std::filesystem::path& dir);

struct MariaDbOptions {
  // Extra mariadbd arguments, e.g. "--max-connections=20".
  std::vector<std::string> extra_args;
  // TLS: certificates made by MakeTestCertificates in the server's dir, passed as --ssl-ca,
  // --ssl-cert and --ssl-key (clients may then use TLS; nothing requires it).
  bool tls = false;
};

class MariaDbServer {
 public:
  static constexpr const char* kDatabase = "klined";
  static constexpr const char* kUser = "klined";
  static constexpr const char* kPassword = "klined-test-pw";

  // Starts the server and waits until `klined` can log in over TCP (throws on failure).
  explicit MariaDbServer(MariaDbOptions options = {});
  ~MariaDbServer() = default;  // the Subprocess SIGKILLs the server; the TempDir goes

  const std::string& host() const { return host_; }
  int port() const { return port_; }
  std::filesystem::path socket() const { return dir_ / "mysqld.sock"; }
  std::string user() const { return kUser; }
  std::string password() const { return kPassword; }
  std::string database() const { return kDatabase; }
  const std::filesystem::path& dir() const { return dir_.path(); }
  // The CA that signed the server's certificate (tls only).
  std::filesystem::path ca() const { return dir_ / "ca.pem"; }

  // A new connection as `klined` over TCP to database `klined`.
  MysqlConnection Connect() const;
  // Runs `sql` as root over the unix socket in database `klined`.
  std::vector<Row> Query(const std::string& sql) const;

  // Clean shutdown (SIGTERM, InnoDB flushes), then Start() on the same datadir
  // and port: "MySQL down for a while".
  void Stop();
  void Start();
  // SIGKILL: a crash. Committed transactions survive (log written at commit).
  void Kill();
  bool running() const { return proc_.has_value(); }
  Subprocess& process() { return *proc_; }

 private:
  bool TryStart(std::chrono::seconds timeout);

  MariaDbOptions options_;
  TempDir dir_{"klined-mariadb"};
  std::string host_ = "127.0.0.1";
  int port_ = 0;
  std::optional<Subprocess> proc_;
};

}  // namespace klined::test
