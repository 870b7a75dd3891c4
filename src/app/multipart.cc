// A multipart body is "--B\r\n" headers "\r\n\r\n" data, then "\r\n--B\r\n" before each next
// part and "\r\n--B--" at the end; data may hold anything except "\r\n--B".
#include "app/multipart.h"

#include <cctype>

namespace celeriac::app {
namespace {

std::string lower(std::string_view s) {
  std::string out(s);
  for (char& c : out) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return out;
}

std::string_view trim(std::string_view s) {
  while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) s.remove_prefix(1);
  while (!s.empty() && (s.back() == ' ' || s.back() == '\t')) s.remove_suffix(1);
  return s;
}

// The value of `key` in a header's ";"-separated parameters (quoted or not), nullopt if absent.
std::optional<std::string> parameter(std::string_view header, std::string_view key) {
  size_t pos = header.find(';');
  while (pos != std::string_view::npos) {
    std::string_view rest = header.substr(pos + 1);
    const size_t eq = rest.find('=');
    if (eq == std::string_view::npos) return std::nullopt;
    const std::string name = lower(trim(rest.substr(0, eq)));
    rest = trim(rest.substr(eq + 1));
    std::string value;
    size_t used = 0;
    if (!rest.empty() && rest.front() == '"') {
      for (used = 1; used < rest.size() && rest[used] != '"'; ++used) {
        if (rest[used] == '\\' && used + 1 < rest.size()) ++used;  // quoted-pair
        value.push_back(rest[used]);
      }
      ++used;
    } else {
      used = std::min(rest.find(';'), rest.size());
      value = std::string(trim(rest.substr(0, used)));
    }
    if (name == key) return value;
    const size_t next = rest.find(';', std::min(used, rest.size()));
    if (next == std::string_view::npos) return std::nullopt;
    pos = header.size() - rest.size() + next;
  }
  return std::nullopt;
}

}  // namespace

std::optional<std::string> multipart_boundary(std::string_view content_type) {
  const std::string type = lower(trim(content_type.substr(0, content_type.find(';'))));
  if (type != "multipart/form-data") return std::nullopt;
  return parameter(content_type, "boundary");
}

std::vector<FormPart> parse_multipart(std::string_view body, const std::string& boundary) {
  if (boundary.empty() || boundary.size() > 200)
    throw MultipartError("multipart body: missing or overlong boundary");
  const std::string first = "--" + boundary, separator = "\r\n--" + boundary;
  if (body.substr(0, first.size()) != first)
    throw MultipartError("multipart body does not start with its boundary");
  std::vector<FormPart> parts;
  size_t pos = first.size();
  for (;;) {
    if (body.substr(pos, 2) == "--") return parts;  // the closing delimiter
    if (body.substr(pos, 2) != "\r\n")
      throw MultipartError("multipart body: malformed boundary line");
    pos += 2;
    const size_t head_end = body.find("\r\n\r\n", pos);
    if (head_end == std::string_view::npos)
      throw MultipartError("multipart part without a blank line after its headers");
    FormPart part;
    bool disposition = false;
    std::string_view headers = body.substr(pos, head_end - pos);
    while (!headers.empty()) {
      const size_t eol = std::min(headers.find("\r\n"), headers.size());
      const std::string_view line = headers.substr(0, eol);
      headers.remove_prefix(std::min(eol + 2, headers.size()));
      const size_t colon = line.find(':');
      if (colon == std::string_view::npos)
        throw MultipartError("multipart part header without ':'");
      const std::string name = lower(trim(line.substr(0, colon)));
      const std::string_view value = trim(line.substr(colon + 1));
      if (name == "content-disposition") {
        if (lower(trim(value.substr(0, value.find(';')))) != "form-data")
          throw MultipartError("multipart part is not form-data");
        part.name = parameter(value, "name").value_or("");
        part.filename = parameter(value, "filename").value_or("");
        disposition = true;
      } else if (name == "content-type") {
        part.content_type = std::string(value);
      }
    }
    if (!disposition || part.name.empty())
      throw MultipartError("multipart part without a Content-Disposition name");
    const size_t data_begin = head_end + 4;
    const size_t data_end = body.find(separator, data_begin);
    if (data_end == std::string_view::npos)
      throw MultipartError("multipart body is cut off (no closing boundary)");
    part.data = body.substr(data_begin, data_end - data_begin);
    parts.push_back(std::move(part));
    pos = data_end + separator.size();
  }
}

}  // namespace celeriac::app
