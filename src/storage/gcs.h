// gs://bucket/object through Cloud Storage's JSON API (a media download: GET
// <endpoint>/storage/v1/b/<bucket>/o/<object>?alt=media), authenticated as Google's client
// libraries do it from GOOGLE_APPLICATION_CREDENTIALS: a service account key (an RS256-signed
// JWT exchanged at its token_uri) or gcloud's authorized_user file (its refresh token). Tokens
// are kept until a minute before they expire. Tokens and keys never appear in errors or logs.
#pragma once

#include <string>

#include "storage/fetch.h"

namespace celeriac::storage {

// Throws FetchError: bad_url for a malformed gs:// URL, forbidden for credentials that cannot
// be read or are refused, and the download's own kinds (not_found for a missing object).
std::string fetch_gcs(const std::string& url, const FetchOptions& options);

// Writes `bytes` as gs://bucket/object (a media upload: POST
// <endpoint>/upload/storage/v1/b/<bucket>/o?uploadType=media&name=<object>) with the same
// credentials; an existing object of that name is replaced. Throws FetchError as fetch_gcs.
void put_gcs(const std::string& url, const std::string& bytes, const std::string& content_type,
             const FetchOptions& options);

// The media download URL of an object (names percent-encoded, "/" included). For tests.
std::string gcs_media_url(const std::string& endpoint, const std::string& bucket,
                          const std::string& object);

}  // namespace celeriac::storage
