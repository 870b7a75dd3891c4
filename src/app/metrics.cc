#include "app/metrics.h"

#include <iterator>
#include <sstream>

namespace celeriac::app {

namespace {

// Label values escape backslash, quote and newline (the exposition format's rule).
std::string label(const std::string& value) {
  std::string out;
  for (char c : value) {
    if (c == '\\' || c == '"') out.push_back('\\');
    out.push_back(c == '\n' ? 'n' : c);
  }
  return out;
}

}  // namespace

void Metrics::request(const std::string& route, int status, double seconds) {
  std::lock_guard lock(mutex_);
  ++requests_[{route, status}];
  Latency& l = latency_[route];
  for (size_t i = 0; i < std::size(kBuckets); ++i)
    if (seconds <= kBuckets[i]) ++l.buckets[i];
  ++l.count;
  l.sum += seconds;
}

void Metrics::task_submitted(const std::string& task) {
  std::lock_guard lock(mutex_);
  ++tasks_[task];
}

void Metrics::upload(size_t bytes, bool created) {
  std::lock_guard lock(mutex_);
  ++uploads_;
  uploads_new_ += created ? 1 : 0;
  upload_bytes_ += static_cast<long>(bytes);
}

std::string Metrics::render(const std::vector<Gauge>& gauges) const {
  std::lock_guard lock(mutex_);
  std::ostringstream out;
  out << "# HELP celeriac_app_requests_total HTTP requests answered, by route and status.\n"
         "# TYPE celeriac_app_requests_total counter\n";
  for (const auto& [key, n] : requests_)
    out << "celeriac_app_requests_total{route=\"" << label(key.first) << "\",status=\""
        << key.second << "\"} " << n << "\n";
  out << "# HELP celeriac_app_request_seconds Time to answer a request (streams: to open it).\n"
         "# TYPE celeriac_app_request_seconds histogram\n";
  for (const auto& [route, l] : latency_) {
    const std::string r = label(route);
    for (size_t i = 0; i < std::size(kBuckets); ++i)
      out << "celeriac_app_request_seconds_bucket{route=\"" << r << "\",le=\"" << kBuckets[i]
          << "\"} " << l.buckets[i] << "\n";
    out << "celeriac_app_request_seconds_bucket{route=\"" << r << "\",le=\"+Inf\"} " << l.count
        << "\n"
        << "celeriac_app_request_seconds_sum{route=\"" << r << "\"} " << l.sum << "\n"
        << "celeriac_app_request_seconds_count{route=\"" << r << "\"} " << l.count << "\n";
  }
  out << "# HELP celeriac_app_tasks_submitted_total Tasks sent to the queue, by task prompt.\n"
         "# TYPE celeriac_app_tasks_submitted_total counter\n";
  for (const auto& [task, n] : tasks_)
    out << "celeriac_app_tasks_submitted_total{task=\"" << label(task) << "\"} " << n << "\n";
  out << "# HELP celeriac_app_uploads_total Images uploaded (stored: new content).\n"
         "# TYPE celeriac_app_uploads_total counter\n"
         "celeriac_app_uploads_total{stored=\"new\"} "
      << uploads_new_ << "\n"
      << "celeriac_app_uploads_total{stored=\"existing\"} " << uploads_ - uploads_new_ << "\n"
      << "# HELP celeriac_app_upload_bytes_total Bytes of uploaded images.\n"
         "# TYPE celeriac_app_upload_bytes_total counter\n"
         "celeriac_app_upload_bytes_total "
      << upload_bytes_ << "\n";
  for (const Gauge& g : gauges)
    out << "# HELP " << g.name << " " << g.help << "\n# TYPE " << g.name << " gauge\n"
        << g.name << " " << g.value << "\n";
  return out.str();
}

}  // namespace celeriac::app
