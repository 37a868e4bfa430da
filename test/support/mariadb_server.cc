#include "mariadb_server.h"

#include <mutex>
#include <stdexcept>
#include <thread>

namespace klined::test {
namespace {

constexpr std::chrono::seconds kStartTimeout{30};

void InitClientLibrary() {
  static std::once_flag once;
  std::call_once(once, [] { mysql_library_init(0, nullptr, nullptr); });
}

// Small and quick rather than durable against power loss: tests kill processes,
// not machines: with flush_log_at_trx_commit=2 and no fsync (nosync) a commit is
// in the OS page cache, which survives a SIGKILL of mariadbd.
std::vector<std::string> ServerArgs(const std::filesystem::path& dir, int port) {
  return {
      "--no-defaults",
      "--user=root",
      "--datadir=" + (dir / "data").string(),
      "--bind-address=127.0.0.1",
      "--port=" + std::to_string(port),
      "--socket=" + (dir / "mysqld.sock").string(),
      "--pid-file=" + (dir / "mysqld.pid").string(),
      "--tmpdir=" + dir.string(),
      "--skip-name-resolve",
      "--skip-log-bin",
      "--performance-schema=OFF",
      "--innodb-buffer-pool-size=16M",
      "--innodb-log-file-size=4M",
      "--innodb-flush-log-at-trx-commit=2",
      "--innodb-doublewrite=0",
      "--innodb-flush-method=nosync",
      "--innodb-use-native-aio=0",
      "--character-set-server=utf8mb4",
      "--max-connections=200",
  };
}

MysqlConnection ConnectOrNull(const char* host, const char* user, const char* password,
                              const char* db, int port, const char* socket, std::string* error) {
  InitClientLibrary();
  MysqlConnection conn(mysql_init(nullptr));
  if (!conn) throw std::runtime_error("mysql_init: out of memory");
  unsigned int timeout = 2;
  mysql_optionsv(conn.get(), MYSQL_OPT_CONNECT_TIMEOUT, &timeout);
  if (!mysql_real_connect(conn.get(), host, user, password, db, static_cast<unsigned>(port), socket,
                          CLIENT_MULTI_STATEMENTS)) {
    if (error) *error = mysql_error(conn.get());
    return nullptr;
  }
  return conn;
}

MysqlConnection RootConnection(const std::filesystem::path& socket, const char* db) {
  std::string err;
  auto c = ConnectOrNull(nullptr, "root", "", db, 0, socket.c_str(), &err);
  if (!c) throw std::runtime_error("mariadb root connect via " + socket.string() + ": " + err);
  return c;
}

// Process-wide pristine datadir (see header). Built on first use; removed at exit.
const std::filesystem::path& TemplateDatadir() {
  static std::mutex mu;
  static std::optional<TempDir> tmpl;
  std::lock_guard lock(mu);
  if (tmpl) return tmpl->path();
  TempDir dir("klined-mariadb-template");
  std::filesystem::path data = dir / "data";
  {
    Subprocess install(
        "mariadb-install-db",
        {"--no-defaults", "--datadir=" + data.string(), "--auth-root-authentication-method=normal",
         "--skip-test-db", "--user=root", "--innodb-log-file-size=4M",
         "--innodb-flush-method=nosync", "--innodb-buffer-pool-size=16M",
         // Its temporary tables in its own directory: with TMPDIR shared by test processes
         // running at once, one bootstrap's temporary table was once gone before it removed it
         // ("Can't find file: '$TMPDIR/#sql-temptable-...MAI'"), failing the install.
         "--tmpdir=" + dir.path().string()},
        SubprocessOptions{.log_dir = dir.path(), .name = "install-db", .env = {}, .cwd = {}});
    auto st = install.Wait(std::chrono::seconds(120));
    if (!st || !st->Exited() || st->Code() != 0) {
      throw std::runtime_error("mariadb-install-db failed:\n" + install.OutputTail());
    }
  }
  // One start to create the database and the password-authenticated user.
  for (int attempt = 0;; ++attempt) {
    int port = FreePort();
    Subprocess server(
        "mariadbd", ServerArgs(dir.path(), port),
        SubprocessOptions{
            .log_dir = dir.path(), .name = "mariadbd-template", .env = {}, .cwd = {}});
    auto deadline = std::chrono::steady_clock::now() + kStartTimeout;
    MysqlConnection root;
    std::string err;
    while (!root && server.Running() && std::chrono::steady_clock::now() < deadline) {
      root = ConnectOrNull(nullptr, "root", "", nullptr, 0, (dir / "mysqld.sock").c_str(), &err);
      if (!root) std::this_thread::sleep_for(std::chrono::milliseconds(20));
    }
    if (!root) {
      if (attempt < 3 && !server.Running()) continue;  // port taken: retry elsewhere
      throw std::runtime_error("template mariadbd did not start: " + err + "\n" +
                               server.OutputTail());
    }
    RunQuery(root.get(),
             std::string("CREATE DATABASE ") + MariaDbServer::kDatabase +
                 " CHARACTER SET utf8mb4;"
                 "CREATE USER '" +
                 MariaDbServer::kUser + "'@'127.0.0.1' IDENTIFIED BY '" + MariaDbServer::kPassword +
                 "';"
                 "GRANT ALL PRIVILEGES ON " +
                 MariaDbServer::kDatabase + ".* TO '" + MariaDbServer::kUser + "'@'127.0.0.1';");
    root.reset();
    auto st = server.Stop(std::chrono::seconds(30));
    if (!st.Exited() || st.Code() != 0) {
      throw std::runtime_error("template mariadbd did not shut down cleanly:\n" +
                               server.OutputTail());
    }
    break;
  }
  tmpl.emplace(std::move(dir));
  return tmpl->path();
}

}  // namespace

std::vector<Row> RunQuery(MYSQL* conn, const std::string& sql) {
  if (mysql_real_query(conn, sql.data(), sql.size()) != 0) {
    throw std::runtime_error("query failed: " + std::string(mysql_error(conn)) + "\n  " + sql);
  }
  std::vector<Row> rows;
  for (;;) {
    if (MYSQL_RES* res = mysql_store_result(conn)) {
      unsigned int n = mysql_num_fields(res);
      while (MYSQL_ROW r = mysql_fetch_row(res)) {
        unsigned long* len = mysql_fetch_lengths(res);
        Row row;
        for (unsigned int i = 0; i < n; ++i) {
          row.push_back(r[i] ? std::string(r[i], len[i]) : std::string("NULL"));
        }
        rows.push_back(std::move(row));
      }
      mysql_free_result(res);
    } else if (mysql_field_count(conn) != 0) {
      throw std::runtime_error("reading result: " + std::string(mysql_error(conn)));
    }
    int next = mysql_next_result(conn);
    if (next > 0) {
      throw std::runtime_error("query failed: " + std::string(mysql_error(conn)) + "\n  " + sql);
    }
    if (next < 0) break;
  }
  return rows;
}

void MakeTestCertificates(const std::filesystem::path& dir) {
  auto run = [&](const std::string& name, std::vector<std::string> args) {
    Subprocess p("openssl", std::move(args),
                 SubprocessOptions{.log_dir = dir, .name = name, .env = {}, .cwd = dir});
    auto st = p.Wait(std::chrono::seconds(60));
    if (!st || !st->Exited() || st->Code() != 0) {
      throw std::runtime_error("openssl " + name + " failed:\n" + p.OutputTail());
    }
  };
  WriteFile(dir / "server.ext", "subjectAltName=IP:127.0.0.1,DNS:localhost\n");
  run("openssl-ca", {"req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", "ca.key", "-out",
                     "ca.pem", "-days", "2", "-subj", "/CN=klined test CA"});
  run("openssl-csr", {"req", "-newkey", "rsa:2048", "-nodes", "-keyout", "server.key", "-out",
                      "server.csr", "-subj", "/CN=localhost"});
  run("openssl-sign",
      {"x509", "-req", "-in", "server.csr", "-CA", "ca.pem", "-CAkey", "ca.key", "-CAcreateserial",
       "-out", "server.pem", "-days", "2", "-extfile", "server.ext"});
}

MariaDbServer::MariaDbServer(MariaDbOptions options) : options_(std::move(options)) {
  std::filesystem::copy(TemplateDatadir() / "data", dir_ / "data",
                        std::filesystem::copy_options::recursive);
  if (options_.tls) {
    MakeTestCertificates(dir_.path());
    options_.extra_args.push_back("--ssl-ca=" + (dir_ / "ca.pem").string());
    options_.extra_args.push_back("--ssl-cert=" + (dir_ / "server.pem").string());
    options_.extra_args.push_back("--ssl-key=" + (dir_ / "server.key").string());
  }
  for (int attempt = 0; attempt < 4; ++attempt) {
    port_ = FreePort();
    if (TryStart(kStartTimeout)) return;
  }
  throw std::runtime_error("mariadbd did not start:\n" + proc_->OutputTail());
}

bool MariaDbServer::TryStart(std::chrono::seconds timeout) {
  proc_.reset();
  std::vector<std::string> args = ServerArgs(dir_.path(), port_);
  args.insert(args.end(), options_.extra_args.begin(), options_.extra_args.end());
  proc_.emplace(
      "mariadbd", std::move(args),
      SubprocessOptions{.log_dir = dir_.path(), .name = "mariadbd", .env = {}, .cwd = {}});
  auto deadline = std::chrono::steady_clock::now() + timeout;
  std::string err;
  while (std::chrono::steady_clock::now() < deadline) {
    if (!proc_->Running()) return false;
    if (ConnectOrNull(host_.c_str(), kUser, kPassword, kDatabase, port_, nullptr, &err)) {
      return true;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  throw std::runtime_error("mariadbd not accepting connections within " +
                           std::to_string(timeout.count()) + " s: " + err + "\n" +
                           proc_->OutputTail());
}

void MariaDbServer::Start() {
  if (proc_ && proc_->Running()) return;
  if (!TryStart(kStartTimeout)) {
    throw std::runtime_error("mariadbd did not restart on port " + std::to_string(port_) + ":\n" +
                             proc_->OutputTail());
  }
}

void MariaDbServer::Stop() {
  if (!proc_) return;
  proc_->Resume();  // a SIGSTOPped server cannot shut down
  proc_->Stop(std::chrono::seconds(30));
  proc_.reset();
}

void MariaDbServer::Kill() {
  if (!proc_) return;
  proc_->Kill();
  proc_->Wait(std::chrono::seconds(10));
  proc_.reset();
}

MysqlConnection MariaDbServer::Connect() const {
  std::string err;
  auto c = ConnectOrNull(host_.c_str(), kUser, kPassword, kDatabase, port_, nullptr, &err);
  if (!c)
    throw std::runtime_error("mariadb connect " + host_ + ":" + std::to_string(port_) + ": " + err);
  return c;
}

std::vector<Row> MariaDbServer::Query(const std::string& sql) const {
  auto root = RootConnection(socket(), kDatabase);
  return RunQuery(root.get(), sql);
}

}  // namespace klined::test
