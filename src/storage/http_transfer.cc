// HTTP(S) transfers on the lazily loaded libcurl, bounded as FetchOptions says.
#include "storage/http_transfer.h"

#include <sys/socket.h>

#include "storage/curl_library.h"

namespace celeriac::storage {
namespace {

struct Transfer {
  std::string body;
  std::size_t max_bytes = 0;
  bool allow_private = false;
  bool too_large = false;
  bool refused_address = false;
};

size_t on_body(char* data, size_t size, size_t count, void* user) {
  auto* t = static_cast<Transfer*>(user);
  const size_t n = size * count;
  if (t->body.size() + n > t->max_bytes) {
    t->too_large = true;
    return 0;  // aborts the transfer
  }
  t->body.append(data, n);
  return n;
}

// Called for every connection libcurl opens (redirects too), with the address it will use.
curl_socket_t on_open_socket(void* user, curlsocktype, curl_sockaddr* address) {
  auto* t = static_cast<Transfer*>(user);
  if (!t->allow_private && is_private_address(&address->addr)) {
    t->refused_address = true;
    return CURL_SOCKET_BAD;
  }
  return ::socket(address->family, address->socktype, address->protocol);
}

}  // namespace

std::string http_transfer(const HttpCall& call, const FetchOptions& options) {
  const std::string& url = call.url;
  const std::string shown = call.shown.empty() ? redact_url(url) : call.shown;
  const CurlLibrary* lib = nullptr;
  try {
    lib = &curl_library();
  } catch (const CurlUnavailable& e) {
    throw FetchError(FetchErrorKind::failed, shown + ": " + e.what());
  }
  CURL* curl = lib->easy_init();
  if (!curl) throw FetchError(FetchErrorKind::failed, shown + ": curl_easy_init failed");
  Transfer t;
  t.max_bytes = options.max_bytes;
  t.allow_private = options.allow_private_network || call.trusted;
  char errbuf[CURL_ERROR_SIZE] = {0};
  lib->easy_setopt(curl, CURLOPT_URL, url.c_str());
  lib->easy_setopt(curl, CURLOPT_PROTOCOLS_STR, "http,https");
  lib->easy_setopt(curl, CURLOPT_REDIR_PROTOCOLS_STR, "http,https");
  lib->easy_setopt(curl, CURLOPT_FOLLOWLOCATION, 1L);
  lib->easy_setopt(curl, CURLOPT_MAXREDIRS, static_cast<long>(options.max_redirects));
  lib->easy_setopt(curl, CURLOPT_NOSIGNAL, 1L);
  lib->easy_setopt(curl, CURLOPT_TIMEOUT_MS, static_cast<long>(options.timeout_s * 1000));
  lib->easy_setopt(curl, CURLOPT_MAXFILESIZE_LARGE, static_cast<curl_off_t>(options.max_bytes));
  lib->easy_setopt(curl, CURLOPT_USERAGENT, "celeriac/0.1");
  lib->easy_setopt(curl, CURLOPT_ERRORBUFFER, errbuf);
  lib->easy_setopt(curl, CURLOPT_WRITEFUNCTION, on_body);
  lib->easy_setopt(curl, CURLOPT_WRITEDATA, &t);
  lib->easy_setopt(curl, CURLOPT_OPENSOCKETFUNCTION, on_open_socket);
  lib->easy_setopt(curl, CURLOPT_OPENSOCKETDATA, &t);
  curl_slist* headers = nullptr;
  for (const std::string& h : call.headers) headers = lib->slist_append(headers, h.c_str());
  if (headers) lib->easy_setopt(curl, CURLOPT_HTTPHEADER, headers);
  if (call.post_body) {
    lib->easy_setopt(curl, CURLOPT_POSTFIELDSIZE_LARGE, static_cast<curl_off_t>(call.post_body->size()));
    lib->easy_setopt(curl, CURLOPT_POSTFIELDS, call.post_body->c_str());
  }
  const CURLcode code = lib->easy_perform(curl);
  if (headers) lib->slist_free_all(headers);
  long status = 0;
  lib->easy_getinfo(curl, CURLINFO_RESPONSE_CODE, &status);
  lib->easy_cleanup(curl);

  if (t.refused_address) {
    throw FetchError(FetchErrorKind::forbidden,
                     shown + ": the host resolves to a private or loopback address (not allowed)");
  }
  if (t.too_large || code == CURLE_FILESIZE_EXCEEDED) {
    throw FetchError(FetchErrorKind::too_large,
                     shown + ": more than the limit of " + std::to_string(options.max_bytes) + " bytes");
  }
  if (code != CURLE_OK) {
    const std::string why = errbuf[0] ? errbuf : lib->easy_strerror(code);
    const bool transient = code == CURLE_COULDNT_RESOLVE_HOST || code == CURLE_COULDNT_CONNECT ||
                           code == CURLE_OPERATION_TIMEDOUT || code == CURLE_RECV_ERROR ||
                           code == CURLE_SEND_ERROR || code == CURLE_GOT_NOTHING ||
                           code == CURLE_PARTIAL_FILE;
    const FetchErrorKind kind = code == CURLE_UNSUPPORTED_PROTOCOL ? FetchErrorKind::unsupported
                                : code == CURLE_URL_MALFORMAT      ? FetchErrorKind::bad_url
                                : transient                        ? FetchErrorKind::transient
                                                                   : FetchErrorKind::failed;
    throw FetchError(kind, shown + ": " + why);
  }
  if (status >= 400) {
    const FetchErrorKind kind =
        status == 404 || status == 410                    ? FetchErrorKind::not_found
        : status == 401 || status == 403                  ? FetchErrorKind::forbidden
        : status == 408 || status == 429 || status >= 500 ? FetchErrorKind::transient
                                                          : FetchErrorKind::failed;
    throw FetchError(kind, shown + ": HTTP " + std::to_string(status));
  }
  return std::move(t.body);
}

}  // namespace celeriac::storage
