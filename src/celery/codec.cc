// Implementation of codec.h.
#include "celery/codec.h"

#include <openssl/evp.h>
#include <sys/random.h>

#include <chrono>
#include <cmath>
#include <cstdio>
#include <ctime>

namespace celeriac::celery {

std::string base64_encode(std::string_view bytes) {
  std::string out(4 * ((bytes.size() + 2) / 3), '\0');
  int n = EVP_EncodeBlock(reinterpret_cast<unsigned char*>(out.data()),
                          reinterpret_cast<const unsigned char*>(bytes.data()),
                          static_cast<int>(bytes.size()));
  out.resize(static_cast<size_t>(n));
  return out;
}

std::string base64_decode(std::string_view text) {
  // Tolerate line breaks (MIME style) but nothing else outside the alphabet.
  std::string clean;
  clean.reserve(text.size());
  for (char c : text) {
    if (c == '\n' || c == '\r') continue;
    clean.push_back(c);
  }
  if (clean.size() % 4 != 0) throw Base64Error("base64 length is not a multiple of 4");
  std::string out(clean.size() / 4 * 3, '\0');
  int n = EVP_DecodeBlock(reinterpret_cast<unsigned char*>(out.data()),
                          reinterpret_cast<const unsigned char*>(clean.data()),
                          static_cast<int>(clean.size()));
  if (n < 0) throw Base64Error("invalid base64 character");
  // EVP_DecodeBlock counts padding as zero bytes.
  size_t pad = 0;
  if (!clean.empty() && clean.back() == '=') ++pad;
  if (clean.size() > 1 && clean[clean.size() - 2] == '=') ++pad;
  out.resize(static_cast<size_t>(n) - pad);
  return out;
}

std::string uuid4() {
  // getrandom(2) rather than OpenSSL's DRBG: initialising OpenSSL's providers costs a few MB
  // of resident memory in every worker for no gain here.
  unsigned char b[16];
  if (::getrandom(b, sizeof b, 0) != static_cast<ssize_t>(sizeof b)) {
    throw std::runtime_error("no randomness for uuid4");
  }
  b[6] = (b[6] & 0x0f) | 0x40;  // version 4
  b[8] = (b[8] & 0x3f) | 0x80;  // RFC 4122 variant
  char out[37];
  std::snprintf(out, sizeof out,
                "%02x%02x%02x%02x-%02x%02x-%02x%02x-%02x%02x-%02x%02x%02x%02x%02x%02x", b[0], b[1],
                b[2], b[3], b[4], b[5], b[6], b[7], b[8], b[9], b[10], b[11], b[12], b[13], b[14],
                b[15]);
  return out;
}

double unix_now() {
  using namespace std::chrono;
  return duration<double>(system_clock::now().time_since_epoch()).count();
}

namespace {

std::string format_utc(double unix_seconds, const char* suffix) {
  double whole = std::floor(unix_seconds);
  auto micros = static_cast<long>(std::llround((unix_seconds - whole) * 1e6));
  if (micros >= 1000000) {
    whole += 1;
    micros -= 1000000;
  }
  time_t t = static_cast<time_t>(whole);
  tm parts{};
  gmtime_r(&t, &parts);
  char buf[64];
  size_t n = std::strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%S", &parts);
  std::string out(buf, n);
  // Python's isoformat() drops the fraction when microseconds are 0.
  if (micros != 0) {
    std::snprintf(buf, sizeof buf, ".%06ld", micros);
    out += buf;
  }
  return out + suffix;
}

}  // namespace

std::string format_iso8601_utc(double unix_seconds) { return format_utc(unix_seconds, "+00:00"); }
std::string format_iso8601_naive_utc(double unix_seconds) { return format_utc(unix_seconds, ""); }

std::optional<double> parse_iso8601(std::string_view s) {
  int year, month, day, hour = 0, minute = 0, second = 0;
  if (s.size() < 10) return std::nullopt;
  auto digits = [&](size_t pos, size_t n, int& out) {
    if (pos + n > s.size()) return false;
    out = 0;
    for (size_t i = pos; i < pos + n; ++i) {
      if (s[i] < '0' || s[i] > '9') return false;
      out = out * 10 + (s[i] - '0');
    }
    return true;
  };
  if (!digits(0, 4, year) || s[4] != '-' || !digits(5, 2, month) || s[7] != '-' ||
      !digits(8, 2, day)) {
    return std::nullopt;
  }
  size_t pos = 10;
  double fraction = 0;
  if (pos < s.size() && (s[pos] == 'T' || s[pos] == ' ')) {
    if (!digits(pos + 1, 2, hour) || pos + 3 >= s.size() || s[pos + 3] != ':' ||
        !digits(pos + 4, 2, minute)) {
      return std::nullopt;
    }
    pos += 6;
    if (pos < s.size() && s[pos] == ':') {
      if (!digits(pos + 1, 2, second)) return std::nullopt;
      pos += 3;
    }
    if (pos < s.size() && s[pos] == '.') {
      double scale = 0.1;
      ++pos;
      size_t start = pos;
      while (pos < s.size() && s[pos] >= '0' && s[pos] <= '9') {
        fraction += (s[pos] - '0') * scale;
        scale /= 10;
        ++pos;
      }
      if (pos == start) return std::nullopt;
    }
  }
  int offset_seconds = 0;
  if (pos < s.size()) {
    if (s[pos] == 'Z' && pos + 1 == s.size()) {
      pos++;
    } else if ((s[pos] == '+' || s[pos] == '-')) {
      int oh, om = 0;
      if (!digits(pos + 1, 2, oh)) return std::nullopt;
      size_t p = pos + 3;
      if (p < s.size() && s[p] == ':') ++p;
      if (p < s.size() && !digits(p, 2, om)) return std::nullopt;
      if (p < s.size()) p += 2;
      if (p != s.size()) return std::nullopt;
      offset_seconds = (oh * 3600 + om * 60) * (s[pos] == '-' ? -1 : 1);
    } else {
      return std::nullopt;
    }
  }
  if (month < 1 || month > 12 || day < 1 || day > 31 || hour > 23 || minute > 59 || second > 60) {
    return std::nullopt;
  }
  tm parts{};
  parts.tm_year = year - 1900;
  parts.tm_mon = month - 1;
  parts.tm_mday = day;
  parts.tm_hour = hour;
  parts.tm_min = minute;
  parts.tm_sec = second;
  time_t t = timegm(&parts);
  return static_cast<double>(t) + fraction - offset_seconds;
}

namespace {

void repr_string(const std::string& s, std::string& out) {
  // Python picks single quotes unless the text has a ' and no ".
  bool has_single = s.find('\'') != std::string::npos;
  bool has_double = s.find('"') != std::string::npos;
  char quote = (has_single && !has_double) ? '"' : '\'';
  out.push_back(quote);
  for (unsigned char c : s) {
    switch (c) {
      case '\\': out += "\\\\"; break;
      case '\n': out += "\\n"; break;
      case '\r': out += "\\r"; break;
      case '\t': out += "\\t"; break;
      default:
        if (c == static_cast<unsigned char>(quote)) {
          out.push_back('\\');
          out.push_back(static_cast<char>(c));
        } else if (c < 0x20 || c == 0x7f) {
          char buf[8];
          std::snprintf(buf, sizeof buf, "\\x%02x", c);
          out += buf;
        } else {
          out.push_back(static_cast<char>(c));
        }
    }
  }
  out.push_back(quote);
}

void repr(const Json& v, std::string& out) {
  switch (v.type()) {
    case Json::value_t::null: out += "None"; break;
    case Json::value_t::boolean: out += v.get<bool>() ? "True" : "False"; break;
    case Json::value_t::string: repr_string(v.get_ref<const std::string&>(), out); break;
    case Json::value_t::array: {
      out.push_back('[');
      bool first = true;
      for (const auto& e : v) {
        if (!first) out += ", ";
        first = false;
        repr(e, out);
      }
      out.push_back(']');
      break;
    }
    case Json::value_t::object: {
      out.push_back('{');
      bool first = true;
      for (const auto& [k, e] : v.items()) {
        if (!first) out += ", ";
        first = false;
        repr_string(k, out);
        out += ": ";
        repr(e, out);
      }
      out.push_back('}');
      break;
    }
    case Json::value_t::number_float: {
      double d = v.get<double>();
      if (std::isnan(d)) {
        out += "nan";
      } else if (std::isinf(d)) {
        out += d > 0 ? "inf" : "-inf";
      } else {
        std::string text = v.dump();
        // Python always shows a float with a decimal point or exponent: 2.0, not 2.
        if (text.find_first_of(".eE") == std::string::npos) text += ".0";
        out += text;
      }
      break;
    }
    default: out += v.dump();
  }
}

}  // namespace

std::string python_repr(const Json& value) {
  std::string out;
  repr(value, out);
  return out;
}

std::string python_tuple_repr(const Json& array) {
  if (!array.is_array()) return python_repr(array);
  std::string out = "(";
  bool first = true;
  for (const auto& e : array) {
    if (!first) out += ", ";
    first = false;
    repr(e, out);
  }
  if (array.size() == 1) out += ",";
  return out + ")";
}

void unwrap_kombu_types(Json& value) {
  if (value.is_array()) {
    for (auto& e : value) unwrap_kombu_types(e);
  } else if (value.is_object()) {
    if (value.size() == 2 && value.contains("__type__") && value.contains("__value__")) {
      Json inner = value["__value__"];
      if (inner.is_object() && inner.contains("hex")) inner = inner["hex"];  // uuid
      value = std::move(inner);
      return;
    }
    for (auto& [k, e] : value.items()) unwrap_kombu_types(e);
  }
}

}  // namespace celeriac::celery
