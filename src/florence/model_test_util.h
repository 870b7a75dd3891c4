// Helpers shared by the florence model tests: the tiny checkpoint folders as test parameters, and
// the opt-in checkpoint of the full Florence-2-base configuration (random weights made locally by
// scripts/fixtures/make_florence_base_random.py, never committed).
#pragma once

#include <gtest/gtest.h>

#include <cstdlib>
#include <string>

namespace celeriac::florence::testing {

// The four folders of tests/data/florence-tiny: both key layouts, safetensors / pytorch_model.bin,
// fp32 / fp16 / bf16 storage.
inline const char* const kTinyFolders[] = {"native-safetensors-fp32", "native-bin-bf16",
                                           "remote-bin-fp16", "remote-sharded-bf16"};

// gtest parameter names allow no '-': "native-bin-bf16" -> "native_bin_bf16".
struct FolderName {
  template <class Info>
  std::string operator()(const Info& info) const {
    std::string name = info.param;
    for (char& c : name) c = c == '-' ? '_' : c;
    return name;
  }
};

// Fixture of the base-configuration tests: skipped unless CELERIAC_FLORENCE_BASE names the folder
// (the slow acceptance checks run only on request).
class BaseCheckpointTest : public ::testing::Test {
 protected:
  void SetUp() override {
    if (!root_) GTEST_SKIP() << "CELERIAC_FLORENCE_BASE not set";
  }
  const char* root() const { return root_; }

 private:
  const char* root_ = std::getenv("CELERIAC_FLORENCE_BASE");
};

}  // namespace celeriac::florence::testing
