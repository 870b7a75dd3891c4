// One HTTP(S) request with storage::fetch's limits (size, time, redirects, no private
// addresses), shared by http(s):// fetches and the Cloud Storage client. Internal to storage/.
#pragma once

#include <optional>
#include <string>
#include <vector>

#include "storage/fetch.h"

namespace celeriac::storage {

struct HttpCall {
  std::string url;
  std::vector<std::string> headers;       // "Name: value"
  std::optional<std::string> post_body;   // POST when set (form-encoded by the caller)
  bool trusted = false;                   // an endpoint the operator configured: private allowed
  std::string shown;                      // how errors name the request (default: redacted URL)
};

// The response body of a 2xx answer. Throws FetchError (statuses and curl errors mapped to kinds).
std::string http_transfer(const HttpCall& call, const FetchOptions& options);

}  // namespace celeriac::storage
