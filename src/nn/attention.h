// Attention kernels: multi-head scaled-dot-product attention (DaViT windows, BART encoder,
// decoder self- and cross-attention with masks) and DaViT's channel ("transposed") attention.
// Products go through oneDNN's sgemm, one (batch, head) pair per task spread over the intra-op
// threads; scores are materialised per pair only (Sq × Sk floats), never for all heads at once.
#pragma once

#include <cstdint>
#include <span>
#include <vector>

#include "nn/linear.h"
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

// Keys and values of a sequence that many decode steps attend to with a few query rows each
// (the decoder's cross-attention: the encoder states of each input, the beams as queries).
// Stored per (batch, head) as one contiguous block each: keys [S, hd] and values transposed
// [hd, S], so both products of a step are small-M products over contiguous rows (nn::linear's
// decode-size kernel) and read every key and value exactly once, from huge pages. Through sgemm
// on the [S, d] rows as projected (12 strided column slices of every row, packed on every call)
// Florence-2-base's 6 layers took 3.0 ms per step; this way 1.3-1.4 ms. On AVX2/AVX-512 CPUs
// both are PackedWeights instead (keys as S outputs of hd inputs, values as hd outputs of S
// inputs: the values are then [S, hd] as projected): the products need no horizontal sums.
// Florence-2-base's cross-attention per step on Zen 4: 0.68-0.74 ms instead of 0.84-0.90 when the
// machine read fast, 0.79-1.00 instead of 0.97-1.09 when it read slowly; on Zen 3 ~1.4 instead of
// ~1.55 ms.
class FixedKv {
 public:
  FixedKv() = default;
  // k, v: [batch, S, heads · hd] as projected; key_lengths[b] valid keys of batch b (padding
  // masked), empty: all.
  FixedKv(const Tensor& k, const Tensor& v, int64_t heads, std::span<const int64_t> key_lengths);

  int64_t batch() const { return batch_; }
  // out[b · rows + i, h · hd + c] = softmax_s(scale · (q_i,h · k_s,h) + mask) · v_s,h for the
  // `rows` query rows of each batch: q and out are [batch · rows, heads · hd], rows <= 16.
  void attend(const Tensor& q, int64_t rows, float scale, const Tensor& out) const;

 private:
  int64_t batch_ = 0, seq_ = 0, heads_ = 0, head_dim_ = 0;
  std::vector<int64_t> lengths_;  // [batch]
  Tensor keys_;                   // [batch, heads, S, hd]
  Tensor values_t_;               // [batch, heads, hd, S]
  // Packing CPUs (keys_ and values_t_ then stay empty): [batch · heads] keys, then as many values.
  std::vector<PackedWeights> packed_;
};

// DaViT ChannelBlock attention (spec §4.4) on a fused projection qkv[B, N, 3C] = [q | k | v]:
// per group g of d = C / groups channels, A = softmax_rows(scale · Q_gᵀ K_g) (d × d) and
// out[:, g·d + i] = Σ_j A[i][j] V_g[:, j]. scale is N^-0.5 for DaViT. out: [B, N, C].
void channel_attention(const Tensor& qkv, int64_t groups, float scale, const Tensor& out);

// The same in two passes over chunks of the N tokens, so that q, k and v never exist for all
// tokens at once (DaViT stage 0 at 768²: 57 MB):
//   ChannelScores scores(groups, C);
//   for each chunk: scores.accumulate(qk of the chunk [rows, 2C] = [q | k]);
//   scores.finish(scale);
//   for each chunk: scores.apply(v of the chunk [rows, C], out rows [rows, C]);
// The sums Q_gᵀ K_g run over all N tokens (36,864 at stage 0) to values in the hundreds: they are
// taken in pieces of 512 tokens and added in double, then rounded once and scaled, as PyTorch
// scales its float product. One float sgemm over all tokens was 1.5x less accurate than PyTorch
// and flipped a near-tied beam on Florence-2-base (docs/STATUS.md, p02). Chunks passed to
// accumulate() should be multiples of 512 rows (but the last) for results independent of them.
class ChannelScores {
 public:
  ChannelScores(int64_t groups, int64_t channels);
  void accumulate(const Tensor& qk);
  void finish(float scale);  // rounds, scales, softmax over each row of each group's d × d
  // out[:, g·d + i] = Σ_j A_g[i][j] · v[:, g·d + j]
  void apply(const Tensor& v, const Tensor& out) const;

 private:
  friend void channel_attention(const Tensor&, int64_t, float, const Tensor&);
  void accumulate(const float* q, int64_t ld, int64_t rows);  // k at q + C
  void apply(const float* v, int64_t ldv, int64_t rows, float* out, int64_t ldo) const;

  int64_t groups_, channels_, d_;
  std::vector<double> sums_;  // [groups, d, d]
  std::vector<float> attn_;   // [groups, d, d] after finish()
};

}  // namespace celeriac::nn
