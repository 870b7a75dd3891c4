// The gateway's HTTP server against a real client on 127.0.0.1 (Beast's synchronous one).
#include "app/http_server.h"

#include <gtest/gtest.h>

#include <atomic>
#include <boost/asio.hpp>
#include <boost/beast.hpp>
#include <thread>

namespace celeriac::app {
namespace {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
using tcp = asio::ip::tcp;

// A server on a free port, served by a background thread for the test's lifetime.
struct Running {
  explicit Running(HttpHandler handler, ServerOptions options = {}) {
    options.port = 0;
    server = std::make_unique<HttpServer>(options, std::move(handler));
    thread = std::thread([this] { server->run(); });
  }
  ~Running() {
    server->stop();
    thread.join();
  }
  std::unique_ptr<HttpServer> server;
  std::thread thread;
};

struct Client {
  explicit Client(int port) : stream(io) {
    stream.connect(tcp::endpoint(asio::ip::make_address("127.0.0.1"), port));
  }
  http::response<http::string_body> send(http::verb method, const std::string& target,
                                         const std::string& body = "") {
    http::request<http::string_body> req{method, target, 11};
    req.set(http::field::host, "127.0.0.1");
    req.body() = body;
    req.prepare_payload();
    http::write(stream, req);
    http::response<http::string_body> res;
    http::read(stream, buffer, res);
    return res;
  }
  asio::io_context io;
  beast::tcp_stream stream;
  beast::flat_buffer buffer;
};

TEST(HttpServer, AnswersAndKeepsTheConnection) {
  std::atomic<int> calls{0};
  Running r([&](const HttpRequest& req) {
    ++calls;
    return HttpReply{{200,
                      "text/plain",
                      req.method + " " + req.path +
                          " q=" + (req.query.count("q") ? req.query.at("q") : "") + " " + req.body,
                      {{"X-Test", "1"}}},
                     nullptr};
  });
  Client c(r.server->port());
  auto a = c.send(http::verb::get, "/a%20b?q=x+y%21");
  EXPECT_EQ(a.result_int(), 200);
  EXPECT_EQ(a.body(), "GET /a b q=x y! ");
  EXPECT_EQ(a["X-Test"], "1");
  auto b = c.send(http::verb::post, "/p", "hello");  // same connection
  EXPECT_EQ(b.body(), "POST /p q= hello");
  EXPECT_EQ(calls.load(), 2);
}

TEST(HttpServer, RefusesOversizedAndMalformedRequestsItself) {
  std::atomic<int> calls{0};
  ServerOptions options;
  options.max_body_bytes = 100;
  Running r(
      [&](const HttpRequest&) {
        ++calls;
        return HttpReply{{200, "text/plain", "ok", {}}, nullptr};
      },
      options);
  {
    Client c(r.server->port());
    EXPECT_EQ(c.send(http::verb::post, "/", std::string(101, 'x')).result_int(), 413);
  }
  {
    Client c(r.server->port());
    asio::write(c.stream, asio::buffer(std::string("NOT HTTP AT ALL\r\n\r\n")));
    http::response<http::string_body> res;
    http::read(c.stream, c.buffer, res);
    EXPECT_EQ(res.result_int(), 400);
  }
  EXPECT_EQ(calls.load(), 0);
  Client c(r.server->port());
  EXPECT_EQ(c.send(http::verb::post, "/", std::string(100, 'x')).result_int(), 200);
}

TEST(HttpServer, AHandlerThatThrowsIsA500AndTheServerGoesOn) {
  Running r([](const HttpRequest& req) -> HttpReply {
    if (req.path == "/boom") throw std::runtime_error("secret detail");
    return {{200, "text/plain", "fine", {}}, nullptr};
  });
  Client c(r.server->port());
  auto res = c.send(http::verb::get, "/boom");
  EXPECT_EQ(res.result_int(), 500);
  EXPECT_EQ(res.body().find("secret"), std::string::npos);
  EXPECT_EQ(Client(r.server->port()).send(http::verb::get, "/").body(), "fine");
}

TEST(HttpServer, StreamsEventsFromAnotherThreadAndClosesAfterTheLast) {
  std::shared_ptr<EventStream> stream = std::make_shared<EventStream>();
  std::atomic<bool> closed{false};
  stream->on_close([&] { closed = true; });
  Running r([&](const HttpRequest&) {
    return HttpReply{{200, "text/event-stream", "", {}}, stream};
  });
  std::thread producer([&] {
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
    stream->send("event: state\ndata: 1\n\n");
    stream->send("event: state\ndata: 2\n\n");
    stream->finish();
  });
  Client c(r.server->port());
  auto res = c.send(http::verb::get, "/events");  // reads to the end of the chunked body
  producer.join();
  EXPECT_EQ(res[http::field::content_type], "text/event-stream");
  EXPECT_EQ(res.body(), "event: state\ndata: 1\n\nevent: state\ndata: 2\n\n");
  for (int i = 0; i < 100 && !closed; ++i)
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  EXPECT_TRUE(closed.load());
}

TEST(HttpServer, AStreamWhoseClientLeftIsClosedAtTheNextHeartbeat) {
  auto stream = std::make_shared<EventStream>();
  std::atomic<bool> closed{false};
  stream->on_close([&] { closed = true; });
  ServerOptions options;
  options.heartbeat = std::chrono::seconds(1);
  Running r(
      [&](const HttpRequest&) {
        return HttpReply{{200, "text/event-stream", "", {}}, stream};
      },
      options);
  {
    Client c(r.server->port());
    http::request<http::string_body> req{http::verb::get, "/events", 11};
    http::write(c.stream, req);
    http::response_parser<http::string_body> head;
    http::read_header(c.stream, c.buffer, head);
    EXPECT_EQ(head.get().result_int(), 200);
  }  // the client goes away
  for (int i = 0; i < 400 && !closed; ++i)
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  EXPECT_TRUE(closed.load());
  stream->send("after close");  // ignored, no crash
}

}  // namespace
}  // namespace celeriac::app
