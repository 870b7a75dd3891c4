// Boost.Beast HTTP/1.1 with C++20 coroutines (Boost 1.74's asio::awaitable): each connection is
// one coroutine on its own strand, so its reads, writes and stream wake-ups never run at once.
#include "app/http_server.h"

#include <spdlog/spdlog.h>

#include <atomic>
#include <boost/asio.hpp>
#include <boost/beast.hpp>
#include <cctype>
#include <stdexcept>
#include <thread>

#include "celery/json.h"

namespace celeriac::app {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
using tcp = asio::ip::tcp;

std::string HttpRequest::header(const std::string& lower_name) const {
  auto it = headers.find(lower_name);
  return it == headers.end() ? std::string() : it->second;
}

HttpResponse json_error(int status, const std::string& message) {
  return {status, "application/json", celery::Json{{"error", message}}.dump(), {}};
}

void EventStream::send(std::string chunk) {
  std::function<void()> wake;
  {
    std::lock_guard lock(mutex_);
    if (closed_ || finished_) return;
    chunks_.push_back(std::move(chunk));
    wake = wake_;
  }
  if (wake) wake();
}

void EventStream::finish() {
  std::function<void()> wake;
  {
    std::lock_guard lock(mutex_);
    if (closed_ || finished_) return;
    finished_ = true;
    wake = wake_;
  }
  if (wake) wake();
}

void EventStream::on_close(std::function<void()> callback) {
  {
    std::lock_guard lock(mutex_);
    if (!closed_) {
      on_close_.push_back(std::move(callback));
      return;
    }
  }
  callback();  // already closed: run at once
}

bool EventStream::closed() const {
  std::lock_guard lock(mutex_);
  return closed_;
}

void EventStream::attach(std::function<void()> wake) {
  std::lock_guard lock(mutex_);
  wake_ = std::move(wake);
}

bool EventStream::take(std::deque<std::string>& out) {
  std::lock_guard lock(mutex_);
  while (!chunks_.empty()) {
    out.push_back(std::move(chunks_.front()));
    chunks_.pop_front();
  }
  return finished_;
}

void EventStream::close() {
  std::vector<std::function<void()>> callbacks;
  {
    std::lock_guard lock(mutex_);
    if (closed_) return;
    closed_ = true;
    wake_ = nullptr;
    chunks_.clear();
    callbacks.swap(on_close_);
  }
  for (auto& callback : callbacks) callback();
}

namespace {

int hex_value(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

// %XX decoding; `plus_is_space` for query strings (HTML forms encode spaces as '+').
std::string percent_decode(std::string_view s, bool plus_is_space) {
  std::string out;
  out.reserve(s.size());
  for (size_t i = 0; i < s.size(); ++i) {
    if (s[i] == '%' && i + 2 < s.size()) {
      const int hi = hex_value(s[i + 1]), lo = hex_value(s[i + 2]);
      if (hi >= 0 && lo >= 0) {
        out.push_back(static_cast<char>(hi * 16 + lo));
        i += 2;
        continue;
      }
    }
    out.push_back(plus_is_space && s[i] == '+' ? ' ' : s[i]);
  }
  return out;
}

HttpRequest to_request(const http::request<http::string_body>& req, const std::string& remote) {
  HttpRequest out;
  out.method = std::string(req.method_string());
  const std::string_view target(req.target().data(), req.target().size());
  const size_t q = target.find('?');
  out.path = percent_decode(target.substr(0, q), false);
  if (q != std::string_view::npos) {
    std::string_view rest = target.substr(q + 1);
    while (!rest.empty()) {
      const size_t amp = rest.find('&');
      const std::string_view pair = rest.substr(0, amp);
      const size_t eq = pair.find('=');
      if (!pair.empty())
        out.query[percent_decode(pair.substr(0, eq), true)] =
            eq == std::string_view::npos ? "" : percent_decode(pair.substr(eq + 1), true);
      if (amp == std::string_view::npos) break;
      rest = rest.substr(amp + 1);
    }
  }
  for (const auto& field : req) {
    std::string name(field.name_string());
    for (char& c : name) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
    out.headers[name] = std::string(field.value());
  }
  out.body = req.body();
  out.remote = remote;
  return out;
}

template <typename Body>
void apply_response_fields(http::response<Body>& res, const HttpResponse& r) {
  res.set(http::field::server, "celeriac");
  res.set(http::field::content_type, r.content_type);
  for (const auto& [name, value] : r.headers) res.set(name, value);
}

}  // namespace

struct HttpServer::Impl {
  ServerOptions options;
  HttpHandler handler;
  asio::io_context io;
  tcp::acceptor acceptor{io};
  std::atomic<size_t> open{0};

  asio::awaitable<void> accept_loop();
  asio::awaitable<void> serve(tcp::socket socket);
  asio::awaitable<void> write_simple(beast::tcp_stream& stream, const HttpResponse& r,
                                     unsigned version, bool keep_alive, beast::error_code& ec);
  asio::awaitable<void> stream_events(beast::tcp_stream& stream, const HttpReply& reply,
                                      unsigned version);
};

asio::awaitable<void> HttpServer::Impl::accept_loop() {
  for (;;) {
    beast::error_code ec;
    tcp::socket socket = co_await acceptor.async_accept(
        asio::make_strand(io), asio::redirect_error(asio::use_awaitable, ec));
    if (ec == asio::error::operation_aborted) co_return;  // stop()
    if (ec) {
      // Out of descriptors or a connection reset before accept: keep serving the others.
      spdlog::warn("event=http-accept-failed error=\"{}\"", ec.message());
      asio::steady_timer pause(io, std::chrono::milliseconds(50));
      co_await pause.async_wait(asio::redirect_error(asio::use_awaitable, ec));
      continue;
    }
    const auto executor = socket.get_executor();
    asio::co_spawn(executor, serve(std::move(socket)), asio::detached);
  }
}

asio::awaitable<void> HttpServer::Impl::write_simple(beast::tcp_stream& stream,
                                                     const HttpResponse& r, unsigned version,
                                                     bool keep_alive, beast::error_code& ec) {
  http::response<http::string_body> res{static_cast<http::status>(r.status), version};
  apply_response_fields(res, r);
  res.keep_alive(keep_alive);
  res.body() = r.body;
  res.prepare_payload();
  co_await http::async_write(stream, res, asio::redirect_error(asio::use_awaitable, ec));
}

asio::awaitable<void> HttpServer::Impl::serve(tcp::socket socket) {
  struct Count {  // this connection in `open` while the coroutine lives
    std::atomic<size_t>& n;
    explicit Count(std::atomic<size_t>& c) : n(c) { ++n; }
    ~Count() { --n; }
  } count(open);
  beast::error_code ec;
  const auto peer = socket.remote_endpoint(ec);
  const std::string remote =
      ec ? "?" : peer.address().to_string() + ":" + std::to_string(peer.port());
  beast::tcp_stream stream(std::move(socket));
  beast::flat_buffer buffer;
  if (open.load() > options.max_connections) {
    spdlog::warn("event=http-refused reason=too-many-connections open={}", open.load());
    co_await write_simple(stream, json_error(503, "too many open connections"), 11, false, ec);
    stream.socket().shutdown(tcp::socket::shutdown_send, ec);
    co_return;
  }
  for (;;) {
    http::request_parser<http::string_body> parser;
    parser.header_limit(16 * 1024);
    parser.body_limit(options.max_body_bytes);
    stream.expires_after(options.read_timeout);
    co_await http::async_read_header(stream, buffer, parser,
                                     asio::redirect_error(asio::use_awaitable, ec));
    if (ec == http::error::end_of_stream || ec == beast::error::timeout ||
        ec == asio::error::connection_reset || ec == asio::error::eof)
      break;  // the client went, or idled past the timeout: nothing to answer
    if (ec == http::error::body_limit) {  // a Content-Length over the limit: refused unread
      spdlog::info("event=http-body-too-large remote={}", remote);
      co_await write_simple(stream,
                            json_error(413, "request body is larger than the limit of " +
                                                std::to_string(options.max_body_bytes) + " bytes"),
                            11, false, ec);
      break;
    }
    if (ec) {
      const bool too_big = ec == http::error::header_limit;
      spdlog::info("event=http-bad-request remote={} error=\"{}\"", remote, ec.message());
      co_await write_simple(stream,
                            json_error(too_big ? 431 : 400, "malformed request: " + ec.message()),
                            11, false, ec);
      break;
    }
    const unsigned version = parser.get().version();
    if (beast::iequals(parser.get()[http::field::expect], "100-continue")) {
      http::response<http::empty_body> cont{http::status::continue_, version};
      co_await http::async_write(stream, cont, asio::redirect_error(asio::use_awaitable, ec));
      if (ec) break;
    }
    if (!parser.is_done()) {
      co_await http::async_read(stream, buffer, parser,
                                asio::redirect_error(asio::use_awaitable, ec));
      if (ec == http::error::body_limit) {
        co_await write_simple(
            stream,
            json_error(413, "request body is larger than the limit of " +
                                std::to_string(options.max_body_bytes) + " bytes"),
            version, false, ec);
        break;
      }
      if (ec) break;  // cut off or timed out mid-body
    }
    stream.expires_never();
    const auto& req = parser.get();
    const bool keep_alive = req.keep_alive();
    HttpReply reply;
    const auto started = std::chrono::steady_clock::now();
    const HttpRequest request = to_request(req, remote);
    try {
      reply = handler(request);
    } catch (const std::exception& e) {
      spdlog::error("event=http-handler-failed method={} path={} error=\"{}\"", request.method,
                    request.path, e.what());
      reply = {json_error(500, "internal error"), nullptr};
    }
    spdlog::debug(
        "event=http-request method={} path={} status={} ms={:.2f} remote={}", request.method,
        request.path, reply.response.status,
        std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - started)
            .count(),
        remote);
    if (reply.stream) {
      co_await stream_events(stream, reply, version);
      break;
    }
    co_await write_simple(stream, reply.response, version, keep_alive, ec);
    if (ec || !keep_alive) break;
  }
  stream.socket().shutdown(tcp::socket::shutdown_send, ec);
}

asio::awaitable<void> HttpServer::Impl::stream_events(beast::tcp_stream& stream,
                                                      const HttpReply& reply, unsigned version) {
  const std::shared_ptr<EventStream> events = reply.stream;
  const auto opened = std::chrono::steady_clock::now();
  beast::error_code ec;
  http::response<http::empty_body> res{static_cast<http::status>(reply.response.status), version};
  apply_response_fields(res, reply.response);
  res.set(http::field::cache_control, "no-cache");
  res.set("X-Accel-Buffering", "no");  // proxies (nginx) must not hold events back
  res.keep_alive(false);
  res.chunked(true);
  http::response_serializer<http::empty_body> head(res);
  co_await http::async_write_header(stream, head, asio::redirect_error(asio::use_awaitable, ec));
  // The timer is the coroutine's doorbell: producers cancel it (on this strand) after queueing.
  const auto executor = co_await asio::this_coro::executor;
  auto bell = std::make_shared<asio::steady_timer>(executor);
  events->attach([bell, executor] { asio::post(executor, [bell] { bell->cancel(); }); });
  std::deque<std::string> pending;
  while (!ec) {
    const bool finished = events->take(pending);
    if (!pending.empty()) {
      for (; !pending.empty() && !ec; pending.pop_front())
        co_await asio::async_write(stream, http::make_chunk(asio::buffer(pending.front())),
                                   asio::redirect_error(asio::use_awaitable, ec));
      continue;  // what came during the writes (its wake-up found no wait to cancel)
    }
    if (finished) {
      co_await asio::async_write(stream, http::make_chunk_last(),
                                 asio::redirect_error(asio::use_awaitable, ec));
      break;
    }
    bell->expires_after(options.heartbeat);
    beast::error_code waited;
    co_await bell->async_wait(asio::redirect_error(asio::use_awaitable, waited));
    if (!waited) {  // no event for a while: a comment line, which also finds a vanished client
      static const std::string kHeartbeat = ": keep-alive\n\n";
      co_await asio::async_write(stream, http::make_chunk(asio::buffer(kHeartbeat)),
                                 asio::redirect_error(asio::use_awaitable, ec));
    }
  }
  events->close();
  spdlog::debug("event=http-stream-closed s={:.3f} error=\"{}\"",
                std::chrono::duration<double>(std::chrono::steady_clock::now() - opened).count(),
                ec ? ec.message() : "");
}

HttpServer::HttpServer(ServerOptions options, HttpHandler handler)
    : impl_(std::make_unique<Impl>()) {
  impl_->options = std::move(options);
  impl_->handler = std::move(handler);
  beast::error_code ec;
  const auto address = asio::ip::make_address(impl_->options.host, ec);
  if (ec) throw std::runtime_error("app: bad listen address " + impl_->options.host);
  const tcp::endpoint endpoint(address, static_cast<unsigned short>(impl_->options.port));
  auto& acceptor = impl_->acceptor;
  acceptor.open(endpoint.protocol(), ec);
  if (!ec) acceptor.set_option(asio::socket_base::reuse_address(true), ec);
  if (!ec) acceptor.bind(endpoint, ec);
  if (!ec) acceptor.listen(asio::socket_base::max_listen_connections, ec);
  if (ec)
    throw std::runtime_error("app: cannot listen on " + impl_->options.host + ":" +
                             std::to_string(impl_->options.port) + ": " + ec.message());
  asio::co_spawn(impl_->io, impl_->accept_loop(), asio::detached);
}

HttpServer::~HttpServer() = default;

int HttpServer::port() const { return impl_->acceptor.local_endpoint().port(); }

size_t HttpServer::connections() const { return impl_->open.load(); }

void HttpServer::run() {
  std::vector<std::thread> extra;
  for (int i = 1; i < impl_->options.threads; ++i) extra.emplace_back([this] { impl_->io.run(); });
  impl_->io.run();
  for (auto& t : extra) t.join();
}

void HttpServer::stop() { impl_->io.stop(); }

}  // namespace celeriac::app
