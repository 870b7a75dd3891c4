// BART encoder forward (transformers' BartEncoder / BartEncoderLayer, eager attention, post-LN):
//   h = LN_emb(x + E_pos[p + 2])
//   per layer: h = LN_sa(h + out(MHA(h)));  h = LN_ff(h + fc2(gelu(fc1(h))))
#include "florence/bart_encoder.h"

#include <cmath>
#include <string>

#include "florence/weights_checkpoint.h"
#include "nn/attention.h"
#include "nn/elementwise.h"
#include "nn/linear.h"
#include "nn/norm.h"

namespace celeriac::florence {

BartEncoder::BartEncoder(const Checkpoint& ckpt) : config_(ckpt.config().text) {
  check_bart_activation(config_);
  embeddings_ = load_bart_embeddings(ckpt, config_, "encoder");
  for (int i = 0; i < config_.encoder_layers; ++i) {
    const std::string prefix = "language_model.model.encoder.layers." + std::to_string(i) + ".";
    layers_.push_back({load_bart_attention(ckpt, prefix + "self_attn."),
                       load_bart_norm(ckpt, prefix + "self_attn_layer_norm."),
                       load_bart_ffn(ckpt, prefix)});
  }
}

void BartEncoder::use_bf16_weights(const Checkpoint& checkpoint) {
  for (BartEncoderLayerWeights& layer : layers_) {
    use_bf16(checkpoint, layer.self_attn, /*keys_values=*/true);
    use_bf16(checkpoint, layer.ffn);
  }
}

void BartEncoder::embed_prompt(std::span<const int32_t> ids, const nn::Tensor& out) const {
  embed_tokens(embeddings_, ids, out);
}

nn::Tensor BartEncoder::forward(const nn::Tensor& inputs_embeds,
                                std::span<const int64_t> lengths) const {
  const int64_t d = config_.d_model;
  if (inputs_embeds.rank() != 3 || inputs_embeds.dim(2) != d ||
      static_cast<int64_t>(lengths.size()) != inputs_embeds.dim(0))
    throw nn::ShapeError("BART encoder: inputs " + inputs_embeds.shape().to_string() + " with " +
                         std::to_string(lengths.size()) + " lengths, d_model " + std::to_string(d));
  const int64_t b = inputs_embeds.dim(0), s = inputs_embeds.dim(1), m = b * s;
  if (s > config_.max_position_embeddings)
    throw nn::ShapeError("BART encoder: " + std::to_string(s) + " positions, the table holds " +
                         std::to_string(config_.max_position_embeddings));
  for (int64_t len : lengths)
    if (len < 1 || len > s)
      throw nn::ShapeError("BART encoder: length " + std::to_string(len) + " for " +
                           std::to_string(s) + " rows");

  // h [B·S, d] = LN_emb(inputs + positions 2 .. S+1)
  nn::Tensor h = nn::Tensor::empty({b, s, d});
  const nn::Tensor positions = embeddings_.positions.slice0(2, 2 + s);  // [S, d]
  for (int64_t bi = 0; bi < b; ++bi)
    nn::add(inputs_embeds.slice0(bi, bi + 1).reshape({s, d}), positions,
            h.slice0(bi, bi + 1).reshape({s, d}));
  nn::Tensor rows = h.reshape({m, d});
  nn::layer_norm(rows, embeddings_.norm.weight, embeddings_.norm.bias, kBartLayerNormEps, rows);

  const int64_t heads = config_.encoder_attention_heads, head_dim = d / heads;
  nn::Tensor q = nn::Tensor::empty({m, d}), k = nn::Tensor::empty({m, d}),
             v = nn::Tensor::empty({m, d}), attended = nn::Tensor::empty({m, d});
  nn::Tensor hidden = nn::Tensor::empty({m, config_.encoder_ffn_dim});
  const nn::AttentionParams params{
      .batch = b,
      .heads = heads,
      .head_dim = head_dim,
      .scale = static_cast<float>(1.0 / std::sqrt(static_cast<double>(head_dim))),
      .key_lengths = lengths};
  for (const BartEncoderLayerWeights& layer : layers_) {
    const BartAttentionWeights& a = layer.self_attn;
    nn::linear(rows, a.q_w, a.q16, &a.q_b, q);
    nn::linear(rows, a.k_w, a.k16, &a.k_b, k);
    nn::linear(rows, a.v_w, a.v16, &a.v_b, v);
    nn::attention({q.data(), s, s * d, d}, {k.data(), s, s * d, d}, {v.data(), s, s * d, d}, params,
                  {attended.mutable_data(), s * d, d});
    bart_attention_output(rows, attended, a, layer.self_attn_norm);
    bart_ffn_block(rows, layer.ffn, hidden);
  }
  return h;
}

}  // namespace celeriac::florence
