// storage::fetch: local files under roots, http(s) through the lazily loaded libcurl.
#include "storage/fetch.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>

#include <cctype>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <system_error>

#include "storage/gcs.h"
#include "storage/http_transfer.h"

namespace celeriac::storage {
namespace fs = std::filesystem;

FetchOptions FetchOptions::from_env() {
  FetchOptions options;
  if (const char* base = std::getenv("FILES_BASE_PATH"); base && *base) options.roots.push_back(base);
  if (const char* creds = std::getenv("GOOGLE_APPLICATION_CREDENTIALS"); creds && *creds)
    options.gcs_credentials = creds;
  // Google's client libraries talk to an emulator, without credentials, when this is set.
  if (const char* emulator = std::getenv("STORAGE_EMULATOR_HOST"); emulator && *emulator) {
    const std::string host = emulator;
    options.gcs_endpoint = host.find("://") == std::string::npos ? "http://" + host : host;
    options.gcs_anonymous = true;
  }
  return options;
}

std::string percent_encode(const std::string& s, bool keep_slash) {
  static constexpr char hex[] = "0123456789ABCDEF";
  std::string out;
  for (unsigned char c : s) {
    if (std::isalnum(c) || c == '-' || c == '.' || c == '_' || c == '~' || (keep_slash && c == '/')) {
      out += static_cast<char>(c);
    } else {
      out += '%';
      out += hex[c >> 4];
      out += hex[c & 15];
    }
  }
  return out;
}

std::string redact_url(const std::string& url) {
  std::string out = url.substr(0, url.find('?'));
  const size_t scheme = out.find("://");
  if (scheme == std::string::npos) return out;
  const size_t host = scheme + 3, path = out.find('/', host);
  const size_t at = out.rfind('@', path == std::string::npos ? out.size() : path);
  if (at != std::string::npos && at >= host) out.erase(host, at + 1 - host);
  return out;
}

bool is_private_address(const sockaddr* address) {
  auto v4_private = [](uint32_t a) {  // host byte order
    const uint32_t b0 = a >> 24, b1 = (a >> 16) & 0xff;
    return b0 == 0 || b0 == 10 || b0 == 127 || (b0 == 100 && (b1 & 0xc0) == 64) ||
           (b0 == 169 && b1 == 254) || (b0 == 172 && (b1 & 0xf0) == 16) ||
           (b0 == 192 && b1 == 168) || b0 >= 224;
  };
  if (address->sa_family == AF_INET) {
    return v4_private(ntohl(reinterpret_cast<const sockaddr_in*>(address)->sin_addr.s_addr));
  }
  if (address->sa_family != AF_INET6) return true;  // unix sockets and the like: never
  const in6_addr& a = reinterpret_cast<const sockaddr_in6*>(address)->sin6_addr;
  if (IN6_IS_ADDR_V4MAPPED(&a) || IN6_IS_ADDR_V4COMPAT(&a)) {
    uint32_t v4;
    std::memcpy(&v4, a.s6_addr + 12, 4);
    return v4_private(ntohl(v4));
  }
  return IN6_IS_ADDR_LOOPBACK(&a) || IN6_IS_ADDR_UNSPECIFIED(&a) || IN6_IS_ADDR_LINKLOCAL(&a) ||
         IN6_IS_ADDR_SITELOCAL(&a) || IN6_IS_ADDR_MULTICAST(&a) || (a.s6_addr[0] & 0xfe) == 0xfc;
}

namespace {

bool starts_with(const std::string& s, const char* prefix) { return s.rfind(prefix, 0) == 0; }

bool inside(const fs::path& path, const fs::path& root) {
  auto p = path.begin(), r = root.begin();
  for (; r != root.end(); ++r, ++p) {
    if (r->empty()) continue;  // a trailing separator
    if (p == path.end() || *p != *r) return false;
  }
  return true;
}

std::string read_local(const std::string& spec, const FetchOptions& options) {
  if (options.roots.empty()) {
    throw FetchError(FetchErrorKind::forbidden,
                     "local file " + spec + ": no folder is allowed (set FILES_BASE_PATH or --files-root)");
  }
  std::error_code ec;
  fs::path requested = fs::path(spec);
  if (requested.is_relative()) requested = fs::absolute(options.roots.front(), ec) / requested;
  requested = requested.lexically_normal();
  // The lexical check first (no ".." out of a root), then the real path (no symlink out).
  bool lexically_inside = false, really_inside = false;
  const fs::path real = fs::weakly_canonical(requested, ec);
  for (const fs::path& root : options.roots) {
    const fs::path abs_root = fs::absolute(root, ec).lexically_normal();
    lexically_inside = lexically_inside || inside(requested, abs_root);
    really_inside = really_inside || inside(real, fs::weakly_canonical(abs_root, ec));
  }
  if (!lexically_inside || !really_inside) {
    throw FetchError(FetchErrorKind::forbidden, "local file " + spec + " is outside the allowed folders");
  }
  const fs::file_status status = fs::status(real, ec);
  if (!fs::exists(status)) throw FetchError(FetchErrorKind::not_found, "local file " + spec + " not found");
  if (!fs::is_regular_file(status)) {
    throw FetchError(FetchErrorKind::bad_url, "local file " + spec + " is not a regular file");
  }
  const auto size = fs::file_size(real, ec);
  if (ec) throw FetchError(FetchErrorKind::failed, "local file " + spec + ": " + ec.message());
  if (size > options.max_bytes) {
    throw FetchError(FetchErrorKind::too_large, "local file " + spec + " has " + std::to_string(size) +
                                                    " bytes, more than the limit of " +
                                                    std::to_string(options.max_bytes));
  }
  std::ifstream in(real, std::ios::binary);
  std::string bytes(size, '\0');
  if (!in.read(bytes.data(), static_cast<std::streamsize>(size))) {
    throw FetchError(FetchErrorKind::failed, "local file " + spec + ": read failed");
  }
  return bytes;
}

}  // namespace

std::string fetch(const std::string& url, const FetchOptions& options) {
  if (url.empty()) throw FetchError(FetchErrorKind::bad_url, "empty URL");
  if (starts_with(url, "http://") || starts_with(url, "https://")) return http_transfer({.url = url}, options);
  if (starts_with(url, "file://")) {
    const std::string path = url.substr(7);
    if (!starts_with(path, "/")) {
      throw FetchError(FetchErrorKind::bad_url, url + ": file URLs must name an absolute path");
    }
    return read_local(path, options);
  }
  if (starts_with(url, "gs://")) return fetch_gcs(url, options);
  const size_t scheme = url.find("://");
  if (scheme != std::string::npos) {
    throw FetchError(FetchErrorKind::unsupported,
                     redact_url(url) + ": the scheme " + url.substr(0, scheme) +
                         ":// is not supported (local paths, file://, http(s)://, gs://)");
  }
  return read_local(url, options);
}

}  // namespace celeriac::storage
