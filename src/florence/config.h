// Florence-2 configuration as read from a checkpoint's config.json, in either key layout:
// Microsoft's remote-code files (vision "dim_embed", text model_type "florence2_language",
// generation settings inside text_config) and transformers' native files (vision "embed_dim",
// text model_type "bart", generation settings in generation_config.json). Missing fields take the
// Florence-2-base values (florence2.md section 2).
#pragma once

#include <filesystem>
#include <nlohmann/json_fwd.hpp>
#include <string>
#include <vector>

namespace celeriac::florence {

// DaViT vision tower (florence2.md 2.1).
struct VisionConfig {
  std::vector<int> dim_embed{128, 256, 512, 1024};  // channels per stage ("embed_dim" natively)
  std::vector<int> depths{1, 1, 9, 1};              // (spatial, channel) block pairs per stage
  std::vector<int> num_heads{4, 8, 16, 32};         // window-attention heads per stage
  std::vector<int> num_groups{4, 8, 16, 32};        // channel-attention groups per stage
  std::vector<int> patch_size{7, 3, 3, 3};          // ConvEmbed kernel per stage
  std::vector<int> patch_stride{4, 2, 2, 2};
  std::vector<int> patch_padding{3, 1, 1, 1};
  std::vector<bool> patch_prenorm{false, true, true,
                                  true};  // LayerNorm before (true) or after conv
  int window_size = 12;
  double mlp_ratio = 4.0;
  bool qkv_bias = true;
  int projection_dim = 768;           // width of the visual tokens (= text d_model)
  int max_pos_embeddings = 50;        // rows of the 2-D learned position tables
  int max_temporal_embeddings = 100;  // rows of the cosine temporal table
  std::vector<std::string> image_feature_source{"spatial_avg_pool", "temporal_avg_pool"};
};

// Generation settings the reference applies when the caller does not override them (13.1).
struct GenerationDefaults {
  int num_beams = 3;
  int no_repeat_ngram_size = 3;
  bool early_stopping = true;
  double length_penalty = 1.0;
  int max_length = 20;
  int min_length = 0;
  double repetition_penalty = 1.0;
  int forced_bos_token_id = 0;  // -1 when none
  int forced_eos_token_id = 2;  // -1 when none
};

// BART language model (florence2.md 2.2).
struct TextConfig {
  int vocab_size = 51289;
  int d_model = 768;
  int encoder_layers = 6;
  int decoder_layers = 6;
  int encoder_attention_heads = 12;
  int decoder_attention_heads = 12;
  int encoder_ffn_dim = 3072;
  int decoder_ffn_dim = 3072;
  int max_position_embeddings = 1024;  // the position tables hold this + 2 rows
  std::string activation_function = "gelu";
  bool scale_embedding = false;
  int pad_token_id = 1;
  int bos_token_id = 0;
  int eos_token_id = 2;
  int decoder_start_token_id = 2;
  GenerationDefaults generation;
};

enum class KeyLayout {
  kRemote,  // microsoft/Florence-2-*: vision_tower.*, image_projection, language_model.model.*
  kNative,  // transformers' Florence2ForConditionalGeneration: model.vision_tower.*, lm_head, ...
};
const char* key_layout_name(KeyLayout layout);

struct Florence2Config {
  KeyLayout layout = KeyLayout::kRemote;  // which layout config.json is written in
  VisionConfig vision;
  TextConfig text;
  int image_token_id = -1;  // native layout only (51289): placeholder for visual tokens
};

// Parses a config.json document. Throws WeightsError(kFormat) on wrong types, an unknown
// vision/text model_type, or inconsistent per-stage lists.
Florence2Config parse_config(const nlohmann::json& config);
// Reads <dir>/config.json and, for the native layout, <dir>/generation_config.json when present
// (the remote code takes generation settings from text_config and ignores that file).
Florence2Config load_config(const std::filesystem::path& dir);

}  // namespace celeriac::florence
