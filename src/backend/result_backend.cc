// Redis result backend (see result_backend.h).
#include "backend/result_backend.h"

namespace celeriac::backend {
namespace {

// Writes metas unless the key already holds SUCCESS; publishes each write.
// KEYS: meta keys   ARGV: ttl, then one JSON text per key
const redis::Script kStoreScript(R"lua(
local ttl = tonumber(ARGV[1])
for i = 1, #KEYS do
  local old = redis.call('GET', KEYS[i])
  local keep = false
  if old then
    local ok, meta = pcall(cjson.decode, old)
    keep = ok and type(meta) == 'table' and meta.status == 'SUCCESS'
  end
  if not keep then
    if ttl > 0 then
      redis.call('SETEX', KEYS[i], ttl, ARGV[i + 1])
    else
      redis.call('SET', KEYS[i], ARGV[i + 1])
    end
    redis.call('PUBLISH', KEYS[i], ARGV[i + 1])
  end
end
return #KEYS
)lua");

}  // namespace

ResultBackend::ResultBackend(redis::Url url, BackendOptions options)
    : conn_(std::move(url)), options_(options) {}

void ResultBackend::store(const std::vector<celery::ResultMeta>& metas) {
  if (metas.empty()) return;
  conn_.command(store_command(metas, options_.result_expires_s)).ok();
}

redis::Args ResultBackend::store_command(const std::vector<celery::ResultMeta>& metas,
                                         long expires_s) {
  redis::Args cmd{"EVAL", kStoreScript.source(), std::to_string(metas.size())};
  cmd.reserve(3 + 2 * metas.size() + 1);
  for (const auto& m : metas) cmd.push_back(celery::task_meta_key(m.task_id));
  cmd.push_back(std::to_string(expires_s));
  for (const auto& m : metas) cmd.push_back(m.encode());
  return cmd;
}

std::optional<celery::ResultMeta> ResultBackend::get(const std::string& task_id) {
  redis::Reply r = conn_.command({"GET", celery::task_meta_key(task_id)});
  r.ok();
  if (r.is_nil()) return std::nullopt;
  return celery::ResultMeta::decode(r.str);
}

void ResultBackend::set_chord_size(const std::string& group_id, int size) {
  std::string key = celery::group_meta_key(group_id) + ".s";
  conn_.command({"SETEX", key, std::to_string(options_.result_expires_s > 0 ? options_.result_expires_s : 86400),
                 std::to_string(size)})
      .ok();
}

ResultBackend::ChordOutcome ResultBackend::chord_part_done(const ChordPart& part) {
  std::string base = celery::group_meta_key(part.group_id);
  std::string jkey = base + ".j", tkey = base + ".t", skey = base + ".s";
  celery::Json entry = celery::Json::array({1, part.task_id, part.state, part.result});
  std::string ttl = std::to_string(options_.result_expires_s > 0 ? options_.result_expires_s : 86400);
  // The same transaction Celery's worker runs, so members finished by Python workers count too.
  auto replies = conn_.pipeline({{"MULTI"},
                                 {"ZADD", jkey, std::to_string(part.group_index), entry.dump()},
                                 {"ZCOUNT", jkey, "-inf", "+inf"},
                                 {"GET", tkey},
                                 {"GET", skey},
                                 {"EXPIRE", jkey, ttl},
                                 {"EXPIRE", tkey, ttl},
                                 {"EXPIRE", skey, ttl},
                                 {"EXEC"}});
  const redis::Reply& exec = replies.back();
  exec.ok();
  ChordOutcome out;
  if (exec.elements.size() < 4) return out;
  long long count = exec.elements[1].integer;
  long long total = 0;
  if (!exec.elements[2].is_nil()) total += std::stoll(exec.elements[2].str);
  if (exec.elements[3].is_nil()) return out;  // size unknown: cannot decide
  total += std::stoll(exec.elements[3].str);
  if (count < total) return out;

  redis::Reply members = conn_.command({"ZRANGE", jkey, "0", "-1"});
  members.ok();
  conn_.command({"DEL", jkey, tkey, skey}).ok();
  out.complete = true;
  out.results = celery::Json::array();
  for (const auto& m : members.elements) {
    celery::Json e = celery::Json::parse(m.str);
    std::string state = e.size() > 2 ? e[2].get<std::string>() : celery::state::kSuccess;
    if (state == celery::state::kFailure || state == celery::state::kRevoked) {
      if (!out.failed) {
        out.failed = true;
        out.failed_task_id = e[1].get<std::string>();
        out.failed_exception = e.size() > 3 ? e[3] : celery::Json();
      }
    }
    out.results.push_back(e.size() > 3 ? e[3] : celery::Json());
  }
  return out;
}

ResultWaiter::ResultWaiter(redis::Url url)
    : url_(url), getter_(url), subscriber_(url, {std::chrono::milliseconds(5000), std::chrono::milliseconds(0)}) {}

std::optional<celery::ResultMeta> ResultWaiter::wait(const std::string& task_id,
                                                     std::chrono::milliseconds timeout) {
  std::string key = celery::task_meta_key(task_id);
  auto deadline = std::chrono::steady_clock::now() + timeout;
  subscriber_.append({"SUBSCRIBE", key});
  // Wait for the subscription to be in place before the GET, or a result published in
  // between would be missed.
  while (true) {
    auto confirm = subscriber_.read_reply(std::chrono::milliseconds(5000));
    if (!confirm) throw redis::ConnectionError("redis: no reply to SUBSCRIBE");
    if (!confirm->elements.empty() && confirm->elements[0].str == "subscribe") break;
  }
  std::optional<celery::ResultMeta> found;
  auto check = [&](const std::string& text) {
    auto meta = celery::ResultMeta::decode(text);
    if (celery::is_ready_state(meta.status)) found = std::move(meta);
  };
  // GET after subscribing: a result written before the subscription is not missed.
  redis::Reply current = getter_.command({"GET", key});
  if (!current.is_nil() && !current.is_error()) check(current.str);
  while (!found) {
    auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
        deadline - std::chrono::steady_clock::now());
    if (left.count() <= 0) break;
    auto msg = subscriber_.read_reply(left);
    if (!msg) break;
    if (msg->elements.size() == 3 && msg->elements[0].str == "message") check(msg->elements[2].str);
  }
  subscriber_.append({"UNSUBSCRIBE", key});
  // Drain until the unsubscribe confirmation so the connection is clean for the next wait.
  while (auto msg = subscriber_.read_reply(std::chrono::milliseconds(1000))) {
    if (msg->elements.size() >= 1 && msg->elements[0].str == "unsubscribe") break;
  }
  return found;
}

}  // namespace celeriac::backend
