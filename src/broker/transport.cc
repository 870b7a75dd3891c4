// kombu-compatible Redis transport (see transport.h).
#include "broker/transport.h"

#include <nlohmann/json.hpp>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <unordered_set>

#include "celery/codec.h"
#include "celery/message.h"

namespace celeriac::broker {
namespace {

// Pops up to max_count messages from the keys in order (RPOP with a count, one call per
// list) and records each in unacked/unacked_index as kombu's consumer does, all in one atomic
// step. Lua is slow at string work, so the script reads only the delivery tag (with a plain
// find) and records the message under the anonymous exchange with its queue as routing key:
// a kombu restore sends it back to the same queue. A message without a tag cannot be tracked
// (a Python restorer would choke on it) and goes to the dead-letter list instead, in the same
// step; messages that carry a tag but turn out malformed are dead-lettered by the worker.
// The first list is the worker's staging list (filled by the blocking wait, see wait()): its
// messages come from any queue, so their queue is read from their routing key.
// The worker's held set (celeriac.held.<node>) gets the tags too, so that a dead worker's
// messages can be found and restored at once (see recover_worker).
// KEYS: unacked, unacked_index, dead_letter, staging, list keys...
// ARGV: max_count, worker, held set key (or '')
// Returns a flat array: "D", queue, envelope | "X", queue, reason
const redis::Script kReserveScript(R"lua(
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
local max = tonumber(ARGV[1])
local find, sub = string.find, string.sub
local function field(msg, name)
  local _, e = find(msg, '"' .. name .. '": "', 1, true)
  if not e then _, e = find(msg, '"' .. name .. '":"', 1, true) end
  if not e then return nil end
  local close = find(msg, '"', e + 1, true)
  if not close or close == e + 1 then return nil end
  return sub(msg, e + 1, close - 1)
end
local out, hset, zadd, tags = {}, {}, {}, {}
local taken = 0
for i = 4, #KEYS do
  if taken >= max then break end
  local msgs = redis.call('RPOP', KEYS[i], max - taken)
  if msgs then
    local key_queue = string.gsub(KEYS[i], '\6\22%d$', '')
    for _, msg in ipairs(msgs) do
      local tag = sub(msg, 1, 1) == '{' and field(msg, 'delivery_tag')
      local queue = key_queue
      if i == 4 then queue = field(msg, 'routing_key') or 'celery' end
      if not tag then
        local reason = 'message has no properties.delivery_tag'
        if not pcall(cjson.decode, msg) then reason = 'message is not valid JSON' end
        redis.call('LPUSH', KEYS[3], cjson.encode({reason = reason, queue = queue,
          message = msg, time = now, worker = ARGV[2]}))
        out[#out + 1] = 'X'; out[#out + 1] = queue; out[#out + 1] = reason
      else
        hset[#hset + 1] = tag
        hset[#hset + 1] = '[' .. msg .. ',"","' .. queue .. '"]'
        tags[#tags + 1] = tag
        zadd[#zadd + 1] = now
        zadd[#zadd + 1] = tag
        out[#out + 1] = 'D'; out[#out + 1] = queue; out[#out + 1] = msg
        taken = taken + 1
      end
    end
  end
end
if #hset > 0 then
  redis.call('HSET', KEYS[1], unpack(hset))
  redis.call('ZADD', KEYS[2], unpack(zadd))
  if ARGV[3] ~= '' then redis.call('SADD', ARGV[3], unpack(tags)) end
end
return out
)lua");

}  // namespace

std::string priority_key(std::string_view queue, int priority) {
  int step = 0;
  for (int s : kPrioritySteps) {
    if (s <= std::clamp(priority, 0, 9)) step = s;
  }
  if (step == 0) return std::string(queue);
  return std::string(queue) + std::string(kSep) + std::to_string(step);
}

std::string queue_of_key(std::string_view key) {
  if (key.size() >= 3 && key.substr(key.size() - 3, 2) == kSep &&
      std::isdigit(static_cast<unsigned char>(key.back()))) {
    return std::string(key.substr(0, key.size() - 3));
  }
  return std::string(key);
}

std::vector<std::string> consume_order(const std::vector<std::string>& queues) {
  std::vector<std::string> keys;
  for (int step : kPrioritySteps) {
    for (const auto& q : queues) keys.push_back(priority_key(q, step));
  }
  return keys;
}

std::string fanout_channel(int db, std::string_view exchange, std::string_view routing_key) {
  std::string channel = "/" + std::to_string(db) + "." + std::string(exchange);
  if (!routing_key.empty()) channel += "/" + std::string(routing_key);
  return channel;
}

Transport::Transport(redis::Url url, TransportOptions options)
    : conn_(std::move(url), options.connect), options_(std::move(options)) {}

void Transport::declare_queue(std::string_view queue) {
  std::string member = std::string(queue) + std::string(kSep) + std::string(kSep) + std::string(queue);
  conn_.command({"SADD", "_kombu.binding." + std::string(queue), member}).ok();
}

void Transport::publish(std::string_view queue, int priority, std::string_view envelope) {
  conn_.command({"LPUSH", priority_key(queue, priority), envelope}).ok();
}

int Transport::publish_direct(std::string_view exchange, std::string_view routing_key,
                              std::string_view envelope) {
  redis::Reply members =
      conn_.command({"SMEMBERS", "_kombu.binding." + std::string(exchange)});
  members.ok();
  std::vector<std::string> queues;
  for (const auto& m : members.elements) {
    // member = routing_key SEP pattern SEP queue
    auto first = m.str.find(kSep);
    if (first == std::string::npos) continue;
    auto second = m.str.find(kSep, first + 2);
    if (second == std::string::npos) continue;
    if (m.str.compare(0, first, routing_key) != 0 || first != routing_key.size()) continue;
    std::string queue = m.str.substr(second + 2);
    if (std::find(queues.begin(), queues.end(), queue) == queues.end()) queues.push_back(queue);
  }
  for (const auto& q : queues) conn_.command({"LPUSH", q, envelope}).ok();
  return static_cast<int>(queues.size());
}

void Transport::publish_fanout(std::string_view exchange, std::string_view routing_key,
                               std::string_view envelope) {
  conn_.command({"PUBLISH", fanout_channel(db(), exchange, routing_key), envelope}).ok();
}

ReserveResult Transport::reserve(const std::vector<std::string>& keys, int max_count) {
  redis::Args script_keys{options_.unacked_key, options_.unacked_index_key,
                          options_.dead_letter_key, staging_key()};
  script_keys.insert(script_keys.end(), keys.begin(), keys.end());
  redis::Reply reply = kReserveScript.run(
      conn_, script_keys, {std::to_string(max_count), options_.worker_name, held_key()});
  reply.ok();
  ReserveResult result;
  for (size_t i = 0; i + 2 < reply.elements.size(); i += 3) {
    const auto& kind = reply.elements[i].str;
    if (kind == "D") {
      result.deliveries.push_back(
          {queue_of_key(reply.elements[i + 1].str), std::move(reply.elements[i + 2].str)});
    } else {
      result.dead_letters.push_back(
          {queue_of_key(reply.elements[i + 1].str), reply.elements[i + 2].str});
    }
  }
  return result;
}

std::string Transport::staging_key() const {
  return "celeriac.staging." + (options_.worker_name.empty() ? std::string("anonymous")
                                                            : options_.worker_name);
}

bool Transport::wait(const std::string& key, double timeout_s) {
  if (!blocking_wait_) return false;
  char timeout[32];
  std::snprintf(timeout, sizeof timeout, "%.3f", std::max(0.001, timeout_s));
  redis::Reply r = conn_.command({"BLMOVE", key, staging_key(), "RIGHT", "LEFT", timeout});
  if (r.is_error()) {
    // Redis < 6.2 has no BLMOVE: fall back to polling for good.
    blocking_wait_ = false;
    return false;
  }
  return !r.is_nil();
}

std::string Transport::held_key() const {
  return options_.worker_name.empty() ? "" : "celeriac.held." + options_.worker_name;
}

std::vector<redis::Args> Transport::ack_commands(const std::vector<std::string>& tags) const {
  if (tags.empty()) return {};
  redis::Args zrem{"ZREM", options_.unacked_index_key};
  redis::Args hdel{"HDEL", options_.unacked_key};
  zrem.insert(zrem.end(), tags.begin(), tags.end());
  hdel.insert(hdel.end(), tags.begin(), tags.end());
  std::vector<redis::Args> cmds{{"MULTI"}, std::move(zrem), std::move(hdel)};
  if (!held_key().empty()) {
    redis::Args srem{"SREM", held_key()};
    srem.insert(srem.end(), tags.begin(), tags.end());
    cmds.push_back(std::move(srem));
  }
  cmds.push_back({"EXEC"});
  return cmds;
}

void Transport::ack(const std::vector<std::string>& tags) {
  if (tags.empty()) return;
  conn_.pipeline(ack_commands(tags)).back().ok();
}

redis::Args Transport::dead_letter_command(std::string_view queue, std::string_view envelope,
                                          std::string_view reason) const {
  nlohmann::json entry = {
      {"reason", reason},
      {"queue", queue},
      {"message", envelope},
      {"time", std::chrono::duration<double>(
                   std::chrono::system_clock::now().time_since_epoch())
                   .count()},
      {"worker", options_.worker_name}};
  return {"LPUSH", options_.dead_letter_key,
          entry.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace)};
}

void Transport::dead_letter(std::string_view queue, std::string_view envelope,
                            std::string_view tag, std::string_view reason) {
  std::vector<redis::Args> cmds{{"MULTI"}, dead_letter_command(queue, envelope, reason)};
  if (!tag.empty()) {
    cmds.push_back({"ZREM", options_.unacked_index_key, std::string(tag)});
    cmds.push_back({"HDEL", options_.unacked_key, std::string(tag)});
    if (!held_key().empty()) cmds.push_back({"SREM", held_key(), std::string(tag)});
  }
  cmds.push_back({"EXEC"});
  conn_.pipeline(cmds).back().ok();
}

std::string Transport::running_key(std::string_view node) {
  return "celeriac.running." + std::string(node);
}

bool Transport::requeue(std::string_view tag, bool to_head, const std::string& owner_held_key,
                        bool died_running) {
  // "-": the message is nobody's we know of (a Python worker's); no held set to update.
  const std::string held =
      owner_held_key == "-" ? "" : owner_held_key.empty() ? held_key() : owner_held_key;
  // WATCH/MULTI as kombu's restore_by_tag: if another restorer touches `unacked` meanwhile,
  // EXEC fails and we look again.
  for (int attempt = 0; attempt < 10; ++attempt) {
    conn_.command({"WATCH", options_.unacked_key}).ok();
    redis::Reply entry_text = conn_.command({"HGET", options_.unacked_key, tag});
    if (entry_text.is_nil()) {
      conn_.command({"UNWATCH"});
      return false;
    }
    nlohmann::json entry;
    try {
      entry = nlohmann::json::parse(entry_text.str);
    } catch (const std::exception&) {
      conn_.command({"UNWATCH"});
      conn_.pipeline({{"ZREM", options_.unacked_index_key, std::string(tag)},
                      {"HDEL", options_.unacked_key, std::string(tag)}});
      return false;
    }
    nlohmann::json envelope = entry.at(0);
    std::string exchange = entry.size() > 1 && entry[1].is_string() ? entry[1].get<std::string>() : "";
    std::string routing_key =
        entry.size() > 2 && entry[2].is_string() ? entry[2].get<std::string>() : "";
    envelope["headers"]["redelivered"] = true;
    envelope["properties"]["delivery_info"]["redelivered"] = true;
    if (died_running) {
      auto& count = envelope["properties"][celery::kDeliveriesProperty];
      count = (count.is_number_integer() ? count.get<int>() : 0) + 1;
    }
    int priority = envelope["properties"].value("priority", 0);
    std::vector<std::string> queues;
    if (exchange.empty()) {
      queues.push_back(routing_key);
    } else {
      redis::Reply members = conn_.command({"SMEMBERS", "_kombu.binding." + exchange});
      for (const auto& m : members.elements) {
        auto first = m.str.find(kSep);
        auto second = first == std::string::npos ? first : m.str.find(kSep, first + 2);
        if (second == std::string::npos) continue;
        if (m.str.substr(0, first) == routing_key) queues.push_back(m.str.substr(second + 2));
      }
      if (queues.empty()) queues.push_back(routing_key);
    }
    std::vector<redis::Args> cmds{{"MULTI"},
                                  {"ZREM", options_.unacked_index_key, std::string(tag)},
                                  {"HDEL", options_.unacked_key, std::string(tag)}};
    if (!held.empty()) cmds.push_back({"SREM", held, std::string(tag)});
    std::string text = envelope.dump();
    for (const auto& q : queues) {
      cmds.push_back({to_head ? "LPUSH" : "RPUSH", priority_key(q, priority), text});
    }
    cmds.push_back({"EXEC"});
    auto replies = conn_.pipeline(cmds);
    if (!replies.back().is_nil()) return true;  // nil EXEC = the watched key changed
  }
  return false;
}

namespace {

// Moves every message of a staging list (a dead worker's, or a stopping worker's own) back to
// the queue its routing key names (base priority list).
const redis::Script kDrainStagingScript(R"lua(
local moved = 0
while true do
  local msg = redis.call('RPOP', KEYS[1])
  if not msg then break end
  local _, e = string.find(msg, '"routing_key": "', 1, true)
  if not e then _, e = string.find(msg, '"routing_key":"', 1, true) end
  local queue = 'celery'
  if e then
    local close = string.find(msg, '"', e + 1, true)
    if close and close > e + 1 then queue = string.sub(msg, e + 1, close - 1) end
  end
  redis.call('RPUSH', queue, msg)
  moved = moved + 1
end
return moved
)lua");

int drain_staging(redis::Connection& conn, const std::string& staging) {
  redis::Reply moved = kDrainStagingScript.run(conn, {staging}, {});
  moved.ok();
  return static_cast<int>(moved.integer);
}

}  // namespace

int Transport::recover_worker(const std::string& node) {
  std::string held = "celeriac.held." + node;
  std::string running = running_key(node);
  std::unordered_set<std::string> started;
  for (const auto& field : conn_.command({"HVALS", running}).elements) {
    std::string_view tags = field.str;
    while (!tags.empty()) {
      auto space = tags.find(' ');
      if (space != 0) started.emplace(tags.substr(0, space));
      if (space == std::string_view::npos) break;
      tags.remove_prefix(space + 1);
    }
  }
  int restored = 0;
  redis::Reply tags = conn_.command({"SMEMBERS", held});
  tags.ok();
  for (const auto& t : tags.elements) {
    restored += requeue(t.str, false, held, started.count(t.str) > 0) ? 1 : 0;
  }
  const int staged = drain_staging(conn_, "celeriac.staging." + node);
  conn_.pipeline({{"DEL", held}, {"DEL", running}}).back().ok();
  return restored + staged;
}

int Transport::requeue_unknown_held(const std::unordered_set<std::string>& known) {
  if (held_key().empty()) return 0;
  redis::Reply tags = conn_.command({"SMEMBERS", held_key()});
  tags.ok();
  int requeued = 0;
  for (const auto& t : tags.elements) {
    if (known.count(t.str)) continue;
    if (requeue(t.str, false, held_key()))
      ++requeued;
    else
      conn_.command({"SREM", held_key(), t.str}).ok();
  }
  return requeued;
}

int Transport::return_staged() { return drain_staging(conn_, staging_key()); }

// Deletes kombu's restore mutex only if we still own it (compare-and-delete in one step).
const redis::Script kReleaseMutexScript(R"lua(
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
)lua");

int Transport::restore_visible(double visibility_timeout_s,
                               const std::unordered_set<std::string>& keep, int limit) {
  // The same mutex (name, SET NX EX 300) as kombu's, so Python and celeriac restorers never
  // restore the same message twice.
  const std::string mutex = "unacked_mutex";
  std::string token = celery::uuid4();
  if (conn_.command({"SET", mutex, token, "NX", "EX", "300"}).is_nil()) return 0;
  int restored = 0;
  try {
    char ceiling[64];
    std::snprintf(ceiling, sizeof ceiling, "%.6f",
                  std::chrono::duration<double>(
                      std::chrono::system_clock::now().time_since_epoch()).count() -
                      visibility_timeout_s);
    redis::Reply stale = conn_.command({"ZRANGE", options_.unacked_index_key, "-inf", ceiling,
                                        "BYSCORE", "LIMIT", "0", std::to_string(limit)});
    stale.ok();
    for (const auto& tag : stale.elements) {
      if (keep.count(tag.str)) continue;
      restored += requeue(tag.str, false, "-") ? 1 : 0;
    }
  } catch (...) {
    kReleaseMutexScript.run(conn_, {mutex}, {token});
    throw;
  }
  kReleaseMutexScript.run(conn_, {mutex}, {token});
  return restored;
}

}  // namespace celeriac::broker
