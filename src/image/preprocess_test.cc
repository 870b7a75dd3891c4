// Florence-2 preprocessing against transformers' image processor: options from
// preprocessor_config.json, the per-(channel, byte) values, and the float32 pixel_values of every
// fixture (digest of the CHW tensor, sampled values, max and mean).
#include "image/preprocess.h"

#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>

#include "image/image_error.h"
#include "image/test_support.h"

namespace celeriac::image {
namespace {

using testing::data_dir;
using testing::goldens;
using testing::sha256_hex;

TEST(PreprocessOptions, ReadsFlorenceConfigAndDefaultsAgree) {
  PreprocessOptions o = load_preprocess_options(data_dir().string());
  PreprocessOptions d;
  EXPECT_EQ(o.width, 768);
  EXPECT_EQ(o.height, 768);
  EXPECT_EQ(o.resample, ResampleFilter::kBicubic);
  EXPECT_EQ(o.rescale_factor, d.rescale_factor);
  EXPECT_EQ(o.image_mean, d.image_mean);
  EXPECT_EQ(o.image_std, d.image_std);
  EXPECT_TRUE(o.do_resize && o.do_rescale && o.do_normalize);
  // A folder without the file gives the Florence-2 defaults.
  PreprocessOptions missing = load_preprocess_options("/nonexistent");
  EXPECT_EQ(missing.width, 768);
}

TEST(PreprocessOptions, RefusesWhatItCannotReproduce) {
  EXPECT_THROW(preprocess_options_from_json({{"do_center_crop", true}}), ImageError);
  EXPECT_THROW(preprocess_options_from_json({{"size", {{"shortest_edge", 224}}}}), ImageError);
  EXPECT_THROW(preprocess_options_from_json({{"resample", 0}}), ImageError);
  EXPECT_THROW(preprocess_options_from_json({{"image_mean", {0.5, 0.5}}}), ImageError);
  PreprocessOptions o = preprocess_options_from_json(
      {{"size", {{"height", 32}, {"width", 48}}}, {"resample", 2}, {"image_mean", 0.5}});
  EXPECT_EQ(o.width, 48);
  EXPECT_EQ(o.height, 32);
  EXPECT_EQ(o.resample, ResampleFilter::kBilinear);
  EXPECT_EQ(o.image_mean[2], 0.5);
}

// Every byte value in every channel, through preprocess, equals the reference processor's value:
// the maximum difference is measured (and is 0, well within the 1e-6 acceptance).
TEST(Preprocess, EveryChannelByteValueMatchesReference) {
  DecodedImage ramp;
  ramp.width = 256;
  ramp.height = 1;
  for (int v = 0; v < 256; ++v)
    ramp.rgb.insert(ramp.rgb.end(), {uint8_t(v), uint8_t(v), uint8_t(v)});
  PreprocessOptions o = load_preprocess_options(data_dir().string());
  o.do_resize = false;
  PreprocessedImage p = preprocess(ramp, o);
  const auto& table = goldens()["value_table"];
  double max_diff = 0;
  int unequal = 0;
  for (int c = 0; c < 3; ++c) {
    for (int v = 0; v < 256; ++v) {
      const float expected = table[c][v].get<float>();
      const float got = p.chw[c * 256 + v];
      max_diff = std::max(max_diff, std::fabs(double(got) - double(expected)));
      unequal += got != expected;
    }
  }
  EXPECT_LE(max_diff, 1e-6);
  EXPECT_EQ(unequal, 0) << "max |diff| " << max_diff;
}

TEST(Preprocess, PixelValuesMatchReferenceProcessorForEveryFixture) {
  PreprocessOptions o = load_preprocess_options(data_dir().string());
  size_t checked = 0;
  for (const auto& g : goldens()["images"]) {
    SCOPED_TRACE(g["file"].get<std::string>());
    DecodedImage image = decode_image_file((data_dir() / g["file"].get<std::string>()).string());
    PreprocessedImage p = preprocess(image, o);
    ASSERT_EQ(p.width, 768);
    ASSERT_EQ(p.height, 768);
    ASSERT_EQ(p.chw.size(), 3u * 768 * 768);
    EXPECT_EQ(p.original_width, g["width"].get<int>());
    EXPECT_EQ(p.original_height, g["height"].get<int>());
    double max_diff = 0;
    for (const auto& s : g["pixel_values_samples"]) {
      const float got =
          p.chw[(s[0].get<size_t>() * 768 + s[1].get<size_t>()) * 768 + s[2].get<size_t>()];
      max_diff = std::max(max_diff, std::fabs(double(got) - s[3].get<double>()));
    }
    EXPECT_LE(max_diff, 1e-6);
    float max_value = p.chw[0];
    double sum = 0;
    for (float v : p.chw) {
      max_value = std::max(max_value, v);
      sum += v;
    }
    EXPECT_EQ(max_value, g["pixel_values_max"].get<float>());
    EXPECT_NEAR(sum / p.chw.size(), g["pixel_values_mean"].get<double>(), 1e-9);
    EXPECT_EQ(sha256_hex(p.chw.data(), p.chw.size() * sizeof(float)),
              g["pixel_values_sha256"].get<std::string>());
    ++checked;
  }
  EXPECT_GE(checked, 50u);
}

// The tiny Florence-2 checkpoints' reference pixel_values (tests/data/florence-tiny, made by
// scripts/fixtures/make_florence_tiny.py with the same processor at 160 x 160) come out exactly
// when read through their own preprocessor_config.json.
TEST(Preprocess, MatchesTinyCheckpointReferencePixelValues) {
  const auto root = testing::data_dir().parent_path() / "florence-tiny";
  if (!std::filesystem::exists(root / "reference")) GTEST_SKIP() << "no florence-tiny fixtures";
  PreprocessOptions o = load_preprocess_options((root / "remote-bin-fp16").string());
  ASSERT_EQ(o.width, 160);
  for (int i = 0; i < 3; ++i) {
    const std::string n = std::to_string(i);
    SCOPED_TRACE("image" + n);
    PreprocessedImage p =
        preprocess(decode_image_file((root / "images" / ("image" + n + ".png")).string()), o);
    // safetensors: u64 header length, JSON header, raw little-endian data.
    std::vector<uint8_t> file =
        testing::read_bytes(root / "reference" / ("image" + n + ".safetensors"));
    uint64_t header_len = 0;
    std::memcpy(&header_len, file.data(), 8);
    auto header = nlohmann::json::parse(file.begin() + 8, file.begin() + 8 + header_len);
    const auto& entry = header.at("pixel_values");
    ASSERT_EQ(entry.at("dtype"), "F32");
    const size_t begin = entry.at("data_offsets")[0], end = entry.at("data_offsets")[1];
    ASSERT_EQ(end - begin, p.chw.size() * sizeof(float));
    EXPECT_EQ(std::memcmp(file.data() + 8 + header_len + begin, p.chw.data(), end - begin), 0);
  }
}

TEST(Preprocess, IntoABatchSlot) {
  DecodedImage image = decode_image_file(testing::fixture("jpeg_420_q90.jpg").string());
  PreprocessOptions o;
  std::vector<float> batch(2 * 3 * 768 * 768, -7.0f);
  preprocess_into(image, o, batch.data() + 3 * 768 * 768);
  PreprocessedImage single = preprocess(image, o);
  EXPECT_EQ(batch[0], -7.0f);
  EXPECT_TRUE(std::equal(single.chw.begin(), single.chw.end(), batch.begin() + 3 * 768 * 768));
}

TEST(Preprocess, BatchIsTheImagesInOrder) {
  std::vector<DecodedImage> images = {
      decode_image_file(testing::fixture("png_3x3.png").string()),
      decode_image_file(testing::fixture("gif_1x300.gif").string())};
  PreprocessOptions o;
  o.width = 32;
  o.height = 24;
  std::vector<float> batch = preprocess_batch(images, o);
  ASSERT_EQ(batch.size(), 2u * 3 * 32 * 24);
  for (size_t i = 0; i < images.size(); ++i) {
    PreprocessedImage one = preprocess(images[i], o);
    EXPECT_TRUE(std::equal(one.chw.begin(), one.chw.end(), batch.begin() + i * 3 * 32 * 24)) << i;
  }
  o.do_resize = false;
  EXPECT_THROW(preprocess_batch(images, o), ImageError);
}

TEST(Preprocess, EmptyImageIsAnInvalidArgument) {
  try {
    preprocess(DecodedImage{});
    FAIL();
  } catch (const ImageError& e) {
    EXPECT_EQ(e.kind(), ImageErrorKind::kInvalidArgument);
  }
}

}  // namespace
}  // namespace celeriac::image
