// Redis connection URLs as Celery and redis-py accept them:
//   redis://[[user]:password@]host[:port][/db]   rediss:// (TLS, refused for now: no transport)
//   unix://[[user]:password@]/path/to/socket[?db=N]
// Query parameter `db=N` is honoured for both forms; the path segment wins for redis://.
#pragma once

#include <string>
#include <string_view>

namespace celeriac::redis {

struct Url {
  std::string host = "127.0.0.1";
  int port = 6379;
  std::string unix_socket;  // set for unix:// URLs; host/port unused then
  std::string username;     // Redis 6 ACL user; empty = default user
  std::string password;     // empty = no AUTH
  int db = 0;
  bool tls = false;

  // Throws std::invalid_argument with a message that never contains the password.
  static Url parse(std::string_view text);

  // The URL with the password replaced by "***", for logs.
  std::string redacted() const;
  // The URL as given back to Celery-style consumers (password included).
  std::string to_string() const;
  // Same server and credentials (the database may differ): one connection can serve both.
  bool same_server(const Url& other) const;
};

}  // namespace celeriac::redis
