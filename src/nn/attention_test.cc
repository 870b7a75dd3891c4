// attention / channel_attention against scalar double loops (rel 1e-5 norm-wise), with the
// layouts the model uses: a fused qkv buffer read in place, causal decoding with a cache offset,
// padding masks, and cross-attention keys shared by all beams (batch_stride 0).
#include "nn/attention.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>

#include "nn/linear.h"
#include "nn/softmax.h"
#include "nn/test_util.h"
#include "nn/threading.h"

namespace celeriac::nn {
namespace {

using testing::random_tensor;

// Plain MHA on contiguous [B, S, H·D] tensors (k, v with batch 1 if shared).
std::vector<double> reference_attention(const Tensor& q, const Tensor& k, const Tensor& v,
                                        int64_t heads, double scale, bool causal, int64_t offset,
                                        const std::vector<int64_t>& lens, bool shared_kv) {
  int64_t b_n = q.dim(0), sq = q.dim(1), sk = k.dim(1), hd = q.dim(2), d = hd / heads;
  std::vector<double> out(b_n * sq * hd, 0.0);
  for (int64_t b = 0; b < b_n; ++b)
    for (int64_t h = 0; h < heads; ++h)
      for (int64_t i = 0; i < sq; ++i) {
        int64_t kb = shared_kv ? 0 : b;
        int64_t limit = lens.empty() ? sk : lens[b];
        if (causal) limit = std::min(limit, offset + i + 1);
        std::vector<double> s(sk, -INFINITY);
        double m = -INFINITY;
        for (int64_t j = 0; j < limit; ++j) {
          double dot = 0;
          for (int64_t e = 0; e < d; ++e)
            dot += double(q.data()[(b * sq + i) * hd + h * d + e]) *
                   k.data()[(kb * sk + j) * hd + h * d + e];
          s[j] = dot * scale;
          m = std::max(m, s[j]);
        }
        double z = 0;
        for (int64_t j = 0; j < limit; ++j) z += std::exp(s[j] - m);
        for (int64_t j = 0; j < limit; ++j)
          for (int64_t e = 0; e < d; ++e)
            out[(b * sq + i) * hd + h * d + e] +=
                std::exp(s[j] - m) / z * v.data()[(kb * sk + j) * hd + h * d + e];
      }
  return out;
}

SeqView seq(const Tensor& t) { return {t.data(), t.dim(1), t.dim(1) * t.dim(2), t.dim(2)}; }

TEST(Attention, BidirectionalWithPaddingMask) {
  const int64_t b = 2, s = 13, heads = 3, d = 8;
  Tensor q = random_tensor({b, s, heads * d}, 1), k = random_tensor({b, s, heads * d}, 2),
         v = random_tensor({b, s, heads * d}, 3);
  std::vector<int64_t> lens = {13, 9};
  for (int threads : {1, 2}) {
    set_num_threads(threads);
    Tensor out = Tensor::empty({b, s, heads * d});
    AttentionParams p{
        .batch = b, .heads = heads, .head_dim = d, .scale = 0.35f, .key_lengths = lens};
    attention(seq(q), seq(k), seq(v), p, {out.mutable_data(), s * heads * d, heads * d});
    EXPECT_LT(
        testing::rel_error(out, reference_attention(q, k, v, heads, 0.35, false, 0, lens, false)),
        1e-5);
  }
}

TEST(Attention, FusedQkvReadInPlace) {
  // One [S, 3C] buffer as DaViT's window attention produces it; 4 windows of 9 tokens.
  const int64_t windows = 4, s = 9, heads = 2, d = 4, c = heads * d;
  Tensor qkv = random_tensor({windows, s, 3 * c}, 5);
  Tensor q = Tensor::empty({windows, s, c}), k = Tensor::empty({windows, s, c}),
         v = Tensor::empty({windows, s, c});
  for (int64_t r = 0; r < windows * s; ++r)
    for (int64_t e = 0; e < c; ++e) {
      q.mutable_data()[r * c + e] = qkv.data()[r * 3 * c + e];
      k.mutable_data()[r * c + e] = qkv.data()[r * 3 * c + c + e];
      v.mutable_data()[r * c + e] = qkv.data()[r * 3 * c + 2 * c + e];
    }
  Tensor out = Tensor::empty({windows, s, c});
  AttentionParams p{.batch = windows, .heads = heads, .head_dim = d, .scale = 0.5f};
  const float* base = qkv.data();
  attention({base, s, s * 3 * c, 3 * c}, {base + c, s, s * 3 * c, 3 * c},
            {base + 2 * c, s, s * 3 * c, 3 * c}, p, {out.mutable_data(), s * c, c});
  EXPECT_LT(testing::rel_error(out, reference_attention(q, k, v, heads, 0.5, false, 0, {}, false)),
            1e-5);
}

TEST(Attention, CausalPrefillAndCachedStep) {
  const int64_t s = 7, heads = 2, d = 16, hd = heads * d;
  Tensor q = random_tensor({1, s, hd}, 1), k = random_tensor({1, s, hd}, 2),
         v = random_tensor({1, s, hd}, 3);
  Tensor out = Tensor::empty({1, s, hd});
  AttentionParams p{.heads = heads, .head_dim = d, .scale = 0.25f, .causal = true};
  attention(seq(q), seq(k), seq(v), p, {out.mutable_data(), s * hd, hd});
  EXPECT_LT(testing::rel_error(out, reference_attention(q, k, v, heads, 0.25, true, 0, {}, false)),
            1e-5);
  // The last query alone against the full cache (offset s-1) equals the last row of prefill.
  Tensor last = Tensor::empty({1, 1, hd});
  p.causal_offset = s - 1;
  attention({q.data() + (s - 1) * hd, 1, hd, hd}, seq(k), seq(v), p, {last.mutable_data(), hd, hd});
  for (int64_t e = 0; e < hd; ++e) EXPECT_NEAR(last.data()[e], out.data()[(s - 1) * hd + e], 1e-6);
}

TEST(Attention, BeamsShareCrossAttentionKeys) {
  const int64_t beams = 3, s_enc = 20, heads = 4, d = 8, hd = heads * d;
  Tensor q = random_tensor({beams, 1, hd}, 1), k = random_tensor({1, s_enc, hd}, 2),
         v = random_tensor({1, s_enc, hd}, 3);
  Tensor out = Tensor::empty({beams, 1, hd});
  AttentionParams p{.batch = beams, .heads = heads, .head_dim = d, .scale = 0.125f};
  attention(seq(q), {k.data(), s_enc, 0, hd}, {v.data(), s_enc, 0, hd}, p,
            {out.mutable_data(), hd, hd});
  EXPECT_LT(testing::rel_error(out, reference_attention(q, k, v, heads, 0.125, false, 0, {}, true)),
            1e-5);
}

TEST(FixedKv, BeamsOfEachInputOverTheirOwnPaddedKeys) {
  // Two inputs of 37 encoder rows (the second padded after 9), 3 beams each; 37 keys leave a
  // tail that is not a multiple of 8 in the value product.
  const int64_t inputs = 2, beams = 3, s_enc = 37, heads = 4, d = 16, hd = heads * d;
  Tensor q = random_tensor({inputs, beams, hd}, 4), k = random_tensor({inputs, s_enc, hd}, 5),
         v = random_tensor({inputs, s_enc, hd}, 6);
  const std::vector<int64_t> lens = {37, 9};
  // Packed keys/values where the CPU has AVX-512, and the row-major layout (forced there too).
  for (bool row_major : {false, true}) {
    detail::force_row_major_decode(row_major);
    const FixedKv kv(k, v, heads, lens);
    for (int threads : {1, 2}) {
      set_num_threads(threads);
      Tensor out = Tensor::empty({inputs * beams, hd});
      std::fill_n(out.mutable_data(), out.numel(), 7.0f);  // every element must be written
      kv.attend(q.reshape({inputs * beams, hd}), beams, 0.25f, out);
      EXPECT_LT(testing::rel_error(out.reshape({inputs, beams, hd}),
                                   reference_attention(q, k, v, heads, 0.25, false, 0, lens, false)),
                1e-5)
          << "row-major forced: " << row_major << ", threads " << threads;
    }
  }
  detail::force_row_major_decode(false);
}

TEST(FixedKv, RefusesMismatchedShapes) {
  Tensor k = random_tensor({1, 5, 8}, 1);
  EXPECT_THROW(FixedKv(k, random_tensor({1, 6, 8}, 2), 2, {}), ShapeError);
  EXPECT_THROW(FixedKv(k, k, 3, {}), ShapeError);       // 8 channels in 3 heads
  EXPECT_THROW(FixedKv(k, k, 2, {{5, 5}}), ShapeError);  // two lengths for one input
  const FixedKv kv(k, k, 2, {});
  Tensor q = random_tensor({2, 8}, 3), out = Tensor::empty({2, 8});
  EXPECT_THROW(kv.attend(q, 3, 1.0f, out), ShapeError);   // 2 rows are not 3 per input
  EXPECT_THROW(kv.attend(q, 17, 1.0f, out), ShapeError);  // more than 16 query rows
}

// The spec formula in double: out[b, t, g·d + i] = Σ_j softmax_j(scale · Q_gᵀK_g)[i][j] V_g[t, j].
std::vector<double> reference_channel_attention(const Tensor& qkv, int64_t groups, double scale) {
  const int64_t b = qkv.dim(0), n = qkv.dim(1), c = qkv.dim(2) / 3, d = c / groups;
  std::vector<double> want(b * n * c, 0.0);
  for (int64_t bi = 0; bi < b; ++bi)
    for (int64_t g = 0; g < groups; ++g) {
      auto at = [&](int part, int64_t tok, int64_t ch) {
        return double(qkv.data()[(bi * n + tok) * 3 * c + part * c + g * d + ch]);
      };
      for (int64_t i = 0; i < d; ++i) {
        std::vector<double> a(d);
        double m = -INFINITY, z = 0;
        for (int64_t j = 0; j < d; ++j) {
          double s = 0;
          for (int64_t t = 0; t < n; ++t) s += at(0, t, i) * at(1, t, j);
          a[j] = s * scale;
          m = std::max(m, a[j]);
        }
        for (int64_t j = 0; j < d; ++j) z += std::exp(a[j] - m);
        for (int64_t t = 0; t < n; ++t)
          for (int64_t j = 0; j < d; ++j)
            want[(bi * n + t) * c + g * d + i] += std::exp(a[j] - m) / z * at(2, t, j);
      }
    }
  return want;
}

TEST(ChannelAttention, MatchesSpecFormula) {
  const int64_t b = 2, n = 50, groups = 3, d = 4, c = groups * d;
  Tensor qkv = random_tensor({b, n, 3 * c}, 7);
  const float scale = 1.0f / std::sqrt(float(n));
  Tensor out = Tensor::empty({b, n, c});
  channel_attention(qkv, groups, scale, out);
  EXPECT_LT(testing::rel_error(out, reference_channel_attention(qkv, groups, scale)), 1e-5);
  Tensor bad = Tensor::empty({b, n, c + 1});
  EXPECT_THROW(channel_attention(qkv, groups, scale, bad), ShapeError);
}

// DaViT's first stage: the scores sum over 192 × 192 tokens, and channels with non-zero means
// (q, k in [0, 1) here, as normalised activations with a bias) make them large, ~48 here and
// ~150 on Florence-2-base. A single float sgemm over all tokens was off by 1.9e-4 there (PyTorch:
// 1.2e-4), enough to flip a near-tied beam; here its output was off by 9.0e-6 relative, the
// chunked double sum by 2.0e-6 (the float rounding of the unscaled sum, as PyTorch rounds it).
TEST(ChannelAttention, LongTokenSumsStayAccurate) {
  const int64_t n = 192 * 192, groups = 1, d = 32, c = groups * d;
  Tensor qkv = random_tensor({1, n, 3 * c}, 11, 0.0f, 1.0f);
  float* p = qkv.mutable_data();
  for (int64_t t = 0; t < n; ++t)  // v centred: the output is then a difference of similar sums
    for (int64_t i = 2 * c; i < 3 * c; ++i) p[t * 3 * c + i] -= 0.5f;
  const float scale = 1.0f / std::sqrt(float(n));
  Tensor out = Tensor::empty({1, n, c});
  channel_attention(qkv, groups, scale, out);
  const double err = testing::rel_error(out, reference_channel_attention(qkv, groups, scale));
  RecordProperty("rel_error", std::to_string(err));
  EXPECT_LT(err, 4e-6);
}

// What DaViT's channel blocks run: chunks of 2 × 512 tokens (the last one short), q|k then v.
TEST(ChannelAttention, TwoPassesOverChunksEqualTheFusedForm) {
  const int64_t n = 2500, groups = 3, d = 4, c = groups * d, chunk = 1024;
  Tensor qkv = random_tensor({1, n, 3 * c}, 8);
  const float scale = 1.0f / std::sqrt(float(n));
  Tensor want = Tensor::empty({1, n, c});
  channel_attention(qkv, groups, scale, want);

  ChannelScores scores(groups, c);
  Tensor qk = Tensor::empty({chunk, 2 * c}), v = Tensor::empty({chunk, c});
  auto copy_rows = [&](int64_t r0, int64_t rows, int64_t from, int64_t width, const Tensor& to) {
    for (int64_t r = 0; r < rows; ++r)
      std::copy_n(qkv.data() + (r0 + r) * 3 * c + from, width, to.mutable_data() + r * width);
  };
  for (int64_t r0 = 0; r0 < n; r0 += chunk) {
    const int64_t rows = std::min(chunk, n - r0);
    copy_rows(r0, rows, 0, 2 * c, qk);
    scores.accumulate(qk.slice0(0, rows));
  }
  EXPECT_THROW(scores.apply(v, v), ShapeError);  // before finish()
  scores.finish(scale);
  Tensor got = Tensor::empty({1, n, c});
  for (int64_t r0 = 0; r0 < n; r0 += chunk) {
    const int64_t rows = std::min(chunk, n - r0);
    copy_rows(r0, rows, 2 * c, c, v);
    scores.apply(v.slice0(0, rows), got.reshape({n, c}).slice0(r0, r0 + rows));
  }
  // The same sums in the same pieces; only the kernels oneDNN picks for other row counts differ.
  EXPECT_LT(testing::rel_error(got, std::vector<double>(want.data(), want.data() + want.numel())),
            1e-6);
  EXPECT_THROW(scores.accumulate(v), ShapeError);
}

}  // namespace
}  // namespace celeriac::nn
