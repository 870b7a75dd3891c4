// A GoogleTest fixture owning one real redis-server per test suite, flushed before each test.
#pragma once

#include <gtest/gtest.h>

#include "redis_server.h"

namespace celeriac::test_support {

class RedisTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() { server = new RedisServer(); }
  static void TearDownTestSuite() {
    delete server;
    server = nullptr;
  }
  void SetUp() override { server->flushall(); }

  inline static RedisServer* server = nullptr;
};

}  // namespace celeriac::test_support
