// config.json parsing for both Florence-2 key layouts.
#include "florence/config.h"

#include <fstream>
#include <nlohmann/json.hpp>

#include "florence/weights_tensor.h"

namespace celeriac::florence {
namespace {

using nlohmann::json;
using Kind = WeightsError::Kind;

[[noreturn]] void bad(const std::string& why) {
  throw WeightsError(Kind::kFormat, "config.json: " + why);
}

template <typename T>
void get(const json& j, const char* key, T& out, const std::string& where) {
  if (!j.contains(key) || j[key].is_null()) return;
  try {
    out = j[key].get<T>();
  } catch (const json::exception&) {
    bad(where + key + " has the wrong type: " + j[key].dump());
  }
}

// An int that may be absent or null (e.g. forced_bos_token_id) -> -1.
void get_optional_id(const json& j, const char* key, int& out) {
  if (!j.contains(key)) return;
  if (j[key].is_null()) {
    out = -1;
    return;
  }
  get(j, key, out, "");
}

void read_generation(const json& j, GenerationDefaults& g, const std::string& where) {
  get(j, "num_beams", g.num_beams, where);
  get(j, "no_repeat_ngram_size", g.no_repeat_ngram_size, where);
  if (j.contains("early_stopping") && j["early_stopping"].is_boolean()) {
    g.early_stopping = j["early_stopping"].get<bool>();
  }
  get(j, "length_penalty", g.length_penalty, where);
  get(j, "max_length", g.max_length, where);
  get(j, "min_length", g.min_length, where);
  get(j, "repetition_penalty", g.repetition_penalty, where);
  get_optional_id(j, "forced_bos_token_id", g.forced_bos_token_id);
  get_optional_id(j, "forced_eos_token_id", g.forced_eos_token_id);
}

VisionConfig parse_vision(const json& v, bool& native) {
  VisionConfig c;
  const std::string where = "vision_config.";
  std::string model_type;
  get(v, "model_type", model_type, where);
  // "davit" in Microsoft's file, "" in re-saved remote-code copies, "florence_vision" natively.
  if (model_type == "florence_vision") native = true;
  if (!model_type.empty() && model_type != "davit" && model_type != "florence_vision") {
    bad("vision_config.model_type \"" + model_type + "\" is not a DaViT");
  }
  if (v.contains("embed_dim")) {
    native = true;
    get(v, "embed_dim", c.dim_embed, where);
  }
  get(v, "dim_embed", c.dim_embed, where);
  get(v, "depths", c.depths, where);
  get(v, "num_heads", c.num_heads, where);
  get(v, "num_groups", c.num_groups, where);
  get(v, "patch_size", c.patch_size, where);
  get(v, "patch_stride", c.patch_stride, where);
  get(v, "patch_padding", c.patch_padding, where);
  get(v, "patch_prenorm", c.patch_prenorm, where);
  get(v, "window_size", c.window_size, where);
  get(v, "mlp_ratio", c.mlp_ratio, where);
  get(v, "qkv_bias", c.qkv_bias, where);
  get(v, "projection_dim", c.projection_dim, where);
  // Remote code nests these; native flattens them.
  if (v.contains("image_pos_embed") && v["image_pos_embed"].is_object()) {
    get(v["image_pos_embed"], "max_pos_embeddings", c.max_pos_embeddings, where);
  }
  if (v.contains("visual_temporal_embedding") && v["visual_temporal_embedding"].is_object()) {
    get(v["visual_temporal_embedding"], "max_temporal_embeddings", c.max_temporal_embeddings,
        where);
  }
  get(v, "max_position_embeddings", c.max_pos_embeddings, where);
  get(v, "max_temporal_embeddings", c.max_temporal_embeddings, where);
  get(v, "image_feature_source", c.image_feature_source, where);

  const std::size_t stages = c.dim_embed.size();
  if (stages == 0) bad("vision_config.dim_embed is empty");
  auto same = [&](std::size_t n, const char* name) {
    if (n != stages) {
      bad(std::string("vision_config.") + name + " has " + std::to_string(n) +
          " entries, dim_embed has " + std::to_string(stages));
    }
  };
  same(c.depths.size(), "depths");
  same(c.num_heads.size(), "num_heads");
  same(c.num_groups.size(), "num_groups");
  same(c.patch_size.size(), "patch_size");
  same(c.patch_stride.size(), "patch_stride");
  same(c.patch_padding.size(), "patch_padding");
  same(c.patch_prenorm.size(), "patch_prenorm");
  for (std::size_t s = 0; s < stages; ++s) {
    if (c.dim_embed[s] <= 0 || c.num_heads[s] <= 0 || c.num_groups[s] <= 0 ||
        c.dim_embed[s] % c.num_heads[s] != 0 || c.dim_embed[s] % c.num_groups[s] != 0) {
      bad("vision stage " + std::to_string(s) + ": dim " + std::to_string(c.dim_embed[s]) +
          " is not divisible by its heads/groups");
    }
  }
  if (c.window_size <= 0) bad("vision_config.window_size must be positive");
  return c;
}

TextConfig parse_text(const json& t, bool& native) {
  TextConfig c;
  const std::string where = "text_config.";
  std::string model_type;
  get(t, "model_type", model_type, where);
  if (model_type == "bart") native = true;
  if (!model_type.empty() && model_type != "bart" && model_type != "florence2_language") {
    bad("text_config.model_type \"" + model_type + "\" is not a BART");
  }
  get(t, "vocab_size", c.vocab_size, where);
  get(t, "d_model", c.d_model, where);
  get(t, "encoder_layers", c.encoder_layers, where);
  get(t, "decoder_layers", c.decoder_layers, where);
  get(t, "encoder_attention_heads", c.encoder_attention_heads, where);
  get(t, "decoder_attention_heads", c.decoder_attention_heads, where);
  get(t, "encoder_ffn_dim", c.encoder_ffn_dim, where);
  get(t, "decoder_ffn_dim", c.decoder_ffn_dim, where);
  get(t, "max_position_embeddings", c.max_position_embeddings, where);
  get(t, "activation_function", c.activation_function, where);
  get(t, "scale_embedding", c.scale_embedding, where);
  get(t, "pad_token_id", c.pad_token_id, where);
  get(t, "bos_token_id", c.bos_token_id, where);
  get(t, "eos_token_id", c.eos_token_id, where);
  get(t, "decoder_start_token_id", c.decoder_start_token_id, where);
  read_generation(t, c.generation, where);
  bool normalize_before = false, add_final_layer_norm = false;
  get(t, "normalize_before", normalize_before, where);
  get(t, "add_final_layer_norm", add_final_layer_norm, where);
  if (normalize_before || add_final_layer_norm) {
    bad("text_config: pre-LN BART (normalize_before/add_final_layer_norm) is not Florence-2");
  }
  if (c.d_model <= 0 || c.encoder_attention_heads <= 0 || c.decoder_attention_heads <= 0 ||
      c.d_model % c.encoder_attention_heads != 0 || c.d_model % c.decoder_attention_heads != 0) {
    bad("text_config: d_model " + std::to_string(c.d_model) + " is not divisible by the heads");
  }
  return c;
}

}  // namespace

const char* key_layout_name(KeyLayout layout) {
  return layout == KeyLayout::kNative ? "native" : "remote";
}

Florence2Config parse_config(const json& j) {
  if (!j.is_object()) bad("not a JSON object");
  std::string model_type;
  get(j, "model_type", model_type, "");
  if (!model_type.empty() && model_type != "florence2") {
    bad("model_type \"" + model_type + "\" is not florence2");
  }
  bool native = false;
  Florence2Config c;
  if (j.contains("vision_config") && j["vision_config"].is_object()) {
    c.vision = parse_vision(j["vision_config"], native);
  }
  if (j.contains("text_config") && j["text_config"].is_object()) {
    c.text = parse_text(j["text_config"], native);
  }
  // Top-level projection_dim / vocab_size of the remote code mirror the sub-configs.
  if (j.contains("image_token_id")) {
    native = true;
    get(j, "image_token_id", c.image_token_id, "");
  }
  c.layout = native ? KeyLayout::kNative : KeyLayout::kRemote;
  if (c.vision.projection_dim != c.text.d_model) {
    bad("vision projection_dim " + std::to_string(c.vision.projection_dim) +
        " differs from text d_model " + std::to_string(c.text.d_model));
  }
  return c;
}

Florence2Config load_config(const std::filesystem::path& dir) {
  const auto path = dir / "config.json";
  std::ifstream in(path);
  if (!in) throw WeightsError(Kind::kIo, "cannot open " + path.string());
  json j;
  try {
    j = json::parse(in);
  } catch (const json::exception& e) {
    throw WeightsError(Kind::kFormat, path.string() + ": not JSON: " + e.what());
  }
  Florence2Config c = parse_config(j);
  const auto gen_path = dir / "generation_config.json";
  if (c.layout == KeyLayout::kNative && std::filesystem::exists(gen_path)) {
    // transformers then uses this file alone, with GenerationConfig's own defaults for the rest.
    GenerationDefaults g;
    g.num_beams = 1;
    g.no_repeat_ngram_size = 0;
    g.early_stopping = false;
    g.forced_bos_token_id = -1;
    g.forced_eos_token_id = -1;
    std::ifstream gin(gen_path);
    try {
      read_generation(json::parse(gin), g, "generation_config.");
      c.text.generation = g;
    } catch (const json::exception& e) {
      throw WeightsError(Kind::kFormat, gen_path.string() + ": not JSON: " + e.what());
    }
  }
  return c;
}

}  // namespace celeriac::florence
