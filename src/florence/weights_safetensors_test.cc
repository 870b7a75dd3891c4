// safetensors reading: zero-copy views, sharded index, and refusal of damaged files.
#include "florence/weights_safetensors.h"

#include <gtest/gtest.h>

#include <cmath>

#include "florence/weights_test_util.h"

namespace celeriac::florence {
namespace {

using testing::tiny;

bool inside(const TensorSet& set, const TensorView& v) {
  for (const auto& f : set.files) {
    if (v.data >= f->data() && v.data + v.nbytes <= f->data() + f->size()) return true;
  }
  return false;
}

TEST(Safetensors, ReadsTransformersFileAsViewsIntoTheMapping) {
  const auto set = read_safetensors(tiny("native-safetensors-fp32") / "model.safetensors");
  EXPECT_EQ(set.format, "safetensors");
  // save_pretrained keeps one name of the tied embedding group and drops lm_head.
  EXPECT_TRUE(set.tensors.count("model.language_model.shared.weight"));
  EXPECT_FALSE(set.tensors.count("lm_head.weight"));
  const auto& emb = set.tensors.at("model.language_model.shared.weight");
  EXPECT_EQ(emb.dtype, DType::kF32);
  EXPECT_EQ(emb.shape, (std::vector<int64_t>{51328, 12}));
  EXPECT_TRUE(inside(set, emb));
  const auto& conv = set.tensors.at("model.vision_tower.convs.0.conv.weight");
  EXPECT_EQ(conv.shape, (std::vector<int64_t>{16, 3, 7, 7}));
  for (const auto& [name, view] : set.tensors) {
    EXPECT_TRUE(inside(set, view)) << name;
    EXPECT_EQ(view.nbytes, view.numel() * dtype_size(view.dtype)) << name;
  }
  // Silenced extra vocabulary rows (make_florence_tiny.py): channel 0 is exactly -8192.
  const float* rows = reinterpret_cast<const float*>(emb.data);
  EXPECT_EQ(rows[51300 * 12 + 0], -8192.0f);
  EXPECT_EQ(rows[51300 * 12 + 1], 0.0f);
}

TEST(Safetensors, ReadsShardedIndex) {
  const auto set =
      read_safetensors_index(tiny("remote-sharded-bf16") / "model.safetensors.index.json");
  EXPECT_EQ(set.files.size(), 2u);
  EXPECT_TRUE(set.tensors.count("language_model.lm_head.weight"));
  EXPECT_FALSE(set.tensors.count("language_model.model.shared.weight"));
  EXPECT_EQ(set.tensors.at("image_projection").shape, (std::vector<int64_t>{64, 12}));
  EXPECT_EQ(set.tensors.at("image_projection").dtype, DType::kBF16);
  for (const auto& [name, view] : set.tensors) EXPECT_TRUE(inside(set, view)) << name;
}

TEST(Safetensors, IndexNamingAnAbsentTensorIsAMissingError) {
  testing::TempDir tmp;
  const auto src = tiny("remote-sharded-bf16");
  for (const char* f : {"model-00001-of-00002.safetensors", "model-00002-of-00002.safetensors"}) {
    std::filesystem::copy_file(src / f, tmp / f);
  }
  auto index = testing::read_file(src / "model.safetensors.index.json");
  const std::string key = "\"weight_map\": {";
  index.insert(index.find(key) + key.size(),
               "\n    \"ghost.weight\": \"model-00001-of-00002.safetensors\",");
  testing::write_file(tmp / "model.safetensors.index.json", index);
  try {
    read_safetensors_index(tmp / "model.safetensors.index.json");
    FAIL() << "ghost tensor accepted";
  } catch (const WeightsError& e) {
    EXPECT_EQ(e.kind(), WeightsError::Kind::kMissing);
    EXPECT_EQ(e.tensor(), "ghost.weight");
  }
}

TEST(Safetensors, TruncatedFileIsAFormatError) {
  testing::TempDir tmp;
  const auto bytes = testing::read_file(tiny("native-safetensors-fp32") / "model.safetensors");
  for (std::size_t keep : {std::size_t{4}, std::size_t{100}, bytes.size() / 2}) {
    testing::write_file(tmp / "cut.safetensors", bytes.substr(0, keep));
    try {
      read_safetensors(tmp / "cut.safetensors");
      FAIL() << "truncated file accepted at " << keep << " bytes";
    } catch (const WeightsError& e) {
      EXPECT_EQ(e.kind(), WeightsError::Kind::kFormat) << e.what();
    }
  }
}

TEST(Safetensors, InconsistentEntryNamesTheTensor) {
  testing::TempDir tmp;
  const float values[4] = {1, 2, 3, 4};
  TensorView v{DType::kF32, {4}, reinterpret_cast<const std::byte*>(values), sizeof values};
  testing::write_safetensors(tmp / "ok.safetensors", {{"a", v}});
  auto bytes = testing::read_file(tmp / "ok.safetensors");
  // Claim 5 elements for 16 bytes.
  bytes.replace(bytes.find("[4]"), 3, "[5]");
  testing::write_file(tmp / "bad.safetensors", bytes);
  try {
    read_safetensors(tmp / "bad.safetensors");
    FAIL();
  } catch (const WeightsError& e) {
    EXPECT_EQ(e.tensor(), "a");
    EXPECT_NE(std::string(e.what()).find("[5]"), std::string::npos) << e.what();
  }
  const auto ok = read_safetensors(tmp / "ok.safetensors");
  EXPECT_EQ(reinterpret_cast<const float*>(ok.tensors.at("a").data)[3], 4.0f);
}

TEST(Safetensors, MissingFileIsAnIoError) {
  try {
    read_safetensors("/nonexistent/model.safetensors");
    FAIL();
  } catch (const WeightsError& e) {
    EXPECT_EQ(e.kind(), WeightsError::Kind::kIo);
  }
}

TEST(WeightsDtype, HalfAndBfloat16UpcastExactly) {
  EXPECT_EQ(half_to_float(0x3c00), 1.0f);
  EXPECT_EQ(half_to_float(0xc000), -2.0f);
  EXPECT_EQ(half_to_float(0x7bff), 65504.0f);
  EXPECT_EQ(half_to_float(0x0001), 5.9604644775390625e-08f);  // smallest subnormal
  EXPECT_EQ(half_to_float(0x03ff), 6.097555160522461e-05f);   // largest subnormal
  EXPECT_EQ(half_to_float(0x8000), -0.0f);
  EXPECT_TRUE(std::isinf(half_to_float(0x7c00)));
  EXPECT_TRUE(std::isnan(half_to_float(0x7e00)));
  EXPECT_EQ(bf16_to_float(0x3f80), 1.0f);
  EXPECT_EQ(bf16_to_float(0xc6c0), -24576.0f);
  // Every finite half round-trips through float exactly (checked against the float's own bits).
  for (uint32_t h = 0; h < 0x10000; ++h) {
    const float f = half_to_float(static_cast<uint16_t>(h));
    if (std::isnan(f)) continue;
    const uint32_t exp = (h >> 10) & 0x1f;
    const double mant = h & 0x3ff;
    const double expect = (h & 0x8000 ? -1.0 : 1.0) *
                          (exp == 0    ? mant * std::ldexp(1.0, -24)
                           : exp == 31 ? INFINITY
                                       : (1.0 + mant / 1024.0) * std::ldexp(1.0, exp - 15));
    ASSERT_EQ(static_cast<double>(f), expect) << std::hex << h;
  }
}

}  // namespace
}  // namespace celeriac::florence
