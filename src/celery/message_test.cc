// Task messages: decode what real Celery wrote (captured fixtures), and check that what we
// encode decodes to the same fields.
#include "celery/message.h"

#include <gtest/gtest.h>

#include <fstream>

#include "celery/codec.h"

using namespace celeriac::celery;

namespace {
Json fixture(const std::string& name) {
  std::ifstream in(std::string(CELERIAC_TEST_DATA) + "/celery-5.2/" + name);
  EXPECT_TRUE(in.good()) << name;
  return Json::parse(in);
}
}  // namespace

TEST(TaskMessage, DecodesCapturedProtocol2) {
  Json f = fixture("task-add-v2.json");
  TaskMessage m = decode_task_message(f["raw"].get<std::string>());
  EXPECT_EQ(m.protocol, 2);
  EXPECT_EQ(m.task, "tasks.add");
  EXPECT_EQ(m.args, Json::array({4, 6}));
  EXPECT_EQ(m.id, f["decoded"]["headers"]["id"]);
  EXPECT_EQ(m.root_id, m.id);
  EXPECT_FALSE(m.parent_id);
  EXPECT_EQ(m.routing_key, "celery");
  EXPECT_EQ(m.exchange, "");
  EXPECT_EQ(m.delivery_tag, f["decoded"]["properties"]["delivery_tag"]);
}

TEST(TaskMessage, DecodesEtaExpiresPriorityTimeLimitsAndCustomHeaders) {
  Json f = fixture("task-add-eta-expires-priority-v2.json");
  TaskMessage m = decode_task_message(f["raw"].get<std::string>());
  EXPECT_EQ(m.kwargs, Json::parse(R"({"x": 1, "y": 2})"));
  ASSERT_TRUE(m.eta);
  EXPECT_NEAR(*m.eta, *parse_iso8601("2030-01-02T03:04:05.678901+00:00"), 1e-6);
  ASSERT_TRUE(m.expires);
  EXPECT_EQ(m.priority, 5);
  ASSERT_TRUE(m.hard_time_limit_s && m.soft_time_limit_s);
  EXPECT_EQ(*m.hard_time_limit_s, 20);  // [hard, soft]
  EXPECT_EQ(*m.soft_time_limit_s, 10);
  EXPECT_EQ(m.extra_headers["x-custom"], "v");
}

TEST(TaskMessage, DecodesCanvasEmbeds) {
  TaskMessage link = decode_task_message(fixture("task-add-link-v2.json")["raw"].get<std::string>());
  ASSERT_TRUE(link.callbacks.is_array());
  EXPECT_EQ(link.callbacks[0]["task"], "tasks.add");
  TaskMessage chain =
      decode_task_message(fixture("task-chain-v2.json")["raw"].get<std::string>());
  ASSERT_TRUE(chain.chain.is_array());
  EXPECT_FALSE(chain.chain.empty());
  TaskMessage chord =
      decode_task_message(fixture("task-chord-header-0-v2.json")["raw"].get<std::string>());
  EXPECT_TRUE(chord.group);
  EXPECT_TRUE(chord.chord.is_object());
}

TEST(TaskMessage, DecodesProtocol1) {
  Json f = fixture("task-add-v1.json");
  TaskMessage m = decode_task_message(f["raw"].get<std::string>());
  EXPECT_EQ(m.protocol, 1);
  EXPECT_EQ(m.task, "tasks.add");
  EXPECT_EQ(m.args.size(), 2u);
  EXPECT_EQ(m.argsrepr, python_tuple_repr(m.args));
}

TEST(TaskMessage, EncodeDecodeRoundTrip) {
  TaskMessage m;
  m.id = uuid4();
  m.task = "tasks.add";
  m.args = Json::array({1, "ü 🎉", Json::object({{"k", Json::array({1, 2})}})});
  m.kwargs = Json::object({{"z", nullptr}});
  m.eta = 1893553445.5;
  m.priority = 7;
  m.routing_key = "other";
  m.hard_time_limit_s = 5;
  TaskMessage back = decode_task_message(encode_task_message(m));
  EXPECT_EQ(back.id, m.id);
  EXPECT_EQ(back.args, m.args);
  EXPECT_EQ(back.kwargs, m.kwargs);
  EXPECT_NEAR(*back.eta, *m.eta, 1e-6);
  EXPECT_EQ(back.priority, 7);
  EXPECT_EQ(back.routing_key, "other");
  EXPECT_EQ(*back.hard_time_limit_s, 5);
  EXPECT_FALSE(back.soft_time_limit_s);
  EXPECT_EQ(back.root_id, m.id);
  EXPECT_FALSE(back.delivery_tag.empty());
  EXPECT_EQ(back.argsrepr, "(1, 'ü 🎉', {'k': [1, 2]})");
}

TEST(TaskMessage, RejectsMalformedWithReasons) {
  auto reason = [](const std::string& text) {
    try {
      decode_task_message(text);
    } catch (const MessageError& e) {
      return std::string(e.what());
    }
    return std::string("accepted");
  };
  EXPECT_NE(reason("{not json").find("invalid JSON"), std::string::npos);
  EXPECT_NE(reason(R"({"body": "@@@@", "properties": {"body_encoding": "base64"}, "headers": {"task": "t", "id": "1"}})")
                .find("base64"),
            std::string::npos);
  EXPECT_NE(reason(R"({"body": "W10=", "content-type": "application/x-python-serialize", "properties": {"body_encoding": "base64"}})")
                .find("pickle"),
            std::string::npos);
  EXPECT_NE(reason(R"({"body": "e30=", "properties": {"body_encoding": "base64"}, "headers": {}})")
                .find("not a task message"),
            std::string::npos);
  EXPECT_NE(reason(R"({"body": "W1tdLCB7fSwge31d", "properties": {"body_encoding": "base64"}, "headers": {"task": "t"}})")
                .find("id"),
            std::string::npos);
  EXPECT_NE(reason(R"({"body": "W3t9LCB7fSwge31d", "properties": {"body_encoding": "base64"}, "headers": {"task": "t", "id": "1"}})")
                .find("args"),
            std::string::npos);
  EXPECT_EQ(reason(R"({"body": "[[1], {}, {}]", "headers": {"task": "t", "id": "1"}})"),
            "accepted");  // raw (not base64) bodies are fine
}

TEST(Signature, BecomesAMessageWithParentAndPrependedValue) {
  TaskMessage parent;
  parent.id = "p";
  parent.root_id = "r";
  Json sig = Json::parse(
      R"({"task": "tasks.add", "args": [4], "kwargs": {}, "options": {"task_id": "c", "queue": "q"}, "subtask_type": null, "immutable": false})");
  Json value = 4;
  TaskMessage m = message_from_signature(sig, &value, &parent);
  EXPECT_EQ(m.id, "c");
  EXPECT_EQ(m.args, Json::array({4, 4}));
  EXPECT_EQ(*m.parent_id, "p");
  EXPECT_EQ(m.root_id, "r");
  EXPECT_EQ(m.routing_key, "q");
  sig["immutable"] = true;
  EXPECT_EQ(message_from_signature(sig, &value, &parent).args, Json::array({4}));
}
