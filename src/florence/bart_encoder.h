// Florence-2's BART encoder (spec §7): the merged [visual tokens, prompt embeddings] sequence,
// plus learned positions (table row = position + 2, positions counting from the first visual
// token), layernorm_embedding, then post-LN layers of bidirectional self-attention and a GELU
// feed-forward block. No final LayerNorm.
//
//   BartEncoder encoder(checkpoint);
//   nn::Tensor states = encoder.forward(embeds, lengths);   // [B, S, d] -> [B, S, d]
//
// Batches are padded on the right: input b holds lengths[b] rows; keys at or after that are
// masked, so each input's rows equal its single-input result (padded rows hold unused values).
#pragma once

#include <cstdint>
#include <span>
#include <vector>

#include "florence/bart_layers.h"
#include "florence/config.h"
#include "nn/tensor.h"

namespace celeriac::florence {

class Checkpoint;

struct BartEncoderLayerWeights {
  BartAttentionWeights self_attn;
  BartNormWeights self_attn_norm;  // self_attn_layer_norm
  BartFfnWeights ffn;
};

class BartEncoder {
 public:
  // Takes views of the weights; the checkpoint must outlive the encoder. Throws WeightsError.
  explicit BartEncoder(const Checkpoint& checkpoint);

  // Keeps bf16 copies of every layer's product weights and runs the products as bf16 GEMMs
  // (activations rounded to bf16, fp32 accumulation; ModelOptions::bf16_encoders). Needs
  // nn::bf16_gemm_supported(). The fp32 pages of what was copied leave the resident set.
  void use_bf16_weights(const Checkpoint& checkpoint);

  // The encoder's token embedding (shared table, scale applied), for the prompt part of the
  // input: ids -> out [ids.size(), d]. The scale follows transformers 5 (its `shared` is a
  // BartScaledWordEmbedding); Microsoft's remote code embeds the prompt with an unscaled `shared`.
  // The two differ only when scale_embedding is true, which no Florence-2 config sets.
  void embed_prompt(std::span<const int32_t> ids, const nn::Tensor& out) const;

  // inputs_embeds [B, S, d] (visual tokens and prompt embeddings, positions not yet added) ->
  // encoder states [B, S, d]. lengths: B entries in [1, S]. Throws nn::ShapeError when S exceeds
  // the position table (max_position_embeddings).
  nn::Tensor forward(const nn::Tensor& inputs_embeds, std::span<const int64_t> lengths) const;

  int d_model() const { return config_.d_model; }
  int max_positions() const { return config_.max_position_embeddings; }

 private:
  TextConfig config_;
  BartEmbeddingWeights embeddings_;
  std::vector<BartEncoderLayerWeights> layers_;
};

}  // namespace celeriac::florence
