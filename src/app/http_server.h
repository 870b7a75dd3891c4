// The gateway's HTTP/1.1 server on Boost.Beast: one coroutine per connection on a strand of a
// shared io_context, so thousands of idle server-sent-event clients cost a socket and a few KB
// each, not a thread (the architecture asks for >= 1,000 SSE clients on 2 cores).
//
//   HttpServer server(options, [](const HttpRequest& req) -> HttpReply { ... });
//   server.run();   // blocks until stop() (from any thread or a signal handler's thread)
//
// The server enforces the limits every route shares (header and body size, read timeout, open
// connections) and answers those errors itself; the handler sees only whole, well-formed
// requests. A handler runs on an I/O thread: it may block briefly (a Redis round trip), not for
// long. To stream, it returns an EventStream and feeds it from any thread.
#pragma once

#include <chrono>
#include <cstddef>
#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <utility>
#include <vector>

namespace celeriac::app {

struct HttpRequest {
  std::string method;                          // "GET", "POST", ...
  std::string path;                            // the target before '?', percent-decoded
  std::map<std::string, std::string> query;    // decoded ?a=b&c=d
  std::map<std::string, std::string> headers;  // names lower-cased
  std::string body;
  std::string remote;  // peer address, for logs

  std::string header(const std::string& lower_name) const;  // "" when absent
};

struct HttpResponse {
  int status = 200;
  std::string content_type = "application/json";
  std::string body;
  std::vector<std::pair<std::string, std::string>> headers;  // extra ones
};

// Chunks for a text/event-stream response, produced by any thread, written by the connection's
// coroutine in order. The connection closes the stream when the client goes away, and then runs
// the on_close callbacks (where producers unregister).
class EventStream {
 public:
  void send(std::string chunk);  // one or more complete SSE events
  void finish();                 // the last chunk is queued: close after writing it
  void on_close(std::function<void()> callback);
  bool closed() const;

  // For the server's connection coroutine.
  void attach(std::function<void()> wake);  // called (from any thread) after send()/finish()
  bool take(std::deque<std::string>& out);  // moves queued chunks out; true when finished
  void close();                             // idempotent; runs the callbacks once

 private:
  mutable std::mutex mutex_;
  std::deque<std::string> chunks_;
  bool finished_ = false, closed_ = false;
  std::function<void()> wake_;
  std::vector<std::function<void()>> on_close_;
};

struct HttpReply {
  HttpResponse response;                // with a stream: its status, type and extra headers
  std::shared_ptr<EventStream> stream;  // set: the body is this stream, not response.body
};

using HttpHandler = std::function<HttpReply(const HttpRequest&)>;

struct ServerOptions {
  std::string host = "127.0.0.1";         // listen address ("0.0.0.0" in containers)
  int port = 8080;                        // 0 = any free port (see HttpServer::port)
  int threads = 2;                        // I/O threads
  size_t max_body_bytes = 8u << 20;       // larger bodies get 413
  std::chrono::seconds read_timeout{30};  // a request must arrive whole within this (and
                                          // an idle keep-alive connection closes after it)
  std::chrono::seconds heartbeat{15};     // SSE comment line so proxies keep the stream
  size_t max_connections = 20000;         // more get 503 and are closed
};

class HttpServer {
 public:
  // Binds and listens at once (throws std::runtime_error if it cannot).
  HttpServer(ServerOptions options, HttpHandler handler);
  ~HttpServer();
  int port() const;  // the bound port
  void run();        // serves on options.threads threads (this one included) until stop()
  void stop();       // any thread
  size_t connections() const;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

// "application/json" bodies for errors, the same shape on every route: {"error": message}.
HttpResponse json_error(int status, const std::string& message);

}  // namespace celeriac::app
