// String value rules of the config keys; see config_rules.h.
#include "app/config_rules.h"

#include <algorithm>

namespace klined::config_rules {

std::string Quote(std::string_view s) {
  std::string out = "\"";
  for (char ch : s) {
    if (ch == '"' || ch == '\\') {
      out += '\\';
      out += ch;
    } else if (static_cast<unsigned char>(ch) < 0x20) {
      static constexpr char kHex[] = "0123456789abcdef";
      out += "\\x";
      out += kHex[(ch >> 4) & 0xf];
      out += kHex[ch & 0xf];
    } else {
      out += ch;
    }
  }
  return out + "\"";
}

std::optional<std::string> CheckNonEmpty(std::string_view s) {
  if (s.empty()) return "must not be empty";
  return std::nullopt;
}

namespace {

bool IsTopicChar(char c) {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '.' ||
         c == '_' || c == '-';
}

}  // namespace

// Kafka's own rule for topic names.
std::optional<std::string> CheckTopic(std::string_view s) {
  if (s.empty()) return "must not be empty";
  if (s.size() > 249 || s == "." || s == ".." || !std::all_of(s.begin(), s.end(), IsTopicChar)) {
    return Quote(s) + " is not a Kafka topic name (1-249 of A-Z a-z 0-9 . _ -)";
  }
  return std::nullopt;
}

std::optional<std::string> CheckOptionalTopic(std::string_view s) {
  if (s.empty()) return std::nullopt;
  return CheckTopic(s);
}

std::optional<std::string> CheckBrokers(std::string_view s) {
  if (s.empty()) return "must not be empty";
  size_t start = 0;
  while (true) {
    size_t comma = s.find(',', start);
    std::string_view item =
        s.substr(start, comma == std::string_view::npos ? s.npos : comma - start);
    if (item.find_first_not_of(" \t") == std::string_view::npos) {
      return Quote(s) + " has an empty broker in its comma-separated list";
    }
    if (comma == std::string_view::npos) return std::nullopt;
    start = comma + 1;
  }
}

namespace {

bool AllDigits(std::string_view s) {
  return !s.empty() && std::all_of(s.begin(), s.end(), [](char c) { return c >= '0' && c <= '9'; });
}

}  // namespace

// "host:port", "[v6addr]:port"; the port within min_port..65535.
std::optional<std::string> CheckHostPort(std::string_view s, int min_port) {
  size_t colon = s.rfind(':');
  std::string_view host = colon == s.npos ? s : s.substr(0, colon);
  std::string_view port = colon == s.npos ? std::string_view() : s.substr(colon + 1);
  bool bracketed = host.size() > 2 && host.front() == '[' && host.back() == ']';
  if (colon == s.npos || host.empty() || !AllDigits(port) || port.size() > 5 ||
      (!bracketed && host.find(':') != host.npos) || host.find_first_of(" \t") != host.npos) {
    return Quote(s) + " is not host:port";
  }
  int value = std::stoi(std::string(port));
  if (value < min_port || value > 65535) {
    return Quote(s) + " has port " + std::string(port) + ", outside " + std::to_string(min_port) +
           "..65535";
  }
  return std::nullopt;
}

std::optional<std::string> CheckRedisAddress(std::string_view s) {
  if (s.empty()) return "must not be empty";
  if (s.starts_with("unix:")) {
    if (s.size() < 7 || s[5] != '/') return Quote(s) + " is not unix:/absolute/path";
    return std::nullopt;
  }
  if (s.find(',') == s.npos) {
    if (auto problem = CheckHostPort(s, 1)) return *problem + " or unix:/path";
    return std::nullopt;
  }
  // A cluster's seed list (redis.cluster: true; CrossCheck refuses a list without it).
  for (size_t start = 0;;) {
    const size_t comma = s.find(',', start);
    std::string_view item = s.substr(start, comma == s.npos ? s.npos : comma - start);
    while (!item.empty() && item.front() == ' ') item.remove_prefix(1);
    while (!item.empty() && item.back() == ' ') item.remove_suffix(1);
    if (item.empty()) return Quote(s) + " has an empty seed in its comma-separated list";
    if (auto problem = CheckHostPort(item, 1)) return *problem + " (in a seed list)";
    if (comma == s.npos) return std::nullopt;
    start = comma + 1;
  }
}

// Port 0 is allowed: the kernel picks one (integration tests).
std::optional<std::string> CheckListen(std::string_view s) { return CheckHostPort(s, 0); }

// A brace in a prefix would become the key's hash tag instead of {SYMBOL}.
std::optional<std::string> CheckKeyPrefix(std::string_view s) {
  if (s.empty()) return "must not be empty";
  if (s.find_first_of("{} \t\r\n") != s.npos) {
    return Quote(s) + " must not contain braces or whitespace (the hash tag is {SYMBOL})";
  }
  return std::nullopt;
}

std::optional<std::string> CheckDatabaseName(std::string_view s) {
  if (s.empty()) return "must not be empty";
  bool ok = s.size() <= 64 && std::all_of(s.begin(), s.end(), [](char c) {
              return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
                     c == '_' || c == '$';
            });
  if (!ok) return Quote(s) + " is not a database name (1-64 of A-Z a-z 0-9 _ $)";
  return std::nullopt;
}

// A JSON member name the decoder compares byte for byte; it cannot need escaping.
std::optional<std::string> CheckOptionalFieldName(std::string_view s) {
  for (char c : s) {
    if (c == '"' || c == '\\' || static_cast<unsigned char>(c) < 0x20) {
      return Quote(s) + " must not contain quotes, backslashes or control characters";
    }
  }
  return std::nullopt;
}

std::optional<std::string> CheckFieldName(std::string_view s) {
  if (s.empty()) return "must not be empty";
  return CheckOptionalFieldName(s);
}

}  // namespace klined::config_rules
