// gs:// downloads against a real HTTP server on 127.0.0.1 that plays Cloud Storage's JSON API
// and an OAuth token endpoint; the service account key is generated here, and the JWT the
// client sends is verified with its public key.
#include "storage/gcs.h"

#include <gtest/gtest.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/rsa.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <memory>
#include <nlohmann/json.hpp>

#include "celery/codec.h"
#include "storage/loopback_server_test_util.h"

namespace celeriac::storage {
namespace {
namespace fs = std::filesystem;
using testing::http_response;
using testing::LoopbackServer;
using Json = nlohmann::json;

std::string base64url_decode(std::string s) {
  for (char& c : s) c = c == '-' ? '+' : c == '_' ? '/' : c;
  while (s.size() % 4) s += '=';
  return celery::base64_decode(s);
}

std::string form_field(const std::string& request, const std::string& name) {
  const std::string body = request.substr(request.find("\r\n\r\n") + 4);
  const size_t at = body.find(name + "=");
  if (at == std::string::npos) return "";
  const size_t end = body.find('&', at);
  return body.substr(at + name.size() + 1,
                     end == std::string::npos ? std::string::npos : end - at - name.size() - 1);
}

struct ServiceAccount {
  std::unique_ptr<EVP_PKEY, decltype(&EVP_PKEY_free)> key{EVP_RSA_gen(2048), EVP_PKEY_free};
  fs::path file =
      fs::temp_directory_path() / ("celeriac-gcs-" + std::to_string(::getpid()) + "-" +
                                   std::to_string(reinterpret_cast<uintptr_t>(this)) + ".json");
  ServiceAccount(const std::string& token_uri) {
    std::unique_ptr<BIO, decltype(&BIO_free)> bio(BIO_new(BIO_s_mem()), BIO_free);
    PEM_write_bio_PrivateKey(bio.get(), key.get(), nullptr, nullptr, 0, nullptr, nullptr);
    char* data = nullptr;
    const long n = BIO_get_mem_data(bio.get(), &data);
    std::ofstream(file) << Json{
        {"type", "service_account"},
        {"client_email", "reader@proj.iam.gserviceaccount.com"},
        {"private_key", std::string(data, n)},
        {"token_uri",
         token_uri}}.dump();
  }
  ~ServiceAccount() { fs::remove(file); }
  bool verifies(const std::string& jwt) const {
    const size_t dot = jwt.rfind('.');
    const std::string input = jwt.substr(0, dot), sig = base64url_decode(jwt.substr(dot + 1));
    std::unique_ptr<EVP_MD_CTX, decltype(&EVP_MD_CTX_free)> ctx(EVP_MD_CTX_new(), EVP_MD_CTX_free);
    return EVP_DigestVerifyInit(ctx.get(), nullptr, EVP_sha256(), nullptr, key.get()) == 1 &&
           EVP_DigestVerify(ctx.get(), reinterpret_cast<const unsigned char*>(sig.data()),
                            sig.size(), reinterpret_cast<const unsigned char*>(input.data()),
                            input.size()) == 1;
  }
};

// Cloud Storage + token endpoint: the object needs the token the endpoint handed out.
std::string fake_google(const std::string& request) {
  if (request.rfind("POST /token ", 0) == 0) {
    return form_field(request, "assertion").empty()
               ? http_response("400 Bad Request", R"({"error":"invalid_grant"})")
               : http_response(
                     "200 OK",
                     R"({"access_token":"tok-1","expires_in":3600,"token_type":"Bearer"})");
  }
  if (request.rfind("GET /storage/v1/b/bkt/o/dir%2Fimg%201.png?alt=media ", 0) == 0) {
    return request.find("Authorization: Bearer tok-1\r\n") != std::string::npos
               ? http_response("200 OK", "OBJECT BYTES")
               : http_response("401 Unauthorized", "no");
  }
  return http_response("404 Not Found", R"({"error":{"code":404}})");
}

// Options that send gs:// downloads to `google` with the credentials file `credentials`.
FetchOptions against(const LoopbackServer& google, const std::string& credentials) {
  FetchOptions o;
  o.gcs_endpoint = google.base();
  o.gcs_credentials = credentials;
  return o;
}

FetchErrorKind kind_of(const std::string& url, const FetchOptions& options,
                       std::string* message = nullptr) {
  try {
    fetch_gcs(url, options);
  } catch (const FetchError& e) {
    if (message) *message = e.what();
    return e.kind;
  }
  ADD_FAILURE() << url << " did not fail";
  return FetchErrorKind::failed;
}

TEST(Gcs, EncodesObjectNamesInTheMediaUrl) {
  EXPECT_EQ(gcs_media_url("http://h:1/", "bkt", "dir/a b+c.png"),
            "http://h:1/storage/v1/b/bkt/o/dir%2Fa%20b%2Bc.png?alt=media");
}

TEST(Gcs, ServiceAccountSignsAJwtAndReusesItsToken) {
  LoopbackServer google(fake_google);
  ServiceAccount account(google.url("/token"));
  FetchOptions o = against(google, account.file);
  EXPECT_EQ(fetch_gcs("gs://bkt/dir/img 1.png", o), "OBJECT BYTES");
  EXPECT_EQ(fetch_gcs("gs://bkt/dir/img 1.png", o), "OBJECT BYTES");
  std::vector<std::string> tokens;
  for (const std::string& r : google.requests())
    if (r.rfind("POST /token ", 0) == 0) tokens.push_back(r);
  ASSERT_EQ(tokens.size(), 1u);  // the second download used the cached token
  EXPECT_EQ(form_field(tokens[0], "grant_type"),
            "urn%3Aietf%3Aparams%3Aoauth%3Agrant-type%3Ajwt-bearer");
  const std::string jwt = form_field(tokens[0], "assertion");
  EXPECT_TRUE(account.verifies(jwt));
  const Json claims = Json::parse(
      base64url_decode(jwt.substr(jwt.find('.') + 1, jwt.rfind('.') - jwt.find('.') - 1)));
  EXPECT_EQ(claims["iss"], "reader@proj.iam.gserviceaccount.com");
  EXPECT_EQ(claims["aud"], google.url("/token"));
  EXPECT_EQ(claims["scope"], "https://www.googleapis.com/auth/devstorage.read_only");
  EXPECT_EQ(claims["exp"].get<long>() - claims["iat"].get<long>(), 3600);
}

TEST(Gcs, MissingObjectsAndRefusedCredentialsAreNamed) {
  LoopbackServer google(fake_google);
  ServiceAccount account(google.url("/token"));
  FetchOptions o = against(google, account.file);
  EXPECT_EQ(kind_of("gs://bkt/other.png", o), FetchErrorKind::not_found);
  EXPECT_EQ(kind_of("gs://bkt", o), FetchErrorKind::bad_url);
  EXPECT_EQ(kind_of("gs:///object", o), FetchErrorKind::bad_url);

  LoopbackServer refusing(
      [](const std::string&) { return http_response("400 Bad Request", "{}"); });
  ServiceAccount stranger(refusing.url("/token"));
  o.gcs_credentials = stranger.file;
  std::string message;
  EXPECT_EQ(kind_of("gs://bkt/dir/img 1.png", o, &message), FetchErrorKind::forbidden);
  EXPECT_NE(message.find("reader@proj.iam.gserviceaccount.com"), std::string::npos) << message;
  EXPECT_EQ(message.find("PRIVATE KEY"), std::string::npos) << message;

  o.gcs_credentials = "/nonexistent/creds.json";
  EXPECT_EQ(kind_of("gs://bkt/dir/img 1.png", o, &message), FetchErrorKind::forbidden);
  EXPECT_NE(message.find("/nonexistent/creds.json"), std::string::npos) << message;
}

TEST(Gcs, AnonymousAccessSendsNoToken) {
  LoopbackServer google([](const std::string& r) {
    return r.find("Authorization:") == std::string::npos ? http_response("200 OK", "PUBLIC")
                                                         : http_response("400 Bad Request", "");
  });
  FetchOptions o = against(google, "/nonexistent/creds.json");
  o.gcs_anonymous = true;  // STORAGE_EMULATOR_HOST
  EXPECT_EQ(fetch_gcs("gs://bkt/x.png", o), "PUBLIC");
}

TEST(Gcs, UploadsPostTheBytesWithAWriteScopedToken) {
  LoopbackServer google([](const std::string& r) {
    if (r.rfind("POST /token ", 0) == 0)
      return http_response("200 OK", R"({"access_token":"tok-w","expires_in":3600})");
    if (r.rfind("POST /upload/storage/v1/b/bkt/o?uploadType=media&name=up%2Fab.png ", 0) == 0 &&
        r.find("Authorization: Bearer tok-w\r\n") != std::string::npos)
      return http_response("200 OK", R"({"name":"up/ab.png"})");
    return http_response("403 Forbidden", "{}");
  });
  ServiceAccount account(google.url("/token"));
  FetchOptions o = against(google, account.file);
  put_gcs("gs://bkt/up/ab.png", std::string("PNG\0BYTES", 9), "image/png", o);
  const std::vector<std::string> requests = google.requests();
  ASSERT_EQ(requests.size(), 2u);
  const std::string jwt = form_field(requests[0], "assertion");
  const Json claims = Json::parse(
      base64url_decode(jwt.substr(jwt.find('.') + 1, jwt.rfind('.') - jwt.find('.') - 1)));
  EXPECT_EQ(claims["scope"], "https://www.googleapis.com/auth/devstorage.read_write");
  EXPECT_NE(requests[1].find("Content-Type: image/png\r\n"), std::string::npos);
  EXPECT_EQ(requests[1].substr(requests[1].size() - 9), std::string("PNG\0BYTES", 9));
  EXPECT_THROW(put_gcs("gs://bkt/other.png", "x", "image/png", o), FetchError);  // 403
}

}  // namespace
}  // namespace celeriac::storage
