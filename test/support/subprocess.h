// Child processes for integration tests: own process group, output captured to
// files, bounded waits, and killed whatever way the test ends.
//
// Cleanup layers, from normal to abnormal test endings:
//  1. ~Subprocess sends SIGKILL to the child's process group and reaps it.
//  2. An atexit hook and handlers for SIGINT/SIGTERM/SIGHUP/SIGQUIT and fatal
//     signals (SIGSEGV/SIGABRT/SIGBUS/SIGFPE/SIGILL) kill every live group, then
//     re-raise with the previous disposition (doctest's crash reporter chains).
//  3. Each child runs with PR_SET_PDEATHSIG=SIGKILL, so even a SIGKILLed test
//     binary leaves no server behind. The death signal follows the thread that
//     spawned the child: spawn from the test's main thread.
#pragma once

#include <sys/types.h>

#include <chrono>
#include <csignal>
#include <filesystem>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace klined::test {

using std::chrono::milliseconds;

struct SubprocessOptions {
  // Output goes to <log_dir>/<name>.stdout and <log_dir>/<name>.stderr
  // (a numeric suffix is added if those exist, e.g. after a restart).
  std::filesystem::path log_dir;
  std::string name;
  // "KEY=VALUE" entries added to (or replacing in) the parent's environment.
  std::vector<std::string> env;
  // Working directory; empty = inherit.
  std::filesystem::path cwd;
};

// How a reaped child ended.
struct ExitStatus {
  int raw = 0;  // waitpid status
  bool Exited() const;
  int Code() const;  // exit code, or -1 if killed by a signal
  bool Signaled() const;
  int Signal() const;  // terminating signal, or 0
  std::string Describe() const;
};

enum class Stream { kStdout, kStderr };

class Subprocess {
 public:
  // Spawns `binary` (resolved through PATH, then /usr/sbin and /sbin, if it has no
  // '/') with argv[1..] = args. Throws std::runtime_error if it cannot start.
  Subprocess(const std::string& binary, std::vector<std::string> args, SubprocessOptions options);
  ~Subprocess();  // SIGKILL to the group, then reap
  Subprocess(Subprocess&& other) noexcept;
  Subprocess& operator=(Subprocess&& other) noexcept;
  Subprocess(const Subprocess&) = delete;
  Subprocess& operator=(const Subprocess&) = delete;

  pid_t pid() const { return pid_; }
  const std::string& name() const { return name_; }

  // Waits until `stream` holds a complete line starting with `prefix` and returns
  // it (without the newline). nullopt on timeout or if the child exits first.
  std::optional<std::string> WaitForLine(std::string_view prefix, milliseconds timeout,
                                         Stream stream = Stream::kStdout);

  // Sends `sig` to the child's whole process group. No-op once reaped.
  void Signal(int sig);
  void Terminate() { Signal(SIGTERM); }
  void Kill() { Signal(SIGKILL); }
  void Pause() { Signal(SIGSTOP); }
  void Resume() { Signal(SIGCONT); }

  // Waits up to `timeout` for the child to exit and reaps it; nullopt if still
  // running. After a successful Wait, further calls return the same status.
  std::optional<ExitStatus> Wait(milliseconds timeout);
  // SIGTERM, wait up to `grace`, then SIGKILL. Returns how it ended.
  ExitStatus Stop(milliseconds grace = milliseconds(10000));
  bool Running();

  std::string Stdout() const;
  std::string Stderr() const;
  const std::filesystem::path& stdout_path() const { return stdout_path_; }
  const std::filesystem::path& stderr_path() const { return stderr_path_; }
  // Last `max_bytes` of stderr and stdout, for failure messages.
  std::string OutputTail(size_t max_bytes = 4000) const;

 private:
  void KillAndReap();

  std::string name_;
  pid_t pid_ = -1;
  std::optional<ExitStatus> status_;
  std::filesystem::path stdout_path_, stderr_path_;
};

// Resolves a program name like execvp would, also searching /usr/sbin and /sbin
// (mariadbd lives there and root's PATH may lack it). Throws if not found.
std::string FindBinary(const std::string& name);

// The threads of process `pid` by name (`comm`), each with its /proc/PID/task/TID directory.
std::multimap<std::string, std::filesystem::path> ThreadsOf(pid_t pid);

}  // namespace klined::test
