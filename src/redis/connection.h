// One synchronous connection to Redis over hiredis: commands, pipelines, Lua scripts, pub/sub.
//
// A Connection is used by one thread at a time. Errors are typed so callers can tell a broken
// connection (reconnect and retry) from a command Redis refused (a bug or bad data).
// The transport is hiredis's own socket code today; keep this interface narrow so a TLS
// transport can replace it without touching the broker.
#pragma once

#include <chrono>
#include <memory>
#include <mutex>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

#include "redis/url.h"

struct redisContext;
struct redisReply;

namespace celeriac::redis {

// The connection is unusable (refused, reset, timed out); reconnect.
struct ConnectionError : std::runtime_error {
  using std::runtime_error::runtime_error;
};
// Redis answered with an error reply (-ERR ...).
struct ReplyError : std::runtime_error {
  using std::runtime_error::runtime_error;
};

// An owned copy of one RESP2 reply.
struct Reply {
  enum class Type { Nil, String, Status, Integer, Array, Error };
  Type type = Type::Nil;
  std::string str;  // String, Status, Error
  long long integer = 0;
  std::vector<Reply> elements;

  bool is_nil() const { return type == Type::Nil; }
  bool is_error() const { return type == Type::Error; }
  // Throws ReplyError for an error reply, returns *this otherwise.
  const Reply& ok() const;
};

using Args = std::vector<std::string>;

struct ConnectOptions {
  std::chrono::milliseconds connect_timeout{5000};
  // Socket read/write timeout for ordinary commands; 0 = none. Blocking commands pass their own.
  std::chrono::milliseconds command_timeout{30000};
};

class Connection {
 public:
  explicit Connection(Url url, ConnectOptions options = {});
  ~Connection();
  Connection(const Connection&) = delete;
  Connection& operator=(const Connection&) = delete;

  // Drops the socket and connects again (AUTH, SELECT db). Throws ConnectionError.
  void reconnect();
  bool connected() const { return ctx_ != nullptr; }
  const Url& url() const { return url_; }

  // One command, binary safe. Error replies are returned (check with ok()), I/O errors throw.
  Reply command(const Args& args);
  Reply command(std::initializer_list<std::string_view> args);

  // Several commands in one round trip; replies in order.
  std::vector<Reply> pipeline(const std::vector<Args>& commands);

  // Queues a command without reading its reply (for pipelines and pub/sub).
  void append(const Args& args);
  // Writes what append() queued to the socket without waiting for replies. Once it returns,
  // the bytes are the kernel's: they reach Redis even if this process dies the next instant.
  void flush();
  // Reads the next reply; nullopt when none arrives within `timeout` (negative = wait forever).
  std::optional<Reply> read_reply(std::chrono::milliseconds timeout);

 private:
  void connect();
  void fail(const std::string& what);  // closes the socket and throws ConnectionError

  Url url_;
  ConnectOptions options_;
  redisContext* ctx_ = nullptr;
};

// A Lua script run by EVALSHA. Its SHA-1 comes from Redis (SCRIPT LOAD) on first use, and
// the script is loaded again after NOSCRIPT (a restarted or flushed Redis forgets scripts).
// Shared by threads: each passes its own connection.
class Script {
 public:
  explicit Script(std::string source) : source_(std::move(source)) {}
  Reply run(Connection& conn, const Args& keys, const Args& args) const;
  void load(Connection& conn) const;
  const std::string& source() const { return source_; }

 private:
  Args evalsha_command(const std::string& sha, const Args& keys, const Args& args) const;
  std::string source_;
  mutable std::mutex mutex_;
  mutable std::string sha_;  // empty until loaded
};

}  // namespace celeriac::redis
