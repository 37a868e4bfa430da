// The market-data API's metrics (klined_api_*), read from ApiServer::Snapshot at scrape time.
#pragma once

#include <memory>

namespace prometheus {
class Collectable;
}  // namespace prometheus

namespace klined {
namespace api {
class ApiServer;
}  // namespace api

// The caller keeps the collector (prometheus-cpp's exposer holds only a weak_ptr), and the
// server outlives it.
std::shared_ptr<prometheus::Collectable> MakeApiCollector(const api::ApiServer* server);

}  // namespace klined
