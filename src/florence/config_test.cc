// config.json parsing: both layouts of the committed tiny checkpoints and the quirks of 1.4.
#include "florence/config.h"

#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

#include "florence/weights_tensor.h"
#include "florence/weights_test_util.h"

namespace celeriac::florence {
namespace {

using testing::tiny;

TEST(FlorenceConfig, ReadsNativeLayout) {
  const auto c = load_config(tiny("native-safetensors-fp32"));
  EXPECT_EQ(c.layout, KeyLayout::kNative);
  EXPECT_EQ(c.vision.dim_embed, (std::vector<int>{16, 32, 48, 64}));
  EXPECT_EQ(c.vision.depths, (std::vector<int>{1, 1, 2, 1}));
  EXPECT_EQ(c.vision.num_heads, (std::vector<int>{2, 2, 3, 4}));
  EXPECT_EQ(c.vision.num_groups, (std::vector<int>{2, 4, 3, 4}));
  EXPECT_EQ(c.vision.window_size, 4);
  EXPECT_EQ(c.vision.projection_dim, 12);
  EXPECT_EQ(c.vision.max_pos_embeddings, 50);
  EXPECT_EQ(c.vision.max_temporal_embeddings, 100);
  EXPECT_EQ(c.text.vocab_size, 51328);
  EXPECT_EQ(c.text.d_model, 12);
  EXPECT_EQ(c.text.encoder_layers, 2);
  EXPECT_EQ(c.text.decoder_ffn_dim, 24);
  EXPECT_EQ(c.image_token_id, 51289);
  // generation_config.json of the native folder
  EXPECT_EQ(c.text.generation.num_beams, 3);
  EXPECT_EQ(c.text.generation.no_repeat_ngram_size, 3);
  EXPECT_TRUE(c.text.generation.early_stopping);
  EXPECT_EQ(c.text.generation.forced_bos_token_id, 0);
  EXPECT_EQ(c.text.generation.forced_eos_token_id, 2);
}

TEST(FlorenceConfig, ReadsRemoteLayout) {
  const auto c = load_config(tiny("remote-bin-fp16"));
  EXPECT_EQ(c.layout, KeyLayout::kRemote);
  EXPECT_EQ(c.vision.dim_embed, (std::vector<int>{16, 32, 48, 64}));
  EXPECT_EQ(c.vision.patch_prenorm, (std::vector<bool>{false, true, true, true}));
  EXPECT_EQ(c.text.vocab_size, 51289);
  EXPECT_EQ(c.text.decoder_start_token_id, 2);
  EXPECT_EQ(c.text.generation.num_beams, 3);
  EXPECT_EQ(c.image_token_id, -1);
}

nlohmann::json remote_json() {
  return nlohmann::json::parse(testing::read_file(tiny("remote-bin-fp16") / "config.json"));
}

TEST(FlorenceConfig, AcceptsDavitEmptyOrAbsentVisionModelType) {
  auto j = remote_json();
  for (const char* type : {"davit", ""}) {
    j["vision_config"]["model_type"] = type;
    EXPECT_EQ(parse_config(j).vision.dim_embed.back(), 64) << type;
  }
  j["vision_config"].erase("model_type");
  EXPECT_EQ(parse_config(j).vision.dim_embed.back(), 64);
}

TEST(FlorenceConfig, DefaultsAreFlorence2Base) {
  auto c = parse_config(nlohmann::json::object());
  EXPECT_EQ(c.vision.dim_embed, (std::vector<int>{128, 256, 512, 1024}));
  EXPECT_EQ(c.vision.depths, (std::vector<int>{1, 1, 9, 1}));
  EXPECT_EQ(c.text.d_model, 768);
  EXPECT_EQ(c.text.vocab_size, 51289);
}

TEST(FlorenceConfig, RejectsWrongModelsAndInconsistentLists) {
  auto j = remote_json();
  j["vision_config"]["model_type"] = "clip_vision_model";
  EXPECT_THROW(parse_config(j), WeightsError);
  j = remote_json();
  j["model_type"] = "llava";
  EXPECT_THROW(parse_config(j), WeightsError);
  j = remote_json();
  j["vision_config"]["depths"] = {1, 1, 2};
  try {
    parse_config(j);
    FAIL() << "mismatched depths accepted";
  } catch (const WeightsError& e) {
    EXPECT_NE(std::string(e.what()).find("depths"), std::string::npos) << e.what();
  }
  j = remote_json();
  j["text_config"]["d_model"] = "wide";
  EXPECT_THROW(parse_config(j), WeightsError);
  j = remote_json();
  j["text_config"]["d_model"] = 13;  // not divisible by 2 heads, and != projection_dim
  EXPECT_THROW(parse_config(j), WeightsError);
}

}  // namespace
}  // namespace celeriac::florence
