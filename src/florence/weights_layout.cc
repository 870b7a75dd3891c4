// Name tables of both Florence-2 key layouts.
#include "florence/weights_layout.h"

#include <array>
#include <regex>

namespace celeriac::florence {
namespace {

bool starts_with(std::string_view s, std::string_view p) { return s.substr(0, p.size()) == p; }

void add(std::vector<ExpectedTensor>& out, std::string name, std::vector<int64_t> shape) {
  out.push_back({std::move(name), std::move(shape)});
}

void add_linear(std::vector<ExpectedTensor>& out, const std::string& prefix, int64_t in,
                int64_t outdim) {
  add(out, prefix + ".weight", {outdim, in});
  add(out, prefix + ".bias", {outdim});
}

void add_norm(std::vector<ExpectedTensor>& out, const std::string& prefix, int64_t dim) {
  add(out, prefix + ".weight", {dim});
  add(out, prefix + ".bias", {dim});
}

void add_bart_attention(std::vector<ExpectedTensor>& out, const std::string& prefix, int64_t d) {
  for (const char* proj : {"k_proj", "v_proj", "q_proj", "out_proj"}) {
    add_linear(out, prefix + "." + proj, d, d);
  }
}

}  // namespace

const std::vector<std::string>& tied_embedding_names() {
  static const std::vector<std::string> names = {
      "language_model.model.shared.weight",
      "language_model.model.encoder.embed_tokens.weight",
      "language_model.model.decoder.embed_tokens.weight",
      "language_model.lm_head.weight",
  };
  return names;
}

std::vector<ExpectedTensor> expected_tensors(const Florence2Config& config) {
  const VisionConfig& v = config.vision;
  const TextConfig& t = config.text;
  std::vector<ExpectedTensor> out;
  for (std::size_t s = 0; s < v.dim_embed.size(); ++s) {
    const int64_t c = v.dim_embed[s];
    const int64_t c_in = s == 0 ? 3 : v.dim_embed[s - 1];
    const int64_t k = v.patch_size[s];
    const std::string conv = "vision_tower.convs." + std::to_string(s);
    add(out, conv + ".proj.weight", {c, c_in, k, k});
    add(out, conv + ".proj.bias", {c});
    add_norm(out, conv + ".norm", v.patch_prenorm[s] ? c_in : c);
    const auto hidden = static_cast<int64_t>(c * v.mlp_ratio);
    for (int j = 0; j < v.depths[s]; ++j) {
      const std::string blk = "vision_tower.blocks." + std::to_string(s) + "." + std::to_string(j);
      for (const auto& [kind, attn] : std::array<std::pair<const char*, const char*>, 2>{
               {{"spatial_block", "window_attn"}, {"channel_block", "channel_attn"}}}) {
        const std::string b = blk + "." + kind;
        add(out, b + ".conv1.fn.dw.weight", {c, 1, 3, 3});
        add(out, b + ".conv1.fn.dw.bias", {c});
        add_norm(out, b + "." + attn + ".norm", c);
        if (v.qkv_bias) {
          add_linear(out, b + "." + attn + ".fn.qkv", c, 3 * c);
        } else {
          add(out, b + "." + attn + ".fn.qkv.weight", {3 * c, c});
        }
        add_linear(out, b + "." + attn + ".fn.proj", c, c);
        add(out, b + ".conv2.fn.dw.weight", {c, 1, 3, 3});
        add(out, b + ".conv2.fn.dw.bias", {c});
        add_norm(out, b + ".ffn.norm", c);
        add_linear(out, b + ".ffn.fn.net.fc1", c, hidden);
        add_linear(out, b + ".ffn.fn.net.fc2", hidden, c);
      }
    }
  }
  const int64_t c3 = v.dim_embed.back();
  const int64_t p = v.projection_dim;
  add(out, std::string(kImageProjection), {c3, p});
  add_norm(out, "image_proj_norm", p);
  add(out, "image_pos_embed.row_embeddings.weight", {v.max_pos_embeddings, c3 / 2});
  add(out, "image_pos_embed.column_embeddings.weight", {v.max_pos_embeddings, c3 - c3 / 2});
  add(out, std::string(kTemporalEmbedding), {v.max_temporal_embeddings, c3});

  const int64_t d = t.d_model, vocab = t.vocab_size, positions = t.max_position_embeddings + 2;
  add(out, std::string(kFinalLogitsBias), {1, vocab});
  for (const auto& name : tied_embedding_names()) add(out, name, {vocab, d});
  for (const char* side : {"encoder", "decoder"}) {
    const std::string m = std::string("language_model.model.") + side;
    const bool dec = std::string_view(side) == "decoder";
    add(out, m + ".embed_positions.weight", {positions, d});
    add_norm(out, m + ".layernorm_embedding", d);
    const int layers = dec ? t.decoder_layers : t.encoder_layers;
    const int64_t ffn = dec ? t.decoder_ffn_dim : t.encoder_ffn_dim;
    for (int i = 0; i < layers; ++i) {
      const std::string l = m + ".layers." + std::to_string(i);
      add_bart_attention(out, l + ".self_attn", d);
      add_norm(out, l + ".self_attn_layer_norm", d);
      if (dec) {
        add_bart_attention(out, l + ".encoder_attn", d);
        add_norm(out, l + ".encoder_attn_layer_norm", d);
      }
      add_linear(out, l + ".fc1", d, ffn);
      add_linear(out, l + ".fc2", ffn, d);
      add_norm(out, l + ".final_layer_norm", d);
    }
  }
  return out;
}

std::optional<std::string> native_to_canonical(std::string_view name) {
  std::string n(name);
  if (n == "lm_head.weight") return "language_model.lm_head.weight";
  if (starts_with(n, "model.language_model.")) {
    return "language_model.model." + n.substr(std::string_view("model.language_model.").size());
  }
  if (starts_with(n, "model.multi_modal_projector.")) {
    std::string rest = n.substr(std::string_view("model.multi_modal_projector.").size());
    if (rest == "image_projection.weight") return std::string(kImageProjection);
    if (starts_with(rest, "image_position_embed.")) {
      return "image_pos_embed." + rest.substr(std::string_view("image_position_embed.").size());
    }
    if (starts_with(rest, "image_proj_norm.") || starts_with(rest, "visual_temporal_embed.")) {
      return rest;
    }
    return std::nullopt;
  }
  if (starts_with(n, "model.vision_tower.convs.")) {
    // model.vision_tower.convs.{s}.conv.* -> vision_tower.convs.{s}.proj.*
    static const std::regex conv(
        R"(^model\.vision_tower\.convs\.(\d+)\.(conv|norm)\.(weight|bias)$)");
    std::smatch m;
    if (!std::regex_match(n, m, conv)) return std::nullopt;
    return "vision_tower.convs." + m[1].str() + "." + (m[2] == "conv" ? "proj" : "norm") + "." +
           m[3].str();
  }
  if (starts_with(n, "model.vision_tower.blocks.")) {
    static const std::regex block(
        R"(^model\.vision_tower\.blocks\.(\d+)\.(\d+)\.(spatial_block|channel_block)\.(.+)\.(weight|bias)$)");
    std::smatch m;
    if (!std::regex_match(n, m, block)) return std::nullopt;
    const std::string kind = m[3].str(), part = m[4].str(), wb = m[5].str();
    const std::string attn = kind == "spatial_block" ? "window_attn" : "channel_attn";
    std::string mapped;
    if (part == "conv1")
      mapped = "conv1.fn.dw";
    else if (part == "conv2")
      mapped = "conv2.fn.dw";
    else if (part == "norm1")
      mapped = attn + ".norm";
    else if (part == "norm2")
      mapped = "ffn.norm";
    else if (part == "ffn.fc1")
      mapped = "ffn.fn.net.fc1";
    else if (part == "ffn.fc2")
      mapped = "ffn.fn.net.fc2";
    else if (part == attn + ".qkv")
      mapped = attn + ".fn.qkv";
    else if (part == attn + ".proj")
      mapped = attn + ".fn.proj";
    else
      return std::nullopt;
    return "vision_tower.blocks." + m[1].str() + "." + m[2].str() + "." + kind + "." + mapped +
           "." + wb;
  }
  return std::nullopt;
}

bool is_ignored_remote_tensor(std::string_view name) {
  return starts_with(name, "vision_tower.norms.") || starts_with(name, "vision_tower.head.");
}

std::optional<KeyLayout> detect_layout(const std::vector<std::string>& names) {
  int native = 0, remote = 0;
  for (const auto& n : names) {
    if (starts_with(n, "model.vision_tower.") || starts_with(n, "model.language_model.") ||
        starts_with(n, "model.multi_modal_projector.")) {
      ++native;
    } else if (starts_with(n, "vision_tower.") || starts_with(n, "language_model.") ||
               starts_with(n, "image_projection") || starts_with(n, "image_proj_norm.")) {
      ++remote;
    }
  }
  if (native == 0 && remote == 0) return std::nullopt;
  return native > remote ? KeyLayout::kNative : KeyLayout::kRemote;
}

}  // namespace celeriac::florence
