// Monitoring events as Celery sends them (celery-on-redis.md §7): JSON objects with type,
// hostname, timestamp, utcoffset, pid and a Lamport clock, published on the `celeryev`
// fan-out exchange with routing key = type with '-' replaced by '.'. Task events of one batch
// go out together as a JSON array under routing key task.multi, as Celery's worker does.
#pragma once

#include <atomic>
#include <cstdint>
#include <string>

#include "celery/json.h"

namespace celeriac::worker {

// Lamport clock shared by events and remote-control replies.
class LogicalClock {
 public:
  uint64_t forward() { return value_.fetch_add(1, std::memory_order_relaxed) + 1; }
  void adjust(uint64_t other);
  uint64_t value() const { return value_.load(std::memory_order_relaxed); }

 private:
  std::atomic<uint64_t> value_{0};
};

// An event object with the common fields filled in; `fields` are merged in.
celery::Json make_event(const std::string& type, const std::string& hostname, LogicalClock& clock,
                        const celery::Json& fields = celery::Json::object());

// The envelope that carries an event (or an array of events) on the celeryev exchange.
std::string event_envelope(const celery::Json& body, const std::string& hostname,
                           const std::string& routing_key);

// "task-succeeded" -> "task.succeeded"
std::string event_routing_key(const std::string& type);

}  // namespace celeriac::worker
