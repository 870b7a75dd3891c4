// multipart/form-data bodies (RFC 7578), as browsers and `curl -F` send an upload form: the
// parts' names, file names, types and bytes. Only what the gateway's form needs; no nesting.
#pragma once

#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

namespace celeriac::app {

struct FormPart {
  std::string name;          // Content-Disposition name="..."
  std::string filename;      // filename="..." (empty for plain fields)
  std::string content_type;  // the part's Content-Type ("" when not given)
  std::string_view data;     // the bytes, a view into the parsed body
};

// The body is not multipart, its boundary is missing or a part is malformed.
struct MultipartError : std::invalid_argument {
  using std::invalid_argument::invalid_argument;
};

// The boundary parameter of a multipart/form-data Content-Type; nullopt for other types.
std::optional<std::string> multipart_boundary(std::string_view content_type);

// Splits `body` (which must outlive the parts) at `boundary`.
std::vector<FormPart> parse_multipart(std::string_view body, const std::string& boundary);

}  // namespace celeriac::app
