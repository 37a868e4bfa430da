// A plain HTTP/1.0 GET on loopback, for scraping klined's /metrics from tests and benches
// without spawning curl (a process per scrape costs the 2-core machine more than the
// scrape itself).
#pragma once

#include <string>
#include <string_view>

namespace klined::test {

struct HttpResponse {
  int status = 0;       // 0: no HTTP response (connection refused, timeout, garbage)
  std::string headers;  // the status line and header lines, each ending in CRLF
  std::string body;
  // The value of header `name` (case-insensitive), or "".
  std::string Header(std::string_view name) const;
};

// GET `target` on 127.0.0.1:port (HTTP/1.0, one connection): status, headers, body.
HttpResponse HttpFetch(int port, std::string_view target);
// Sends `request` as it is and reads until the server closes: for malformed requests.
HttpResponse HttpRaw(int port, std::string_view request);

// The response body of GET `path` on 127.0.0.1:port; empty on any error or a non-200 reply.
std::string HttpGet(int port, std::string_view path);

// The sum of every sample of metric `name` (any labels) in Prometheus text `text`, which
// starts with a newline (as "\n" + HttpGet(...)): the benches' reading of /metrics.
double MetricSum(const std::string& text, const std::string& name);

}  // namespace klined::test
