// The gateway's Prometheus metrics (text exposition format 0.0.4): requests by route and
// status with a latency histogram, tasks submitted by task prompt, uploads and their bytes.
// Gauges that other parts own (open streams, connections) are passed to render().
#pragma once

#include <map>
#include <mutex>
#include <string>
#include <utility>
#include <vector>

namespace celeriac::app {

class Metrics {
 public:
  void request(const std::string& route, int status, double seconds);
  void task_submitted(const std::string& task);
  void upload(size_t bytes, bool created);

  struct Gauge {
    std::string name, help;
    double value;
  };
  std::string render(const std::vector<Gauge>& gauges) const;

 private:
  static constexpr double kBuckets[] = {0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1, 5};
  struct Latency {
    std::vector<long> buckets = std::vector<long>(std::size(kBuckets), 0);
    long count = 0;
    double sum = 0;
  };
  mutable std::mutex mutex_;
  std::map<std::pair<std::string, int>, long> requests_;
  std::map<std::string, Latency> latency_;
  std::map<std::string, long> tasks_;
  long uploads_ = 0, uploads_new_ = 0, upload_bytes_ = 0;
};

}  // namespace celeriac::app
