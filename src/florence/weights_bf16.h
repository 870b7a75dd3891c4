// The bf16 options' weight copies (ModelOptions::bf16_decoder / bf16_encoders).
#pragma once

#include "nn/linear.h"
#include "nn/tensor.h"

namespace celeriac::florence {

class Checkpoint;

// A bf16 copy of the checkpoint's fp32 weight `w` [N, K] (nn::Bf16Weights::from); the fp32 pages
// it was read from then leave the resident set (Checkpoint::release_pages: they stay in the page
// cache and fault back in if something reads them again).
nn::Bf16Weights bf16_copy(const Checkpoint& checkpoint, const nn::Tensor& w);

}  // namespace celeriac::florence
