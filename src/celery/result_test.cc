#include "celery/result.h"

#include <gtest/gtest.h>

#include <fstream>

using namespace celeriac::celery;

namespace {
Json fixture(const std::string& name) {
  std::ifstream in(std::string(CELERIAC_TEST_DATA) + "/celery-5.2/" + name);
  return Json::parse(in);
}
}  // namespace

TEST(ResultMeta, EncodesInCeleryKeyOrder) {
  // Compare with the SUCCESS write captured from Celery 5.2.6, field by field and in order.
  Json f = fixture("result-success.json");
  Json captured;
  for (const auto& w : f["writes"]) {
    if (w["decoded"]["status"] == "SUCCESS") captured = w["decoded"];
  }
  ASSERT_FALSE(captured.is_null());
  ResultMeta m = ResultMeta::decode(captured.dump());
  Json ours = m.to_json();
  std::vector<std::string> their_keys, our_keys;
  for (const auto& [k, v] : captured.items()) their_keys.push_back(k);
  for (const auto& [k, v] : ours.items()) our_keys.push_back(k);
  EXPECT_EQ(our_keys, their_keys);
  EXPECT_EQ(ours["result"], captured["result"]);
  EXPECT_EQ(ours["task_id"], captured["task_id"]);
  ASSERT_TRUE(m.date_done);
  EXPECT_EQ(ours["date_done"].get<std::string>().substr(0, 19),
            captured["date_done"].get<std::string>().substr(0, 19));
}

TEST(ExceptionInfo, MatchesCapturedFailures) {
  Json f = fixture("result-failure-builtin.json");
  Json failure;
  for (const auto& w : f["writes"]) {
    if (w["decoded"]["status"] == "FAILURE") failure = w["decoded"]["result"];
  }
  ExceptionInfo e = ExceptionInfo::from_json(failure);
  EXPECT_EQ(e.type, "ValueError");
  EXPECT_EQ(e.module, "builtins");
  EXPECT_EQ(e.message(), "boom");
  EXPECT_EQ(e.repr(), "ValueError('boom')");
  EXPECT_EQ(e.to_json(), failure);

  Json u = fixture("result-unregistered.json");
  Json unreg = u["writes"].back()["decoded"]["result"];
  ExceptionInfo n = ExceptionInfo::from_json(unreg);
  EXPECT_EQ(n.type, "NotRegistered");
  EXPECT_EQ(n.module, "celery.exceptions");
}

TEST(ResultMeta, AcceptsEveryDateDoneVariant) {
  for (const char* d : {"2026-11-24T23:44:29.951234", "2026-11-24T23:44:29.951234+00:00",
                        "2026-11-24T23:44:29+00:00"}) {
    ResultMeta m = ResultMeta::decode(
        std::string(R"({"status": "SUCCESS", "result": 1, "date_done": ")") + d +
        R"(", "task_id": "x"})");
    ASSERT_TRUE(m.date_done) << d;
  }
}
