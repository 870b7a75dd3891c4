// linear/matmul against a double-precision scalar loop. Tolerance: norm-wise relative error 1e-5
// (fp32 accumulation in another order than the reference; K up to 1024 here).
#include "nn/linear.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <atomic>
#include <bit>
#include <cmath>

#include "nn/test_util.h"
#include "nn/threading.h"

namespace celeriac::nn {
namespace {

using testing::random_tensor;
using testing::rel_error;

std::vector<double> reference_linear(const Tensor& x, const Tensor& w, const Tensor* b, bool gelu) {
  int64_t m = x.rows(), k = x.dim(-1), n = w.dim(0);
  std::vector<double> y(m * n);
  for (int64_t i = 0; i < m; ++i)
    for (int64_t j = 0; j < n; ++j) {
      double s = b ? b->data()[j] : 0.0;
      for (int64_t l = 0; l < k; ++l) s += double(x.data()[i * k + l]) * w.data()[j * k + l];
      if (gelu) s = 0.5 * s * (1.0 + std::erf(s / std::sqrt(2.0)));
      y[i * n + j] = s;
    }
  return y;
}

struct LinearCase {
  int64_t m, k, n;
};

class LinearShapes : public ::testing::TestWithParam<LinearCase> {};

TEST_P(LinearShapes, MatchesScalarReference) {
  auto [m, k, n] = GetParam();
  Tensor x = random_tensor({m, k}, 1);
  Tensor w = random_tensor({n, k}, 2);
  Tensor b = random_tensor({n}, 3);
  for (int threads : {1, 2}) {
    set_num_threads(threads);
    Tensor y = linear(x, w, &b);
    EXPECT_LT(rel_error(y, reference_linear(x, w, &b, false)), 1e-5) << threads << " threads";
    Tensor y_nobias = linear(x, w, nullptr);
    EXPECT_LT(rel_error(y_nobias, reference_linear(x, w, nullptr, false)), 1e-5);
  }
}

INSTANTIATE_TEST_SUITE_P(Shapes, LinearShapes,
                         ::testing::Values(LinearCase{1, 1, 1}, LinearCase{3, 768, 40},
                                           // decode-size rows: 1-4 rows per kernel pass, K not a
                                           // multiple of 8, N not a multiple of 4 weight rows
                                           LinearCase{1, 13, 7}, LinearCase{2, 20, 1031},
                                           LinearCase{4, 768, 3}, LinearCase{7, 100, 70},
                                           LinearCase{3, 64, 1100}, LinearCase{16, 32, 513},
                                           LinearCase{17, 32, 513}, LinearCase{37, 64, 96},
                                           LinearCase{144, 128, 384}, LinearCase{200, 1024, 33}));

TEST(Linear, WeightsAreReadInPlaceFromAConstView) {
  std::vector<float> storage(6 * 4);
  for (size_t i = 0; i < storage.size(); ++i) storage[i] = 0.25f * static_cast<float>(i % 7);
  Tensor w = Tensor::view(static_cast<const float*>(storage.data()), {6, 4});
  Tensor x = random_tensor({2, 3, 4}, 9);  // leading dimensions are flattened
  Tensor y = linear(x, w, nullptr);
  EXPECT_EQ(y.shape(), (Shape{2, 3, 6}));
  EXPECT_LT(rel_error(y, reference_linear(x, w, nullptr, false)), 1e-6);
}

// M = 3 takes the decode path (column blocks), M = 50 the single oneDNN matmul.
class LinearEpilogue : public ::testing::TestWithParam<int64_t> {};

TEST_P(LinearEpilogue, FusedGeluAndAccumulate) {
  const int64_t m = GetParam(), n = 600;
  Tensor x = random_tensor({m, 96}, 4);
  Tensor w = random_tensor({n, 96}, 5, -0.2f, 0.2f);
  Tensor b = random_tensor({n}, 6);
  Tensor y = linear(x, w, &b, {.activation = Activation::kGelu});
  EXPECT_LT(rel_error(y, reference_linear(x, w, &b, true)), 1e-5);

  Tensor residual = random_tensor({m, n}, 7);
  std::vector<double> want = reference_linear(x, w, &b, false);
  for (size_t i = 0; i < want.size(); ++i) want[i] += residual.data()[i];
  linear(x, w, &b, residual, {.accumulate = true});
  EXPECT_LT(rel_error(residual, want), 1e-5);
}

INSTANTIATE_TEST_SUITE_P(DecodeAndBatch, LinearEpilogue, ::testing::Values(3, 50));

TEST(Linear, MatmulWithInOutWeights) {
  Tensor x = random_tensor({17, 48}, 8);
  Tensor w = random_tensor({48, 20}, 9);  // [in, out], image_projection's layout
  Tensor y = Tensor::empty({17, 20});
  matmul(x, w, y);
  std::vector<double> want(17 * 20);
  for (int i = 0; i < 17; ++i)
    for (int j = 0; j < 20; ++j) {
      double s = 0;
      for (int l = 0; l < 48; ++l) s += double(x.data()[i * 48 + l]) * w.data()[l * 20 + j];
      want[i * 20 + j] = s;
    }
  EXPECT_LT(rel_error(y, want), 1e-5);
}

// bf16 weights: rounding as torch's .to(torch.bfloat16), and products equal to fp32 products on
// the rounded values (the widening is exact, the accumulation the same fp32 loop).
TEST(Linear, Bf16WeightsRoundToNearestEvenAndMatchFp32OnRoundedValues) {
  const float samples[] = {1.0f, 1.00390625f /* tie, stays */, 1.01171875f /* tie, up */,
                           -2.5f, 3.14159265f};
  Tensor s = Tensor::view(samples, {1, 5});
  Bf16Weights r = Bf16Weights::from(s);
  const uint16_t want[] = {0x3f80, 0x3f80, 0x3f82, 0xc020, 0x4049};
  for (int i = 0; i < 5; ++i) EXPECT_EQ(r.data()[i], want[i]) << i;

  for (int64_t m : {1, 3, 5, 16}) {
    const int64_t k = 100, n = 1031;  // K not a multiple of 8, N not of 4
    Tensor x = random_tensor({m, k}, 4), w = random_tensor({n, k}, 5), b = random_tensor({n}, 6);
    Bf16Weights w16 = Bf16Weights::from(w);
    Tensor rounded = Tensor::empty({n, k});
    for (int64_t i = 0; i < w.numel(); ++i)
      rounded.mutable_data()[i] = std::bit_cast<float>(uint32_t{w16.data()[i]} << 16);
    Tensor y = Tensor::empty({m, n});
    linear(x, w16, &b, y, {.activation = Activation::kGelu});
    Tensor ref = Tensor::empty({m, n});
    linear(x, rounded, &b, ref, {.activation = Activation::kGelu});
    EXPECT_LT(rel_error(y, std::vector<double>(ref.data(), ref.data() + ref.numel())), 1e-6) << m;
  }
}

// The block widths this CPU packs with: 64 and 32 on AVX-512 (detail::force_avx2_packing), 32 on
// AVX2; none where packing is refused. The switch is left off again.
std::vector<int64_t> packing_widths() {
  std::vector<int64_t> widths;
  for (bool avx2 : {false, true}) {
    detail::force_avx2_packing(avx2);
    const int64_t nb = PackedWeights::native_block();
    if (nb > 0 && (widths.empty() || widths.back() != nb)) widths.push_back(nb);
  }
  detail::force_avx2_packing(false);
  return widths;
}

// Packed weights (AVX2 or AVX-512 CPUs): the same products as row-major ones, for every row count
// (groups of 4 or 3 per block), N not a multiple of the block, K not of 16, and the epilogues, in
// each block width the CPU has. Where packing is refused, the decoder keeps its row-major weights.
TEST(Linear, PackedWeightsGiveTheRowMajorProducts) {
  if (!PackedWeights::supported()) {
    EXPECT_THROW(PackedWeights::from(random_tensor({4, 4}, 1)), ShapeError);
    return;
  }
  struct Case {
    int64_t m, k, n;
  };
  for (const int64_t width : packing_widths()) {
    for (const Case c : {Case{1, 13, 1}, Case{3, 768, 65}, Case{2, 100, 64}, Case{4, 64, 1031},
                         Case{5, 32, 200}, Case{16, 20, 63}, Case{19, 48, 130}, Case{7, 40, 33}}) {
      Tensor x = random_tensor({c.m, c.k}, 7), w = random_tensor({c.n, c.k}, 8);
      Tensor b = random_tensor({c.n}, 9);
      detail::force_avx2_packing(width == 32);
      const PackedWeights packed = PackedWeights::from(w);
      detail::force_avx2_packing(false);
      EXPECT_EQ(packed.block(), width);
      EXPECT_EQ(packed.rows(), c.n);
      EXPECT_EQ(packed.cols(), c.k);
      for (int threads : {1, 2}) {
        set_num_threads(threads);
        Tensor y = Tensor::empty({c.m, c.n});
        linear(x, packed, &b, y);
        EXPECT_LT(rel_error(y, reference_linear(x, w, &b, false)), 1e-5)
            << c.m << "x" << c.k << "x" << c.n;
        linear(x, packed, nullptr, y, {.activation = Activation::kGelu});
        EXPECT_LT(rel_error(y, reference_linear(x, w, nullptr, true)), 1e-5) << c.m << " gelu";
        // accumulate: y (the GELU product) + x·wᵀ + b
        std::vector<double> want = reference_linear(x, w, nullptr, true);
        const std::vector<double> plain = reference_linear(x, w, &b, false);
        for (size_t i = 0; i < want.size(); ++i) want[i] += plain[i];
        linear(x, packed, &b, y, {.accumulate = true});
        EXPECT_LT(rel_error(y, want), 1e-5) << c.m << " accumulate";
      }
    }
  }
  EXPECT_THROW(linear(random_tensor({3, 12}, 1), PackedWeights::from(random_tensor({8, 13}, 2)),
                      nullptr, Tensor::empty({3, 8})),
               ShapeError);
}

// Products of one x with several packed weights in one pass: each output as its own product,
// whatever its block count (so that ranges split between threads inside one weight or across two).
TEST(Linear, PackedOutputsGiveEachProduct) {
  if (!PackedWeights::supported()) return;  // packing refused: the decoder takes three calls
  const std::vector<Tensor> ws = {random_tensor({70, 24}, 1), random_tensor({5, 24}, 2),
                                  random_tensor({130, 24}, 3)};
  const std::vector<PackedWeights> packed = PackedWeights::from_all(ws);
  const Tensor x = random_tensor({3, 24}, 4), bias = random_tensor({130}, 5);
  const Tensor b0 = bias.slice0(0, 70), b2 = bias.slice0(0, 130);
  for (int threads : {1, 2}) {
    set_num_threads(threads);
    const Tensor y0 = Tensor::empty({3, 70}), y1 = Tensor::empty({3, 5}),
                 y2 = Tensor::empty({3, 130});
    const PackedOutput outputs[] = {{&packed[0], &b0, y0}, {&packed[1], nullptr, y1},
                                    {&packed[2], &b2, y2}};
    linear(x, outputs);
    EXPECT_LT(rel_error(y0, reference_linear(x, ws[0], &b0, false)), 1e-5) << threads;
    EXPECT_LT(rel_error(y1, reference_linear(x, ws[1], nullptr, false)), 1e-5) << threads;
    EXPECT_LT(rel_error(y2, reference_linear(x, ws[2], &b2, false)), 1e-5) << threads;
  }
  const PackedOutput wrong[] = {{&packed[0], nullptr, Tensor::empty({3, 69})}};
  EXPECT_THROW(linear(x, wrong), ShapeError);
}

// Several weights packed into one mapping, their rows given by a reader (as the decoder preads
// them from the file): each gives its own products, and every row is asked for exactly once.
TEST(Linear, PackedWeightsFromAReaderKeepEachWeightApart) {
  if (!PackedWeights::supported()) {
    EXPECT_THROW(PackedWeights::from_all({}), ShapeError);
    return;
  }
  const std::vector<Tensor> ws = {random_tensor({70, 24}, 1), random_tensor({64, 24}, 2),
                                  random_tensor({5, 40}, 3)};
  std::vector<PackedWeights::Size> shapes;
  for (const Tensor& w : ws) shapes.push_back({w.dim(0), w.dim(1)});
  std::vector<std::atomic<int64_t>> rows_read(ws.size());  // the reader runs on the op threads
  const std::vector<PackedWeights> packed = PackedWeights::from_rows(
      shapes, [&](size_t i, int64_t r0, int64_t r1, float* out) {
        ASSERT_LE(r1 - r0, PackedWeights::native_block());
        rows_read[i] += r1 - r0;
        std::copy_n(ws[i].data() + r0 * ws[i].dim(1), (r1 - r0) * ws[i].dim(1), out);
      });
  ASSERT_EQ(packed.size(), ws.size());
  for (size_t i = 0; i < ws.size(); ++i) {
    EXPECT_EQ(rows_read[i].load(), ws[i].dim(0)) << i;
    const Tensor x = random_tensor({3, ws[i].dim(1)}, 4);
    Tensor y = Tensor::empty({3, ws[i].dim(0)});
    linear(x, packed[i], nullptr, y);
    EXPECT_LT(rel_error(y, reference_linear(x, ws[i], nullptr, false)), 1e-5) << i;
  }
}

// Larger products with bf16 weights are bf16 GEMMs: x rounded to bf16 as well, fp32 accumulation,
// so the result is the fp32 product of the two rounded operands. Where the CPU has no bf16
// arithmetic they are refused with a clear error (the model then keeps its encoders fp32).
TEST(Linear, Bf16GemmEqualsTheProductOfRoundedOperands) {
  const int64_t m = 300, k = 200, n = 129;
  Tensor x = random_tensor({m, k}, 9), w = random_tensor({n, k}, 10), b = random_tensor({n}, 11);
  const Bf16Weights w16 = Bf16Weights::from(w);
  Tensor y = random_tensor({m, n}, 12);
  const Tensor y0 = Tensor::empty({m, n});
  std::copy(y.data(), y.data() + y.numel(), y0.mutable_data());
  if (!bf16_gemm_supported()) {
    EXPECT_THROW(linear(x, w16, &b, y, {.accumulate = true}), ShapeError);
    return;
  }
  linear(x, w16, &b, y, {.accumulate = true});
  const Bf16Weights x16 = Bf16Weights::from(x);  // the same rounding as the GEMM's input
  auto widen = [](uint16_t v) { return double(std::bit_cast<float>(uint32_t{v} << 16)); };
  std::vector<double> want(m * n);
  for (int64_t i = 0; i < m; ++i)
    for (int64_t j = 0; j < n; ++j) {
      double s = b.data()[j] + y0.data()[i * n + j];
      for (int64_t l = 0; l < k; ++l) s += widen(x16.data()[i * k + l]) * widen(w16.data()[j * k + l]);
      want[i * n + j] = s;
    }
  EXPECT_LT(rel_error(y, want), 1e-5);
  // Row views share the storage: the last rows of w as a weight of their own.
  const Bf16Weights tail = w16.rows_view(100, n);
  Tensor yt = Tensor::empty({m, n - 100});
  linear(x, tail, nullptr, yt);
  EXPECT_NEAR(yt.data()[0], want[100] - b.data()[100] - y0.data()[100], 1e-4);
  EXPECT_THROW(w16.rows_view(100, n + 1), ShapeError);
}

// Weights reordered into oneDNN's own layout give the product of the stored ones, with bias and
// epilogues, for the rows they were reordered for and for others (where oneDNN may want another
// layout and the stored weights are read instead). When there is a copy, the hinted size must
// read it: the stored weights handed in beside it are zeros then.
TEST(Linear, ReorderedWeightsGiveTheStoredProduct) {
  for (auto [k, n] : {std::pair<int64_t, int64_t>{128, 384}, {256, 1024}, {1024, 256}, {96, 40}}) {
    const Tensor w = random_tensor({n, k}, 30, -0.2f, 0.2f);
    const Tensor b = random_tensor({n}, 31);
    const GemmWeights wg = GemmWeights::from(w, 512);
    if (!wg.empty()) {
      EXPECT_EQ(wg.rows(), n);
      EXPECT_EQ(wg.cols(), k);
    }
    const Tensor zeros = Tensor::zeros({n, k});
    for (int64_t m : {int64_t{512}, int64_t{300}, int64_t{2048}, int64_t{3}}) {
      const Tensor x = random_tensor({m, k}, 32);
      const Tensor y = Tensor::empty({m, n});
      linear(x, w, wg, &b, y, {.activation = Activation::kGelu});
      EXPECT_LT(rel_error(y, reference_linear(x, w, &b, true)), 1e-5)
          << k << "x" << n << " m " << m;
      const Tensor acc = random_tensor({m, n}, 33);
      std::vector<double> want = reference_linear(x, w, &b, false);
      for (size_t i = 0; i < want.size(); ++i) want[i] += acc.data()[i];
      linear(x, w, wg, &b, acc, {.accumulate = true});
      EXPECT_LT(rel_error(acc, want), 1e-5) << k << "x" << n << " m " << m;
      if (m == 512 && !wg.empty()) {
        linear(x, zeros, wg, &b, y);
        EXPECT_LT(rel_error(y, reference_linear(x, w, &b, false)), 1e-5) << "copy not read";
      }
    }
  }
}

TEST(Linear, RejectsMismatchedShapes) {
  Tensor x = random_tensor({4, 8}, 1);
  Tensor w = random_tensor({5, 7}, 2);
  EXPECT_THROW(linear(x, w, nullptr), ShapeError);
  Tensor w_ok = random_tensor({5, 8}, 2);
  Tensor bad_bias = random_tensor({4}, 3);
  EXPECT_THROW(linear(x, w_ok, &bad_bias), ShapeError);
  Tensor bad_out = Tensor::empty({4, 6});
  EXPECT_THROW(linear(x, w_ok, nullptr, bad_out), ShapeError);
}

}  // namespace
}  // namespace celeriac::nn
