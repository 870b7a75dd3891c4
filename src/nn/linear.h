// Dense products on oneDNN's matmul primitive (fp32, or bf16 as an option): PyTorch's Linear with weights stored
// [out, in] as in the checkpoints (used in place from the mapped file, never transposed or
// copied), and the plain x·W of Florence-2's image_projection ([in, out], spec §5).
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <span>
#include <vector>

#include "nn/tensor.h"

namespace celeriac::nn {

enum class Activation {
  kNone,
  kGelu,  // exact erf form, torch.nn.GELU() / BART's "gelu" (oneDNN eltwise_gelu_erf)
};

struct LinearOptions {
  Activation activation = Activation::kNone;  // applied to x·Wᵀ + b
  bool accumulate = false;                    // y += result (a residual add), else y = result
};

// y[..., N] = act(x[..., K] · w[N, K]ᵀ + bias[N]) (+ y if accumulate). bias may be null. x and y
// are read as M × K and M × N matrices (M = product of the leading dimensions); y must not alias x.
void linear(const Tensor& x, const Tensor& w, const Tensor* bias, const Tensor& y,
            const LinearOptions& options = {});
// Allocating form.
Tensor linear(const Tensor& x, const Tensor& w, const Tensor* bias,
              const LinearOptions& options = {});

// Weights [N, K] kept as bfloat16 (the top half of each float32, rounded to nearest even as
// torch's .to(torch.bfloat16)). Two uses:
//  - decode-size products (x with <= 16 rows): half the bytes a decode step reads; the weights are
//    widened to fp32 in registers (exactly) and accumulated in fp32, on any AVX2 CPU;
//  - larger products on CPUs with bf16 arithmetic (AVX512_BF16 or AMX, bf16_gemm_supported()):
//    x is rounded to bf16 too and oneDNN's bf16 matmul accumulates in fp32, about twice the fp32
//    rate. This rounds activations, so it is an option of the model, never the default.
// Copies share their storage; rows_view() is a view of consecutive rows.
class Bf16Weights {
 public:
  Bf16Weights() = default;
  static Bf16Weights from(const Tensor& w);  // a converted copy of fp32 weights [N, K]
  int64_t rows() const { return rows_; }
  int64_t cols() const { return cols_; }
  bool empty() const { return rows_ == 0; }
  const uint16_t* data() const { return data_; }
  Bf16Weights rows_view(int64_t begin, int64_t end) const;  // rows [begin, end)

 private:
  std::shared_ptr<const std::vector<uint16_t>> storage_;
  const uint16_t* data_ = nullptr;
  int64_t rows_ = 0, cols_ = 0;
};

// Whether this CPU runs bf16 matmuls (oneDNN builds one: AVX512_BF16 or AMX). Checked once.
bool bf16_gemm_supported();

// As linear() above with bf16 weights. x with more than 16 rows needs bf16_gemm_supported()
// (ShapeError otherwise).
void linear(const Tensor& x, const Bf16Weights& w, const Tensor* bias, const Tensor& y,
            const LinearOptions& options = {});

// Weights [N, K] reordered once into the blocked layout oneDNN's fp32 matmul picks for itself
// (weights "any") for products of about `m_hint` rows: the vision tower's GEMMs then skip the
// packing they do on every call with weights read in place, 3-14% faster per DaViT shape on Zen 4
// (bench/gemm) and ~9% over the tower. A copy; empty when oneDNN would read the weights as they
// are stored or runs below AVX-512 (Zen 3 measured no gain): nothing to gain. Copies share their
// storage.
class GemmWeights {
 public:
  GemmWeights() = default;
  static GemmWeights from(const Tensor& w, int64_t m_hint);  // w [N, K] fp32
  int64_t rows() const { return rows_; }
  int64_t cols() const { return cols_; }
  bool empty() const { return rows_ == 0; }
  struct Layout;  // oneDNN's memory descriptor and the reordered bytes (linear.cc)
  const Layout& layout() const { return *layout_; }

 private:
  std::shared_ptr<const Layout> layout_;
  int64_t rows_ = 0, cols_ = 0;
};

// As linear(x, w, ...) with the reordered copy when there is one (wg not empty) and oneDNN picks
// that same layout for x's number of rows; otherwise (decode sizes, another layout for this M)
// the fp32 weights w as stored.
void linear(const Tensor& x, const Tensor& w, const GemmWeights& wg, const Tensor* bias,
            const Tensor& y, const LinearOptions& options = {});

// Weights [N, K] repacked for decode-size products: blocks of block() outputs, each stored
// [K][block()] (the last block padded with zeros), on huge pages. x · wᵀ then reads the weights as
// one sequential stream, x broadcast, no horizontal sums. The block is the CPU's: 64 outputs on
// AVX-512 (4 zmm per row of x), 32 on AVX2 (4 ymm per row). On Zen 4 1.01-1.19x the time of a
// plain read of the same bytes, where the loop over row-major weights took 1.12-1.40x
// (bench/florence/decode_kernels.cc). A copy; the decoder keeps its streamed weights this way.
class PackedWeights {
 public:
  static constexpr int64_t kMaxBlock = 64;
  PackedWeights() = default;
  static bool supported();        // whether this CPU runs a packed product (AVX2+FMA or AVX-512F)
  static int64_t native_block();  // the block width packing uses here: 64 or 32 (0: unsupported)
  static PackedWeights from(const Tensor& w);  // w [N, K]; ShapeError unless supported()
  // Several weights packed in order into one mapping (one huge page each would round every one
  // up to 2 MiB of resident memory).
  static std::vector<PackedWeights> from_all(std::span<const Tensor> weights);
  // The same with the rows given by `read`: read(i, r0, r1, out) writes rows [r0, r1) of matrix
  // i (row-major, r1 - r0 <= native_block(), shapes[i] = {N, K}). The decoder preads its weights
  // from the file this way rather than fault the mapped pages in; nn::FixedKv gathers its heads'
  // keys and values. It may be called from several threads at once; an exception it throws
  // becomes a ShapeError.
  struct Size {
    int64_t rows, cols;
  };
  using RowReader = std::function<void(size_t i, int64_t row0, int64_t row1, float* out)>;
  static std::vector<PackedWeights> from_rows(std::span<const Size> shapes, const RowReader& read);
  int64_t rows() const { return rows_; }
  int64_t cols() const { return cols_; }
  int64_t block() const { return block_; }
  bool empty() const { return rows_ == 0; }
  const float* data() const { return packed_.data(); }

 private:
  Tensor packed_;  // [blocks · K, block]
  int64_t rows_ = 0, cols_ = 0, block_ = 0;
};

// As linear() above with packed weights, for any number of rows of x (groups of 4 rows per
// block on AVX-512, 3 on AVX2; past a few rows it is compute-bound, so meant for decode steps).
void linear(const Tensor& x, const PackedWeights& w, const Tensor* bias, const Tensor& y,
            const LinearOptions& options = {});

// Several packed products of the same x in one pass, y_i = act(x · w_iᵀ + b_i) (+ y_i) (bias may
// be null): one parallel region over the blocks of all of them in turn, so each thread streams
// one range and waits once (the decoder's q/k/v projections, adjacent in its packed mapping).
// The single-weight linear() above is this with one output.
struct PackedOutput {
  const PackedWeights* weights;
  const Tensor* bias;
  Tensor y;
};
void linear(const Tensor& x, std::span<const PackedOutput> outputs,
            const LinearOptions& options = {});

// The bf16 copy when there is one (w16 not empty), else the packed or reordered copy (wp, wg not
// empty), else the fp32 weights: how the model's layers call their products, whichever copies an
// option or the CPU gave them.
void linear(const Tensor& x, const Tensor& w, const Bf16Weights& w16, const Tensor* bias,
            const Tensor& y, const LinearOptions& options = {});
void linear(const Tensor& x, const Tensor& w, const Bf16Weights& w16, const PackedWeights& wp,
            const Tensor* bias, const Tensor& y, const LinearOptions& options = {});
void linear(const Tensor& x, const Tensor& w, const Bf16Weights& w16, const GemmWeights& wg,
            const Tensor* bias, const Tensor& y, const LinearOptions& options = {});

namespace detail {
// Tests: makes PackedWeights::supported() false (process-wide), so that callers choosing by it
// take their row-major path on a CPU that packs and both paths are checked there.
void force_row_major_decode(bool on);
// Tests: weights packed from now on take AVX2's 32-output blocks on an AVX-512 CPU too.
void force_avx2_packing(bool on);
}  // namespace detail

// y[r, j] = x[r] · w[j] for x [m, w.cols()] (contiguous, any m) and packed weights, on the
// calling thread (the packed form of small_m_product, for nn::FixedKv). y rows are ldy apart.
void packed_product(const float* x, int64_t m, const PackedWeights& w, float* y, int64_t ldy);

// y[r, j] = x[r] · w[j] for x [m, k] with m <= 16 rows and weights w [n, k], both contiguous,
// on the calling thread (no bias, no threads of its own): the decode-size kernel of linear() for
// callers that split the work across threads themselves (nn::FixedKv). y rows are ldy apart.
void small_m_product(const float* x, int64_t m, int64_t k, const float* w, int64_t n, float* y,
                     int64_t ldy);

// y[M, N] = x[M, K] · w[K, N] (weights stored [in, out]).
void matmul(const Tensor& x, const Tensor& w_kn, const Tensor& y);

}  // namespace celeriac::nn
