// Florence-2's image side: the DaViT vision tower (spec §4) and the projection to visual tokens
// (§5: 2-D learned positions, the cosine temporal embedding, pooled token, image_projection,
// LayerNorm), on nn/ ops with the weights read in place from a Checkpoint.
//
//   VisionEncoder vision(checkpoint);
//   nn::Tensor tokens = vision.encode(pixels);   // [B, 3, 768, 768] -> [B, 577, 768]
//
// Activations are channels-last maps [B, H, W, C]: row-major tokens, as DaViT indexes them
// (token = y·W + x), so Linear layers read them directly and only the image comes in NCHW.
#pragma once

#include <vector>

#include "florence/config.h"
#include "nn/linear.h"
#include "nn/tensor.h"

namespace celeriac::florence {

class Checkpoint;

// One SpatialBlock or ChannelBlock (they share the layout: conv1, attention, conv2, ffn).
struct DavitBlockWeights {
  nn::Tensor dw1_w, dw1_b;      // depthwise 3×3 [C, 1, 3, 3], [C]
  nn::Tensor norm1_w, norm1_b;  // LayerNorm before attention [C]
  nn::Tensor qkv_w, qkv_b;      // [3C, C], [3C]
  nn::Tensor proj_w, proj_b;    // [C, C], [C]
  nn::Tensor dw2_w, dw2_b;
  nn::Tensor norm2_w, norm2_b;  // LayerNorm before the MLP
  nn::Tensor fc1_w, fc1_b;      // [4C, C], [4C]
  nn::Tensor fc2_w, fc2_b;      // [C, 4C], [C]
  nn::Bf16Weights qkv16, proj16, fc1_16, fc2_16;  // bf16 copies (bf16_encoders); empty: fp32
  // fp32 copies in oneDNN's blocked layout (use_reordered_weights); empty: read as stored. The
  // channel blocks use q|k and v apart (rows [0, 2C) and [2C, 3C) of qkv), the spatial ones qkv.
  nn::GemmWeights qkv_g, qk_g, v_g, proj_g, fc1_g, fc2_g;
};

struct DavitStageWeights {
  nn::Tensor conv_w, conv_b;  // ConvEmbed [C_s, C_in, k, k], [C_s]
  nn::Tensor norm_w, norm_b;  // its LayerNorm: after the conv at stage 0, before it later
  std::vector<DavitBlockWeights> spatial, channel;  // depths[s] of each, run alternately
};

class VisionEncoder {
 public:
  // Takes views of every weight it needs; the checkpoint must outlive the encoder. Throws
  // WeightsError naming a missing tensor.
  explicit VisionEncoder(const Checkpoint& checkpoint);

  // pixels [B, 3, H, W] (normalised, NCHW) -> DaViT output map [B, h, w, C3]. With `stages`, also
  // every stage's output map [B, h_s, w_s, C_s] (for tests).
  nn::Tensor tower(const nn::Tensor& pixels, std::vector<nn::Tensor>* stages = nullptr) const;
  // DaViT output map [B, h, w, C3] -> visual tokens [B, 1 + h·w, P].
  nn::Tensor project(const nn::Tensor& features) const;
  nn::Tensor encode(const nn::Tensor& pixels) const { return project(tower(pixels)); }

  // Keeps bf16 copies of the blocks' Linear weights (qkv, proj, fc1, fc2: nearly all of the
  // tower's FLOPs) and runs those products as bf16 GEMMs (activations rounded to bf16, fp32
  // accumulation; ModelOptions::bf16_encoders). Convolutions and attention stay fp32. Needs
  // nn::bf16_gemm_supported(). The fp32 pages of what was copied leave the resident set.
  void use_bf16_weights(const Checkpoint& checkpoint);

  // Keeps the blocks' fp32 Linear weights reordered into the layout oneDNN's GEMM prefers
  // (nn::GemmWeights), so that no product repacks them per call: ~9% less time in the tower on
  // Zen 4. A copy of ~335 MB on Florence-2-base, made in ~0.2 s; the mapped pages it was made
  // from leave the resident set. Not with bf16 weights (reordered bf16 copies: no faster
  // on Zen 4, 160 MiB more).
  void use_reordered_weights(const Checkpoint& checkpoint);

  const VisionConfig& config() const { return config_; }

 private:
  VisionConfig config_;
  float ln_eps_ = 1e-5f;
  std::vector<DavitStageWeights> stages_;
  nn::Tensor row_embed_, column_embed_;  // [50, C3/2], [50, C3 - C3/2]
  nn::Tensor temporal_;                  // [100, C3]; row 0 is added (one frame)
  nn::Tensor projection_;                // [C3, P], used as x·W
  nn::Tensor proj_norm_w_, proj_norm_b_;
};

}  // namespace celeriac::florence
