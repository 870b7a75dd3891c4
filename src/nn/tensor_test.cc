#include "nn/tensor.h"

#include <gtest/gtest.h>

#include <omp.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <functional>
#include <thread>
#include <vector>

#include "nn/threading.h"

namespace celeriac::nn {
namespace {

TEST(Tensor, OwningTensorIsAlignedAndWritable) {
  Tensor t = Tensor::zeros({3, 5});
  EXPECT_EQ(t.numel(), 15);
  EXPECT_EQ(t.rows(), 3);
  EXPECT_EQ(reinterpret_cast<uintptr_t>(t.data()) % 64, 0u);
  t.mutable_data()[14] = 2.0f;
  EXPECT_EQ(t.data()[14], 2.0f);
  EXPECT_EQ(t.data()[0], 0.0f);
}

TEST(Tensor, ConstViewIsReadOnlyAndShared) {
  const float weights[6] = {1, 2, 3, 4, 5, 6};
  Tensor w = Tensor::view(weights, {2, 3});
  EXPECT_EQ(w.data(), weights);  // no copy
  EXPECT_FALSE(w.writable());
  EXPECT_THROW(w.mutable_data(), ShapeError);
  Tensor r = w.reshape({3, 2});
  EXPECT_EQ(r.data(), weights);
  EXPECT_EQ(r.dim(0), 3);
  EXPECT_EQ(r.dim(-1), 2);
}

TEST(Tensor, HugePageCopiesHoldTheSameValuesReadOnly) {
  Tensor a = Tensor::empty({3, 5}), b = Tensor::empty({7});
  for (int i = 0; i < 15; ++i) a.mutable_data()[i] = float(i);
  for (int i = 0; i < 7; ++i) b.mutable_data()[i] = -float(i);
  const Tensor in[] = {a, b};
  std::vector<Tensor> copies = copy_to_huge_pages(in);
  ASSERT_EQ(copies.size(), 2u);
  EXPECT_TRUE(copies[0].shape() == a.shape());
  EXPECT_TRUE(copies[1].shape() == b.shape());
  EXPECT_NE(copies[0].data(), a.data());
  EXPECT_EQ(reinterpret_cast<uintptr_t>(copies[0].data()) % (2 << 20), 0u);  // a huge page start
  EXPECT_EQ(reinterpret_cast<uintptr_t>(copies[1].data()) % 64, 0u);
  EXPECT_FALSE(copies[0].writable());
  EXPECT_TRUE(std::equal(a.data(), a.data() + 15, copies[0].data()));
  EXPECT_TRUE(std::equal(b.data(), b.data() + 7, copies[1].data()));
  // A caller's copy function fills them instead (the decoder reads the checkpoint file).
  copies = copy_to_huge_pages(in, [](const Tensor& src, float* dst) {
    for (int64_t i = 0; i < src.numel(); ++i) dst[i] = src.data()[i] * 2;
  });
  EXPECT_EQ(copies[0].data()[14], 28.0f);
  EXPECT_EQ(copies[1].data()[6], -12.0f);
}

TEST(Tensor, HugePageTensorIsZeroedAlignedAndWritable) {
  Tensor t = Tensor::empty_on_huge_pages({3, 1000});
  EXPECT_EQ(reinterpret_cast<uintptr_t>(t.data()) % (2 << 20), 0u);
  EXPECT_TRUE(std::all_of(t.data(), t.data() + t.numel(), [](float v) { return v == 0.0f; }));
  t.mutable_data()[2999] = 5.0f;
  Tensor half = t.slice0(1, 3);  // views keep the mapping alive
  t = Tensor();
  EXPECT_EQ(half.data()[1999], 5.0f);
}

TEST(Tensor, ReshapeAndSliceKeepStorage) {
  Tensor t = Tensor::zeros({4, 2, 3});
  Tensor s = t.slice0(1, 3);
  EXPECT_EQ(s.shape(), (Shape{2, 2, 3}));
  EXPECT_EQ(s.data(), t.data() + 6);
  EXPECT_THROW(t.reshape({5, 5}), ShapeError);
  EXPECT_THROW(t.slice0(2, 5), ShapeError);
  Tensor owner_gone = Tensor::zeros({2}).reshape({1, 2});  // the storage lives with the view
  EXPECT_EQ(owner_gone.data()[1], 0.0f);
}

TEST(Tensor, LargeBuffersAreReusedBySize) {
  release_cached_buffers();
  const float* first;
  {
    Tensor a = Tensor::empty({1024, 1024});
    first = a.data();
    a.mutable_data()[5] = 3.0f;
  }
  Tensor b = Tensor::empty({1024, 1024});  // same size: the freed buffer comes back
  EXPECT_EQ(b.data(), first);
  Tensor c = Tensor::empty({1024, 1024});  // b still holds it
  EXPECT_NE(c.data(), first);
  Tensor z = Tensor::zeros({1024, 1024});  // zeros() really zero-fills a reused buffer
  for (int64_t i = 0; i < z.numel(); i += 4099) ASSERT_EQ(z.data()[i], 0.0f);
  release_cached_buffers();
}

TEST(Threading, ParallelForCoversRangeOnce) {
  set_num_threads(2);
  std::vector<int> hits(1000, 0);
  parallel_for(1000, 10, [&](int64_t b, int64_t e) {
    for (int64_t i = b; i < e; ++i) hits[i]++;
  });
  for (int h : hits) ASSERT_EQ(h, 1);
  EXPECT_EQ(num_threads(), 2);
  set_num_threads(0);
  EXPECT_EQ(num_threads(), 1);
  set_num_threads(2);
}

// Stealing: every item once, one item per call, each thread's own share walked in order; a thread
// held up in its first item has the rest of its share done by the other.
TEST(Threading, ParallelForStealingCoversEveryItemOnce) {
  set_num_threads(2);
  for (int64_t n : {1, 2, 7, 1000}) {
    std::vector<std::atomic<int>> hits(n);
    std::atomic<int> wide_calls{0};
    parallel_for_stealing(n, [&](int64_t b, int64_t e) {
      if (e != b + 1) ++wide_calls;
      for (int64_t i = b; i < e; ++i) hits[i]++;
    });
    for (const std::atomic<int>& h : hits) ASSERT_EQ(h.load(), 1) << n;
    EXPECT_EQ(wide_calls.load(), 0) << n;
  }
}

TEST(Threading, ParallelForStealingTakesTheShareOfAThreadHeldUp) {
  set_num_threads(2);
  const int64_t n = 40;
  std::vector<std::atomic<int>> done_by(n);  // OpenMP thread number + 1
  std::atomic<int> by_second{0};
  std::atomic<bool> first_started{false}, second_started{false};
  auto wait_until = [](const std::function<bool()>& done) {
    const auto give_up = std::chrono::steady_clock::now() + std::chrono::seconds(10);
    while (!done() && std::chrono::steady_clock::now() < give_up)
      std::this_thread::sleep_for(std::chrono::milliseconds(1));
  };
  parallel_for_stealing(n, [&](int64_t b, int64_t) {
    const int me = omp_get_thread_num();
    if (me == 0 && !first_started.exchange(true))  // thread 0's first item: held to the end
      wait_until([&] { return by_second.load() == n - 1; });
    if (me == 1 && !second_started.exchange(true))  // thread 1 starts once thread 0 holds one
      wait_until([&] { return first_started.load(); });
    done_by[b] = me + 1;
    if (me == 1) ++by_second;
  });
  int by_first = 0;
  for (const std::atomic<int>& t : done_by) by_first += t.load() == 1;
  EXPECT_EQ(by_first, 1);  // thread 1 did its own share and all of thread 0's but one item
  EXPECT_EQ(by_second.load(), n - 1);
}

}  // namespace
}  // namespace celeriac::nn
