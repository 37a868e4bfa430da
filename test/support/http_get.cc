#include "http_get.h"

#include <cctype>
#include <cstdlib>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

namespace klined::test {

HttpResponse HttpRaw(int port, std::string_view request) {
  HttpResponse out;
  const int fd = socket(AF_INET, SOCK_STREAM, 0);
  if (fd < 0) return out;
  timeval tv{5, 0};
  setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
  setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(static_cast<uint16_t>(port));
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  std::string response;
  if (connect(fd, reinterpret_cast<const sockaddr*>(&addr), sizeof addr) == 0) {
    size_t sent = 0;
    while (sent < request.size()) {
      const ssize_t n = send(fd, request.data() + sent, request.size() - sent, MSG_NOSIGNAL);
      if (n <= 0) break;
      sent += static_cast<size_t>(n);
    }
    char buf[65536];
    ssize_t n;
    while (sent == request.size() && (n = recv(fd, buf, sizeof buf, 0)) > 0) {
      response.append(buf, static_cast<size_t>(n));
    }
  }
  close(fd);
  // "HTTP/1.x 200 ...", headers, a blank line, the body.
  const size_t body = response.find("\r\n\r\n");
  if (response.compare(0, 5, "HTTP/") != 0 || body == std::string::npos) return out;
  const size_t sp = response.find(' ');
  out.status = std::atoi(response.c_str() + sp + 1);
  out.headers = response.substr(0, body + 2);
  out.body = response.substr(body + 4);
  return out;
}

HttpResponse HttpFetch(int port, std::string_view target) {
  return HttpRaw(port, "GET " + std::string(target) +
                           " HTTP/1.0\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n");
}

std::string HttpResponse::Header(std::string_view name) const {
  std::string lower_headers = headers, lower_name(name);
  for (char& c : lower_headers) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  for (char& c : lower_name) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  const size_t at = lower_headers.find("\r\n" + lower_name + ":");
  if (at == std::string::npos) return "";
  size_t v = at + 3 + lower_name.size();
  while (v < headers.size() && headers[v] == ' ') ++v;
  return headers.substr(v, headers.find("\r\n", v) - v);
}

std::string HttpGet(int port, std::string_view path) {
  HttpResponse r = HttpFetch(port, path);
  return r.status == 200 ? r.body : "";
}

double MetricSum(const std::string& text, const std::string& name) {
  double sum = 0;
  size_t pos = 0;
  while ((pos = text.find("\n" + name, pos)) != std::string::npos) {
    pos += 1;
    const size_t nl = text.find('\n', pos);
    const std::string line = text.substr(pos, nl - pos);
    const char next = line.size() > name.size() ? line[name.size()] : '\0';
    if (next == ' ' || next == '{') sum += std::atof(line.substr(line.rfind(' ') + 1).c_str());
  }
  return sum;
}

}  // namespace klined::test
