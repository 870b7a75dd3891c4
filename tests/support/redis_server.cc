// Starting and stopping a real redis-server for tests (see redis_server.h).
#include "redis_server.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <fcntl.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <stdexcept>
#include <thread>

#include "redis/connection.h"

namespace celeriac::test_support {

int free_port() {
  int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  addr.sin_port = 0;
  ::bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr);
  socklen_t len = sizeof addr;
  ::getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len);
  int port = ntohs(addr.sin_port);
  ::close(fd);
  return port;
}

RedisServer::RedisServer(bool appendonly) : appendonly_(appendonly) {
  port_ = free_port();
  char tmpl[] = "/tmp/celeriac-redis-XXXXXX";
  dir_ = ::mkdtemp(tmpl);
  start();
}

RedisServer::~RedisServer() {
  stop();
  std::error_code ec;
  std::filesystem::remove_all(dir_, ec);
}

std::string RedisServer::url(int db) const {
  return "redis://127.0.0.1:" + std::to_string(port_) + "/" + std::to_string(db);
}

void RedisServer::start() {
  pid_ = ::fork();
  if (pid_ == 0) {
    // Keep test output readable: the server's start-up banner goes to /dev/null.
    int devnull = ::open("/dev/null", O_WRONLY);
    if (devnull >= 0) ::dup2(devnull, STDOUT_FILENO);
    std::string port = std::to_string(port_);
    const char* aof = appendonly_ ? "yes" : "no";
    ::execlp("redis-server", "redis-server", "--port", port.c_str(), "--bind", "127.0.0.1",
             "--save", "", "--appendonly", aof, "--dir", dir_.c_str(), "--loglevel", "warning",
             static_cast<char*>(nullptr));
    std::perror("exec redis-server");
    std::_Exit(127);
  }
  auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(10);
  while (std::chrono::steady_clock::now() < deadline) {
    try {
      redis::Connection conn(redis::Url::parse(url()));
      if (conn.command({"PING"}).str == "PONG") return;
    } catch (const std::exception&) {
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  std::fprintf(stderr, "redis-server did not start on port %d\n", port_);
  std::abort();
}

void RedisServer::stop() {
  if (pid_ > 0) {
    ::kill(pid_, SIGKILL);
    ::waitpid(pid_, nullptr, 0);
    pid_ = -1;
  }
}

void RedisServer::restart() {
  stop();
  start();
}

void RedisServer::flushall() const {
  redis::Connection conn(redis::Url::parse(url()));
  conn.command({"FLUSHALL"}).ok();
}

}  // namespace celeriac::test_support
