#include "ws_client.h"

#include <boost/asio/connect.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/websocket.hpp>

#include <condition_variable>
#include <deque>
#include <mutex>
#include <thread>

namespace klined::test {

namespace net = boost::asio;
namespace beast = boost::beast;
namespace websocket = beast::websocket;
using tcp = net::ip::tcp;

struct WsClient::Impl {
  net::io_context ioc;
  websocket::stream<tcp::socket> ws{ioc};
  beast::flat_buffer buf;
  std::thread thread;
  std::deque<std::pair<std::string, bool>> out;  // io thread: frames to write (text?)
  bool writing = false;
  bool paused = false;
  bool reading = false;

  mutable std::mutex mu;
  std::condition_variable cv;
  std::deque<std::string> in;
  bool closed = false;
  bool clean = false;
  int close_code = 0;
  int pongs = 0;
  std::string error;

  void Fail(const std::string& why) {
    std::lock_guard<std::mutex> lock(mu);
    if (!closed) error = why;
    closed = true;
    close_code = ws.reason().code;
    cv.notify_all();
  }

  void DoRead() {
    if (paused || reading) return;
    reading = true;
    ws.async_read(buf, [this](beast::error_code ec, size_t) {
      reading = false;
      if (ec) return Fail(ec.message());
      std::string msg = beast::buffers_to_string(buf.data());
      buf.consume(buf.size());
      {
        std::lock_guard<std::mutex> lock(mu);
        in.push_back(std::move(msg));
      }
      cv.notify_all();
      DoRead();
    });
  }

  void DoWrite() {
    if (writing || out.empty()) return;
    writing = true;
    ws.text(out.front().second);
    ws.async_write(net::buffer(out.front().first), [this](beast::error_code ec, size_t) {
      writing = false;
      out.pop_front();
      if (ec) return Fail(ec.message());
      DoWrite();
    });
  }
};

WsClient::WsClient() : impl_(std::make_unique<Impl>()) {}

WsClient::~WsClient() {
  impl_->ioc.stop();
  if (impl_->thread.joinable()) impl_->thread.join();
}

bool WsClient::Open(int port, const std::string& target) {
  try {
    tcp::endpoint ep(net::ip::make_address("127.0.0.1"), static_cast<unsigned short>(port));
    impl_->ws.next_layer().connect(ep);
    websocket::response_type res;
    beast::error_code ec;
    impl_->ws.handshake(res, "127.0.0.1:" + std::to_string(port), target, ec);
    if (ec) {
      impl_->error = ec.message() + " (HTTP " + std::to_string(res.result_int()) + ")";
      return false;
    }
  } catch (const std::exception& e) {
    impl_->error = e.what();
    return false;
  }
  impl_->ws.control_callback([this](websocket::frame_type kind, beast::string_view) {
    if (kind != websocket::frame_type::pong) return;
    std::lock_guard<std::mutex> lock(impl_->mu);
    ++impl_->pongs;
    impl_->cv.notify_all();
  });
  impl_->DoRead();
  impl_->thread = std::thread([this] {
    auto guard = net::make_work_guard(impl_->ioc);
    impl_->ioc.run();
  });
  return true;
}

void WsClient::Send(const std::string& text) {
  net::post(impl_->ioc, [this, text] {
    impl_->out.emplace_back(text, true);
    impl_->DoWrite();
  });
}

void WsClient::SendBinary(const std::string& data) {
  net::post(impl_->ioc, [this, data] {
    impl_->out.emplace_back(data, false);
    impl_->DoWrite();
  });
}

void WsClient::SendRaw(const std::string& bytes) {
  net::post(impl_->ioc, [this, bytes = std::make_shared<std::string>(bytes)] {
    net::async_write(impl_->ws.next_layer(), net::buffer(*bytes),
                     [bytes](beast::error_code, size_t) {});
  });
}

void WsClient::Ping() {
  net::post(impl_->ioc, [this] { impl_->ws.async_ping({}, [](beast::error_code) {}); });
}

int WsClient::pongs() const {
  std::lock_guard<std::mutex> lock(impl_->mu);
  return impl_->pongs;
}

void WsClient::Close() {
  net::post(impl_->ioc, [this] {
    impl_->ws.async_close(websocket::close_code::normal, [this](beast::error_code ec) {
      std::lock_guard<std::mutex> lock(impl_->mu);
      impl_->clean = !ec;
    });
  });
}

bool WsClient::closed_cleanly() const {
  std::lock_guard<std::mutex> lock(impl_->mu);
  return impl_->clean;
}

int WsClient::close_code() const {
  std::lock_guard<std::mutex> lock(impl_->mu);
  return impl_->close_code;
}

void WsClient::PauseReading() {
  net::post(impl_->ioc, [this] { impl_->paused = true; });
}

std::optional<std::string> WsClient::Read(std::chrono::milliseconds timeout) {
  std::unique_lock<std::mutex> lock(impl_->mu);
  impl_->cv.wait_for(lock, timeout, [this] { return !impl_->in.empty() || impl_->closed; });
  if (impl_->in.empty()) return std::nullopt;
  std::string msg = std::move(impl_->in.front());
  impl_->in.pop_front();
  return msg;
}

bool WsClient::Closed() const {
  std::lock_guard<std::mutex> lock(impl_->mu);
  return impl_->closed;
}

std::string WsClient::error() const {
  std::lock_guard<std::mutex> lock(impl_->mu);
  return impl_->error;
}

}  // namespace klined::test
