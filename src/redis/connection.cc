// hiredis-backed implementation of Connection (see connection.h).
#include "redis/connection.h"

#include <hiredis/hiredis.h>
#include <poll.h>
#include <sys/time.h>

#include <cstring>

namespace celeriac::redis {
namespace {

timeval to_timeval(std::chrono::milliseconds ms) {
  timeval tv{};
  tv.tv_sec = ms.count() / 1000;
  tv.tv_usec = (ms.count() % 1000) * 1000;
  return tv;
}

Reply convert(const redisReply* r) {
  Reply out;
  switch (r->type) {
    case REDIS_REPLY_STRING:
      out.type = Reply::Type::String;
      out.str.assign(r->str, r->len);
      break;
    case REDIS_REPLY_STATUS:
      out.type = Reply::Type::Status;
      out.str.assign(r->str, r->len);
      break;
    case REDIS_REPLY_ERROR:
      out.type = Reply::Type::Error;
      out.str.assign(r->str, r->len);
      break;
    case REDIS_REPLY_INTEGER:
      out.type = Reply::Type::Integer;
      out.integer = r->integer;
      break;
    case REDIS_REPLY_ARRAY:
      out.type = Reply::Type::Array;
      out.elements.reserve(r->elements);
      for (size_t i = 0; i < r->elements; ++i) out.elements.push_back(convert(r->element[i]));
      break;
    default:
      out.type = Reply::Type::Nil;
  }
  return out;
}

}  // namespace

const Reply& Reply::ok() const {
  if (type == Type::Error) throw ReplyError(str);
  return *this;
}

Connection::Connection(Url url, ConnectOptions options)
    : url_(std::move(url)), options_(options) {
  if (url_.tls) throw ConnectionError("rediss:// (TLS) is not supported by this build's transport");
  connect();
}

Connection::~Connection() {
  if (ctx_) redisFree(ctx_);
}

void Connection::reconnect() {
  if (ctx_) {
    redisFree(ctx_);
    ctx_ = nullptr;
  }
  connect();
}

void Connection::connect() {
  timeval tv = to_timeval(options_.connect_timeout);
  redisContext* c = url_.unix_socket.empty()
                        ? redisConnectWithTimeout(url_.host.c_str(), url_.port, tv)
                        : redisConnectUnixWithTimeout(url_.unix_socket.c_str(), tv);
  if (c == nullptr) throw ConnectionError("redis: out of memory creating a connection");
  if (c->err) {
    std::string msg = "redis: cannot connect to " + url_.redacted() + ": " + c->errstr;
    redisFree(c);
    throw ConnectionError(msg);
  }
  ctx_ = c;
  if (url_.unix_socket.empty()) redisEnableKeepAlive(ctx_);
  if (options_.command_timeout.count() > 0) redisSetTimeout(ctx_, to_timeval(options_.command_timeout));
  if (!url_.password.empty()) {
    Args auth = url_.username.empty() ? Args{"AUTH", url_.password}
                                      : Args{"AUTH", url_.username, url_.password};
    Reply r = command(auth);
    // The reply text is safe to show: Redis never echoes the password.
    if (r.is_error()) {
      redisFree(ctx_);
      ctx_ = nullptr;
      throw ConnectionError("redis: authentication failed for " + url_.redacted() + ": " + r.str);
    }
  }
  if (url_.db != 0) {
    Reply r = command({"SELECT", std::to_string(url_.db)});
    if (r.is_error()) {
      redisFree(ctx_);
      ctx_ = nullptr;
      throw ConnectionError("redis: SELECT " + std::to_string(url_.db) + " failed: " + r.str);
    }
  }
}

void Connection::fail(const std::string& what) {
  std::string msg = "redis: " + what + " (" + url_.redacted() + ")";
  if (ctx_) {
    if (ctx_->err) msg += ": " + std::string(ctx_->errstr);
    redisFree(ctx_);
    ctx_ = nullptr;
  }
  throw ConnectionError(msg);
}

void Connection::append(const Args& args) {
  if (!ctx_) reconnect();
  std::vector<const char*> argv(args.size());
  std::vector<size_t> lens(args.size());
  for (size_t i = 0; i < args.size(); ++i) {
    argv[i] = args[i].data();
    lens[i] = args[i].size();
  }
  if (redisAppendCommandArgv(ctx_, static_cast<int>(args.size()), argv.data(), lens.data()) !=
      REDIS_OK) {
    fail("cannot queue a command");
  }
}

void Connection::flush() {
  if (!ctx_) fail("not connected");
  int done = 0;
  while (!done) {
    if (redisBufferWrite(ctx_, &done) != REDIS_OK) fail("write failed");
  }
}

std::optional<Reply> Connection::read_reply(std::chrono::milliseconds timeout) {
  // Flush what append() queued, then wait for bytes with poll() so a timeout leaves the
  // connection usable (a socket timeout inside hiredis would poison the context).
  flush();
  auto deadline = std::chrono::steady_clock::now() + timeout;
  while (true) {
    void* raw = nullptr;
    if (redisReaderGetReply(ctx_->reader, &raw) != REDIS_OK) fail("protocol error");
    if (raw != nullptr) {
      Reply out = convert(static_cast<redisReply*>(raw));
      freeReplyObject(raw);
      return out;
    }
    int wait_ms = -1;
    if (timeout.count() >= 0) {
      auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
          deadline - std::chrono::steady_clock::now());
      if (left.count() <= 0) return std::nullopt;
      wait_ms = static_cast<int>(left.count());
    }
    pollfd pfd{ctx_->fd, POLLIN, 0};
    int n = ::poll(&pfd, 1, wait_ms);
    if (n < 0) {
      if (errno == EINTR) continue;
      fail("poll failed");
    }
    if (n == 0) return std::nullopt;
    if (redisBufferRead(ctx_) != REDIS_OK) fail("connection lost");
  }
}

Reply Connection::command(const Args& args) {
  append(args);
  auto timeout = options_.command_timeout.count() > 0 ? options_.command_timeout
                                                      : std::chrono::milliseconds(-1);
  auto reply = read_reply(timeout);
  if (!reply) fail("timed out waiting for a reply to " + args.at(0));
  return std::move(*reply);
}

Reply Connection::command(std::initializer_list<std::string_view> args) {
  Args a;
  a.reserve(args.size());
  for (auto s : args) a.emplace_back(s);
  return command(a);
}

std::vector<Reply> Connection::pipeline(const std::vector<Args>& commands) {
  for (const auto& c : commands) append(c);
  std::vector<Reply> replies;
  replies.reserve(commands.size());
  auto timeout = options_.command_timeout.count() > 0 ? options_.command_timeout
                                                      : std::chrono::milliseconds(-1);
  for (size_t i = 0; i < commands.size(); ++i) {
    auto reply = read_reply(timeout);
    if (!reply) fail("timed out waiting for pipelined replies");
    replies.push_back(std::move(*reply));
  }
  return replies;
}

Args Script::evalsha_command(const std::string& sha, const Args& keys, const Args& args) const {
  Args cmd{"EVALSHA", sha, std::to_string(keys.size())};
  cmd.insert(cmd.end(), keys.begin(), keys.end());
  cmd.insert(cmd.end(), args.begin(), args.end());
  return cmd;
}

void Script::load(Connection& conn) const {
  Reply r = conn.command({"SCRIPT", "LOAD", source_});
  r.ok();
  std::lock_guard lock(mutex_);
  sha_ = r.str;
}

Reply Script::run(Connection& conn, const Args& keys, const Args& args) const {
  std::string sha;
  {
    std::lock_guard lock(mutex_);
    sha = sha_;
  }
  if (sha.empty()) {
    load(conn);
    std::lock_guard lock(mutex_);
    sha = sha_;
  }
  Reply r = conn.command(evalsha_command(sha, keys, args));
  if (r.is_error() && r.str.starts_with("NOSCRIPT")) {
    load(conn);
    r = conn.command(evalsha_command(sha, keys, args));
  }
  return r;
}

}  // namespace celeriac::redis
