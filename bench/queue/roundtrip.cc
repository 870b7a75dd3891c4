// Sequential round trips through the C++ client: send tasks.add, wait for its result, repeat.
// Prints one JSON line with p50/p99/mean latency in milliseconds.
//   celeriac_bench_roundtrip BROKER_URL BACKEND_URL COUNT
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <string>
#include <vector>

#include "client/app.h"

int main(int argc, char** argv) {
  if (argc < 4) {
    std::fprintf(stderr, "usage: %s BROKER_URL BACKEND_URL COUNT\n", argv[0]);
    return 64;
  }
  auto app = celeriac::client::App::create(argv[1], argv[2]);
  int count = std::stoi(argv[3]);
  std::vector<double> ms;
  ms.reserve(count);
  for (int i = 0; i < count + 50; ++i) {
    auto start = std::chrono::steady_clock::now();
    auto r = app->send_task("tasks.add", {i, 1});
    if (r.get(std::chrono::seconds(10)) != i + 1) return 1;
    double took = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - start).count();
    if (i >= 50) ms.push_back(took);  // first 50 warm up connections
  }
  std::sort(ms.begin(), ms.end());
  double mean = 0;
  for (double v : ms) mean += v;
  mean /= ms.size();
  std::printf("{\"n\": %d, \"p50_ms\": %.3f, \"p99_ms\": %.3f, \"mean_ms\": %.3f}\n", count,
              ms[ms.size() / 2], ms[ms.size() * 99 / 100], mean);
  return 0;
}
