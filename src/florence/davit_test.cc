// The vision encoder against transformers' outputs on the tiny random-weight checkpoints
// (tests/data/florence-tiny, made by scripts/fixtures/make_florence_tiny.py): every DaViT stage
// of image 0, the tower output and the projected visual tokens of all three images, for each
// checkpoint folder (both key layouts, safetensors/bin, fp32/fp16/bf16 storage; the weights are
// exactly representable in all of them, so one reference serves all). The tiny config has window
// 4 on 160×160 images, so stages 2 and 3 (10×10, 5×5) exercise the window padding.
// Tolerance: norm-wise relative error 1e-4 (the bound for vision features).
#include "florence/davit.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <string>

#include "florence/model_test_util.h"
#include "florence/reference_error.h"
#include "florence/weights_checkpoint.h"
#include "florence/weights_safetensors.h"
#include "nn/threading.h"

namespace celeriac::florence {
namespace {

const std::string kTiny = std::string(CELERIAC_TEST_DATA) + "/florence-tiny";

const float* ref_data(const TensorSet& set, const std::string& name, int64_t numel) {
  auto it = set.tensors.find(name);
  if (it == set.tensors.end()) throw std::runtime_error("reference lacks " + name);
  EXPECT_EQ(it->second.dtype, DType::kF32);
  EXPECT_EQ(it->second.numel(), numel) << name;
  return reinterpret_cast<const float*>(it->second.data);
}

class VisionEncoderTiny : public ::testing::TestWithParam<const char*> {};

TEST_P(VisionEncoderTiny, StagesFeaturesAndTokensMatchTransformers) {
  Checkpoint ckpt = Checkpoint::open(kTiny + "/" + GetParam());
  VisionEncoder vision(ckpt);
  std::vector<TensorSet> refs;
  for (int i = 0; i < 3; ++i)
    refs.push_back(
        read_safetensors(kTiny + "/reference/image" + std::to_string(i) + ".safetensors"));

  // The three images as one batch.
  const int64_t size = 160, plane = 3 * size * size;
  nn::Tensor pixels = nn::Tensor::empty({3, 3, size, size});
  for (int i = 0; i < 3; ++i) {
    const float* pv = ref_data(refs[i], "pixel_values", plane);
    std::copy(pv, pv + plane, pixels.mutable_data() + i * plane);
  }
  for (int threads : {1, 2}) {
    nn::set_num_threads(threads);
    std::vector<nn::Tensor> stages;
    nn::Tensor features = vision.tower(pixels, &stages);
    ASSERT_EQ(stages.size(), 4u);
    for (int s = 0; s < 4; ++s) {
      const nn::Tensor& map = stages[s];
      const int64_t hw = map.dim(1) * map.dim(2), c = map.dim(3);
      const float* want = ref_data(refs[0], "vision_stage" + std::to_string(s), c * hw);
      EXPECT_LT(map_error(map.data(), want, c, hw), 1e-4) << "stage " << s;
    }
    nn::Tensor tokens = vision.project(features);
    const int64_t hw = features.dim(1) * features.dim(2), c = features.dim(3);
    const int64_t per_image = tokens.dim(1) * tokens.dim(2);
    EXPECT_EQ(tokens.dim(1), 1 + hw);
    for (int i = 0; i < 3; ++i) {
      const float* want = ref_data(refs[i], "vision_features", c * hw);
      EXPECT_LT(map_error(features.data() + i * hw * c, want, c, hw), 1e-4) << "image " << i;
      const float* want_tokens = ref_data(refs[i], "image_features", per_image);
      EXPECT_LT(flat_error(tokens.data() + i * per_image, want_tokens, per_image), 1e-4)
          << "image " << i << " visual tokens";
    }
  }
}

INSTANTIATE_TEST_SUITE_P(Checkpoints, VisionEncoderTiny, ::testing::ValuesIn(testing::kTinyFolders),
                         testing::FolderName());

// Acceptance on the full Florence-2-base configuration (random weights, generated locally by
// scripts/fixtures/make_florence_base_random.py, never committed). Opt-in, ~20-35 s on 2 shared
// cores:
//   CELERIAC_FLORENCE_BASE=.cache/florence-2-base-random \
//     build/src/florence/celeriac_florence_model_test --gtest_filter='*Base*'
class VisionEncoderBase : public testing::BaseCheckpointTest {};

TEST_F(VisionEncoderBase, MatchesTransformersOnBothLayouts) {
  const char* dir = root();
  TensorSet ref = read_safetensors(std::string(dir) + "/reference/image0.safetensors");
  const int64_t size = 768, plane = 3 * size * size;
  nn::Tensor pixels = nn::Tensor::view(ref_data(ref, "pixel_values", plane), {1, 3, size, size});
  for (const char* layout : {"native", "remote"}) {
    Checkpoint ckpt = Checkpoint::open(std::string(dir) + "/" + layout);
    VisionEncoder vision(ckpt);
    std::vector<nn::Tensor> stages;
    nn::Tensor features = vision.tower(pixels, &stages);
    for (int s = 0; s < 4; ++s) {
      const int64_t hw = stages[s].dim(1) * stages[s].dim(2), c = stages[s].dim(3);
      EXPECT_LT(map_error(stages[s].data(),
                          ref_data(ref, "vision_stage" + std::to_string(s), c * hw), c, hw),
                1e-4)
          << layout << " stage " << s;
    }
    nn::Tensor tokens = vision.project(features);
    ASSERT_EQ(tokens.shape(), (nn::Shape{1, 577, 768}));
    EXPECT_LT(flat_error(tokens.data(), ref_data(ref, "image_features", 577 * 768), 577 * 768),
              1e-4)
        << layout << " visual tokens";
  }
}

TEST(VisionEncoder, RejectsNonImageInput) {
  Checkpoint ckpt = Checkpoint::open(kTiny + "/native-safetensors-fp32");
  VisionEncoder vision(ckpt);
  nn::Tensor gray = nn::Tensor::zeros({1, 1, 32, 32});
  EXPECT_THROW(vision.tower(gray), nn::ShapeError);
}

}  // namespace
}  // namespace celeriac::florence
