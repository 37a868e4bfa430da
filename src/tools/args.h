// Command-line walking shared by the tools (klinectl, klined-tradegen): "--name value" and
// "--name=value" alike, integer and number values checked against a range, and one way to
// fail: "PROGRAM: message" on stderr, exit status 2.
#pragma once

#include <cerrno>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <string_view>

namespace klined::tools {

[[noreturn]] inline void ExitUsage(std::string_view program, const std::string& msg) {
  std::fprintf(stderr, "%.*s: %s\n", static_cast<int>(program.size()), program.data(), msg.c_str());
  std::exit(2);
}

class ArgWalker {
 public:
  ArgWalker(std::string_view program, int argc, char** argv)
      : program_(program), argc_(argc), argv_(argv) {}

  // Advances to the next argument; false after the last. name() is the option without its
  // "=value" part (only for arguments starting with "--"), or the argument as given.
  bool Next() {
    if (++i_ >= argc_) return false;
    raw_ = argv_[i_];
    name_ = raw_;
    has_value_ = false;
    if (const size_t eq = name_.find('='); name_.rfind("--", 0) == 0 && eq != std::string::npos) {
      value_ = name_.substr(eq + 1);
      name_.resize(eq);
      has_value_ = true;
    }
    return true;
  }
  const std::string& name() const { return name_; }
  const std::string& raw() const { return raw_; }  // the argument exactly as given

  // The current option's value: after '=', else the next argument (which is consumed).
  std::string Value() {
    if (has_value_) return value_;
    if (i_ + 1 >= argc_) Fail(name_ + " needs a value (see --help)");
    return argv_[++i_];
  }
  int64_t Int(int64_t lo, int64_t hi) {
    const std::string v = Value();
    char* end = nullptr;
    errno = 0;
    const long long x = std::strtoll(v.c_str(), &end, 10);
    if (v.empty() || *end != '\0' || errno != 0 || x < lo || x > hi) {
      Fail(name_ + ": expected an integer in [" + std::to_string(lo) + ", " + std::to_string(hi) +
           "], got '" + v + "'");
    }
    return x;
  }
  double Number(double lo, double hi) {
    const std::string v = Value();
    char* end = nullptr;
    const double d = std::strtod(v.c_str(), &end);
    if (v.empty() || *end != '\0' || !(d >= lo && d <= hi)) {
      Fail(name_ + ": expected a number in [" + std::to_string(lo) + ", " + std::to_string(hi) +
           "], got '" + v + "'");
    }
    return d;
  }
  [[noreturn]] void Fail(const std::string& msg) const { ExitUsage(program_, msg); }

 private:
  std::string_view program_;
  int argc_;
  char** argv_;
  int i_ = 0;
  std::string raw_, name_, value_;
  bool has_value_ = false;
};

}  // namespace klined::tools
