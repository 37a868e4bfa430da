// klined_api_* metrics; see api_metrics.h and docs/metrics.md.
#include "app/api_metrics.h"

#include <prometheus/collectable.h>
#include <prometheus/metric_family.h>

#include <string>
#include <vector>

#include "api/api_server.h"
#include "app/metric_family.h"

namespace klined {
namespace {

using prometheus::MetricFamily;
using prometheus::MetricType;

class ApiCollector : public prometheus::Collectable {
 public:
  explicit ApiCollector(const api::ApiServer* server) : server_(server) {}

  std::vector<MetricFamily> Collect() const override {
    const api::ApiSnapshot s = server_->Snapshot();
    std::vector<MetricFamily> out;
    auto family = [&out](const char* name, const char* help, MetricType type) -> MetricFamily& {
      MetricFamily& f = out.emplace_back();
      f.name = name;
      f.help = help;
      f.type = type;
      return f;
    };
    auto add = [&out](const char* name, const char* help, MetricType type, double v) {
      AddSample(&out, name, help, type, v);
    };
    const auto C = MetricType::Counter;
    const auto G = MetricType::Gauge;
    MetricFamily& responses = family(
        "klined_api_responses_total",
        "REST replies by endpoint and outcome (ok, client_error, rate_limited, unavailable)", C);
    for (size_t e = 0; e < api::kEndpointCount; ++e) {
      for (size_t o = 0; o < api::kOutcomeCount; ++o) {
        responses.metric.push_back(
            Sample(C, double(s.responses[e][o]),
                   {{"endpoint", api::EndpointName(static_cast<api::Endpoint>(e))},
                    {"outcome", api::OutcomeName(static_cast<api::Outcome>(o))}}));
      }
    }
    add("klined_api_connections", "Open API connections (HTTP and WebSocket)", G,
        double(s.connections_open));
    add("klined_api_connections_accepted_total", "API connections accepted", C,
        double(s.connections_accepted));
    add("klined_api_connections_rejected_total",
        "API connections closed at once because api.max_connections were open", C,
        double(s.connections_rejected));
    add("klined_api_http_errors_total",
        "Malformed or oversized HTTP requests (answered 400/413/431 and closed)", C,
        double(s.http_errors));
    add("klined_api_timeouts_total",
        "API connections closed for silence or a request arriving too slowly", C,
        double(s.timeouts));
    add("klined_api_redis_reads_total", "Redis round trips of the API", C, double(s.redis_reads));
    add("klined_api_redis_failures_total", "API Redis round trips that failed (answered 503)", C,
        double(s.redis_failures));
    add("klined_api_mysql_reads_total", "MySQL range reads of the API (history older than Redis)",
        C, double(s.mysql_reads));
    add("klined_api_mysql_failures_total", "API MySQL range reads that failed (answered 503)", C,
        double(s.mysql_failures));
    add("klined_api_corrupt_values_total",
        "Stored values the API could not parse (left out of the reply, logged)", C,
        double(s.corrupt_values));
    add("klined_api_symbols_known", "Symbols in the API's known-symbol set", G,
        double(s.symbols_known));
    add("klined_api_symbol_refresh_failures_total",
        "Known-symbol set refreshes that failed (the previous set kept)", C,
        double(s.symbol_refresh_failures));
    add("klined_api_ws_connections", "Open WebSocket stream connections", G, double(s.ws_open));
    add("klined_api_ws_accepted_total", "WebSocket handshakes completed", C, double(s.ws_accepted));
    MetricFamily& closed =
        family("klined_api_ws_closed_total",
               "WebSocket connections ended, by reason (client, slow: send queue past "
               "api.ws_send_queue_bytes, silent: nothing heard for 60 s, flood: past "
               "api.ws_messages_per_second, error, shutdown)",
               C);
    for (size_t r = 0; r < api::kWsCloseCount; ++r) {
      closed.metric.push_back(Sample(C, double(s.ws_closed[r]),
                                     {{"reason", api::WsCloseName(static_cast<api::WsClose>(r))}}));
    }
    add("klined_api_ws_messages_in_total", "Messages WebSocket clients sent", C,
        double(s.ws_messages_in));
    add("klined_api_ws_error_replies_total",
        "Binance error replies sent to WebSocket clients (bad JSON, unknown method or stream)", C,
        double(s.ws_error_replies));
    add("klined_api_ws_events_total", "Stream events queued to WebSocket clients", C,
        double(s.ws_events_out));
    add("klined_api_ws_conflated_total",
        "Queued candle updates replaced by a newer one before a slow client read them", C,
        double(s.ws_conflated));
    add("klined_api_pubsub_messages_total", "Candle messages received from Redis pub/sub", C,
        double(s.pubsub_messages));
    add("klined_api_pubsub_events_total", "Stream events built from them", C,
        double(s.pubsub_events));
    add("klined_api_pubsub_bad_total",
        "Published candle lines that did not parse (skipped, logged api.bad_event)", C,
        double(s.pubsub_bad));
    add("klined_api_pubsub_reconnects_total",
        "Subscriber connections re-established (messages published meanwhile are not seen)", C,
        double(s.pubsub_reconnects));
    add("klined_api_pubsub_moved_total",
        "Subscriptions a Redis Cluster node ended or refused because the slot moved (a reshard, "
        "a failover): every symbol subscribed again on the refreshed topology",
        C, double(s.pubsub_moved));
    add("klined_api_pubsub_symbols", "Symbols this instance is subscribed to", G,
        double(s.pubsub_symbols));
    add("klined_api_watch_writes_total",
        "WATCH calls that wrote what this instance streams of a symbol (changes and refreshes)",
        C, double(s.watch_writes));
    AddLabelled(&out, "klined_api_cache_hits_total",
                "klines requests (layer candles) and MySQL ranges (layer pages) the L1 cache "
                "answered with no Redis or MySQL read",
                C, "layer",
                {{"candles", double(s.cache_hits)}, {"pages", double(s.cache_page_hits)}});
    AddLabelled(&out, "klined_api_cache_misses_total",
                "klines requests that read Redis (layer candles) and MySQL ranges read from MySQL "
                "(layer pages)",
                C, "layer",
                {{"candles", double(s.cache_misses)}, {"pages", double(s.cache_page_misses)}});
    add("klined_api_cache_waits_total",
        "Requests that waited for another request's read of the same entry or page (single "
        "flight)",
        C, double(s.cache_waits));
    add("klined_api_cache_loads_total", "L1 entries read from Redis", C, double(s.cache_loads));
    add("klined_api_cache_evictions_total",
        "L1 entries and pages dropped to stay within api.cache_bytes", C,
        double(s.cache_evictions));
    add("klined_api_cache_invalidations_total",
        "L1 entries whose rows were dropped (a gap in the stream, the subscriber's connection "
        "lost, stored rows not cacheable)",
        C, double(s.cache_invalidations));
    add("klined_api_cache_bytes", "Bytes the L1 cache holds (rows and bookkeeping)", G,
        double(s.cache_bytes));
    AddLabelled(&out, "klined_api_cache_entries",
                "L1 entries (layer candles) and MySQL pages (pages)", G, "layer",
                {{"candles", double(s.cache_entries)}, {"pages", double(s.cache_pages)}});
    return out;
  }

 private:
  const api::ApiServer* server_;
};

}  // namespace

std::shared_ptr<prometheus::Collectable> MakeApiCollector(const api::ApiServer* server) {
  return std::make_shared<ApiCollector>(server);
}

}  // namespace klined
