// Florence-2's BART decoder (spec §8) and the LM head, run one token per row per step through a
// DecoderSession (florence/decoder_session.h):
//   x = LN_emb(shared[token] · scale + E_pos[t + 2])          t = the row's step, start token at 0
//   per layer: x = LN_sa(x + out(SelfAttn(x, cache)))        causal by construction (one query)
//              x = LN_ca(x + out(CrossAttn(x, encoder)))     keys/values projected once per input
//              x = LN_ff(x + fc2(gelu(fc1(x))))
//   logits = x · shared[:V]ᵀ + final_logits_bias[:V]          tied lm_head, no final LayerNorm
//
//   BartDecoder decoder(checkpoint, vocab);
//   auto session = decoder.start(states, lengths, beams, max_steps);   // [B, S, d] states
//
// A session holds per layer: cross-attention K/V [B, S, d] (one copy per input, shared by its
// beams: the beams' queries are the rows of one product), and a self-attention BeamKvCache
// reserved for max_steps positions. Steps allocate no tensors: buffers are made at start.
#pragma once

#include <cstdint>
#include <memory>
#include <span>
#include <vector>

#include "florence/bart_layers.h"
#include "florence/config.h"
#include "florence/decoder_session.h"
#include "nn/tensor.h"

namespace celeriac::florence {

class Checkpoint;

struct BartDecoderLayerWeights {
  BartAttentionWeights self_attn;
  BartNormWeights self_attn_norm;   // self_attn_layer_norm
  BartAttentionWeights cross_attn;  // encoder_attn
  BartNormWeights cross_attn_norm;  // encoder_attn_layer_norm
  BartFfnWeights ffn;
};

class BartDecoder {
 public:
  // Views of the weights (the checkpoint must outlive the decoder). `vocab` is the width of the
  // logits: the first `vocab` rows of the tied embedding (<= its rows). Throws WeightsError.
  BartDecoder(const Checkpoint& checkpoint, int vocab);

  // Keeps bf16 copies of the weights every decode step reads (self-attention, cross-attention
  // query/output, feed-forward, lm_head: half the bytes per step); the step then uses them. The
  // cross-attention keys/values and the embeddings stay fp32. The fp32 pages of what was copied
  // leave the resident set (Checkpoint::release_pages). Call before start().
  void use_bf16_weights(const Checkpoint& checkpoint);
  bool bf16_weights() const { return !lm_head16_.empty(); }
  // Moves the same weights in fp32 into one copy on huge pages (nn::copy_to_huge_pages), read
  // from the file for those that are views of it, whose mapped pages then leave the resident set
  // as above: the resident size stays the same, the file's page cache is no longer what the
  // steps read. Call before start() (Model does, once, at its first start()).
  // On AVX2 and AVX-512 CPUs the copies are nn::PackedWeights instead (decode products on Zen 4
  // in 1.01-1.19x the time of a plain read of the weights, against 1.12-1.40x for row-major ones;
  // on Zen 3 1.14-1.16x against 1.18-1.27x). Either way only views of the file are copied (fp32
  // checkpoints): upcasts of fp16/bf16 files stay as they are.
  void use_huge_page_weights(const Checkpoint& checkpoint);
  bool packed_weights() const { return !lm_head_packed_.empty(); }

  int vocab_size() const { return static_cast<int>(lm_head_.dim(0)); }
  int d_model() const { return config_.d_model; }
  int max_positions() const { return config_.max_position_embeddings; }

  // encoder_states [B, S, d] with lengths[b] valid rows each; rows = B × beams_per_input, row r
  // decoding input r / beams_per_input; max_steps in [1, max_positions()]. The states are not
  // kept (their cross-attention projections are). Throws nn::ShapeError.
  std::unique_ptr<DecoderSession> start(const nn::Tensor& encoder_states,
                                        std::span<const int64_t> lengths, int beams_per_input,
                                        int max_steps) const;

 private:
  friend class BartDecoderSession;

  // Every weight a decode step streams (self-attention, cross-attention query/output,
  // feed-forward, lm_head), each with the slot of its bf16 copy: the set both use_*_weights
  // replace. Not the cross-attention keys/values (projected once per request) or the embeddings.
  struct StreamedWeight {
    nn::Tensor* fp32;
    nn::Bf16Weights* bf16;
    nn::PackedWeights* packed;
  };
  std::vector<StreamedWeight> streamed_weights();

  TextConfig config_;
  BartEmbeddingWeights embeddings_;
  std::vector<BartDecoderLayerWeights> layers_;
  nn::Tensor lm_head_;            // [V, d]: the first V rows of the shared table
  nn::Bf16Weights lm_head16_;     // its bf16 copy after use_bf16_weights()
  nn::PackedWeights lm_head_packed_;  // or its packed copy (use_huge_page_weights)
  nn::Tensor logits_bias_;        // [V]: final_logits_bias (zeros when the file has none)
  bool has_logits_bias_ = false;  // false when all zeros: the add is skipped
};

}  // namespace celeriac::florence
