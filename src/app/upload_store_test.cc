#include "app/upload_store.h"

#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <sstream>

namespace celeriac::app {
namespace {

namespace fs = std::filesystem;

std::string read_file(const fs::path& path) {
  std::ifstream in(path, std::ios::binary);
  std::ostringstream out;
  out << in.rdbuf();
  return out.str();
}

class UploadStoreTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir = fs::temp_directory_path() / ("celeriac-uploads-" + std::to_string(::getpid()));
    fs::remove_all(dir);
  }
  void TearDown() override { fs::remove_all(dir); }
  fs::path dir;
};

TEST(Sha256, MatchesTheKnownDigest) {
  EXPECT_EQ(sha256_hex("abc"), "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
}

TEST_F(UploadStoreTest, StoresByContentOnceAndNamesTheFormat) {
  UploadStore store((dir / "new-folder").string(), {});  // created on demand
  const std::string png = std::string("\x89PNG\r\n\x1a\n", 8) + "rest of a png";
  const StoredImage first = store.put(png);
  EXPECT_TRUE(first.created);
  EXPECT_EQ(first.format, "png");
  EXPECT_EQ(first.sha256, sha256_hex(png));
  EXPECT_EQ(first.url, (dir / "new-folder" / (first.sha256 + ".png")).string());
  EXPECT_EQ(read_file(first.url), png);
  const StoredImage again = store.put(png);
  EXPECT_FALSE(again.created);
  EXPECT_EQ(again.url, first.url);
  // Only the final file: no temporary left behind.
  EXPECT_EQ(std::distance(fs::directory_iterator(dir / "new-folder"), fs::directory_iterator()), 1);
  EXPECT_EQ(store.put("\xff\xd8\xff\xe0 jpeg").format, "jpeg");
}

TEST_F(UploadStoreTest, RefusesWhatIsNotAnImage) {
  UploadStore store(dir.string(), {});
  EXPECT_THROW(store.put("<html>not an image</html>"), NotAnImage);
  EXPECT_THROW(store.put(""), NotAnImage);
}

TEST_F(UploadStoreTest, RefusesBadBases) {
  EXPECT_THROW(UploadStore("", {}), std::invalid_argument);
  EXPECT_THROW(UploadStore("gs://", {}), std::invalid_argument);
  fs::create_directories(dir);
  std::ofstream(dir / "a-file") << "x";
  EXPECT_THROW(UploadStore((dir / "a-file").string(), {}), std::invalid_argument);
}

}  // namespace
}  // namespace celeriac::app
