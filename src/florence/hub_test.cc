// Hub download against a hub look-alike on 127.0.0.1 (hub_test_server.py): cache layout shared
// with huggingface_hub, sharded weights, resume after a dropped connection, a corrupted transfer
// rejected, tokens, offline mode.
#include "florence/hub.h"

#include <gtest/gtest.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdio>
#include <fstream>

#include "florence/weights_checkpoint.h"
#include "florence/weights_test_util.h"

namespace celeriac::florence {
namespace {

namespace fs = std::filesystem;
using testing::tiny;

const char* kRepo = "microsoft/Florence-2-tiny-ft";
const char* kSharded = "celeriac/florence-2-tiny-sharded";
const char* kPrivate = "celeriac/private-tiny";
const char* kToken = "hf_secret_test_token_123";

// Runs hub_test_server.py over a temp tree of repos; stops it on destruction.
class FakeHub {
 public:
  explicit FakeHub(const std::vector<std::string>& extra_args = {}) {
    fs::create_directories(root_ / "microsoft");
    fs::create_directories(root_ / "celeriac");
    fs::create_directory_symlink(tiny("remote-bin-fp16"), root_ / kRepo);
    fs::create_directory_symlink(tiny("remote-sharded-bf16"), root_ / kSharded);
    fs::create_directory_symlink(tiny("remote-bin-fp16"), root_ / kPrivate);
    std::vector<std::string> args = {
        "python3",   std::string(CELERIAC_SOURCE_DIR) + "/src/florence/hub_test_server.py",
        "--root",    root_.path().string(),
        "--log",     log_path(),
        "--private", kPrivate,
        "--token",   kToken};
    args.insert(args.end(), extra_args.begin(), extra_args.end());
    int out[2];
    if (::pipe(out) != 0) throw std::runtime_error("pipe");
    pid_ = ::fork();
    if (pid_ == 0) {
      ::dup2(out[1], 1);
      ::close(out[0]);
      std::vector<char*> argv;
      for (auto& a : args) argv.push_back(a.data());
      argv.push_back(nullptr);
      ::execvp("python3", argv.data());
      ::_exit(127);
    }
    ::close(out[1]);
    std::FILE* f = ::fdopen(out[0], "r");
    int port = 0;
    if (std::fscanf(f, "%d", &port) != 1) throw std::runtime_error("hub server did not start");
    std::fclose(f);
    endpoint_ = "http://127.0.0.1:" + std::to_string(port);
  }
  ~FakeHub() {
    ::kill(pid_, SIGTERM);
    ::waitpid(pid_, nullptr, 0);
  }
  const std::string& endpoint() const { return endpoint_; }
  std::string log_path() const { return (root_ / "requests.log").string(); }
  std::string log() const {
    std::ifstream in(log_path());
    return {std::istreambuf_iterator<char>(in), {}};
  }

 private:
  testing::TempDir root_;
  pid_t pid_ = -1;
  std::string endpoint_;
};

class Hub : public ::testing::Test {
 protected:
  HubOptions options(const FakeHub& hub) const {
    HubOptions o;
    o.endpoint = hub.endpoint();
    o.cache_dir = cache_.path();
    o.progress = false;
    o.connect_timeout_s = 5;
    o.stall_timeout_s = 10;
    return o;
  }
  fs::path repo_root(const std::string& repo) const {
    return cache_.path() / repo_folder_name(repo);
  }
  testing::TempDir cache_;
};

TEST_F(Hub, DownloadsIntoTheHuggingFaceCacheLayout) {
  FakeHub hub;
  const fs::path snap = resolve_model(kRepo, options(hub));
  const fs::path root = repo_root(kRepo);
  EXPECT_EQ(repo_folder_name(kRepo), "models--microsoft--Florence-2-tiny-ft");
  std::ifstream ref(root / "refs" / "main");
  std::string commit;
  std::getline(ref, commit);
  EXPECT_EQ(commit.size(), 40u);
  EXPECT_EQ(snap, root / "snapshots" / commit);
  for (const char* f : {"config.json", "pytorch_model.bin", "preprocessor_config.json",
                        "tokenizer.json", "tokenizer_config.json"}) {
    const fs::path link = snap / f;
    ASSERT_TRUE(fs::is_symlink(link)) << f;
    // Relative link into blobs/, as huggingface_hub makes them.
    EXPECT_EQ(fs::read_symlink(link).string().rfind("../../blobs/", 0), 0u) << f;
    EXPECT_EQ(testing::read_file(link), testing::read_file(tiny("remote-bin-fp16") / f)) << f;
  }
  // LFS blobs are named by their sha256 (64 hex), other files by their git sha1 (40 hex).
  EXPECT_EQ(fs::read_symlink(snap / "pytorch_model.bin").filename().string().size(), 64u);
  EXPECT_EQ(fs::read_symlink(snap / "config.json").filename().string().size(), 40u);
  // The snapshot is a checkpoint folder.
  const auto ck = Checkpoint::open(snap);
  EXPECT_EQ(ck.file_layout(), KeyLayout::kRemote);

  // A second resolve finds everything cached: only the listing request goes out.
  const auto before = hub.log();
  EXPECT_EQ(resolve_model(kRepo, options(hub)), snap);
  const auto after = hub.log().substr(before.size());
  EXPECT_EQ(after.find("/resolve/"), std::string::npos) << after;
  EXPECT_NE(after.find("/api/models/"), std::string::npos) << after;
}

TEST_F(Hub, DownloadsShardedSafetensorsThroughTheIndex) {
  FakeHub hub;
  const fs::path snap = resolve_model(kSharded, options(hub));
  for (const char* f : {"model.safetensors.index.json", "model-00001-of-00002.safetensors",
                        "model-00002-of-00002.safetensors", "config.json"}) {
    EXPECT_TRUE(fs::exists(snap / f)) << f;
  }
  const auto ck = Checkpoint::open(snap);
  EXPECT_EQ(ck.format(), "safetensors");
  EXPECT_EQ(ck.files().size(), 2u);
}

TEST_F(Hub, InterruptedDownloadResumesWithARangeRequest) {
  const auto size = fs::file_size(tiny("remote-bin-fp16") / "pytorch_model.bin");
  FakeHub hub({"--cut", "pytorch_model.bin:700000"});
  // First run: one attempt only, so the dropped connection leaves a partial .incomplete blob.
  auto o = options(hub);
  o.max_attempts = 1;
  try {
    resolve_model(kRepo, o);
    FAIL() << "a cut transfer succeeded";
  } catch (const HubError& e) {
    EXPECT_EQ(e.kind(), HubError::Kind::kNetwork) << e.what();
  }
  std::vector<fs::path> partial;
  for (const auto& e : fs::directory_iterator(repo_root(kRepo) / "blobs")) {
    if (e.path().extension() == ".incomplete") partial.push_back(e.path());
  }
  ASSERT_EQ(partial.size(), 1u);
  EXPECT_EQ(fs::file_size(partial[0]), 700000u);
  // Second run resumes from byte 700000 instead of starting over.
  const fs::path snap = resolve_model(kRepo, options(hub));
  EXPECT_NE(hub.log().find("range=bytes=700000-"), std::string::npos) << hub.log();
  EXPECT_EQ(fs::file_size(snap / "pytorch_model.bin"), size);
  EXPECT_EQ(testing::read_file(snap / "pytorch_model.bin"),
            testing::read_file(tiny("remote-bin-fp16") / "pytorch_model.bin"));
  EXPECT_FALSE(fs::exists(partial[0]));
}

TEST_F(Hub, DroppedConnectionIsRetriedWithinOneCall) {
  FakeHub hub({"--cut", "pytorch_model.bin:300000"});
  const fs::path snap = resolve_model(kRepo, options(hub));
  EXPECT_NE(hub.log().find("range=bytes=300000-"), std::string::npos) << hub.log();
  EXPECT_EQ(testing::read_file(snap / "pytorch_model.bin"),
            testing::read_file(tiny("remote-bin-fp16") / "pytorch_model.bin"));
}

TEST_F(Hub, CorruptedTransferIsRejectedAndNotCached) {
  FakeHub hub({"--corrupt", "pytorch_model.bin"});
  try {
    resolve_model(kRepo, options(hub));
    FAIL() << "corrupted download accepted";
  } catch (const HubError& e) {
    EXPECT_EQ(e.kind(), HubError::Kind::kChecksum);
    EXPECT_NE(std::string(e.what()).find("sha256"), std::string::npos) << e.what();
  }
  for (const auto& e : fs::directory_iterator(repo_root(kRepo) / "blobs")) {
    EXPECT_EQ(fs::file_size(e.path()) > 1000000, false) << "bad bytes kept: " << e.path();
  }
}

TEST_F(Hub, PrivateRepoNeedsTheTokenWhichIsNeverPrinted) {
  FakeHub hub;
  auto o = options(hub);
  try {
    resolve_model(kPrivate, o);
    FAIL();
  } catch (const HubError& e) {
    EXPECT_EQ(e.kind(), HubError::Kind::kAuth);
    EXPECT_NE(std::string(e.what()).find("HF_TOKEN"), std::string::npos) << e.what();
  }
  o.token = "hf_wrong";
  try {
    resolve_model(kPrivate, o);
    FAIL();
  } catch (const HubError& e) {
    EXPECT_EQ(e.kind(), HubError::Kind::kAuth);
    EXPECT_EQ(std::string(e.what()).find("hf_wrong"), std::string::npos) << e.what();
  }
  o.token = kToken;
  const fs::path snap = resolve_model(kPrivate, o);
  EXPECT_TRUE(fs::exists(snap / "pytorch_model.bin"));
  const std::string log = hub.log();
  EXPECT_NE(log.find("/pytorch_model.bin range=- auth=ok"), std::string::npos) << log;
  // The LFS bytes come from another host (the CDN): the token does not go there.
  const auto lfs = log.find("GET /lfs/");
  ASSERT_NE(lfs, std::string::npos);
  EXPECT_EQ(log.substr(lfs, log.find('\n', lfs) - lfs).find("auth=none") == std::string::npos,
            false)
      << log;
}

TEST_F(Hub, UnknownRepoRevisionAndFileAreNotFound) {
  FakeHub hub;
  auto o = options(hub);
  try {
    resolve_model("nobody/nothing", o);
    FAIL();
  } catch (const HubError& e) {
    EXPECT_EQ(e.kind(), HubError::Kind::kNotFound);
    EXPECT_NE(std::string(e.what()).find("repository not found"), std::string::npos) << e.what();
  }
  o.revision = "v9";
  EXPECT_THROW(resolve_model(kRepo, o), HubError);
  o.revision = "main";
  try {
    hub_download(kRepo, "no_such_file.json", o);
    FAIL();
  } catch (const HubError& e) {
    EXPECT_EQ(e.kind(), HubError::Kind::kNotFound);
    EXPECT_NE(std::string(e.what()).find("file not found"), std::string::npos) << e.what();
  }
}

TEST_F(Hub, OfflineModeUsesTheCacheOnly) {
  fs::path snap;
  {
    FakeHub hub;
    snap = resolve_model(kRepo, options(hub));
  }
  // The server is gone; offline mode needs no network.
  HubOptions o;
  o.cache_dir = cache_.path();
  o.endpoint = "http://127.0.0.1:9";  // nothing listens there
  o.offline = true;
  o.progress = false;
  EXPECT_EQ(resolve_model(kRepo, o), snap);
  EXPECT_EQ(hub_download(kRepo, "config.json", o), snap / "config.json");
  try {
    resolve_model(kSharded, o);
    FAIL();
  } catch (const HubError& e) {
    EXPECT_EQ(e.kind(), HubError::Kind::kOffline);
    EXPECT_NE(std::string(e.what()).find("HF_HUB_OFFLINE"), std::string::npos);
  }
  // Online but unreachable: the cached snapshot still serves (as huggingface_hub does).
  o.offline = false;
  o.connect_timeout_s = 2;
  EXPECT_EQ(resolve_model(kRepo, o), snap);
  EXPECT_THROW(resolve_model(kSharded, o), HubError);
}

TEST_F(Hub, LocalFolderIsUsedAsIs) {
  HubOptions o;
  o.offline = true;
  EXPECT_EQ(resolve_model(tiny("remote-bin-fp16").string(), o), tiny("remote-bin-fp16"));
  EXPECT_FALSE(looks_like_repo_id(tiny("remote-bin-fp16").string()));
  EXPECT_TRUE(looks_like_repo_id("microsoft/Florence-2-base-ft"));
  EXPECT_THROW(resolve_model("../etc/passwd", o), HubError);
}

// Runs the reference stack's huggingface_hub (.venv-ml, see scripts/setup-ml-venv.sh) in `env`;
// returns its stdout. Skips the calling test when the venv is absent (CI has no ML stack).
std::string run_python(const std::string& env, const std::string& code) {
  const fs::path python = fs::path(CELERIAC_SOURCE_DIR) / ".venv-ml" / "bin" / "python";
  if (!fs::exists(python)) return "SKIP";
  testing::TempDir tmp;
  testing::write_file(tmp / "script.py", code);
  const std::string cmd = "env HF_HUB_DISABLE_TELEMETRY=1 HF_HUB_DISABLE_XET=1 " + env + " " +
                          python.string() + " " + (tmp / "script.py").string() + " 2>&1";
  std::FILE* p = ::popen(cmd.c_str(), "r");
  std::string out;
  char buf[4096];
  while (std::size_t n = std::fread(buf, 1, sizeof buf, p)) out.append(buf, n);
  const int rc = ::pclose(p);
  if (rc != 0) throw std::runtime_error("python failed: " + out);
  return out;
}

const char* kPythonDownload = R"(
from huggingface_hub import hf_hub_download
for f in ["config.json", "pytorch_model.bin", "preprocessor_config.json", "tokenizer.json",
          "tokenizer_config.json"]:
    print(hf_hub_download("microsoft/Florence-2-tiny-ft", f))
)";

TEST_F(Hub, SharesItsCacheWithHuggingfaceHub) {
  FakeHub hub;
  // Python downloads, celeriac reads the same cache offline.
  testing::TempDir py_cache;
  const std::string py_env =
      "HF_ENDPOINT=" + hub.endpoint() + " HF_HUB_CACHE=" + py_cache.path().string();
  const std::string out = run_python(py_env, kPythonDownload);
  if (out == "SKIP") GTEST_SKIP() << ".venv-ml (huggingface_hub) not installed";
  HubOptions offline;
  offline.cache_dir = py_cache.path();
  offline.offline = true;
  const fs::path from_python = resolve_model(kRepo, offline);
  EXPECT_NE(out.find(from_python.string()), std::string::npos) << out;
  EXPECT_EQ(Checkpoint::open(from_python).format(), "pytorch");

  // celeriac downloads, Python reads the same cache with HF_HUB_OFFLINE=1.
  const fs::path ours = resolve_model(kRepo, options(hub));
  const std::string again =
      run_python("HF_HUB_OFFLINE=1 HF_HUB_CACHE=" + cache_.path().string(), kPythonDownload);
  for (const char* f : {"config.json", "pytorch_model.bin", "tokenizer.json"}) {
    EXPECT_NE(again.find((ours / f).string()), std::string::npos) << again;
    // Same blob names (etags) in both caches.
    EXPECT_EQ(fs::read_symlink(ours / f), fs::read_symlink(from_python / f)) << f;
  }
}

TEST(HubOptionsEnv, ReadsHuggingFaceVariables) {
  testing::TempDir home;
  ::setenv("HF_HOME", home.path().c_str(), 1);
  ::unsetenv("HF_HUB_CACHE");
  ::unsetenv("HUGGINGFACE_HUB_CACHE");
  ::unsetenv("HF_TOKEN");
  ::unsetenv("HF_TOKEN_PATH");
  ::setenv("HF_ENDPOINT", "http://127.0.0.1:1234/", 1);
  ::setenv("HF_HUB_OFFLINE", "yes", 1);
  testing::write_file(home / "token", "hf_from_file\n");
  auto o = HubOptions::from_env();
  EXPECT_EQ(o.endpoint, "http://127.0.0.1:1234");
  EXPECT_EQ(o.cache_dir, home.path() / "hub");
  EXPECT_EQ(o.token, "hf_from_file");
  EXPECT_TRUE(o.offline);
  ::setenv("HF_TOKEN", "hf_env", 1);
  ::setenv("HF_HUB_CACHE", "/tmp/elsewhere", 1);
  ::setenv("HF_HUB_OFFLINE", "0", 1);
  o = HubOptions::from_env();
  EXPECT_EQ(o.token, "hf_env");
  EXPECT_EQ(o.cache_dir, "/tmp/elsewhere");
  EXPECT_FALSE(o.offline);
  for (const char* v : {"HF_HOME", "HF_ENDPOINT", "HF_HUB_OFFLINE", "HF_TOKEN", "HF_HUB_CACHE"}) {
    ::unsetenv(v);
  }
}

}  // namespace
}  // namespace celeriac::florence
