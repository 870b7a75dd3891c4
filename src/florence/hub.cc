// Hub client over libcurl: metadata (HEAD resolve), repo listing (/api/models), resumable
// verified downloads into the shared Hugging Face cache. See hub.h for the layout and environment.
#include "florence/hub.h"

#include "storage/curl_library.h"
#include "storage/fetch.h"
#include <fcntl.h>
#include <openssl/evp.h>
#include <spdlog/spdlog.h>
#include <sys/file.h>
#include <unistd.h>

#include <algorithm>
#include <cctype>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <functional>
#include <map>
#include <mutex>
#include <nlohmann/json.hpp>
#include <regex>
#include <set>
#include <thread>

namespace celeriac::florence {
namespace {

namespace fs = std::filesystem;
using Kind = HubError::Kind;

std::string env(const char* name) {
  const char* v = std::getenv(name);
  return v ? std::string(v) : std::string();
}

bool env_true(const std::string& v) {
  std::string u = v;
  std::transform(u.begin(), u.end(), u.begin(), [](unsigned char c) { return std::toupper(c); });
  return u == "1" || u == "ON" || u == "YES" || u == "TRUE";
}

std::string trim(std::string s) {
  while (!s.empty() && std::isspace(static_cast<unsigned char>(s.back()))) s.pop_back();
  std::size_t i = 0;
  while (i < s.size() && std::isspace(static_cast<unsigned char>(s[i]))) ++i;
  return s.substr(i);
}

bool is_commit_hash(const std::string& s) {
  return s.size() == 40 && std::all_of(s.begin(), s.end(), [](char c) {
           return std::isdigit(static_cast<unsigned char>(c)) || (c >= 'a' && c <= 'f');
         });
}

bool is_hex(const std::string& s, std::size_t n) {
  return s.size() == n && std::all_of(s.begin(), s.end(), [](char c) {
           return std::isxdigit(static_cast<unsigned char>(c));
         });
}

// scheme://host[:port] of a URL, for deciding where the token may go.
std::string origin_of(const std::string& url) {
  const auto scheme_end = url.find("://");
  if (scheme_end == std::string::npos) return {};
  const auto path = url.find('/', scheme_end + 3);
  return url.substr(0, path);
}

std::string resolve_location(const std::string& base, const std::string& location) {
  if (location.find("://") != std::string::npos) return location;
  if (!location.empty() && location[0] == '/') return origin_of(base) + location;
  return base.substr(0, base.rfind('/') + 1) + location;
}

// Loads libcurl on the first download (see storage/curl_library.h).
void curl_init_once() {
  try {
    storage::curl_library();
  } catch (const storage::CurlUnavailable& e) {
    throw HubError(HubError::Kind::kNetwork, e.what());
  }
}

// ---- progress bar ---------------------------------------------------------------------------

struct Progress {
  std::string label;
  uint64_t total = 0;   // 0 when unknown
  uint64_t offset = 0;  // bytes already on disk when this transfer started
  bool enabled = false;
  bool tty = false;
  std::chrono::steady_clock::time_point started = std::chrono::steady_clock::now();
  std::chrono::steady_clock::time_point last{};

  void draw(uint64_t now_bytes, bool final) {
    if (!enabled) return;
    const auto t = std::chrono::steady_clock::now();
    if (!final && (!tty || t - last < std::chrono::milliseconds(100))) return;
    last = t;
    const double secs = std::chrono::duration<double>(t - started).count();
    const double rate = secs > 0 ? (now_bytes - offset) / secs / 1e6 : 0.0;
    char line[256];
    if (total > 0) {
      const int pct = static_cast<int>(100.0 * now_bytes / total);
      const int width = 24, fill = std::min(width, pct * width / 100);
      std::snprintf(line, sizeof line, "%s %3d%% [%s%s] %.1f/%.1f MB %.1f MB/s", label.c_str(), pct,
                    std::string(fill, '#').c_str(), std::string(width - fill, ' ').c_str(),
                    now_bytes / 1e6, total / 1e6, rate);
    } else {
      std::snprintf(line, sizeof line, "%s %.1f MB %.1f MB/s", label.c_str(), now_bytes / 1e6,
                    rate);
    }
    std::fprintf(stderr, tty ? "\r%s\033[K%s" : "%s%s", line, final ? "\n" : "");
    std::fflush(stderr);
  }
};

// ---- HTTP -------------------------------------------------------------------------------------

struct HttpResult {
  long status = 0;
  CURLcode curl = CURLE_OK;
  std::string curl_error;
  std::map<std::string, std::string> headers;  // lower-case names
  std::string body;                            // error bodies and small responses
  std::string header(const std::string& name) const {
    auto it = headers.find(name);
    return it == headers.end() ? std::string() : it->second;
  }
};

struct Transfer {
  CURL* curl = nullptr;
  HttpResult* result = nullptr;
  std::function<bool(const char*, std::size_t)> sink;  // body bytes of a 2xx answer
  Progress* progress = nullptr;
  uint64_t progress_base = 0;
};

std::size_t on_header(char* data, std::size_t size, std::size_t n, void* user) {
  auto* t = static_cast<Transfer*>(user);
  std::string line(data, size * n);
  if (line.rfind("HTTP/", 0) == 0) t->result->headers.clear();  // a new response (e.g. 100)
  const auto colon = line.find(':');
  if (colon != std::string::npos) {
    std::string name = line.substr(0, colon);
    std::transform(name.begin(), name.end(), name.begin(),
                   [](unsigned char c) { return std::tolower(c); });
    t->result->headers[name] = trim(line.substr(colon + 1));
  }
  return size * n;
}

std::size_t on_body(char* data, std::size_t size, std::size_t n, void* user) {
  auto* t = static_cast<Transfer*>(user);
  long status = 0;
  storage::curl_library().easy_getinfo(t->curl, CURLINFO_RESPONSE_CODE, &status);
  if (t->sink && status >= 200 && status < 300) {
    return t->sink(data, size * n) ? size * n : 0;
  }
  if (t->result->body.size() < (1u << 20)) t->result->body.append(data, size * n);
  return size * n;
}

int on_progress(void* user, curl_off_t, curl_off_t now, curl_off_t, curl_off_t) {
  auto* t = static_cast<Transfer*>(user);
  if (t->progress) t->progress->draw(t->progress_base + static_cast<uint64_t>(now), false);
  return 0;
}

class Http {
 public:
  explicit Http(const HubOptions& options) : options_(options) { curl_init_once(); }

  // One request, no redirect following. The token goes only to the endpoint's origin.
  HttpResult request(const std::string& method, const std::string& url,
                     std::function<bool(const char*, std::size_t)> sink = nullptr,
                     uint64_t range_start = 0, Progress* progress = nullptr) const {
    HttpResult result;
    const auto& lib = storage::curl_library();  // loaded by the constructor
    CURL* curl = lib.easy_init();
    if (!curl) throw HubError(Kind::kNetwork, "curl_easy_init failed");
    Transfer t{curl, &result, std::move(sink), progress, range_start};
    curl_slist* headers = nullptr;
    headers = lib.slist_append(headers, "Accept-Encoding: identity");
    if (!options_.token.empty() && origin_of(url) == origin_of(options_.endpoint)) {
      headers = lib.slist_append(headers, ("Authorization: Bearer " + options_.token).c_str());
    }
    char errbuf[CURL_ERROR_SIZE] = {0};
    lib.easy_setopt(curl, CURLOPT_URL, url.c_str());
    lib.easy_setopt(curl, CURLOPT_HTTPHEADER, headers);
    lib.easy_setopt(curl, CURLOPT_USERAGENT, "celeriac/0.1; hf_hub-compatible");
    lib.easy_setopt(curl, CURLOPT_FOLLOWLOCATION, 0L);
    lib.easy_setopt(curl, CURLOPT_NOSIGNAL, 1L);
    lib.easy_setopt(curl, CURLOPT_CONNECTTIMEOUT, options_.connect_timeout_s);
    lib.easy_setopt(curl, CURLOPT_LOW_SPEED_LIMIT, 1L);
    lib.easy_setopt(curl, CURLOPT_LOW_SPEED_TIME, options_.stall_timeout_s);
    lib.easy_setopt(curl, CURLOPT_ERRORBUFFER, errbuf);
    lib.easy_setopt(curl, CURLOPT_HEADERFUNCTION, on_header);
    lib.easy_setopt(curl, CURLOPT_HEADERDATA, &t);
    lib.easy_setopt(curl, CURLOPT_WRITEFUNCTION, on_body);
    lib.easy_setopt(curl, CURLOPT_WRITEDATA, &t);
    if (progress) {
      lib.easy_setopt(curl, CURLOPT_NOPROGRESS, 0L);
      lib.easy_setopt(curl, CURLOPT_XFERINFOFUNCTION, on_progress);
      lib.easy_setopt(curl, CURLOPT_XFERINFODATA, &t);
    }
    if (method == "HEAD") lib.easy_setopt(curl, CURLOPT_NOBODY, 1L);
    const std::string range = std::to_string(range_start) + "-";
    if (range_start > 0) lib.easy_setopt(curl, CURLOPT_RANGE, range.c_str());
    result.curl = lib.easy_perform(curl);
    if (result.curl != CURLE_OK) {
      result.curl_error = errbuf[0] ? errbuf : lib.easy_strerror(result.curl);
    }
    lib.easy_getinfo(curl, CURLINFO_RESPONSE_CODE, &result.status);
    lib.slist_free_all(headers);
    lib.easy_cleanup(curl);
    return result;
  }

  // Follows redirects itself (at most 5) so the token never leaves the endpoint's origin.
  HttpResult follow(const std::string& method, std::string url,
                    std::function<bool(const char*, std::size_t)> sink = nullptr,
                    uint64_t range_start = 0, Progress* progress = nullptr,
                    std::string* final_url = nullptr) const {
    for (int hop = 0; hop < 6; ++hop) {
      HttpResult r = request(method, url, sink, range_start, progress);
      if (r.curl == CURLE_OK && r.status >= 300 && r.status < 400 &&
          !r.header("location").empty()) {
        url = resolve_location(url, r.header("location"));
        continue;
      }
      if (final_url) *final_url = url;
      return r;
    }
    throw HubError(Kind::kProtocol, "too many redirects from " + url);
  }

 private:
  const HubOptions& options_;
};

// Turns a failed answer into a HubError (the URL is named; the token never is).
[[noreturn]] void throw_http(const HttpResult& r, const std::string& url, const HubOptions& o) {
  if (r.curl != CURLE_OK) {
    throw HubError(Kind::kNetwork, "cannot reach " + url + ": " + r.curl_error);
  }
  const std::string code = r.header("x-error-code");
  const std::string msg = r.header("x-error-message");
  const std::string detail = msg.empty() ? "" : " (" + msg + ")";
  if (r.status == 401 || r.status == 403 || code == "GatedRepo") {
    throw HubError(Kind::kAuth,
                   "HTTP " + std::to_string(r.status) + " for " + url + detail +
                       (o.token.empty() ? ": the repo is private or gated; set HF_TOKEN"
                                        : ": the token (HF_TOKEN) was refused"));
  }
  if (r.status == 404) {
    const std::string what = code == "RepoNotFound"       ? "repository not found"
                             : code == "RevisionNotFound" ? "revision not found"
                             : code == "EntryNotFound"    ? "file not found"
                                                          : "not found";
    throw HubError(Kind::kNotFound, what + ": " + url + detail);
  }
  throw HubError(Kind::kNetwork, "HTTP " + std::to_string(r.status) + " for " + url + detail);
}

// ---- hashing ----------------------------------------------------------------------------------

std::string hash_file(const fs::path& path, const EVP_MD* md, const std::string& prefix) {
  std::unique_ptr<EVP_MD_CTX, decltype(&EVP_MD_CTX_free)> ctx(EVP_MD_CTX_new(), EVP_MD_CTX_free);
  EVP_DigestInit_ex(ctx.get(), md, nullptr);
  EVP_DigestUpdate(ctx.get(), prefix.data(), prefix.size());
  std::ifstream in(path, std::ios::binary);
  std::vector<char> buf(1 << 20);
  while (in) {
    in.read(buf.data(), static_cast<std::streamsize>(buf.size()));
    EVP_DigestUpdate(ctx.get(), buf.data(), static_cast<std::size_t>(in.gcount()));
  }
  unsigned char out[EVP_MAX_MD_SIZE];
  unsigned int len = 0;
  EVP_DigestFinal_ex(ctx.get(), out, &len);
  std::string hex;
  for (unsigned int i = 0; i < len; ++i) {
    char b[3];
    std::snprintf(b, sizeof b, "%02x", out[i]);
    hex += b;
  }
  return hex;
}

// Checks a downloaded blob against its etag: sha256 for LFS files, git's blob sha1 otherwise.
void verify_blob(const fs::path& path, const std::string& etag, const std::string& filename) {
  std::string got, kind;
  if (is_hex(etag, 64)) {
    kind = "sha256";
    got = hash_file(path, EVP_sha256(), "");
  } else if (is_hex(etag, 40)) {
    kind = "git sha1";
    got = hash_file(path, EVP_sha1(), "blob " + std::to_string(fs::file_size(path)) + '\0');
  } else {
    spdlog::debug("hub: etag of {} is not a hash; download not verified", filename);
    return;
  }
  std::string want = etag;
  std::transform(want.begin(), want.end(), want.begin(), ::tolower);
  if (got != want) {
    throw HubError(Kind::kChecksum, filename + ": " + kind + " of the download is " + got +
                                        ", the hub announced " + want + " (corrupted transfer)");
  }
}

// ---- cache ------------------------------------------------------------------------------------

struct RepoCache {
  fs::path root;  // <cache>/models--org--name
  fs::path locks;
  fs::path blob(const std::string& etag) const { return root / "blobs" / etag; }
  fs::path snapshot(const std::string& commit) const { return root / "snapshots" / commit; }
  fs::path ref(const std::string& revision) const { return root / "refs" / revision; }
};

RepoCache repo_cache(const std::string& repo_id, const HubOptions& o) {
  const std::string folder = repo_folder_name(repo_id);
  return {o.cache_dir / folder, o.cache_dir / ".locks" / folder};
}

class FileLock {
 public:
  explicit FileLock(const fs::path& path) {
    fs::create_directories(path.parent_path());
    fd_ = ::open(path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0644);
    if (fd_ < 0) throw HubError(Kind::kIo, "cannot create lock " + path.string());
    ::flock(fd_, LOCK_EX);
  }
  ~FileLock() {
    ::flock(fd_, LOCK_UN);
    ::close(fd_);
  }
  FileLock(const FileLock&) = delete;
  FileLock& operator=(const FileLock&) = delete;

 private:
  int fd_ = -1;
};

void link_snapshot(const fs::path& blob, const fs::path& link) {
  fs::create_directories(link.parent_path());
  std::error_code ec;
  fs::remove(link, ec);
  fs::create_symlink(fs::relative(blob, link.parent_path()), link, ec);
  if (ec) fs::copy_file(blob, link, fs::copy_options::overwrite_existing);  // no symlinks here
}

void write_ref(const RepoCache& cache, const std::string& revision, const std::string& commit) {
  if (revision == commit) return;
  const fs::path ref = cache.ref(revision);
  fs::create_directories(ref.parent_path());
  std::ifstream in(ref);
  std::string current;
  std::getline(in, current);
  if (trim(current) == commit) return;
  std::ofstream(ref, std::ios::trunc) << commit;
}

// Commit the cache knows for a revision, or "" when none.
std::string cached_commit(const RepoCache& cache, const std::string& revision) {
  if (is_commit_hash(revision) && fs::exists(cache.snapshot(revision))) return revision;
  std::ifstream in(cache.ref(revision));
  std::string commit;
  std::getline(in, commit);
  return trim(commit);
}

// ---- downloading ------------------------------------------------------------------------------

struct FileMeta {
  std::string commit;
  std::string etag;
  uint64_t size = 0;
  std::string url;  // where the bytes are (after the resolve redirect)
};

std::string resolve_url(const HubOptions& o, const std::string& repo_id, const std::string& rev,
                        const std::string& filename) {
  return o.endpoint + "/" + repo_id + "/resolve/" + storage::percent_encode(rev) + "/" +
         storage::percent_encode(filename, /*keep_slash=*/true);
}

FileMeta file_metadata(const Http& http, const HubOptions& o, const std::string& repo_id,
                       const std::string& rev, const std::string& filename) {
  const std::string url = resolve_url(o, repo_id, rev, filename);
  std::string at = url;
  HttpResult r = http.request("HEAD", at);
  // Redirects on the same host (a renamed repo) are followed for the metadata; one to another
  // host (the CDN) carries the metadata itself, as huggingface_hub reads it.
  for (int hop = 0; hop < 10 && r.curl == CURLE_OK && r.status >= 300 && r.status < 400; ++hop) {
    const std::string loc = r.header("location");
    if (loc.empty()) break;
    const std::string target = resolve_location(at, loc);
    if (origin_of(target) != origin_of(at)) break;
    at = target;
    r = http.request("HEAD", at);
  }
  if (r.curl != CURLE_OK || r.status >= 400) throw_http(r, url, o);
  FileMeta m;
  m.commit = r.header("x-repo-commit");
  std::string etag = r.header("x-linked-etag");
  if (etag.empty()) etag = r.header("etag");
  if (etag.rfind("W/", 0) == 0) etag = etag.substr(2);
  etag.erase(std::remove(etag.begin(), etag.end(), '"'), etag.end());
  m.etag = etag;
  const std::string size =
      r.header("x-linked-size").empty() ? r.header("content-length") : r.header("x-linked-size");
  m.size = size.empty() ? 0 : std::stoull(size);
  m.url = r.status >= 300 && r.status < 400 ? resolve_location(at, r.header("location")) : at;
  if (m.commit.empty()) {
    throw HubError(Kind::kProtocol, url + ": the answer has no X-Repo-Commit header");
  }
  if (m.etag.empty() || m.etag.find('/') != std::string::npos ||
      m.etag.find("..") != std::string::npos) {
    throw HubError(Kind::kProtocol, url + ": the answer has no usable ETag");
  }
  return m;
}

// Downloads m.url into blob (via <blob>.incomplete), resuming and retrying, then verifies it.
void download_blob(const Http& http, const HubOptions& o, const FileMeta& m, const fs::path& blob,
                   const std::string& filename) {
  const fs::path part = fs::path(blob.string() + ".incomplete");
  fs::create_directories(blob.parent_path());
  Progress progress;
  progress.label = filename;
  progress.total = m.size;
  progress.enabled = o.progress;
  progress.tty = ::isatty(2);
  std::string last_error;
  bool done = false;
  for (int attempt = 1; attempt <= o.max_attempts && !done; ++attempt) {
    uint64_t have = fs::exists(part) ? fs::file_size(part) : 0;
    if (m.size > 0 && have > m.size) {
      fs::remove(part);
      have = 0;
    }
    if (m.size > 0 && have == m.size) break;  // a previous run got every byte
    std::FILE* f = std::fopen(part.c_str(), have > 0 ? "ab" : "wb");
    if (!f) throw HubError(Kind::kIo, "cannot write " + part.string());
    progress.offset = have;
    auto sink = [&](const char* data, std::size_t n) { return std::fwrite(data, 1, n, f) == n; };
    HttpResult r = http.follow("GET", m.url, sink, have, &progress);
    std::fclose(f);
    if (r.curl == CURLE_OK && r.status == 200 && have > 0) {
      // The server ignored the Range header and sent the whole file after our partial bytes.
      spdlog::warn("hub: {} ignored the range request; restarting {}", origin_of(m.url), filename);
      fs::remove(part);
      continue;
    }
    if (r.curl == CURLE_OK && r.status == 416) {  // nothing left to send
      done = true;
      break;
    }
    if (r.curl == CURLE_OK && r.status >= 400) throw_http(r, m.url, o);
    if (r.curl != CURLE_OK) {
      last_error = r.curl_error;
      const uint64_t now = fs::exists(part) ? fs::file_size(part) : 0;
      spdlog::warn("hub: download of {} interrupted at {} bytes ({}); attempt {}/{}", filename, now,
                   r.curl_error, attempt, o.max_attempts);
      std::this_thread::sleep_for(std::chrono::milliseconds(100 << std::min(attempt, 5)));
      continue;
    }
    done = true;
  }
  const uint64_t got = fs::exists(part) ? fs::file_size(part) : 0;
  if (!done && !(m.size > 0 && got == m.size)) {
    throw HubError(Kind::kNetwork, "download of " + filename + " failed after " +
                                       std::to_string(o.max_attempts) + " attempts: " + last_error);
  }
  progress.draw(got, true);
  if (m.size > 0 && got != m.size) {
    fs::remove(part);
    throw HubError(Kind::kChecksum, filename + ": downloaded " + std::to_string(got) +
                                        " bytes, the hub announced " + std::to_string(m.size));
  }
  try {
    verify_blob(part, m.etag, filename);
  } catch (...) {
    fs::remove(part);  // never keep bad bytes: a retry starts from zero
    throw;
  }
  fs::rename(part, blob);
}

fs::path download_in_cache(const Http& http, const HubOptions& o, const std::string& repo_id,
                           const std::string& filename, const std::string& revision,
                           std::string* commit_out) {
  const RepoCache cache = repo_cache(repo_id, o);
  const FileMeta m = file_metadata(http, o, repo_id, revision, filename);
  if (commit_out) *commit_out = m.commit;
  const fs::path link = cache.snapshot(m.commit) / filename;
  const fs::path blob = cache.blob(m.etag);
  {
    FileLock lock(cache.locks / (m.etag + ".lock"));
    if (!fs::exists(blob)) download_blob(http, o, m, blob, filename);
    link_snapshot(blob, link);
  }
  write_ref(cache, revision, m.commit);
  return link;
}

void check_repo_id(const std::string& repo_id) {
  static const std::regex re(R"(^[A-Za-z0-9][A-Za-z0-9_.-]*(/[A-Za-z0-9][A-Za-z0-9_.-]*)?$)");
  if (!std::regex_match(repo_id, re) || repo_id.find("..") != std::string::npos) {
    throw HubError(Kind::kNotFound, "\"" + repo_id + "\" is neither a folder nor a Hub repo id");
  }
}

}  // namespace

HubOptions HubOptions::from_env() {
  HubOptions o;
  if (auto e = env("HF_ENDPOINT"); !e.empty()) {
    while (!e.empty() && e.back() == '/') e.pop_back();
    o.endpoint = e;
  }
  std::string home = env("HF_HOME");
  if (home.empty()) {
    std::string xdg = env("XDG_CACHE_HOME");
    if (xdg.empty()) xdg = env("HOME") + "/.cache";
    home = xdg + "/huggingface";
  }
  if (auto c = env("HF_HUB_CACHE"); !c.empty()) {
    o.cache_dir = c;
  } else if (auto legacy = env("HUGGINGFACE_HUB_CACHE"); !legacy.empty()) {
    o.cache_dir = legacy;
  } else {
    o.cache_dir = fs::path(home) / "hub";
  }
  o.token = trim(env("HF_TOKEN"));
  if (o.token.empty()) {
    std::string token_path = env("HF_TOKEN_PATH");
    if (token_path.empty()) token_path = home + "/token";
    std::ifstream in(token_path);
    std::string t;
    std::getline(in, t);
    o.token = trim(t);
  }
  o.offline = env_true(env("HF_HUB_OFFLINE")) || env_true(env("TRANSFORMERS_OFFLINE"));
  return o;
}

std::string repo_folder_name(const std::string& repo_id) {
  std::string out = "models";
  std::size_t start = 0;
  while (true) {
    const auto slash = repo_id.find('/', start);
    out += "--" + repo_id.substr(start, slash - start);
    if (slash == std::string::npos) break;
    start = slash + 1;
  }
  return out;
}

bool looks_like_repo_id(const std::string& model) {
  if (fs::exists(model)) return false;
  static const std::regex re(R"(^[A-Za-z0-9][A-Za-z0-9_.-]*/[A-Za-z0-9][A-Za-z0-9_.-]*$)");
  return std::regex_match(model, re);
}

fs::path hub_download(const std::string& repo_id, const std::string& filename,
                      const HubOptions& o) {
  check_repo_id(repo_id);
  const RepoCache cache = repo_cache(repo_id, o);
  const std::string commit = cached_commit(cache, o.revision);
  const fs::path cached = commit.empty() ? fs::path() : cache.snapshot(commit) / filename;
  if (o.offline) {
    if (!cached.empty() && fs::exists(cached)) return cached;
    throw HubError(Kind::kOffline, filename + " of " + repo_id + "@" + o.revision +
                                       " is not in the cache " + o.cache_dir.string() +
                                       " and HF_HUB_OFFLINE is set");
  }
  if (is_commit_hash(o.revision) && !cached.empty() && fs::exists(cached)) return cached;
  Http http(o);
  try {
    return download_in_cache(http, o, repo_id, filename, o.revision, nullptr);
  } catch (const HubError& e) {
    // Hub unreachable: a cached copy of the revision still serves, as in huggingface_hub.
    if (e.kind() == Kind::kNetwork && !cached.empty() && fs::exists(cached)) {
      spdlog::warn("hub: {}; using the cached {}", e.what(), cached.string());
      return cached;
    }
    throw;
  }
}

fs::path resolve_model(const std::string& model, const HubOptions& o) {
  if (fs::is_directory(model)) return model;
  check_repo_id(model);
  const RepoCache cache = repo_cache(model, o);
  auto cached_snapshot = [&]() -> fs::path {
    const std::string commit = cached_commit(cache, o.revision);
    if (commit.empty()) return {};
    const fs::path snap = cache.snapshot(commit);
    return fs::exists(snap / "config.json") ? snap : fs::path();
  };
  if (o.offline) {
    if (auto snap = cached_snapshot(); !snap.empty()) return snap;
    throw HubError(Kind::kOffline, model + "@" + o.revision + " is not in the cache " +
                                       o.cache_dir.string() + " and HF_HUB_OFFLINE is set");
  }
  Http http(o);
  // The repo listing gives the commit and the file names in one request.
  const std::string api =
      o.endpoint + "/api/models/" + model + "/revision/" + storage::percent_encode(o.revision);
  HttpResult r = http.follow("GET", api);
  if (r.curl != CURLE_OK || r.status >= 400) {
    if (r.curl != CURLE_OK) {
      if (auto snap = cached_snapshot(); !snap.empty()) {
        spdlog::warn("hub: cannot reach {} ({}); using the cached snapshot {}", o.endpoint,
                     r.curl_error, snap.string());
        return snap;
      }
    }
    throw_http(r, api, o);
  }
  nlohmann::json info;
  try {
    info = nlohmann::json::parse(r.body);
  } catch (const nlohmann::json::exception& e) {
    throw HubError(Kind::kProtocol, api + ": answer is not JSON");
  }
  const std::string commit = info.value("sha", "");
  if (!is_commit_hash(commit)) throw HubError(Kind::kProtocol, api + ": no commit sha");
  std::set<std::string> files;
  for (const auto& s : info.value("siblings", nlohmann::json::array())) {
    files.insert(s.value("rfilename", ""));
  }
  const fs::path snap = cache.snapshot(commit);
  HubOptions at_commit = o;
  at_commit.revision = commit;
  auto fetch = [&](const std::string& name) {
    if (fs::exists(snap / name)) return;  // already in this snapshot
    std::string got_commit;
    download_in_cache(http, at_commit, model, name, commit, &got_commit);
  };
  if (!files.count("config.json")) {
    throw HubError(Kind::kNotFound, model + "@" + o.revision + " has no config.json");
  }
  fetch("config.json");
  // Weights, in transformers' order of preference.
  auto fetch_index = [&](const std::string& index) {
    fetch(index);
    std::ifstream in(snap / index);
    nlohmann::json j = nlohmann::json::parse(in, nullptr, false);
    if (j.is_discarded() || !j.contains("weight_map")) {
      throw HubError(Kind::kProtocol, index + " of " + model + " is not a shard index");
    }
    std::set<std::string> shards;
    for (const auto& [name, shard] : j["weight_map"].items())
      shards.insert(shard.get<std::string>());
    for (const auto& shard : shards) fetch(shard);
  };
  if (files.count("model.safetensors"))
    fetch("model.safetensors");
  else if (files.count("model.safetensors.index.json"))
    fetch_index("model.safetensors.index.json");
  else if (files.count("pytorch_model.bin"))
    fetch("pytorch_model.bin");
  else if (files.count("pytorch_model.bin.index.json"))
    fetch_index("pytorch_model.bin.index.json");
  else
    throw HubError(Kind::kNotFound, model + "@" + o.revision + " has no weights file");
  for (const char* extra :
       {"generation_config.json", "preprocessor_config.json", "processor_config.json",
        "tokenizer.json", "tokenizer_config.json", "vocab.json", "merges.txt",
        "special_tokens_map.json", "added_tokens.json"}) {
    if (files.count(extra)) fetch(extra);
  }
  write_ref(cache, o.revision, commit);
  return snap;
}

}  // namespace celeriac::florence
