// Attention kernels: multi-head scaled-dot-product attention (DaViT windows, BART encoder,
// decoder self- and cross-attention with masks) and DaViT's channel ("transposed") attention.
// Products go through oneDNN's sgemm, one (batch, head) pair per task spread over the intra-op
// threads; scores are materialised per pair only (Sq × Sk floats), never for all heads at once.
#pragma once

#include <cstdint>
#include <span>

#include "nn/tensor.h"

namespace celeriac::nn {

// A [batch, seq, heads · head_dim] operand read in place, e.g. the q, k or v third of a fused
// qkv projection: element (b, s, h, d) is data[b · batch_stride + s · row_stride + h · head_dim +
// d]. batch_stride 0 shares one sequence between all batches (the beams' cross-attention keys).
struct SeqView {
  const float* data = nullptr;
  int64_t seq = 0;
  int64_t batch_stride = 0;
  int64_t row_stride = 0;
};
struct MutableSeqView {
  float* data = nullptr;
  int64_t batch_stride = 0;
  int64_t row_stride = 0;
};

struct AttentionParams {
  int64_t batch = 1;
  int64_t heads = 1;
  int64_t head_dim = 1;
  float scale = 1.0f;  // multiplies the scores q·kᵀ (transformers' order, see attention.cc)
  // Causal: query i sits at absolute position causal_offset + i and sees keys 0..that position
  // (a decoder step with a cache of L rows: offset L, one query, L + 1 keys).
  bool causal = false;
  int64_t causal_offset = 0;
  // Padding: keys at index >= key_lengths[b] are masked for batch b. Empty: no padding mask.
  std::span<const int64_t> key_lengths = {};
};

// out[b, i, h, :] = softmax_j(scale · (q[b, i, h, :] · k[b, j, h, :]) + mask) · v[b, j, h, :]
void attention(const SeqView& q, const SeqView& k, const SeqView& v, const AttentionParams& params,
               const MutableSeqView& out);

// DaViT ChannelBlock attention (spec §4.4) on a fused projection qkv[B, N, 3C] = [q | k | v]:
// per group g of d = C / groups channels, A = softmax_rows(scale · Q_gᵀ K_g) (d × d) and
// out[:, g·d + i] = Σ_j A[i][j] V_g[:, j]. scale is N^-0.5 for DaViT. out: [B, N, C].
void channel_attention(const Tensor& qkv, int64_t groups, float scale, const Tensor& out);

}  // namespace celeriac::nn
