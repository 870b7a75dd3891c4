// The decoder's self-attention key/value cache, reserved once per session, and the attention of
// one new query per row over it.
//
// Beam search re-parents rows after every step (row i continues what row parents[i] was).
// Moving the cached keys would copy layers × 2 × rows × steps × d floats per step (~57 MB at
// step 512 for base with 3 beams); instead nothing moves: position p of every layer is one block
// [rows, d] written once, and each row keeps, per position, which physical row of that block
// holds its history (`slot`). reorder() copies those small index lists (rows × steps ints), and
// the attention gathers keys through them.
//
//   BeamKvCache cache(layers, rows, capacity, d);
//   int p = cache.append();                        // slot of the new position: row i -> row i
//   linear(x, k_w, &k_b, cache.keys(layer, p));    // [rows, d], written in place
//   cache.attend(layer, q, heads, scale, out);     // over positions 0..p
//   cache.reorder(parents);
#pragma once

#include <cstdint>
#include <span>
#include <vector>

#include "nn/tensor.h"

namespace celeriac::florence {

class BeamKvCache {
 public:
  // Reserves layers × 2 × capacity × rows × width floats (pages are touched as positions fill).
  BeamKvCache(int layers, int rows, int capacity, int width);

  int rows() const { return rows_; }
  int capacity() const { return capacity_; }
  int length() const { return length_; }  // positions appended so far

  // Opens the next position (every row's own slot) and returns its index. Throws
  // std::length_error when capacity positions are already there.
  int append();
  // Block of `position` for one layer: [rows, width], row r = physical slot r.
  nn::Tensor keys(int layer, int position) const;
  nn::Tensor values(int layer, int position) const;

  // out[i, h·hd .. ] = softmax_p(scale · q[i, h] · K[p, slot(i, p), h]) · V[p, slot(i, p), h]
  // over p in [0, length()), for q and out [rows, width], width = heads · hd.
  void attend(int layer, const nn::Tensor& q, int heads, float scale, const nn::Tensor& out) const;

  // Row i continues the history of row parents[i] (rows() entries in [0, rows())).
  void reorder(std::span<const int> parents);

 private:
  float* block(int layer, int kind, int position) const;

  int layers_, rows_, capacity_, width_;
  int length_ = 0;
  nn::Tensor storage_;                 // [layers, 2 (k, v), capacity, rows, width]
  std::vector<int32_t> slot_;          // [rows, capacity]: physical row of row i at position p
  std::vector<int32_t> slot_scratch_;  // reorder's copy, same size
};

}  // namespace celeriac::florence
