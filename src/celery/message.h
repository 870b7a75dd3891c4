// Task messages as kombu puts them in Redis: the envelope
//   {"body": base64, "content-encoding", "content-type", "headers", "properties"}
// around a Celery protocol-2 body [args, kwargs, embed] with the metadata in headers.
// Protocol 1 (metadata in the body) is accepted on decode and converted.
//
// Decoding never trusts its input: anything that is not a task we can run raises
// MessageError with a reason that goes to the log and the dead-letter list.
#pragma once

#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>

#include "celery/json.h"

namespace celeriac::celery {

// The message cannot be processed at all (bad JSON, bad base64, forbidden serializer, ...).
struct MessageError : std::runtime_error {
  using std::runtime_error::runtime_error;
};

// The envelope property where celeriac counts deliveries that died while running.
inline constexpr const char* kDeliveriesProperty = "celeriac_deliveries";

struct TaskMessage {
  // --- headers (protocol 2) ---
  std::string id;
  std::string task;    // registered name
  std::string shadow;  // display name, empty if none
  Json args = Json::array();
  Json kwargs = Json::object();
  // embed: signatures as Celery sends them (null when absent)
  Json callbacks;
  Json errbacks;
  Json chain;  // reversed: the next task is the last element
  Json chord;  // chord body signature for chord header members
  std::optional<double> eta;      // unix seconds
  std::optional<double> expires;  // unix seconds
  std::optional<std::string> group;
  std::optional<int> group_index;
  int retries = 0;
  std::optional<double> hard_time_limit_s;
  std::optional<double> soft_time_limit_s;
  std::string root_id;
  std::optional<std::string> parent_id;
  std::string argsrepr;
  std::string kwargsrepr;
  std::string origin;
  bool ignore_result = false;
  // Headers we do not model (custom ones from apply_async(headers=...), stamps, ...), kept so a
  // retry republishes them.
  Json extra_headers = Json::object();

  // --- properties ---
  std::string reply_to;
  int priority = 0;
  std::string delivery_tag;
  std::string exchange;     // delivery_info.exchange ("" = anonymous)
  std::string routing_key;  // delivery_info.routing_key (the queue for the anonymous exchange)
  bool redelivered = false;
  // celeriac's count of deliveries that started running and never finished (the worker died):
  // properties.celeriac_deliveries, raised on restore. Python restores keep it untouched.
  int deliveries = 0;

  int protocol = 2;  // what the message arrived as
};

// Builds the envelope text for LPUSH. Fills in defaults: root_id = id, argsrepr/kwargsrepr,
// delivery_tag (fresh uuid4 when empty). The body is base64-encoded JSON, as kombu sends it.
std::string encode_task_message(const TaskMessage& message);

// Parses an envelope taken from a queue. Accepts base64 or raw bodies, protocol 2 and 1.
// Throws MessageError naming what is wrong.
TaskMessage decode_task_message(std::string_view envelope_text);

// The envelope's delivery tag, without decoding the body (for acking a message we cannot
// decode). Empty when there is none.
std::string envelope_delivery_tag(std::string_view envelope_text);

// An envelope for fan-out and reply traffic (events, remote control): body is `body` as
// base64 JSON, with the given headers and delivery_info.
std::string encode_envelope(const Json& body, const Json& headers, const std::string& exchange,
                            const std::string& routing_key, int delivery_mode);
// Decodes the body of such an envelope (base64 or raw), returning body and headers.
struct Envelope {
  Json body;
  Json headers;
  Json properties;
};
Envelope decode_envelope(std::string_view envelope_text);

// Signature helpers (canvas): a JSON signature {"task", "args", "kwargs", "options",
// "subtask_type", "immutable"} turned into a message to send. `prepend` is the parent's return
// value (ignored when the signature is immutable); `parent` links the new task to its parent.
TaskMessage message_from_signature(const Json& signature, const Json* prepend,
                                   const TaskMessage* parent);

}  // namespace celeriac::celery
