// libcurl, loaded on first use with dlopen.
//
// Only downloads (model weights from the hub, images over http later) need libcurl, and
// libcurl brings its TLS, Kerberos and LDAP libraries with it: ~3 MiB of resident pages in
// every process that links it. Loading it on first use keeps a worker that only serves queue
// tasks small. Callers use the function pointers exactly like the libcurl functions.
#pragma once

#define CURL_DISABLE_TYPECHECK  // the type-checking macros would hide the functions we load
#include <curl/curl.h>

#include <stdexcept>

namespace celeriac::storage {

struct CurlLibrary {
  decltype(&::curl_easy_init) easy_init;
  decltype(&::curl_easy_setopt) easy_setopt;
  decltype(&::curl_easy_perform) easy_perform;
  decltype(&::curl_easy_getinfo) easy_getinfo;
  decltype(&::curl_easy_cleanup) easy_cleanup;
  decltype(&::curl_easy_strerror) easy_strerror;
  decltype(&::curl_slist_append) slist_append;
  decltype(&::curl_slist_free_all) slist_free_all;
};

// libcurl is not installed or lacks a function we need.
struct CurlUnavailable : std::runtime_error {
  using std::runtime_error::runtime_error;
};

// Loads libcurl.so.4 and runs curl_global_init, once per process (thread-safe).
// Throws CurlUnavailable.
const CurlLibrary& curl_library();

}  // namespace celeriac::storage
