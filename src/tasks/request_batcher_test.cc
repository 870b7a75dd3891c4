// RequestBatcher with a run function that records its batches and can be held, so that the
// tests decide what is queued when the model becomes idle.
#include "tasks/request_batcher.h"

#include <gtest/gtest.h>

#include <future>
#include <stdexcept>
#include <string>
#include <thread>

namespace celeriac::tasks {
namespace {

using florence::EngineRequest;
using florence::EngineResult;

EngineRequest request(const std::string& name) {
  EngineRequest r;
  r.task = name;
  r.image_bytes = "bytes of " + name;
  return r;
}

// Answers each request with its own name and bytes; the first batch waits for release().
struct HeldModel {
  std::mutex m;
  std::condition_variable cv;
  bool released = false, first_entered = false;
  std::vector<std::vector<std::string>> batches;

  RequestBatcher::Run run() {
    return [this](const std::vector<EngineRequest>& batch) {
      std::unique_lock lock(m);
      std::vector<std::string> names;
      for (const auto& r : batch) names.push_back(r.task);
      batches.push_back(names);
      if (batches.size() == 1) {
        first_entered = true;
        cv.notify_all();
        cv.wait(lock, [&] { return released; });
      }
      if (names.front() == "bad") throw std::runtime_error("model failed");
      std::vector<EngineResult> out(batch.size());
      for (size_t i = 0; i < batch.size(); ++i) out[i].parsed = {{batch[i].task, batch[i].image_bytes}};
      return out;
    };
  }
  void wait_first() {
    std::unique_lock lock(m);
    cv.wait(lock, [&] { return first_entered; });
  }
  void release() {
    std::lock_guard lock(m);
    released = true;
    cv.notify_all();
  }
};

std::string answer(const EngineResult& r, const std::string& name) {
  return r.parsed.at(name).get<std::string>();
}

TEST(RequestBatcher, RequestsArrivingWhileTheModelIsBusyRunTogether) {
  HeldModel model;
  RequestBatcher batcher(4, model.run());
  auto first = std::async(std::launch::async, [&] { return batcher.submit(request("a")); });
  model.wait_first();
  std::vector<std::future<EngineResult>> later;
  for (const char* name : {"b", "c", "d"})
    later.push_back(std::async(std::launch::async, [&batcher, name] { return batcher.submit(request(name)); }));
  // All three are queued before the first batch ends (they block in submit meanwhile).
  for (int i = 0; i < 200; ++i) std::this_thread::sleep_for(std::chrono::milliseconds(1));
  model.release();
  EXPECT_EQ(answer(first.get(), "a"), "bytes of a");
  std::vector<std::string> answers;
  for (auto& f : later) {
    const EngineResult r = f.get();
    answers.push_back(r.parsed.begin().key() + "=" + r.parsed.begin().value().get<std::string>());
  }
  EXPECT_EQ(answers, (std::vector<std::string>{"b=bytes of b", "c=bytes of c", "d=bytes of d"}));
  ASSERT_EQ(model.batches.size(), 2u);
  EXPECT_EQ(model.batches[0], std::vector<std::string>{"a"});
  ASSERT_EQ(model.batches[1].size(), 3u);  // one batch, in arrival order
}

TEST(RequestBatcher, BatchesAreCappedAndNoRequestIsLeftBehind) {
  HeldModel model;
  RequestBatcher batcher(2, model.run());
  auto first = std::async(std::launch::async, [&] { return batcher.submit(request("a")); });
  model.wait_first();
  std::vector<std::future<EngineResult>> later;
  for (int i = 0; i < 5; ++i) {
    const std::string name = "r" + std::to_string(i);
    later.push_back(std::async(std::launch::async, [&batcher, name] { return batcher.submit(request(name)); }));
  }
  std::this_thread::sleep_for(std::chrono::milliseconds(200));
  model.release();
  first.get();
  for (size_t i = 0; i < later.size(); ++i) {
    const std::string name = "r" + std::to_string(i);
    EXPECT_EQ(answer(later[i].get(), name), "bytes of " + name);
  }
  size_t total = 0;
  for (const auto& b : model.batches) {
    EXPECT_LE(b.size(), 2u);
    total += b.size();
  }
  EXPECT_EQ(total, 6u);
  EXPECT_EQ(model.batches.size(), 4u);  // a, then 5 queued in batches of at most 2
}

TEST(RequestBatcher, AFailedRunFailsItsOwnBatchOnly) {
  HeldModel model;
  model.release();  // nothing held
  RequestBatcher batcher(4, model.run());
  EXPECT_THROW(batcher.submit(request("bad")), std::runtime_error);
  EXPECT_EQ(answer(batcher.submit(request("ok")), "ok"), "bytes of ok");
}

}  // namespace
}  // namespace celeriac::tasks
