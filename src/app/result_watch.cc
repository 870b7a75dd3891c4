#include "app/result_watch.h"

#include <spdlog/spdlog.h>

#include <algorithm>
#include <chrono>
#include <memory>
#include <vector>

#include "redis/connection.h"

namespace celeriac::app {

namespace {
constexpr const char* kChannelPrefix = "celery-task-meta-";
}

ResultWatch::ResultWatch(redis::Url backend) : url_(std::move(backend)) {
  thread_ = std::thread([this] { run(); });
}

ResultWatch::~ResultWatch() {
  stop_ = true;
  thread_.join();
}

uint64_t ResultWatch::add(const std::string& task_id, Callback callback) {
  std::lock_guard lock(mutex_);
  const uint64_t id = next_++;
  by_task_.emplace(task_id, std::make_pair(id, std::move(callback)));
  task_of_[id] = task_id;
  return id;
}

void ResultWatch::remove(uint64_t watcher) {
  std::lock_guard lock(mutex_);
  auto it = task_of_.find(watcher);
  if (it == task_of_.end()) return;
  auto [begin, end] = by_task_.equal_range(it->second);
  for (auto w = begin; w != end; ++w)
    if (w->second.first == watcher) {
      by_task_.erase(w);
      break;
    }
  task_of_.erase(it);
}

size_t ResultWatch::watchers() const {
  std::lock_guard lock(mutex_);
  return task_of_.size();
}

void ResultWatch::deliver(const std::string& task_id, const celery::ResultMeta& meta) {
  std::vector<Callback> callbacks;
  {
    std::lock_guard lock(mutex_);
    auto [begin, end] = by_task_.equal_range(task_id);
    for (auto w = begin; w != end; ++w) callbacks.push_back(w->second.second);
  }
  for (const Callback& callback : callbacks) callback(meta);
}

void ResultWatch::run() {
  std::unique_ptr<redis::Connection> subscriber, getter;
  auto backoff = std::chrono::milliseconds(100);
  bool warned = false;
  while (!stop_) {
    try {
      if (!subscriber) {
        redis::ConnectOptions options;
        options.connect_timeout = std::chrono::milliseconds(2000);
        subscriber = std::make_unique<redis::Connection>(url_, options);
        getter = std::make_unique<redis::Connection>(url_, options);
        subscriber->append({"PSUBSCRIBE", std::string(kChannelPrefix) + "*"});
        subscriber->flush();
        auto confirmed = subscriber->read_reply(std::chrono::milliseconds(2000));
        if (!confirmed || confirmed->is_error())
          throw redis::ConnectionError("PSUBSCRIBE was not confirmed");
        subscribed_ = true;
        if (warned) spdlog::info("event=result-watch-reconnected");
        warned = false;
        backoff = std::chrono::milliseconds(100);
        // What was published while no subscription stood is read from the keys.
        std::vector<std::string> tasks;
        {
          std::lock_guard lock(mutex_);
          for (const auto& [task, watcher] : by_task_)
            if (tasks.empty() || tasks.back() != task) tasks.push_back(task);
        }
        for (const std::string& task : tasks) {
          const redis::Reply value = getter->command({"GET", celery::task_meta_key(task)});
          if (value.type == redis::Reply::Type::String)
            deliver(task, celery::ResultMeta::decode(value.str));
        }
      }
      auto reply = subscriber->read_reply(std::chrono::milliseconds(200));
      if (!reply) continue;
      // ["pmessage", pattern, channel, payload]
      if (reply->type != redis::Reply::Type::Array || reply->elements.size() != 4 ||
          reply->elements[0].str != "pmessage")
        continue;
      const std::string& channel = reply->elements[2].str;
      const std::string task =
          channel.substr(std::min(channel.size(), std::string(kChannelPrefix).size()));
      try {
        deliver(task, celery::ResultMeta::decode(reply->elements[3].str));
      } catch (const std::exception& e) {
        spdlog::warn("event=result-watch-bad-meta task_id={} error=\"{}\"", task, e.what());
      }
    } catch (const std::exception& e) {
      subscribed_ = false;
      subscriber.reset();
      getter.reset();
      if (!warned) spdlog::warn("event=result-watch-disconnected error=\"{}\"", e.what());
      warned = true;
      for (auto slept = std::chrono::milliseconds(0); slept < backoff && !stop_;
           slept += std::chrono::milliseconds(50))
        std::this_thread::sleep_for(std::chrono::milliseconds(50));
      backoff = std::min(backoff * 2, std::chrono::milliseconds(2000));
    }
  }
}

}  // namespace celeriac::app
