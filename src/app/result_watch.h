// Results as the backend publishes them, handed to whoever waits for a task (the gateway's
// event streams). One connection for the whole gateway subscribes to every result channel
// (PSUBSCRIBE celery-task-meta-*: Celery's Redis backend PUBLISHes each stored meta on the
// channel named like its key), so a thousand open streams cost no Redis connections.
//
// add() does not read the stored meta: callers read it after add() returns, so a result stored
// just before is seen by that read and one stored just after arrives here (possibly both: a
// watcher may see the same meta twice). After a lost connection the watch reconnects with
// backoff and reads every watched task's meta again, for what was published meanwhile.
#pragma once

#include <atomic>
#include <cstdint>
#include <functional>
#include <map>
#include <mutex>
#include <string>
#include <thread>

#include "celery/result.h"
#include "redis/url.h"

namespace celeriac::app {

class ResultWatch {
 public:
  using Callback = std::function<void(const celery::ResultMeta&)>;  // runs on the watch's thread

  explicit ResultWatch(redis::Url backend);
  ~ResultWatch();  // stops and joins the thread

  uint64_t add(const std::string& task_id, Callback callback);
  void remove(uint64_t watcher);
  bool subscribed() const { return subscribed_.load(); }
  size_t watchers() const;

 private:
  void run();
  void deliver(const std::string& task_id, const celery::ResultMeta& meta);

  redis::Url url_;
  std::atomic<bool> stop_{false}, subscribed_{false};
  mutable std::mutex mutex_;
  uint64_t next_ = 1;
  std::multimap<std::string, std::pair<uint64_t, Callback>> by_task_;
  std::map<uint64_t, std::string> task_of_;
  std::thread thread_;
};

}  // namespace celeriac::app
