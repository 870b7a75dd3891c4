// Cloud Storage downloads (see gcs.h).
#include "storage/gcs.h"

#include <openssl/evp.h>
#include <openssl/pem.h>

#include <chrono>
#include <fstream>
#include <memory>
#include <mutex>
#include <nlohmann/json.hpp>
#include <sstream>
#include <utility>

#include "celery/codec.h"
#include "storage/http_transfer.h"

namespace celeriac::storage {
namespace {

using Json = nlohmann::json;
constexpr const char* kDefaultTokenUri = "https://oauth2.googleapis.com/token";
constexpr const char* kReadScope = "https://www.googleapis.com/auth/devstorage.read_only";
constexpr const char* kWriteScope = "https://www.googleapis.com/auth/devstorage.read_write";

// JWTs use base64's URL alphabet without padding.
std::string base64url(const std::string& bytes) {
  std::string out = celery::base64_encode(bytes);
  while (!out.empty() && out.back() == '=') out.pop_back();
  for (char& c : out) c = c == '+' ? '-' : c == '/' ? '_' : c;
  return out;
}

FetchError refused(const std::string& what) {
  return FetchError(FetchErrorKind::forbidden, "gs: " + what);
}

// RS256 over `input` with the service account's PEM key.
std::string sign_rs256(const std::string& pem, const std::string& input) {
  std::unique_ptr<BIO, decltype(&BIO_free)> bio(
      BIO_new_mem_buf(pem.data(), static_cast<int>(pem.size())), BIO_free);
  std::unique_ptr<EVP_PKEY, decltype(&EVP_PKEY_free)> key(
      bio ? PEM_read_bio_PrivateKey(bio.get(), nullptr, nullptr, nullptr) : nullptr, EVP_PKEY_free);
  if (!key) throw refused("the credentials' private_key is not a PEM private key");
  std::unique_ptr<EVP_MD_CTX, decltype(&EVP_MD_CTX_free)> ctx(EVP_MD_CTX_new(), EVP_MD_CTX_free);
  size_t len = 0;
  if (!ctx || EVP_DigestSignInit(ctx.get(), nullptr, EVP_sha256(), nullptr, key.get()) != 1 ||
      EVP_DigestSign(ctx.get(), nullptr, &len, reinterpret_cast<const unsigned char*>(input.data()),
                     input.size()) != 1)
    throw refused("signing with the credentials' key failed");
  std::string sig(len, '\0');
  if (EVP_DigestSign(ctx.get(), reinterpret_cast<unsigned char*>(sig.data()), &len,
                     reinterpret_cast<const unsigned char*>(input.data()), input.size()) != 1)
    throw refused("signing with the credentials' key failed");
  sig.resize(len);
  return sig;
}

struct Token {
  std::string value;
  std::chrono::steady_clock::time_point renew_at;
  std::string source;  // the credentials file it came from
  std::string scope;   // what it allows (downloads read, the gateway's uploads write)
};

// A new access token for the credentials file's account, from its token endpoint.
Token request_token(const FetchOptions& options, const char* scope) {
  const std::string path = options.gcs_credentials.string();
  std::ifstream in(options.gcs_credentials);
  if (!in) throw refused("cannot read the credentials file " + path);
  Json creds;
  try {
    creds = Json::parse(in);
  } catch (const Json::exception&) {
    throw refused("the credentials file " + path + " is not JSON");
  }
  const std::string type = creds.value("type", "");
  const std::string token_uri = creds.value("token_uri", kDefaultTokenUri);
  std::string form, account;
  try {
    if (type == "service_account") {
      account = creds.at("client_email").get<std::string>();
      const auto now = std::chrono::duration_cast<std::chrono::seconds>(
                           std::chrono::system_clock::now().time_since_epoch())
                           .count();
      const std::string header = base64url(R"({"alg":"RS256","typ":"JWT"})");
      const std::string claims = base64url(Json{
          {"iss", account}, {"scope", scope}, {"aud", token_uri}, {"iat", now}, {"exp", now + 3600}}
                                               .dump());
      const std::string signed_part = header + "." + claims;
      const std::string jwt =
          signed_part + "." +
          base64url(sign_rs256(creds.at("private_key").get<std::string>(), signed_part));
      form = "grant_type=" + percent_encode("urn:ietf:params:oauth:grant-type:jwt-bearer") +
             "&assertion=" + jwt;
    } else if (type == "authorized_user") {
      account = "the authorized user " + creds.value("client_id", std::string("?"));
      form = "grant_type=refresh_token&client_id=" +
             percent_encode(creds.at("client_id").get<std::string>()) +
             "&client_secret=" + percent_encode(creds.at("client_secret").get<std::string>()) +
             "&refresh_token=" + percent_encode(creds.at("refresh_token").get<std::string>());
    } else {
      throw refused("the credentials file " + path + " has type '" + type +
                    "' (service_account or authorized_user are supported)");
    }
  } catch (const Json::exception&) {
    throw refused("the credentials file " + path + " lacks a field its type '" + type + "' needs");
  }
  std::string body;
  try {
    body = http_transfer({.url = token_uri,
                          .headers = {"Content-Type: application/x-www-form-urlencoded"},
                          .post_body = form,
                          .trusted = true,
                          .shown = "token endpoint " + token_uri},
                         options);
  } catch (const FetchError& e) {
    if (e.kind == FetchErrorKind::transient) throw;
    throw refused("the token endpoint refused the credentials of " + account + " (" + e.what() +
                  ")");
  }
  try {
    const Json answer = Json::parse(body);
    const int expires = answer.value("expires_in", 3600);
    return {answer.at("access_token").get<std::string>(),
            std::chrono::steady_clock::now() + std::chrono::seconds(std::max(0, expires - 60)),
            path, scope};
  } catch (const Json::exception&) {
    throw refused("the token endpoint " + token_uri + " answered without an access_token");
  }
}

// The cached token, renewed when it is about to expire or the credentials file changed.
std::string access_token(const FetchOptions& options, const char* scope) {
  static std::mutex mutex;
  static Token cached;
  std::lock_guard lock(mutex);
  if (cached.value.empty() || cached.source != options.gcs_credentials.string() ||
      cached.scope != scope || std::chrono::steady_clock::now() >= cached.renew_at)
    cached = request_token(options, scope);
  return cached.value;
}

}  // namespace

std::string gcs_media_url(const std::string& endpoint, const std::string& bucket,
                          const std::string& object) {
  std::string base = endpoint;
  while (!base.empty() && base.back() == '/') base.pop_back();
  return base + "/storage/v1/b/" + percent_encode(bucket) + "/o/" + percent_encode(object) +
         "?alt=media";
}

namespace {

// gs://BUCKET/OBJECT -> {bucket, object}; bad_url otherwise.
std::pair<std::string, std::string> split_gcs_url(const std::string& url) {
  const size_t slash = url.find('/', 5);
  if (url.rfind("gs://", 0) != 0 || slash == std::string::npos || slash == 5 ||
      slash + 1 >= url.size())
    throw FetchError(FetchErrorKind::bad_url, redact_url(url) + ": expected gs://BUCKET/OBJECT");
  return {url.substr(5, slash - 5), url.substr(slash + 1)};
}

// The endpoint is the operator's (trusted: an emulator on loopback is fine); only the names
// are the client's.
HttpCall gcs_call(std::string endpoint_url, const std::string& url, const char* scope,
                  const FetchOptions& options) {
  HttpCall call{.url = std::move(endpoint_url), .trusted = true, .shown = redact_url(url)};
  if (!options.gcs_anonymous && !options.gcs_credentials.empty())
    call.headers.push_back("Authorization: Bearer " + access_token(options, scope));
  return call;
}

}  // namespace

std::string fetch_gcs(const std::string& url, const FetchOptions& options) {
  const auto [bucket, object] = split_gcs_url(url);
  return http_transfer(
      gcs_call(gcs_media_url(options.gcs_endpoint, bucket, object), url, kReadScope, options),
      options);
}

void put_gcs(const std::string& url, const std::string& bytes, const std::string& content_type,
             const FetchOptions& options) {
  const auto [bucket, object] = split_gcs_url(url);
  HttpCall call = gcs_call(options.gcs_endpoint + "/upload/storage/v1/b/" + percent_encode(bucket) +
                               "/o?uploadType=media&name=" + percent_encode(object),
                           url, kWriteScope, options);
  call.headers.push_back("Content-Type: " + content_type);
  call.post_body = bytes;
  http_transfer(call, options);  // the answer is the object's metadata: not needed
}

}  // namespace celeriac::storage
