// Encoding and decoding of kombu envelopes and Celery task messages (see message.h).
#include "celery/message.h"

#include "celery/codec.h"

namespace celeriac::celery {
namespace {

Json null_or(const std::optional<std::string>& v) { return v ? Json(*v) : Json(); }

Json iso_or_null(const std::optional<double>& t) {
  return t ? Json(format_iso8601_utc(*t)) : Json();
}

std::optional<double> parse_time_field(const Json& v, const char* name) {
  if (v.is_null()) return std::nullopt;
  if (v.is_number()) return v.get<double>();
  if (v.is_string()) {
    auto t = parse_iso8601(v.get_ref<const std::string&>());
    if (!t) throw MessageError(std::string("invalid ") + name + " '" + v.get<std::string>() + "'");
    return t;
  }
  if (v.is_object() && v.contains("__value__")) return parse_time_field(v["__value__"], name);
  throw MessageError(std::string("invalid ") + name + " (not a date-time string)");
}

std::optional<double> parse_limit(const Json& v) {
  if (v.is_number()) return v.get<double>();
  return std::nullopt;
}

std::optional<std::string> opt_string(const Json& obj, const char* key) {
  auto it = obj.find(key);
  if (it == obj.end() || it->is_null()) return std::nullopt;
  if (it->is_string()) return it->get<std::string>();
  return it->dump();
}

std::string get_string(const Json& obj, const char* key, std::string fallback = "") {
  auto v = opt_string(obj, key);
  return v ? *v : fallback;
}

Json parse_json(std::string_view text, const char* what) {
  try {
    return Json::parse(text);
  } catch (const Json::parse_error& e) {
    throw MessageError(std::string("invalid JSON in ") + what + ": " + e.what());
  }
}

// The body as bytes, following body_encoding.
std::string body_bytes(const Json& envelope) {
  auto body_it = envelope.find("body");
  if (body_it == envelope.end()) throw MessageError("envelope has no body");
  if (!body_it->is_string()) {
    // Some producers put the body inline as JSON; accept it as already decoded.
    return body_it->dump();
  }
  std::string encoding;
  if (auto p = envelope.find("properties"); p != envelope.end() && p->is_object()) {
    encoding = get_string(*p, "body_encoding");
  }
  const auto& body = body_it->get_ref<const std::string&>();
  if (encoding == "base64") {
    try {
      return base64_decode(body);
    } catch (const Base64Error& e) {
      throw MessageError(std::string("body is not valid base64: ") + e.what());
    }
  }
  return body;
}

void check_content_type(const Json& envelope) {
  std::string type = get_string(envelope, "content-type", "application/json");
  if (type == "application/json") return;
  if (type == "application/x-python-serialize") {
    throw MessageError("refusing content-type application/x-python-serialize (pickle): "
                       "only JSON is accepted");
  }
  throw MessageError("refusing content-type " + type + ": only application/json is accepted");
}

void read_embed(TaskMessage& m, const Json& embed) {
  if (!embed.is_object()) return;
  auto field = [&](const char* k) {
    auto it = embed.find(k);
    return it == embed.end() ? Json() : *it;
  };
  m.callbacks = field("callbacks");
  m.errbacks = field("errbacks");
  m.chain = field("chain");
  m.chord = field("chord");
}

const char* kKnownHeaders[] = {"lang",        "task",     "id",          "shadow",  "eta",
                               "expires",     "group",    "group_index", "retries", "timelimit",
                               "root_id",     "parent_id", "argsrepr",   "kwargsrepr", "origin",
                               "ignore_result"};

bool is_known_header(const std::string& k) {
  for (const char* h : kKnownHeaders) {
    if (k == h) return true;
  }
  return false;
}

}  // namespace

std::string encode_task_message(const TaskMessage& m) {
  Json headers = {
      {"lang", "cpp"},
      {"task", m.task},
      {"id", m.id},
      {"shadow", m.shadow.empty() ? Json() : Json(m.shadow)},
      {"eta", iso_or_null(m.eta)},
      {"expires", iso_or_null(m.expires)},
      {"group", null_or(m.group)},
      {"group_index", m.group_index ? Json(*m.group_index) : Json()},
      {"retries", m.retries},
      {"timelimit",
       Json::array({m.hard_time_limit_s ? Json(*m.hard_time_limit_s) : Json(),
                    m.soft_time_limit_s ? Json(*m.soft_time_limit_s) : Json()})},
      {"root_id", m.root_id.empty() ? m.id : m.root_id},
      {"parent_id", null_or(m.parent_id)},
      {"argsrepr", m.argsrepr.empty() ? python_tuple_repr(m.args) : m.argsrepr},
      {"kwargsrepr", m.kwargsrepr.empty() ? python_repr(m.kwargs) : m.kwargsrepr},
      {"origin", m.origin},
      {"ignore_result", m.ignore_result},
  };
  for (const auto& [k, v] : m.extra_headers.items()) headers[k] = v;
  Json embed = {{"callbacks", m.callbacks},
                {"errbacks", m.errbacks},
                {"chain", m.chain},
                {"chord", m.chord}};
  Json body = Json::array({m.args, m.kwargs, embed});
  Json properties = {
      {"correlation_id", m.id},
      {"reply_to", m.reply_to},
      {"delivery_mode", 2},
      {"delivery_info", {{"exchange", m.exchange}, {"routing_key", m.routing_key}}},
      {"priority", m.priority},
      {"body_encoding", "base64"},
      {"delivery_tag", m.delivery_tag.empty() ? uuid4() : m.delivery_tag},
  };
  if (m.deliveries > 0) properties[kDeliveriesProperty] = m.deliveries;
  if (m.expires) {
    // kombu sets the per-message TTL from `expires`; Redis ignores it, RabbitMQ would not.
    long ms = static_cast<long>((*m.expires - unix_now()) * 1000);
    if (ms > 0) properties["expiration"] = std::to_string(ms);
  }
  Json envelope = {{"body", base64_encode(body.dump())},
                   {"content-encoding", "utf-8"},
                   {"content-type", "application/json"},
                   {"headers", headers},
                   {"properties", properties}};
  return envelope.dump();
}

TaskMessage decode_task_message(std::string_view text) {
  Json envelope = parse_json(text, "envelope");
  if (!envelope.is_object()) throw MessageError("envelope is not a JSON object");
  check_content_type(envelope);
  // References into the parsed envelope, not copies: decoding runs once per task.
  static const Json kEmptyObject = Json::object();
  auto headers_it = envelope.find("headers");
  const Json& headers =
      headers_it == envelope.end() || headers_it->is_null() ? kEmptyObject : *headers_it;
  if (!headers.is_object()) throw MessageError("headers is not an object");
  auto properties_it = envelope.find("properties");
  const Json& properties = properties_it == envelope.end() ? kEmptyObject : *properties_it;
  if (!properties.is_object()) throw MessageError("properties is not an object");

  std::string bytes = body_bytes(envelope);
  Json body = parse_json(bytes, "body");
  unwrap_kombu_types(body);

  TaskMessage m;
  Json v1_meta;  // protocol 1 keeps the metadata in the body (converted copy)
  bool v2 = headers.contains("task");
  const Json& meta = v2 ? headers : v1_meta;  // where the task metadata lives
  if (v2) {
    m.protocol = 2;
    if (!body.is_array() || body.size() < 2) {
      throw MessageError("protocol 2 body must be [args, kwargs, embed]");
    }
    m.args = std::move(body[0]);
    m.kwargs = std::move(body[1]);
    if (body.size() > 2) read_embed(m, body[2]);
  } else if (body.is_object() && body.contains("task")) {
    m.protocol = 1;
    v1_meta = body;
    m.args = body.value("args", Json::array());
    m.kwargs = body.value("kwargs", Json::object());
    m.callbacks = body.value("callbacks", Json());
    m.errbacks = body.value("errbacks", Json());
    m.chord = body.value("chord", Json());
    if (!body.contains("group") && body.contains("taskset")) v1_meta["group"] = body["taskset"];
  } else {
    throw MessageError("not a task message: no 'task' in headers or body");
  }
  if (!m.args.is_array()) throw MessageError("task args must be a JSON array");
  if (m.kwargs.is_null()) m.kwargs = Json::object();
  if (!m.kwargs.is_object()) throw MessageError("task kwargs must be a JSON object");

  if (!meta.at("task").is_string() || meta.at("task").get<std::string>().empty()) {
    throw MessageError("task name is missing or not a string");
  }
  m.task = meta.at("task").get<std::string>();
  auto id = opt_string(meta, "id");
  if (!id || id->empty()) throw MessageError("task id is missing");
  m.id = *id;
  m.shadow = get_string(meta, "shadow");
  m.eta = parse_time_field(meta.value("eta", Json()), "eta");
  m.expires = parse_time_field(meta.value("expires", Json()), "expires");
  m.group = opt_string(meta, "group");
  if (auto gi = meta.find("group_index"); gi != meta.end() && gi->is_number_integer()) {
    m.group_index = gi->get<int>();
  }
  if (auto r = meta.find("retries"); r != meta.end() && r->is_number_integer()) {
    m.retries = r->get<int>();
  }
  if (auto tl = meta.find("timelimit"); tl != meta.end() && tl->is_array() && tl->size() == 2) {
    m.hard_time_limit_s = parse_limit((*tl)[0]);
    m.soft_time_limit_s = parse_limit((*tl)[1]);
  }
  m.root_id = get_string(meta, "root_id", m.id);
  m.parent_id = opt_string(meta, "parent_id");
  m.argsrepr = get_string(meta, "argsrepr");
  if (m.argsrepr.empty()) m.argsrepr = python_tuple_repr(m.args);
  m.kwargsrepr = get_string(meta, "kwargsrepr");
  if (m.kwargsrepr.empty()) m.kwargsrepr = python_repr(m.kwargs);
  m.origin = get_string(meta, "origin");
  if (auto ir = meta.find("ignore_result"); ir != meta.end() && ir->is_boolean()) {
    m.ignore_result = ir->get<bool>();
  }
  if (m.protocol == 2) {
    for (const auto& [k, v] : headers.items()) {
      if (!is_known_header(k) && k != "redelivered") m.extra_headers[k] = v;
    }
  }

  m.reply_to = get_string(properties, "reply_to");
  if (auto p = properties.find("priority"); p != properties.end() && p->is_number_integer()) {
    m.priority = std::clamp(p->get<int>(), 0, 9);
  }
  m.delivery_tag = get_string(properties, "delivery_tag");
  if (auto d = properties.find(kDeliveriesProperty); d != properties.end() && d->is_number_integer()) {
    m.deliveries = std::max(0, d->get<int>());
  }
  if (auto di = properties.find("delivery_info"); di != properties.end() && di->is_object()) {
    m.exchange = get_string(*di, "exchange");
    m.routing_key = get_string(*di, "routing_key");
    if (auto rd = di->find("redelivered"); rd != di->end() && rd->is_boolean()) {
      m.redelivered = rd->get<bool>();
    }
  }
  return m;
}

std::string envelope_delivery_tag(std::string_view text) {
  try {
    Json envelope = Json::parse(text);
    return envelope.at("properties").at("delivery_tag").get<std::string>();
  } catch (const std::exception&) {
    return "";
  }
}

std::string encode_envelope(const Json& body, const Json& headers, const std::string& exchange,
                            const std::string& routing_key, int delivery_mode) {
  Json envelope = {
      {"body", base64_encode(body.dump())},
      {"content-encoding", "utf-8"},
      {"content-type", "application/json"},
      {"headers", headers},
      {"properties",
       {{"delivery_mode", delivery_mode},
        {"delivery_info", {{"exchange", exchange}, {"routing_key", routing_key}}},
        {"priority", 0},
        {"body_encoding", "base64"},
        {"delivery_tag", uuid4()}}}};
  return envelope.dump();
}

Envelope decode_envelope(std::string_view text) {
  Json envelope = parse_json(text, "envelope");
  if (!envelope.is_object()) throw MessageError("envelope is not a JSON object");
  check_content_type(envelope);
  Envelope out;
  out.body = parse_json(body_bytes(envelope), "body");
  unwrap_kombu_types(out.body);
  out.headers = envelope.value("headers", Json::object());
  out.properties = envelope.value("properties", Json::object());
  return out;
}

TaskMessage message_from_signature(const Json& sig, const Json* prepend,
                                   const TaskMessage* parent) {
  if (!sig.is_object() || !sig.contains("task") || !sig["task"].is_string()) {
    throw MessageError("signature has no task name");
  }
  TaskMessage m;
  m.task = sig["task"].get<std::string>();
  m.args = sig.value("args", Json::array());
  if (m.args.is_null()) m.args = Json::array();
  m.kwargs = sig.value("kwargs", Json::object());
  if (m.kwargs.is_null()) m.kwargs = Json::object();
  bool immutable = sig.value("immutable", false);
  if (prepend && !immutable) m.args.insert(m.args.begin(), *prepend);
  Json options = sig.value("options", Json::object());
  if (!options.is_object()) options = Json::object();
  m.id = get_string(options, "task_id");
  if (m.id.empty()) m.id = uuid4();
  m.group = opt_string(options, "group_id");
  if (auto gi = options.find("group_index"); gi != options.end() && gi->is_number_integer()) {
    m.group_index = gi->get<int>();
  }
  if (auto ch = options.find("chord"); ch != options.end() && !ch->is_null()) m.chord = *ch;
  if (auto lk = options.find("link"); lk != options.end() && !lk->is_null()) {
    m.callbacks = lk->is_array() ? *lk : Json::array({*lk});
  }
  if (auto le = options.find("link_error"); le != options.end() && !le->is_null()) {
    m.errbacks = le->is_array() ? *le : Json::array({*le});
  }
  if (auto p = options.find("priority"); p != options.end() && p->is_number_integer()) {
    m.priority = std::clamp(p->get<int>(), 0, 9);
  }
  std::string queue = get_string(options, "queue");
  m.routing_key = queue.empty() ? get_string(options, "routing_key") : queue;
  m.reply_to = get_string(options, "reply_to");
  if (auto tl = options.find("time_limit"); tl != options.end()) m.hard_time_limit_s = parse_limit(*tl);
  if (auto tl = options.find("soft_time_limit"); tl != options.end()) {
    m.soft_time_limit_s = parse_limit(*tl);
  }
  if (auto cd = options.find("countdown"); cd != options.end() && cd->is_number()) {
    m.eta = unix_now() + cd->get<double>();
  }
  if (auto eta = options.find("eta"); eta != options.end() && !eta->is_null()) {
    m.eta = parse_time_field(*eta, "eta");
  }
  if (auto ex = options.find("expires"); ex != options.end() && !ex->is_null()) {
    if (ex->is_number()) {
      m.expires = unix_now() + ex->get<double>();
    } else {
      m.expires = parse_time_field(*ex, "expires");
    }
  }
  if (parent) {
    m.parent_id = parent->id;
    m.root_id = parent->root_id.empty() ? parent->id : parent->root_id;
  }
  return m;
}

}  // namespace celeriac::celery
