// storage::fetch on real files and a real HTTP server on 127.0.0.1 (a thread of this test that
// answers each connection with one canned response).
#include "storage/fetch.h"
#include "storage/loopback_server_test_util.h"

#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <filesystem>
#include <fstream>
#include <string>
#include <thread>

namespace celeriac::storage {
namespace {
namespace fs = std::filesystem;

class TempDir {
 public:
  TempDir() {
    char tmpl[] = "/tmp/celeriac-fetch-XXXXXX";
    path_ = ::mkdtemp(tmpl);
  }
  ~TempDir() { fs::remove_all(path_); }
  const fs::path& path() const { return path_; }
  void write(const std::string& name, const std::string& bytes) const {
    fs::create_directories((path_ / name).parent_path());
    std::ofstream(path_ / name, std::ios::binary) << bytes;
  }

 private:
  fs::path path_;
};

FetchErrorKind kind_of(const std::string& url, const FetchOptions& options) {
  try {
    fetch(url, options);
  } catch (const FetchError& e) {
    return e.kind;
  }
  ADD_FAILURE() << url << " did not fail";
  return FetchErrorKind::failed;
}

TEST(Fetch, ReadsFilesUnderTheRootsByPathAndFileUrl) {
  TempDir dir;
  dir.write("a/img.png", "PNGDATA");
  FetchOptions o;
  o.roots = {dir.path()};
  EXPECT_EQ(fetch((dir.path() / "a/img.png").string(), o), "PNGDATA");
  EXPECT_EQ(fetch("a/img.png", o), "PNGDATA");  // relative: to the first root
  EXPECT_EQ(fetch("file://" + (dir.path() / "a/img.png").string(), o), "PNGDATA");
}

TEST(Fetch, RefusesPathsOutsideTheRoots) {
  TempDir dir, other;
  dir.write("in.txt", "x");
  other.write("secret.txt", "s");
  fs::create_symlink(other.path() / "secret.txt", dir.path() / "link.txt");
  FetchOptions o;
  o.roots = {dir.path()};
  EXPECT_EQ(kind_of((other.path() / "secret.txt").string(), o), FetchErrorKind::forbidden);
  EXPECT_EQ(kind_of((dir.path() / ".." / other.path().filename() / "secret.txt").string(), o),
            FetchErrorKind::forbidden);
  EXPECT_EQ(kind_of((dir.path() / "link.txt").string(), o), FetchErrorKind::forbidden);
  EXPECT_EQ(kind_of("/etc/passwd", o), FetchErrorKind::forbidden);
  EXPECT_EQ(kind_of("/etc/passwd", FetchOptions{}), FetchErrorKind::forbidden);  // no roots
}

TEST(Fetch, NamesMissingTooLargeAndUnsupported) {
  TempDir dir;
  dir.write("big.bin", std::string(1000, 'b'));
  FetchOptions o;
  o.roots = {dir.path()};
  o.max_bytes = 999;
  EXPECT_EQ(kind_of((dir.path() / "nope.png").string(), o), FetchErrorKind::not_found);
  EXPECT_EQ(kind_of((dir.path() / "big.bin").string(), o), FetchErrorKind::too_large);
  EXPECT_EQ(kind_of(dir.path().string(), o), FetchErrorKind::bad_url);  // a folder
  EXPECT_EQ(kind_of("gs://bucket", o), FetchErrorKind::bad_url);
  EXPECT_EQ(kind_of("s3://bucket/x.png", o), FetchErrorKind::unsupported);
  EXPECT_EQ(kind_of("ftp://host/x.png", o), FetchErrorKind::unsupported);
  EXPECT_EQ(kind_of("file://relative/x.png", o), FetchErrorKind::bad_url);
  try {
    fetch((dir.path() / "nope.png").string(), o);
  } catch (const FetchError& e) {
    EXPECT_NE(std::string(e.what()).find("nope.png"), std::string::npos) << e.what();
  }
}

TEST(Fetch, PercentEncodesAllButUnreservedCharacters) {
  EXPECT_EQ(percent_encode("dir/a b+c~._-Z9"), "dir%2Fa%20b%2Bc~._-Z9");
  EXPECT_EQ(percent_encode("dir/a b", /*keep_slash=*/true), "dir/a%20b");
  EXPECT_EQ(percent_encode("\xc3\xa9"), "%C3%A9");
}

TEST(Fetch, RedactsCredentialsAndQueries) {
  EXPECT_EQ(redact_url("https://user:pw@host:1/a/b?token=s3cret"), "https://host:1/a/b");
  EXPECT_EQ(redact_url("http://host/a@b"), "http://host/a@b");
  EXPECT_EQ(redact_url("/local/path"), "/local/path");
}

TEST(Fetch, TellsPrivateAddressesFromPublicOnes) {
  auto v4 = [](const char* text) {
    sockaddr_in a{};
    a.sin_family = AF_INET;
    inet_pton(AF_INET, text, &a.sin_addr);
    return is_private_address(reinterpret_cast<sockaddr*>(&a));
  };
  auto v6 = [](const char* text) {
    sockaddr_in6 a{};
    a.sin6_family = AF_INET6;
    inet_pton(AF_INET6, text, &a.sin6_addr);
    return is_private_address(reinterpret_cast<sockaddr*>(&a));
  };
  for (const char* p : {"127.0.0.1", "10.1.2.3", "172.16.0.1", "172.31.255.255", "192.168.1.1",
                        "169.254.169.254", "100.64.0.1", "0.0.0.0", "224.0.0.1"})
    EXPECT_TRUE(v4(p)) << p;
  for (const char* p : {"8.8.8.8", "172.32.0.1", "100.128.0.1", "1.1.1.1"}) EXPECT_FALSE(v4(p)) << p;
  for (const char* p : {"::1", "fe80::1", "fd00::1", "::ffff:127.0.0.1", "::ffff:10.0.0.1"})
    EXPECT_TRUE(v6(p)) << p;
  EXPECT_FALSE(v6("2001:4860:4860::8888"));
}

// Answers every request with the same response.
struct CannedServer : testing::LoopbackServer {
  explicit CannedServer(std::string response)
      : LoopbackServer([response](const std::string&) { return response; }) {}
};

std::string http(const std::string& status, const std::string& body) {
  return testing::http_response(status, body);
}

FetchOptions loopback_allowed() {
  FetchOptions o;
  o.allow_private_network = true;
  o.timeout_s = 10;
  return o;
}

TEST(Fetch, DownloadsOverHttp) {
  CannedServer server(http("200 OK", "IMAGEBYTES"));
  EXPECT_EQ(fetch(server.url("/a.png?sig=1"), loopback_allowed()), "IMAGEBYTES");
}

TEST(Fetch, RefusesLoopbackUnlessAllowed) {
  CannedServer server(http("200 OK", "IMAGEBYTES"));
  FetchOptions o;
  o.timeout_s = 10;
  EXPECT_EQ(kind_of(server.url("/a.png"), o), FetchErrorKind::forbidden);
}

TEST(Fetch, MapsHttpStatusesAndSizes) {
  {
    CannedServer server(http("404 Not Found", "no"));
    EXPECT_EQ(kind_of(server.url("/x"), loopback_allowed()), FetchErrorKind::not_found);
  }
  {
    CannedServer server(http("403 Forbidden", "no"));
    EXPECT_EQ(kind_of(server.url("/x"), loopback_allowed()), FetchErrorKind::forbidden);
  }
  {
    CannedServer server(http("503 Service Unavailable", "later"));
    EXPECT_EQ(kind_of(server.url("/x"), loopback_allowed()), FetchErrorKind::transient);
  }
  {
    CannedServer server(http("200 OK", std::string(5000, 'x')));
    FetchOptions o = loopback_allowed();
    o.max_bytes = 4999;
    EXPECT_EQ(kind_of(server.url("/x"), o), FetchErrorKind::too_large);
  }
  {
    // No Content-Length: the limit is enforced while the body streams in.
    CannedServer server("HTTP/1.1 200 OK\r\nConnection: close\r\n\r\n" + std::string(5000, 'x'));
    FetchOptions o = loopback_allowed();
    o.max_bytes = 4999;
    EXPECT_EQ(kind_of(server.url("/x"), o), FetchErrorKind::too_large);
  }
}

TEST(Fetch, ConnectionRefusedIsTransient) {
  int port;
  {
    CannedServer server(http("200 OK", ""));
    port = server.port();
  }
  EXPECT_EQ(kind_of("http://127.0.0.1:" + std::to_string(port) + "/x", loopback_allowed()),
            FetchErrorKind::transient);
}

}  // namespace
}  // namespace celeriac::storage
