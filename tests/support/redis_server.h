// A real redis-server (the Debian package) started on a free loopback port for one test
// binary, with no persistence unless asked. Tests talk to real Redis, never to a mock.
#pragma once

#include <string>
#include <sys/types.h>

namespace celeriac::test_support {

class RedisServer {
 public:
  // Starts redis-server and waits until it answers PING. Aborts the test binary on failure.
  explicit RedisServer(bool appendonly = false);
  ~RedisServer();
  RedisServer(const RedisServer&) = delete;
  RedisServer& operator=(const RedisServer&) = delete;

  int port() const { return port_; }
  std::string url(int db = 0) const;
  void flushall() const;
  // Stops the server (SIGKILL) and starts it again on the same port and data directory.
  void restart();

 private:
  void start();
  void stop();
  int port_ = 0;
  pid_t pid_ = -1;
  bool appendonly_ = false;
  std::string dir_;
};

// A free TCP port on 127.0.0.1 (bound and released; good enough for tests).
int free_port();

}  // namespace celeriac::test_support
