// 2-D convolutions on oneDNN, for DaViT: the patch embeddings (7×7 stride 4 pad 3 on the image,
// then 3×3 stride 2 pad 1 between stages) and the depthwise 3×3 position convs (groups = C).
// Activations stay channels-last ([B, H, W, C], i.e. DaViT's tokens in row-major order), so no
// transpose is needed between the convs and the Linear layers; only the image comes in NCHW.
#pragma once

#include "nn/tensor.h"

namespace celeriac::nn {

enum class ImageLayout {
  kNCHW,  // [B, C, H, W], pixel_values as the processor makes them
  kNHWC,  // [B, H, W, C], tokens
};

struct Conv2dParams {
  int stride = 1;
  int padding = 0;  // zero padding on all four sides
  int groups = 1;   // groups = C_in = C_out: depthwise
};

// Output height/width: floor((in + 2 padding - kernel) / stride) + 1.
int64_t conv2d_output_size(int64_t in, int64_t kernel, const Conv2dParams& params);

// y[B, Ho, Wo, Cout] = conv(x, w[Cout, Cin/groups, kh, kw]) + bias[Cout] (PyTorch Conv2d, weights
// as stored in the checkpoint). bias may be null.
void conv2d(const Tensor& x, ImageLayout x_layout, const Tensor& w, const Tensor* bias,
            const Conv2dParams& params, const Tensor& y);

}  // namespace celeriac::nn
