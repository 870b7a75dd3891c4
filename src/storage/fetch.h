// The bytes a URL names, as tasks.inference_task receives it from clients: a local path (or
// file:// URL) under a configured root, http(s)://, or gs://bucket/object (storage/gcs.h).
// Everything is bounded: the size, the time, the redirects; local reads stay inside the roots (symlinks included) and, unless
// allowed, http(s) never connects to loopback, private or link-local addresses (checked on the
// address actually connected to, so redirects and DNS answers cannot get around it).
#pragma once

#include <cstddef>
#include <filesystem>
#include <stdexcept>
#include <string>
#include <vector>

struct sockaddr;

namespace celeriac::storage {

struct FetchOptions {
  // Local files are read only below these folders. Empty: no local reads at all.
  std::vector<std::filesystem::path> roots;
  std::size_t max_bytes = std::size_t(32) << 20;  // larger objects are refused, not truncated
  double timeout_s = 30;                          // whole transfer, connection included
  int max_redirects = 5;
  bool allow_private_network = false;  // http(s) to loopback, RFC 1918, link-local, ULA, ...
  // gs://: the Cloud Storage JSON API at this endpoint, with an OAuth token from this
  // credentials file (a service account key or gcloud's authorized_user file); without one,
  // or with gcs_anonymous, requests carry no token (public objects, emulators).
  std::string gcs_endpoint = "https://storage.googleapis.com";
  std::filesystem::path gcs_credentials;
  bool gcs_anonymous = false;

  // roots from FILES_BASE_PATH (the reference stack's upload folder), gcs_credentials from
  // GOOGLE_APPLICATION_CREDENTIALS, an emulator from STORAGE_EMULATOR_HOST, when they are set.
  static FetchOptions from_env();
};

// What went wrong, so that callers can tell a retry from a permanent failure.
enum class FetchErrorKind {
  bad_url,      // not a URL or path this can read
  unsupported,  // a scheme not handled (yet): s3://, ftp://, ...
  forbidden,    // outside the roots, a private address, HTTP 401/403, bad credentials
  not_found,    // no such file, HTTP 404/410
  too_large,    // more than max_bytes
  transient,    // timeouts, refused connections, HTTP 408/429/5xx: worth retrying
  failed,       // anything else (other HTTP statuses, read errors)
};

struct FetchError : std::runtime_error {
  FetchError(FetchErrorKind kind, const std::string& what) : std::runtime_error(what), kind(kind) {}
  FetchErrorKind kind;
};

// The whole object. Throws FetchError; the message names the URL without its query string or
// credentials (they may hold secrets).
std::string fetch(const std::string& url, const FetchOptions& options);

// RFC 3986 percent-encoding of a path segment or query value: everything but letters, digits
// and "-._~" (and "/" when keep_slash) becomes %XX.
std::string percent_encode(const std::string& s, bool keep_slash = false);

// The URL as it may be logged: user:password@ and everything from '?' on removed.
std::string redact_url(const std::string& url);

// Loopback, unspecified, RFC 1918, carrier-grade NAT, link-local, multicast, IPv6 ULA and
// IPv4-mapped forms of these. Exposed for tests.
bool is_private_address(const sockaddr* address);

}  // namespace celeriac::storage
