// BeamKvCache against a plain re-computation: after appends and reorders, each row's attention
// must equal softmax(scale · q·K_h) · V_h over the keys/values of the history it inherited,
// kept here as explicit per-row copies (what a cache that moves its rows would hold).
#include "florence/bart_kv_cache.h"

#include <gtest/gtest.h>

#include <cmath>
#include <random>
#include <stdexcept>
#include <vector>

#include "nn/threading.h"

namespace celeriac::florence {
namespace {

constexpr int kLayers = 2, kRows = 4, kCapacity = 40, kHeads = 3, kHeadDim = 5;
constexpr int kWidth = kHeads * kHeadDim;

// Reference attention of one row over its own history (a list of [width] keys and values).
std::vector<float> reference(const std::vector<std::vector<float>>& keys,
                             const std::vector<std::vector<float>>& values, const float* q,
                             float scale) {
  std::vector<float> out(kWidth, 0.0f);
  for (int h = 0; h < kHeads; ++h) {
    std::vector<double> s(keys.size());
    double m = -1e300, sum = 0;
    for (size_t p = 0; p < keys.size(); ++p) {
      double dot = 0;
      for (int d = 0; d < kHeadDim; ++d)
        dot += double(q[h * kHeadDim + d]) * keys[p][h * kHeadDim + d];
      s[p] = dot * scale;
      m = std::max(m, s[p]);
    }
    for (double& x : s) sum += (x = std::exp(x - m));
    for (size_t p = 0; p < keys.size(); ++p)
      for (int d = 0; d < kHeadDim; ++d)
        out[h * kHeadDim + d] += float(s[p] / sum * values[p][h * kHeadDim + d]);
  }
  return out;
}

TEST(BeamKvCache, AttentionFollowsReorderedHistories) {
  for (int threads : {1, 2}) {
    nn::set_num_threads(threads);
    std::mt19937 rng(7);
    std::normal_distribution<float> normal(0.0f, 1.0f);
    std::uniform_int_distribution<int> pick(0, kRows - 1);
    BeamKvCache cache(kLayers, kRows, kCapacity, kWidth);
    // history[layer][row] = the row's keys / values, position by position.
    std::vector<std::vector<std::vector<std::vector<float>>>> hk(
        kLayers, std::vector<std::vector<std::vector<float>>>(kRows)),
        hv = hk;
    const float scale = 0.37f;
    nn::Tensor q = nn::Tensor::empty({kRows, kWidth}), out = nn::Tensor::empty({kRows, kWidth});
    for (int step = 0; step < kCapacity; ++step) {
      const int p = cache.append();
      ASSERT_EQ(p, step);
      for (int l = 0; l < kLayers; ++l) {
        nn::Tensor k = cache.keys(l, p), v = cache.values(l, p);
        for (int r = 0; r < kRows; ++r) {
          std::vector<float> kr(kWidth), vr(kWidth);
          for (int c = 0; c < kWidth; ++c) {
            kr[c] = k.mutable_data()[r * kWidth + c] = normal(rng);
            vr[c] = v.mutable_data()[r * kWidth + c] = normal(rng);
          }
          hk[l][r].push_back(kr);
          hv[l][r].push_back(vr);
        }
        for (int i = 0; i < kRows * kWidth; ++i) q.mutable_data()[i] = normal(rng);
        cache.attend(l, q, kHeads, scale, out);
        for (int r = 0; r < kRows; ++r) {
          std::vector<float> want = reference(hk[l][r], hv[l][r], q.data() + r * kWidth, scale);
          for (int c = 0; c < kWidth; ++c)
            ASSERT_NEAR(out.data()[r * kWidth + c], want[c], 1e-5)
                << "step " << step << " layer " << l << " row " << r;
        }
      }
      std::vector<int> parents(kRows);
      for (int& x : parents) x = pick(rng);
      cache.reorder(parents);
      for (int l = 0; l < kLayers; ++l) {
        auto k = hk[l], v = hv[l];
        for (int r = 0; r < kRows; ++r) {
          hk[l][r] = k[parents[r]];
          hv[l][r] = v[parents[r]];
        }
      }
    }
    EXPECT_THROW(cache.append(), std::length_error);
  }
}

TEST(BeamKvCache, RejectsBadParents) {
  BeamKvCache cache(1, 3, 4, 6);
  cache.append();
  EXPECT_THROW(cache.reorder(std::vector<int>{0, 1}), std::invalid_argument);
  EXPECT_THROW(cache.reorder(std::vector<int>{0, 1, 3}), std::invalid_argument);
  EXPECT_THROW(cache.reorder(std::vector<int>{0, -1, 2}), std::invalid_argument);
  EXPECT_NO_THROW(cache.reorder(std::vector<int>{2, 2, 2}));
}

}  // namespace
}  // namespace celeriac::florence
