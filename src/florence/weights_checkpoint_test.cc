// Checkpoint: the same canonical tensors, bit for bit, from every committed tiny checkpoint
// (both key layouts, both file formats, fp32/fp16/bf16 storage), tied and default tensors
// resolved as florence2.md 9.3 says, and clear errors for missing or misshapen tensors.
#include "florence/weights_checkpoint.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <functional>

#include "florence/weights_layout.h"
#include "florence/weights_safetensors.h"
#include "florence/weights_test_util.h"

namespace celeriac::florence {
namespace {

using testing::tiny;

const char* kFolders[] = {"native-safetensors-fp32", "native-bin-bf16", "remote-bin-fp16",
                          "remote-sharded-bf16"};

std::vector<float> values(const Checkpoint& ck, const std::string& name) {
  auto s = ck.f32(name);
  return {s.begin(), s.end()};
}

TEST(Checkpoint, OpensEveryTinyFolderWithItsLayoutAndFormat) {
  struct Want {
    const char* folder;
    KeyLayout layout;
    const char* format;
    DType dtype;
    int64_t vocab;
  };
  const Want wants[] = {
      {"native-safetensors-fp32", KeyLayout::kNative, "safetensors", DType::kF32, 51328},
      {"native-bin-bf16", KeyLayout::kNative, "pytorch", DType::kBF16, 51328},
      {"remote-bin-fp16", KeyLayout::kRemote, "pytorch", DType::kF16, 51289},
      {"remote-sharded-bf16", KeyLayout::kRemote, "safetensors", DType::kBF16, 51289},
  };
  for (const auto& w : wants) {
    SCOPED_TRACE(w.folder);
    const auto ck = Checkpoint::open(tiny(w.folder));
    EXPECT_EQ(ck.file_layout(), w.layout);
    EXPECT_EQ(ck.format(), w.format);
    EXPECT_EQ(ck.tensor("vision_tower.blocks.2.1.channel_block.ffn.fn.net.fc2.weight").dtype,
              w.dtype);
    EXPECT_EQ(ck.tensor("language_model.lm_head.weight").shape,
              (std::vector<int64_t>{w.vocab, 12}));
    for (const auto& e : expected_tensors(ck.config())) {
      ASSERT_TRUE(ck.contains(e.name)) << e.name;
      EXPECT_EQ(ck.tensor(e.name).shape, e.shape) << e.name;
    }
    EXPECT_TRUE(ck.unused().empty());
  }
}

TEST(Checkpoint, AllFoldersHoldTheSameNumbers) {
  const auto ref = Checkpoint::open(tiny("native-safetensors-fp32"));
  const int64_t remote_vocab = 51289, d = 12;
  for (const char* folder : kFolders) {
    SCOPED_TRACE(folder);
    const auto ck = Checkpoint::open(tiny(folder));
    for (const auto& e : expected_tensors(ck.config())) {
      auto a = values(ck, e.name);
      auto b = values(ref, e.name);
      if (a.size() != b.size()) {
        // Remote files carry 51289 embedding rows, native ones 51328 (the first 51289 agree).
        ASSERT_EQ(a.size(), static_cast<std::size_t>(
                                remote_vocab * (e.name.find("bias") != std::string::npos ? 1 : d)))
            << e.name;
        b.resize(a.size());
      }
      ASSERT_EQ(a, b) << e.name;
    }
  }
}

TEST(Checkpoint, TiedEmbeddingsShareOneTensor) {
  for (const char* folder : kFolders) {
    SCOPED_TRACE(folder);
    const auto ck = Checkpoint::open(tiny(folder));
    const auto* shared = ck.tensor("language_model.model.shared.weight").data;
    for (const auto& name : tied_embedding_names()) {
      EXPECT_EQ(ck.tensor(name).data, shared) << name;
      EXPECT_EQ(ck.f32(name).data(), ck.f32(tied_embedding_names().front()).data()) << name;
    }
  }
  // The sharded remote file holds only lm_head: the others are filled from it.
  const auto ck = Checkpoint::open(tiny("remote-sharded-bf16"));
  bool noted = false;
  for (const auto& n : ck.notes())
    noted |= n.find("tied to language_model.lm_head") != std::string::npos;
  EXPECT_TRUE(noted);
}

TEST(Checkpoint, Fp32FileIsReadWithoutCopy) {
  const auto ck = Checkpoint::open(tiny("native-safetensors-fp32"));
  const auto& view = ck.tensor("language_model.model.decoder.layers.1.fc1.weight");
  EXPECT_EQ(reinterpret_cast<const std::byte*>(
                ck.f32("language_model.model.decoder.layers.1.fc1.weight").data()),
            view.data);
  // A half-precision file is converted once and the conversion reused.
  const auto half = Checkpoint::open(tiny("remote-bin-fp16"));
  const auto* first = half.f32("image_proj_norm.weight").data();
  EXPECT_EQ(half.f32("image_proj_norm.weight").data(), first);
  EXPECT_NE(reinterpret_cast<const std::byte*>(first), half.tensor("image_proj_norm.weight").data);
}

TEST(Checkpoint, CopyFromFileReadsTheMappedBytes) {
  const auto ck = Checkpoint::open(tiny("native-safetensors-fp32"));
  const std::string name = "language_model.model.decoder.layers.0.fc1.weight";
  const std::span<const float> mapped = ck.f32(name);
  ASSERT_TRUE(ck.in_mapped_file(mapped));
  std::vector<float> out(mapped.size(), -1.0f);
  ck.copy_from_file(mapped, out.data());
  EXPECT_TRUE(std::equal(mapped.begin(), mapped.end(), out.begin()));
  // An upcast of a bf16 file is an owned buffer: not in the file, nothing to read.
  const auto bf16 = Checkpoint::open(tiny("native-bin-bf16"));
  EXPECT_FALSE(bf16.in_mapped_file(bf16.f32(name)));
  EXPECT_THROW(bf16.copy_from_file(bf16.f32(name), out.data()), WeightsError);
}

TEST(Checkpoint, NativeImageProjectionIsTransposedToInOut) {
  const auto native = Checkpoint::open(tiny("native-safetensors-fp32"));
  const auto remote = Checkpoint::open(tiny("remote-bin-fp16"));
  EXPECT_EQ(native.tensor("image_projection").shape, (std::vector<int64_t>{64, 12}));
  EXPECT_EQ(values(native, "image_projection"), values(remote, "image_projection"));
  const auto raw = read_safetensors(tiny("native-safetensors-fp32") / "model.safetensors");
  const auto& linear = raw.tensors.at("model.multi_modal_projector.image_projection.weight");
  ASSERT_EQ(linear.shape, (std::vector<int64_t>{12, 64}));
  const float* w = reinterpret_cast<const float*>(linear.data);
  auto p = native.f32("image_projection");
  EXPECT_EQ(p[5 * 12 + 7], w[7 * 64 + 5]);  // P[c=5][p=7] == W[p=7][c=5]
}

TEST(Checkpoint, DefaultsForAbsentBuffers) {
  // Native files have no final_logits_bias: zeros with one entry per embedding row.
  const auto native = Checkpoint::open(tiny("native-safetensors-fp32"));
  auto bias = native.f32("language_model.final_logits_bias");
  EXPECT_EQ(bias.size(), 51328u);
  for (float b : bias) ASSERT_EQ(b, 0.0f);

  // Without the temporal table the loader recomputes it; row 0 is exact (0 even, 1 odd channels).
  testing::TempDir tmp;
  const auto src = tiny("native-safetensors-fp32");
  std::filesystem::copy_file(src / "config.json", tmp / "config.json");
  const auto raw = read_safetensors(src / "model.safetensors");
  std::map<std::string, TensorView> kept;
  for (const auto& [name, v] : raw.tensors) {
    if (name.find("pos_idx_to_embed") == std::string::npos) kept.emplace(name, v);
  }
  ASSERT_EQ(kept.size() + 1, raw.tensors.size());
  testing::write_safetensors(tmp / "model.safetensors", kept);
  const auto ck = Checkpoint::open(tmp.path());
  auto made = ck.f32(std::string(kTemporalEmbedding));
  auto stored = native.f32(std::string(kTemporalEmbedding));
  ASSERT_EQ(made.size(), stored.size());
  for (int c = 0; c < 64; ++c) ASSERT_EQ(made[c], c % 2 ? 1.0f : 0.0f) << c;
  // Other rows agree with torch's float32 table up to rounding (and the bf16 rounding of the file).
  for (std::size_t i = 0; i < made.size(); ++i) {
    ASSERT_NEAR(made[i], stored[i], 8e-3) << i;
  }
}

// A copy of the fp32 native checkpoint with `edit` applied to its tensors.
void write_edited(const testing::TempDir& tmp,
                  const std::function<void(std::map<std::string, TensorView>&)>& edit) {
  const auto src = tiny("native-safetensors-fp32");
  for (const char* f : {"config.json", "generation_config.json"}) {
    std::filesystem::copy_file(src / f, tmp / f);
  }
  static const auto raw = read_safetensors(src / "model.safetensors");
  std::map<std::string, TensorView> tensors(raw.tensors.begin(), raw.tensors.end());
  edit(tensors);
  testing::write_safetensors(tmp / "model.safetensors", tensors);
}

TEST(Checkpoint, MissingTensorIsNamed) {
  testing::TempDir tmp;
  write_edited(
      tmp, [](auto& t) { t.erase("model.vision_tower.blocks.2.1.channel_block.ffn.fc2.bias"); });
  try {
    Checkpoint::open(tmp.path());
    FAIL() << "missing tensor accepted";
  } catch (const WeightsError& e) {
    EXPECT_EQ(e.kind(), WeightsError::Kind::kMissing);
    EXPECT_EQ(e.tensor(), "vision_tower.blocks.2.1.channel_block.ffn.fn.net.fc2.bias");
    EXPECT_NE(std::string(e.what()).find("missing tensor "
                                         "vision_tower.blocks.2.1.channel_block.ffn.fn.net.fc2.bias"
                                         " (expected shape [48])"),
              std::string::npos)
        << e.what();
  }
  // Without the embedding (no name of the tied group), all four are reported.
  testing::TempDir tmp2;
  write_edited(tmp2, [](auto& t) { t.erase("model.language_model.shared.weight"); });
  try {
    Checkpoint::open(tmp2.path());
    FAIL();
  } catch (const WeightsError& e) {
    EXPECT_EQ(e.tensor(), "language_model.model.shared.weight");
    EXPECT_NE(std::string(e.what()).find("language_model.lm_head.weight"), std::string::npos);
  }
}

TEST(Checkpoint, MisshapenTensorIsNamedWithBothShapes) {
  testing::TempDir tmp;
  write_edited(tmp, [](auto& t) {
    auto& v = t.at("model.language_model.encoder.layers.1.fc1.weight");  // [24, 12]
    v.shape = {12, 24};
  });
  try {
    Checkpoint::open(tmp.path());
    FAIL() << "misshapen tensor accepted";
  } catch (const WeightsError& e) {
    EXPECT_EQ(e.kind(), WeightsError::Kind::kShape);
    EXPECT_EQ(e.tensor(), "language_model.model.encoder.layers.1.fc1.weight");
    EXPECT_NE(std::string(e.what()).find("has shape [12, 24], the config implies [24, 12]"),
              std::string::npos)
        << e.what();
  }
  // The same file opens when shape checks are off (e.g. for `inspect-weights`).
  CheckpointOptions lax;
  lax.check_shapes = false;
  EXPECT_NO_THROW(Checkpoint::open(tmp.path(), lax));
}

TEST(Checkpoint, ExtraTensorsAreReportedNotFatal) {
  testing::TempDir tmp;
  static const float one = 1.0f;
  write_edited(tmp, [](auto& t) {
    t.emplace("model.vision_tower.head.weight",
              TensorView{DType::kF32, {1}, reinterpret_cast<const std::byte*>(&one), 4});
  });
  const auto ck = Checkpoint::open(tmp.path());
  ASSERT_EQ(ck.unused().size(), 1u);
  EXPECT_EQ(ck.unused()[0], "model.vision_tower.head.weight");
}

TEST(Checkpoint, FormatChoiceAndSingleFile) {
  // A weights file can be named directly; the folder's config.json is used.
  const auto ck = Checkpoint::open(tiny("remote-bin-fp16") / "pytorch_model.bin");
  EXPECT_EQ(ck.format(), "pytorch");
  CheckpointOptions only_st;
  only_st.format = "safetensors";
  try {
    Checkpoint::open(tiny("remote-bin-fp16"), only_st);
    FAIL();
  } catch (const WeightsError& e) {
    EXPECT_EQ(e.kind(), WeightsError::Kind::kIo);
  }
  EXPECT_THROW(Checkpoint::open(tiny("images")), WeightsError);
}

TEST(Checkpoint, ReferenceOutputsAreReadableAsSafetensors) {
  // The model tests read their expected tensors with the same reader.
  const auto ref = read_safetensors(tiny("reference") / "image0.safetensors");
  EXPECT_EQ(ref.tensors.at("pixel_values").shape, (std::vector<int64_t>{3, 160, 160}));
  EXPECT_EQ(ref.tensors.at("vision_features").shape, (std::vector<int64_t>{64, 5, 5}));
  EXPECT_EQ(ref.tensors.at("image_features").shape, (std::vector<int64_t>{26, 12}));
  EXPECT_EQ(ref.tensors.at("logits.p00").shape, (std::vector<int64_t>{51328}));
}

// The full Florence-2-base configuration with random weights, when generated locally by
// scripts/fixtures/make_florence_base_random.py (not committed: 1.4 GB).
TEST(Checkpoint, BaseRandomLayoutsAgree) {
  const auto base =
      std::filesystem::path(CELERIAC_SOURCE_DIR) / ".cache" / "florence-2-base-random";
  if (!std::filesystem::exists(base / "remote" / "pytorch_model.bin")) {
    GTEST_SKIP() << "run scripts/fixtures/make_florence_base_random.py first";
  }
  const auto native = Checkpoint::open(base / "native");
  const auto remote = Checkpoint::open(base / "remote");
  EXPECT_EQ(remote.config().vision.dim_embed, (std::vector<int>{128, 256, 512, 1024}));
  EXPECT_EQ(remote.tensor("language_model.lm_head.weight").shape,
            (std::vector<int64_t>{51289, 768}));
  const auto expected = expected_tensors(remote.config());
  EXPECT_EQ(expected.size(),
            669u);  // florence2.md Appendix A: 669 names, tied and buffers included
  for (const auto& e : expected) {
    auto a = remote.f32(e.name);
    auto b = native.f32(e.name);
    ASSERT_LE(a.size(), b.size()) << e.name;
    ASSERT_TRUE(std::equal(a.begin(), a.end(), b.begin())) << e.name;
  }
}

}  // namespace
}  // namespace celeriac::florence
