// Result metadata and exception encoding (see result.h).
#include "celery/result.h"

#include "celery/codec.h"

namespace celeriac::celery {

bool is_ready_state(std::string_view s) {
  return s == state::kSuccess || s == state::kFailure || s == state::kRevoked;
}

Json ExceptionInfo::to_json() const {
  return Json{{"exc_type", type}, {"exc_message", args}, {"exc_module", module}};
}

ExceptionInfo ExceptionInfo::from_json(const Json& j) {
  ExceptionInfo e;
  if (!j.is_object()) {
    e.args = Json::array({j.is_string() ? j : Json(j.dump())});
    return e;
  }
  if (auto t = j.find("exc_type"); t != j.end() && t->is_string()) e.type = t->get<std::string>();
  if (auto m = j.find("exc_module"); m != j.end() && m->is_string()) {
    e.module = m->get<std::string>();
  }
  if (auto a = j.find("exc_message"); a != j.end()) {
    e.args = a->is_array() ? *a : Json::array({*a});
  }
  return e;
}

std::string ExceptionInfo::message() const {
  if (!args.is_array() || args.empty()) return "";
  const Json& first = args[0];
  if (args.size() == 1) return first.is_string() ? first.get<std::string>() : first.dump();
  return python_tuple_repr(args);
}

std::string ExceptionInfo::repr() const {
  std::string inner = python_tuple_repr(args);  // "('boom',)" -> strip the tuple syntax
  if (args.is_array() && args.size() == 1) {
    inner = python_repr(args[0]);
  } else if (inner.size() >= 2) {
    inner = inner.substr(1, inner.size() - 2);
  }
  return type + "(" + inner + ")";
}

Json ResultMeta::to_json() const {
  Json j = {{"status", status},
            {"result", result},
            {"traceback", traceback},
            {"children", children},
            {"date_done", date_done ? Json(format_iso8601_naive_utc(*date_done)) : Json()}};
  if (group_id) j["group_id"] = *group_id;
  if (parent_id) j["parent_id"] = *parent_id;
  if (extended.is_object()) {
    for (const auto& [k, v] : extended.items()) j[k] = v;
  }
  j["task_id"] = task_id;
  return j;
}

ResultMeta ResultMeta::decode(std::string_view text) {
  Json j = Json::parse(text);
  ResultMeta m;
  m.status = j.value("status", std::string(state::kPending));
  m.result = j.value("result", Json());
  m.traceback = j.value("traceback", Json());
  m.children = j.value("children", Json::array());
  if (auto d = j.find("date_done"); d != j.end() && d->is_string()) {
    m.date_done = parse_iso8601(d->get<std::string>());
  }
  if (auto g = j.find("group_id"); g != j.end() && g->is_string()) m.group_id = g->get<std::string>();
  if (auto p = j.find("parent_id"); p != j.end() && p->is_string()) {
    m.parent_id = p->get<std::string>();
  }
  m.task_id = j.value("task_id", std::string());
  return m;
}

std::string task_meta_key(std::string_view task_id) {
  return "celery-task-meta-" + std::string(task_id);
}

std::string group_meta_key(std::string_view group_id) {
  return "celery-taskset-meta-" + std::string(group_id);
}

}  // namespace celeriac::celery
