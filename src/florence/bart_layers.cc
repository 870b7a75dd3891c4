// Shared BART pieces (see bart_layers.h). Module names follow transformers' BartAttention /
// BartEncoderLayer / BartDecoderLayer, under the canonical (remote-code) prefix.
#include "florence/bart_layers.h"

#include <cmath>
#include <cstring>
#include <stdexcept>

#include "florence/config.h"
#include "florence/weights_checkpoint.h"
#include "florence/weights_bf16.h"
#include "nn/linear.h"
#include "nn/norm.h"

namespace celeriac::florence {

nn::Tensor bart_weight(const Checkpoint& ckpt, const std::string& name) {
  const TensorView& view = ckpt.tensor(name);
  std::span<const float> data = ckpt.f32(name);
  return nn::Tensor::view(data.data(), nn::Shape(std::span<const int64_t>(view.shape)));
}

BartNormWeights load_bart_norm(const Checkpoint& ckpt, const std::string& prefix) {
  return {bart_weight(ckpt, prefix + "weight"), bart_weight(ckpt, prefix + "bias")};
}

BartAttentionWeights load_bart_attention(const Checkpoint& ckpt, const std::string& prefix) {
  auto w = [&](const char* name) { return bart_weight(ckpt, prefix + name); };
  return {w("q_proj.weight"), w("q_proj.bias"), w("k_proj.weight"),   w("k_proj.bias"),
          w("v_proj.weight"), w("v_proj.bias"), w("out_proj.weight"), w("out_proj.bias")};
}

BartFfnWeights load_bart_ffn(const Checkpoint& ckpt, const std::string& layer_prefix) {
  auto w = [&](const char* name) { return bart_weight(ckpt, layer_prefix + name); };
  return {w("fc1.weight"), w("fc1.bias"), w("fc2.weight"), w("fc2.bias"),
          load_bart_norm(ckpt, layer_prefix + "final_layer_norm.")};
}

BartEmbeddingWeights load_bart_embeddings(const Checkpoint& ckpt, const TextConfig& config,
                                          const std::string& side) {
  const std::string prefix = "language_model.model." + side + ".";
  BartEmbeddingWeights w;
  // The loader resolves the four tied names to one tensor (spec §9.3); `shared` is always there.
  w.tokens = bart_weight(ckpt, "language_model.model.shared.weight");
  w.positions = bart_weight(ckpt, prefix + "embed_positions.weight");
  w.norm = load_bart_norm(ckpt, prefix + "layernorm_embedding.");
  // BartScaledWordEmbedding multiplies by sqrt(d_model) when scale_embedding (false in Florence-2).
  w.token_scale = config.scale_embedding ? std::sqrt(static_cast<float>(config.d_model)) : 1.0f;
  return w;
}

void check_bart_activation(const TextConfig& config) {
  if (config.activation_function != "gelu")
    throw std::invalid_argument("text_config.activation_function \"" + config.activation_function +
                                "\" is not implemented (only \"gelu\", the exact erf form)");
}

void embed_tokens(const BartEmbeddingWeights& w, std::span<const int32_t> ids,
                  const nn::Tensor& out) {
  const int64_t vocab = w.tokens.dim(0), d = w.tokens.dim(1);
  if (out.rows() != static_cast<int64_t>(ids.size()) || out.dim(-1) != d)
    throw nn::ShapeError("embed_tokens: " + std::to_string(ids.size()) + " ids into " +
                         out.shape().to_string());
  float* dst = out.mutable_data();
  for (size_t i = 0; i < ids.size(); ++i) {
    if (ids[i] < 0 || ids[i] >= vocab)
      throw nn::ShapeError("embed_tokens: id " + std::to_string(ids[i]) + " outside a table of " +
                           std::to_string(vocab) + " rows");
    const float* row = w.tokens.data() + ids[i] * d;
    if (w.token_scale == 1.0f) {
      std::memcpy(dst + i * d, row, d * sizeof(float));
    } else {
      for (int64_t c = 0; c < d; ++c) dst[i * d + c] = row[c] * w.token_scale;
    }
  }
}

void use_bf16(const Checkpoint& ckpt, BartAttentionWeights& w, bool keys_values) {
  w.q16 = bf16_copy(ckpt, w.q_w);
  if (keys_values) {
    w.k16 = bf16_copy(ckpt, w.k_w);
    w.v16 = bf16_copy(ckpt, w.v_w);
  }
  w.out16 = bf16_copy(ckpt, w.out_w);
}

void use_bf16(const Checkpoint& ckpt, BartFfnWeights& w) {
  w.fc1_16 = bf16_copy(ckpt, w.fc1_w);
  w.fc2_16 = bf16_copy(ckpt, w.fc2_w);
}

void bart_ffn_block(const nn::Tensor& x, const BartFfnWeights& w, const nn::Tensor& hidden) {
  nn::linear(x, w.fc1_w, w.fc1_16, w.fc1_p, &w.fc1_b, hidden, {.activation = nn::Activation::kGelu});
  nn::linear(hidden, w.fc2_w, w.fc2_16, w.fc2_p, &w.fc2_b, x, {.accumulate = true});
  nn::layer_norm(x, w.norm.weight, w.norm.bias, kBartLayerNormEps, x);
}

void bart_attention_output(const nn::Tensor& x, const nn::Tensor& attended,
                           const BartAttentionWeights& w, const BartNormWeights& norm) {
  nn::linear(attended, w.out_w, w.out16, w.out_p, &w.out_b, x, {.accumulate = true});
  nn::layer_norm(x, norm.weight, norm.bias, kBartLayerNormEps, x);
}

}  // namespace celeriac::florence
