// The string value rules of the config keys (config.cc's key table): each check returns
// nullopt for a good value, else what is wrong, in the words config errors use.
#pragma once

#include <optional>
#include <string>
#include <string_view>

namespace klined::config_rules {

// s in double quotes, with quotes, backslashes and control characters escaped.
std::string Quote(std::string_view s);

// A check on a string value: nullopt when good, else what is wrong.
using StringCheck = std::optional<std::string> (*)(std::string_view);

struct StringRule {
  std::string_view type;  // for the key table, e.g. "host:port"
  StringCheck check;      // may be null: any string
};

std::optional<std::string> CheckNonEmpty(std::string_view s);
std::optional<std::string> CheckTopic(std::string_view s);
std::optional<std::string> CheckOptionalTopic(std::string_view s);
std::optional<std::string> CheckBrokers(std::string_view s);
std::optional<std::string> CheckHostPort(std::string_view s, int min_port);
std::optional<std::string> CheckRedisAddress(std::string_view s);
std::optional<std::string> CheckListen(std::string_view s);
std::optional<std::string> CheckKeyPrefix(std::string_view s);
std::optional<std::string> CheckDatabaseName(std::string_view s);
std::optional<std::string> CheckOptionalFieldName(std::string_view s);
std::optional<std::string> CheckFieldName(std::string_view s);

inline constexpr StringRule kAnyString{"string", nullptr};
inline constexpr StringRule kNonEmpty{"non-empty string", CheckNonEmpty};
inline constexpr StringRule kTopic{"Kafka topic name", CheckTopic};
inline constexpr StringRule kOptionalTopic{"Kafka topic name or empty", CheckOptionalTopic};
inline constexpr StringRule kBrokers{"host:port list, comma-separated", CheckBrokers};
inline constexpr StringRule kRedisAddress{
    "host:port, unix:/path, or (redis.cluster) a comma-separated host:port seed list",
    CheckRedisAddress};
inline constexpr StringRule kListen{"host:port", CheckListen};
inline constexpr StringRule kKeyPrefix{"key prefix without braces", CheckKeyPrefix};
inline constexpr StringRule kDatabase{"database name", CheckDatabaseName};
inline constexpr StringRule kFieldName{"JSON member name", CheckFieldName};
inline constexpr StringRule kOptionalFieldName{"JSON member name or empty", CheckOptionalFieldName};

}  // namespace klined::config_rules
