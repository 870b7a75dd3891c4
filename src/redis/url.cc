// Parsing of redis:// and unix:// URLs (see url.h).
#include "redis/url.h"

#include <charconv>
#include <stdexcept>

namespace celeriac::redis {
namespace {

int parse_int(std::string_view s, const char* what) {
  int value = 0;
  auto [ptr, ec] = std::from_chars(s.data(), s.data() + s.size(), value);
  if (ec != std::errc() || ptr != s.data() + s.size() || value < 0) {
    throw std::invalid_argument(std::string("redis URL: bad ") + what + " '" + std::string(s) + "'");
  }
  return value;
}

// Percent-decoding, so passwords may contain '@' or ':' as %40 / %3A (as redis-py allows).
std::string percent_decode(std::string_view s) {
  std::string out;
  for (size_t i = 0; i < s.size(); ++i) {
    if (s[i] == '%' && i + 2 < s.size()) {
      int v = 0;
      auto [p, ec] = std::from_chars(s.data() + i + 1, s.data() + i + 3, v, 16);
      if (ec == std::errc() && p == s.data() + i + 3) {
        out.push_back(static_cast<char>(v));
        i += 2;
        continue;
      }
    }
    out.push_back(s[i]);
  }
  return out;
}

}  // namespace

Url Url::parse(std::string_view text) {
  Url url;
  std::string_view rest;
  bool is_unix = false;
  if (text.starts_with("redis://")) {
    rest = text.substr(8);
  } else if (text.starts_with("rediss://")) {
    url.tls = true;
    rest = text.substr(9);
  } else if (text.starts_with("unix://")) {
    is_unix = true;
    rest = text.substr(7);
  } else {
    throw std::invalid_argument("redis URL must start with redis://, rediss:// or unix://");
  }

  std::string_view query;
  if (auto q = rest.find('?'); q != std::string_view::npos) {
    query = rest.substr(q + 1);
    rest = rest.substr(0, q);
  }
  // Credentials: everything before the last '@' (a password may contain '@' unencoded).
  if (auto at = rest.rfind('@'); at != std::string_view::npos) {
    std::string_view cred = rest.substr(0, at);
    rest = rest.substr(at + 1);
    if (auto colon = cred.find(':'); colon != std::string_view::npos) {
      url.username = percent_decode(cred.substr(0, colon));
      url.password = percent_decode(cred.substr(colon + 1));
    } else {
      url.password = percent_decode(cred);  // redis://secret@host: a bare password, as redis-py
    }
  }

  if (is_unix) {
    if (rest.empty() || rest[0] != '/') throw std::invalid_argument("unix:// URL needs an absolute socket path");
    url.unix_socket = std::string(rest);
  } else {
    std::string_view hostport = rest;
    if (auto slash = rest.find('/'); slash != std::string_view::npos) {
      hostport = rest.substr(0, slash);
      std::string_view db = rest.substr(slash + 1);
      if (!db.empty()) url.db = parse_int(db, "database number");
    }
    if (!hostport.empty() && hostport[0] == '[') {  // [::1]:6379
      auto close = hostport.find(']');
      if (close == std::string_view::npos) throw std::invalid_argument("redis URL: unclosed '['");
      url.host = std::string(hostport.substr(1, close - 1));
      hostport = hostport.substr(close + 1);
      if (hostport.starts_with(":")) url.port = parse_int(hostport.substr(1), "port");
    } else if (auto colon = hostport.rfind(':'); colon != std::string_view::npos) {
      if (colon > 0) url.host = std::string(hostport.substr(0, colon));
      url.port = parse_int(hostport.substr(colon + 1), "port");
    } else if (!hostport.empty()) {
      url.host = std::string(hostport);
    }
    if (url.port == 0 || url.port > 65535) throw std::invalid_argument("redis URL: port out of range");
  }

  while (!query.empty()) {
    auto amp = query.find('&');
    std::string_view pair = query.substr(0, amp);
    query = amp == std::string_view::npos ? std::string_view{} : query.substr(amp + 1);
    if (pair.starts_with("db=")) url.db = parse_int(pair.substr(3), "database number");
    if (pair.starts_with("password=")) url.password = percent_decode(pair.substr(9));
  }
  return url;
}

bool Url::same_server(const Url& o) const {
  return host == o.host && port == o.port && unix_socket == o.unix_socket &&
         username == o.username && password == o.password && tls == o.tls;
}

std::string Url::redacted() const {
  Url copy = *this;
  if (!copy.password.empty()) copy.password = "***";
  return copy.to_string();
}

std::string Url::to_string() const {
  std::string auth;
  if (!username.empty() || !password.empty()) auth = username + ":" + password + "@";
  if (!unix_socket.empty()) return "unix://" + auth + unix_socket + "?db=" + std::to_string(db);
  std::string h = host.find(':') != std::string::npos ? "[" + host + "]" : host;
  return std::string(tls ? "rediss://" : "redis://") + auth + h + ":" + std::to_string(port) + "/" +
         std::to_string(db);
}

}  // namespace celeriac::redis
