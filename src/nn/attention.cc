// Attention on oneDNN's row-major sgemm. Every (batch, head) task computes its score block with
// the scale applied to the product (alpha, as transformers' eager path and PyTorch's SDPA do:
// (q·kᵀ)·scale, not (q·scale)·kᵀ), masks it, runs softmax and multiplies by v straight into the
// output rows. q, k and v are read in place through their strides.
#include "nn/attention.h"

#include <oneapi/dnnl/dnnl.h>

#include <algorithm>
#include <cmath>
#include <limits>
#include <string>
#include <vector>

#include "nn/softmax.h"
#include "nn/threading.h"

namespace celeriac::nn {
namespace {

void sgemm(char ta, char tb, int64_t m, int64_t n, int64_t k, float alpha, const float* a,
           int64_t lda, const float* b, int64_t ldb, float* c, int64_t ldc) {
  dnnl_status_t st = dnnl_sgemm(ta, tb, m, n, k, alpha, a, lda, b, ldb, 0.0f, c, ldc);
  if (st != dnnl_success) throw ShapeError("dnnl_sgemm failed, status " + std::to_string(st));
}

// Work of one task in flops, to choose how finely to split: tiny decode steps stay on one thread.
int64_t grain_for(int64_t flops_per_task) {
  return std::max<int64_t>(1, 200000 / std::max<int64_t>(1, flops_per_task));
}

}  // namespace

void attention(const SeqView& q, const SeqView& k, const SeqView& v, const AttentionParams& p,
               const MutableSeqView& out) {
  const int64_t sq = q.seq, sk = k.seq, d = p.head_dim, tasks = p.batch * p.heads;
  if (k.seq != v.seq || p.heads < 1 || d < 1 ||
      (!p.key_lengths.empty() && static_cast<int64_t>(p.key_lengths.size()) != p.batch))
    throw ShapeError("attention: q/k/v sequence lengths " + std::to_string(sq) + "/" +
                     std::to_string(k.seq) + "/" + std::to_string(v.seq) + ", " +
                     std::to_string(p.key_lengths.size()) + " key lengths for batch " +
                     std::to_string(p.batch));
  if (sq == 0 || tasks == 0) return;
  detail::apply_num_threads();
  parallel_for(tasks, grain_for(4 * sq * sk * d), [&](int64_t begin, int64_t end) {
    thread_local std::vector<float> scores;
    scores.resize(sq * sk);
    for (int64_t t = begin; t < end; ++t) {
      const int64_t b = t / p.heads, h = t % p.heads;
      const float* qp = q.data + b * q.batch_stride + h * d;
      const float* kp = k.data + b * k.batch_stride + h * d;
      const float* vp = v.data + b * v.batch_stride + h * d;
      float* op = out.data + b * out.batch_stride + h * d;
      if (sk > 0)
        sgemm('N', 'T', sq, sk, d, p.scale, qp, q.row_stride, kp, k.row_stride, scores.data(), sk);
      const int64_t valid = p.key_lengths.empty() ? sk : std::min(sk, p.key_lengths[b]);
      for (int64_t i = 0; i < sq; ++i) {
        int64_t limit = p.causal ? std::min(valid, p.causal_offset + i + 1) : valid;
        std::fill(scores.data() + i * sk + std::max<int64_t>(limit, 0),
                  scores.data() + (i + 1) * sk, -std::numeric_limits<float>::infinity());
      }
      softmax_rows(Tensor::view(scores.data(), {sq, std::max<int64_t>(sk, 1)}));
      if (sk > 0)
        sgemm('N', 'N', sq, d, sk, 1.0f, scores.data(), sk, vp, v.row_stride, op, out.row_stride);
      else
        for (int64_t i = 0; i < sq; ++i)
          std::fill(op + i * out.row_stride, op + i * out.row_stride + d, 0.0f);
    }
  });
}

constexpr int64_t kScorePiece = 512;  // tokens per float sgemm, summed in double (header)

ChannelScores::ChannelScores(int64_t groups, int64_t channels)
    : groups_(groups), channels_(channels), d_(groups > 0 ? channels / groups : 0) {
  if (groups < 1 || channels < 1 || channels % groups)
    throw ShapeError("ChannelScores: " + std::to_string(channels) + " channels in " +
                     std::to_string(groups) + " groups");
  sums_.assign(groups_ * d_ * d_, 0.0);
}

void ChannelScores::accumulate(const float* q, int64_t ld, int64_t rows) {
  const int64_t d = d_, c = channels_;
  parallel_for(groups_, grain_for(2 * rows * d * d), [&](int64_t begin, int64_t end) {
    thread_local std::vector<float> piece;
    piece.resize(d * d);
    for (int64_t g = begin; g < end; ++g) {
      double* sum = sums_.data() + g * d * d;
      for (int64_t t0 = 0; t0 < rows; t0 += kScorePiece) {
        const float* qp = q + t0 * ld + g * d;  // Q_g is rows × d, read transposed
        sgemm('T', 'N', d, d, std::min(kScorePiece, rows - t0), 1.0f, qp, ld, qp + c, ld,
              piece.data(), d);
        for (int64_t i = 0; i < d * d; ++i) sum[i] += piece[i];
      }
    }
  });
}

void ChannelScores::accumulate(const Tensor& qk) {
  if (qk.rank() != 2 || qk.dim(1) != 2 * channels_)
    throw ShapeError("ChannelScores: qk " + qk.shape().to_string() + " for " +
                     std::to_string(channels_) + " channels");
  detail::apply_num_threads();
  accumulate(qk.data(), 2 * channels_, qk.dim(0));
}

void ChannelScores::finish(float scale) {
  attn_.resize(sums_.size());
  for (size_t i = 0; i < sums_.size(); ++i) attn_[i] = static_cast<float>(sums_[i]) * scale;
  softmax_rows(Tensor::view(attn_.data(), {groups_ * d_, d_}));
}

void ChannelScores::apply(const float* v, int64_t ldv, int64_t rows, float* out,
                          int64_t ldo) const {
  const int64_t d = d_;
  parallel_for(groups_, grain_for(2 * rows * d * d), [&](int64_t begin, int64_t end) {
    for (int64_t g = begin; g < end; ++g)  // out_g[rows, d] = V_g[rows, d] · A_gᵀ
      sgemm('N', 'T', rows, d, d, 1.0f, v + g * d, ldv, attn_.data() + g * d * d, d, out + g * d,
            ldo);
  });
}

void ChannelScores::apply(const Tensor& v, const Tensor& out) const {
  if (attn_.empty() || v.rank() != 2 || v.dim(1) != channels_ || !(out.shape() == v.shape()))
    throw ShapeError("ChannelScores::apply: v " + v.shape().to_string() + " out " +
                     out.shape().to_string() + (attn_.empty() ? " before finish()" : ""));
  detail::apply_num_threads();
  apply(v.data(), channels_, v.dim(0), out.mutable_data(), channels_);
}

void channel_attention(const Tensor& qkv, int64_t groups, float scale, const Tensor& out) {
  if (qkv.rank() != 3 || out.rank() != 3 || qkv.dim(2) % 3 || out.dim(2) * 3 != qkv.dim(2) ||
      out.dim(0) != qkv.dim(0) || out.dim(1) != qkv.dim(1) || groups < 1 || out.dim(2) % groups)
    throw ShapeError("channel_attention: qkv " + qkv.shape().to_string() + " out " +
                     out.shape().to_string() + " groups " + std::to_string(groups));
  const int64_t batch = qkv.dim(0), n = qkv.dim(1), c = out.dim(2);
  detail::apply_num_threads();
  for (int64_t b = 0; b < batch; ++b) {
    const float* base = qkv.data() + b * n * 3 * c;
    ChannelScores scores(groups, c);
    scores.accumulate(base, 3 * c, n);
    scores.finish(scale);
    scores.apply(base + 2 * c, 3 * c, n, out.mutable_data() + b * n * c, c);
  }
}

}  // namespace celeriac::nn
