// Event construction (see events.h).
#include "worker/events.h"

#include <unistd.h>

#include <ctime>

#include "celery/codec.h"
#include "celery/message.h"

namespace celeriac::worker {

void LogicalClock::adjust(uint64_t other) {
  uint64_t current = value_.load(std::memory_order_relaxed);
  uint64_t next = std::max(current, other) + 1;
  while (!value_.compare_exchange_weak(current, std::max(current, other) + 1)) {
    next = std::max(current, other) + 1;
  }
  (void)next;
}

namespace {
// Python's utcoffset(): hours WEST of UTC (time.timezone // 3600), so 0 on UTC hosts.
int python_utcoffset() {
  time_t now = ::time(nullptr);
  tm local{};
  localtime_r(&now, &local);
  long east = local.tm_gmtoff;
  return static_cast<int>(-east / 3600);
}
}  // namespace

celery::Json make_event(const std::string& type, const std::string& hostname, LogicalClock& clock,
                        const celery::Json& fields) {
  celery::Json e = {{"hostname", hostname},
                    {"utcoffset", python_utcoffset()},
                    {"pid", static_cast<int>(::getpid())},
                    {"clock", clock.forward()},
                    {"timestamp", celery::unix_now()},
                    {"type", type}};
  for (const auto& [k, v] : fields.items()) e[k] = v;
  return e;
}

std::string event_routing_key(const std::string& type) {
  std::string rk = type;
  for (char& c : rk) {
    if (c == '-') c = '.';
  }
  return rk;
}

std::string event_envelope(const celery::Json& body, const std::string& hostname,
                           const std::string& routing_key) {
  return celery::encode_envelope(body, celery::Json{{"hostname", hostname}}, "celeryev",
                                 routing_key, 1);
}

}  // namespace celeriac::worker
