// The pieces BART's encoder and decoder share (spec §7-8): attention projections, the post-LN
// feed-forward block, token + learned-position embeddings. Weights are views from a Checkpoint
// (fp32 in place, or its one cached upcast of fp16/bf16 storage); the checkpoint must outlive them.
#pragma once

#include <cstdint>
#include <span>
#include <string>

#include "nn/linear.h"
#include "nn/tensor.h"

namespace celeriac::florence {

class Checkpoint;
struct TextConfig;

// BART's LayerNorms are nn.LayerNorm(d) with PyTorch's default eps.
inline constexpr float kBartLayerNormEps = 1e-5f;

struct BartNormWeights {
  nn::Tensor weight, bias;  // [d], [d]
};

// One multi-head attention module: separate q/k/v projections as stored (fusing them would need
// a second copy of the weights).
struct BartAttentionWeights {
  nn::Tensor q_w, q_b;      // [d, d], [d]
  nn::Tensor k_w, k_b;      // [d, d], [d]
  nn::Tensor v_w, v_b;      // [d, d], [d]
  nn::Tensor out_w, out_b;  // [d, d], [d]
  // bf16 copies, filled only when an option asks for them (ModelOptions::bf16_decoder for the
  // decoder's per-step products, bf16_encoders for the encoder); empty ones mean fp32.
  nn::Bf16Weights q16, k16, v16, out16;
  // Packed copies for decode steps (BartDecoder::use_huge_page_weights on AVX2/AVX-512).
  nn::PackedWeights q_p, k_p, v_p, out_p;
};

struct BartFfnWeights {
  nn::Tensor fc1_w, fc1_b;  // [F, d], [F]
  nn::Tensor fc2_w, fc2_b;  // [d, F], [d]
  BartNormWeights norm;     // final_layer_norm, after the residual
  nn::Bf16Weights fc1_16, fc2_16;  // as above
  nn::PackedWeights fc1_p, fc2_p;  // as above
};

// Token and position tables of one side (encoder or decoder).
struct BartEmbeddingWeights {
  nn::Tensor tokens;         // shared [V, d] (the tied embedding, also the lm_head)
  nn::Tensor positions;      // [max_position_embeddings + 2, d]; position p reads row p + 2
  BartNormWeights norm;      // layernorm_embedding
  float token_scale = 1.0f;  // sqrt(d) when config.scale_embedding, else 1
};

// Views of the weights under a canonical name prefix, e.g.
// "language_model.model.encoder.layers.0.self_attn.". Throw WeightsError naming a missing tensor.
nn::Tensor bart_weight(const Checkpoint& ckpt, const std::string& name);
BartNormWeights load_bart_norm(const Checkpoint& ckpt, const std::string& prefix);
BartAttentionWeights load_bart_attention(const Checkpoint& ckpt, const std::string& prefix);
// fc1, fc2 and final_layer_norm of the layer at `layer_prefix` ("...layers.3.").
BartFfnWeights load_bart_ffn(const Checkpoint& ckpt, const std::string& layer_prefix);
// `side` is "encoder" or "decoder".
BartEmbeddingWeights load_bart_embeddings(const Checkpoint& ckpt, const TextConfig& config,
                                          const std::string& side);

// Throws std::invalid_argument unless the text config's activation is the one implemented
// (exact-erf "gelu").
void check_bart_activation(const TextConfig& config);

// out[i, :] = tokens[ids[i], :] · token_scale, out [ids.size(), d]. Throws nn::ShapeError for an
// id outside the table.
void embed_tokens(const BartEmbeddingWeights& w, std::span<const int32_t> ids,
                  const nn::Tensor& out);

// bf16 copies of the attention's q/k/v/out (k/v only with `keys_values`) and of fc1/fc2.
void use_bf16(const Checkpoint& ckpt, BartAttentionWeights& w, bool keys_values);
void use_bf16(const Checkpoint& ckpt, BartFfnWeights& w);

// x = LN(x + fc2(gelu(fc1(x)))), in place on x [M, d]; hidden is scratch [M, F].
void bart_ffn_block(const nn::Tensor& x, const BartFfnWeights& w, const nn::Tensor& hidden);

// x = LN(x + out_proj(attended)), in place on x [M, d] (the residual add fused into the GEMM).
void bart_attention_output(const nn::Tensor& x, const nn::Tensor& attended,
                           const BartAttentionWeights& w, const BartNormWeights& norm);

}  // namespace celeriac::florence
