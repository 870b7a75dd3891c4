// Attention on oneDNN's row-major sgemm. Every (batch, head) task computes its score block with
// the scale applied to the product (alpha, as transformers' eager path and PyTorch's SDPA do:
// (q·kᵀ)·scale, not (q·scale)·kᵀ), masks it, runs softmax and multiplies by v straight into the
// output rows. q, k and v are read in place through their strides.
#include "nn/attention.h"

#include <oneapi/dnnl/dnnl.h>

#include <algorithm>
#include <atomic>
#include <cmath>
#include <limits>
#include <string>
#include <vector>

#include "nn/linear.h"
#include "nn/softmax.h"
#include "nn/threading.h"
#include "nn/vmath.h"

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

FixedKv::FixedKv(const Tensor& k, const Tensor& v, int64_t heads,
                 std::span<const int64_t> key_lengths)
    : batch_(k.rank() == 3 ? k.dim(0) : 0),
      seq_(k.rank() == 3 ? k.dim(1) : 0),
      heads_(heads),
      head_dim_(heads > 0 && k.rank() == 3 ? k.dim(2) / heads : 0),
      lengths_(key_lengths.begin(), key_lengths.end()) {
  if (k.rank() != 3 || !(v.shape() == k.shape()) || heads < 1 || k.dim(2) % heads ||
      batch_ < 1 || seq_ < 1 || (!lengths_.empty() && static_cast<int64_t>(lengths_.size()) != batch_))
    throw ShapeError("FixedKv: k " + k.shape().to_string() + " v " + v.shape().to_string() +
                     " heads " + std::to_string(heads) + ", " + std::to_string(key_lengths.size()) +
                     " key lengths");
  if (lengths_.empty()) lengths_.assign(batch_, seq_);
  for (int64_t& len : lengths_) len = std::clamp<int64_t>(len, 0, seq_);
  const int64_t s = seq_, hd = head_dim_, d = heads * hd;
  if (PackedWeights::supported()) {
    const int64_t tasks = batch_ * heads;
    std::vector<PackedWeights::Size> shapes(tasks, {s, hd});  // keys: S outputs of hd inputs
    shapes.resize(2 * tasks, {hd, s});                         // values: hd outputs of S inputs
    packed_ = PackedWeights::from_rows(shapes, [&](size_t i, int64_t r0, int64_t r1, float* out) {
      const int64_t t = static_cast<int64_t>(i) % tasks, b = t / heads, h = t % heads;
      if (static_cast<int64_t>(i) < tasks) {  // rows = keys r0..r1 of head h
        for (int64_t j = r0; j < r1; ++j)
          std::copy_n(k.data() + (b * s + j) * d + h * hd, hd, out + (j - r0) * hd);
      } else {  // rows = channels r0..r1 of head h, each over all S keys (read key by key)
        for (int64_t j = 0; j < s; ++j) {
          const float* vj = v.data() + (b * s + j) * d + h * hd;
          for (int64_t c = r0; c < r1; ++c) out[(c - r0) * s + j] = vj[c];
        }
      }
    });
    return;
  }
  // Both in one mapping on huge pages: read every step, TLB misses of 4 KiB pages cost ~20%.
  const Tensor both = Tensor::empty_on_huge_pages({2, batch_, heads, s, hd});
  keys_ = both.slice0(0, 1).reshape({batch_, heads, s, hd});
  values_t_ = both.slice0(1, 2).reshape({batch_, heads, hd, s});
  parallel_for(batch_ * heads, 1, [&](int64_t begin, int64_t end) {
    for (int64_t t = begin; t < end; ++t) {
      const int64_t b = t / heads, h = t % heads;
      const float* kp = k.data() + b * s * d + h * hd;
      const float* vp = v.data() + b * s * d + h * hd;
      float* kd = keys_.mutable_data() + t * s * hd;
      float* vd = values_t_.mutable_data() + t * hd * s;
      for (int64_t j = 0; j < s; ++j) {
        std::copy_n(kp + j * d, hd, kd + j * hd);
        for (int64_t c = 0; c < hd; ++c) vd[c * s + j] = vp[j * d + c];
      }
    }
  });
}

void FixedKv::attend(const Tensor& q, int64_t rows, float scale, const Tensor& out) const {
  const int64_t s = seq_, hd = head_dim_, d = heads_ * hd;
  if (rows < 1 || rows > 16 || q.rows() != batch_ * rows || q.dim(-1) != d ||
      out.rows() != q.rows() || out.dim(-1) != d)
    throw ShapeError("FixedKv::attend: q " + q.shape().to_string() + " out " +
                     out.shape().to_string() + " for " + std::to_string(rows) +
                     " rows per batch of " + std::to_string(batch_));
  detail::apply_num_threads();
  std::atomic<bool> failed{false};
  parallel_for(batch_ * heads_, 1, [&](int64_t begin, int64_t end) {
    thread_local std::vector<float> qh, scores;
    qh.resize(rows * hd);
    scores.resize(rows * s);
    try {
      for (int64_t t = begin; t < end; ++t) {
        const int64_t b = t / heads_, h = t % heads_, valid = lengths_[b];
        for (int64_t i = 0; i < rows; ++i)  // this head's slice of the rows, contiguous
          std::copy_n(q.data() + (b * rows + i) * d + h * hd, hd, qh.data() + i * hd);
        if (packed_.empty())
          small_m_product(qh.data(), rows, hd, keys_.data() + t * s * hd, s, scores.data(), s);
        else
          packed_product(qh.data(), rows, packed_[t], scores.data(), s);
        for (int64_t i = 0; i < rows; ++i) {
          float* row = scores.data() + i * s;
          vmath::scale(row, valid, scale);  // (q·k)·scale, transformers' order
          std::fill(row + valid, row + s, -std::numeric_limits<float>::infinity());
        }
        softmax_rows(Tensor::view(scores.data(), {rows, s}));
        // Masked keys have weight exactly 0, so summing over all S adds only zeros.
        float* o = out.mutable_data() + b * rows * d + h * hd;
        if (packed_.empty())
          small_m_product(scores.data(), rows, s, values_t_.data() + t * hd * s, hd, o, d);
        else
          packed_product(scores.data(), rows, packed_[batch_ * heads_ + t], o, d);
      }
    } catch (const std::exception&) {
      failed = true;  // no throwing out of an OpenMP region
    }
  });
  if (failed) throw ShapeError("FixedKv::attend: a product failed");
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
