// Conv2d on oneDNN's convolution primitive. Weights are given to oneDNN in PyTorch's OIHW (GOIHW
// for groups) layout and reordered per call into the layout the chosen kernel wants: the largest
// (stage 3 patch conv, 19 MB) costs a few ms against its ~70 ms of arithmetic, and it keeps the
// mapped checkpoint untouched. Caching the reordered weights is a later optimisation.
#include "nn/conv.h"

#include <string>
#include <unordered_map>

#include "nn/dnnl_backend.h"
#include "nn/threading.h"

namespace celeriac::nn {
namespace {
using dt = dnnl::memory::data_type;
using tag = dnnl::memory::format_tag;
}  // namespace

int64_t conv2d_output_size(int64_t in, int64_t kernel, const Conv2dParams& params) {
  return (in + 2 * params.padding - kernel) / params.stride + 1;
}

void conv2d(const Tensor& x, ImageLayout x_layout, const Tensor& w, const Tensor* bias,
            const Conv2dParams& params, const Tensor& y) {
  if (x.rank() != 4 || w.rank() != 4 || y.rank() != 4)
    throw ShapeError("conv2d: x " + x.shape().to_string() + " w " + w.shape().to_string() + " y " +
                     y.shape().to_string() + " must all be 4-D");
  const bool nchw = x_layout == ImageLayout::kNCHW;
  const int64_t batch = x.dim(0), cin = nchw ? x.dim(1) : x.dim(3);
  const int64_t h = nchw ? x.dim(2) : x.dim(1), wd = nchw ? x.dim(3) : x.dim(2);
  const int64_t cout = w.dim(0), kh = w.dim(2), kw = w.dim(3), g = params.groups;
  const int64_t ho = conv2d_output_size(h, kh, params), wo = conv2d_output_size(wd, kw, params);
  if (g < 1 || cin % g || cout % g || w.dim(1) != cin / g)
    throw ShapeError("conv2d: weight " + w.shape().to_string() + " for " + std::to_string(cin) +
                     " input channels in " + std::to_string(g) + " groups");
  if (!(y.shape() == Shape{batch, ho, wo, cout}))
    throw ShapeError("conv2d: output " + y.shape().to_string() + ", expected " +
                     Shape{batch, ho, wo, cout}.to_string());
  if (bias && bias->numel() != cout) throw ShapeError("conv2d: bias " + bias->shape().to_string());
  detail::apply_num_threads();

  dnnl::memory::desc src_md({batch, cin, h, wd}, dt::f32, nchw ? tag::nchw : tag::nhwc);
  dnnl::memory::desc dst_md({batch, cout, ho, wo}, dt::f32, tag::nhwc);
  dnnl::memory::desc w_user_md =
      g == 1 ? dnnl::memory::desc({cout, cin, kh, kw}, dt::f32, tag::oihw)
             : dnnl::memory::desc({g, cout / g, cin / g, kh, kw}, dt::f32, tag::goihw);
  dnnl::memory::desc w_any_md =
      g == 1 ? dnnl::memory::desc({cout, cin, kh, kw}, dt::f32, tag::any)
             : dnnl::memory::desc({g, cout / g, cin / g, kh, kw}, dt::f32, tag::any);
  dnnl::memory::desc bias_md({cout}, dt::f32, tag::a);
  const dnnl::memory::dims strides = {params.stride, params.stride};
  const dnnl::memory::dims pad = {params.padding, params.padding};

  // Layouts: depthwise convs run fastest on the caller's NHWC as is (jit_dw: ~7 ms for 192²×128,
  // against ~23 ms via blocked layouts and reorders); dense convs on oneDNN's blocked layouts
  // ("any") plus reorders (3×3/2 512→1024 at 48²: ~75 ms against ~100 ms on NHWC). Where a
  // choice has only the reference kernel (the 7×7 stem from NCHW into NHWC: 53 s), "any" it is.
  auto make_pd = [&](const dnnl::memory::desc& src, const dnnl::memory::desc& dst) {
    auto desc = bias ? dnnl::convolution_forward::desc(dnnl::prop_kind::forward_inference,
                                                       dnnl::algorithm::convolution_direct, src,
                                                       w_any_md, bias_md, dst, strides, pad, pad)
                     : dnnl::convolution_forward::desc(dnnl::prop_kind::forward_inference,
                                                       dnnl::algorithm::convolution_direct, src,
                                                       w_any_md, dst, strides, pad, pad);
    return dnnl::convolution_forward::primitive_desc(desc, detail::scratchpad_attr(),
                                                     detail::cpu_engine());
  };
  auto any_layout_pd = [&] {
    return make_pd(dnnl::memory::desc({batch, cin, h, wd}, dt::f32, tag::any),
                   dnnl::memory::desc({batch, cout, ho, wo}, dt::f32, tag::any));
  };
  const bool depthwise = g == cin && g == cout;
  auto pd = depthwise ? make_pd(src_md, dst_md) : any_layout_pd();
  if (depthwise && std::string(pd.impl_info_str()).rfind("ref", 0) == 0) pd = any_layout_pd();
  // Built per call: oneDNN's primitive cache makes this a lookup, and a DaViT forward has only
  // ~30 convolutions.
  dnnl::convolution_forward prim(pd);

  auto& engine = detail::cpu_engine();
  auto& stream = detail::thread_stream();
  // Operands in the user's layout, reordered where the kernel wants another.
  auto to_kernel = [&](const dnnl::memory::desc& want, dnnl::memory user) {
    if (want == user.get_desc()) return user;
    dnnl::memory m(want, engine);
    dnnl::reorder(user, m).execute(stream, user, m);
    return m;
  };
  dnnl::memory src =
      to_kernel(pd.src_desc(), dnnl::memory(src_md, engine, const_cast<float*>(x.data())));
  dnnl::memory wts =
      to_kernel(pd.weights_desc(), dnnl::memory(w_user_md, engine, const_cast<float*>(w.data())));
  dnnl::memory dst_user(dst_md, engine, y.mutable_data());
  dnnl::memory dst = pd.dst_desc() == dst_md ? dst_user : dnnl::memory(pd.dst_desc(), engine);
  std::unordered_map<int, dnnl::memory> args{
      {DNNL_ARG_SRC, src}, {DNNL_ARG_WEIGHTS, wts}, {DNNL_ARG_DST, dst}};
  if (bias)
    args.emplace(DNNL_ARG_BIAS, dnnl::memory(bias_md, engine, const_cast<float*>(bias->data())));
  detail::execute(prim, pd.scratchpad_desc(), args);
  if (dst != dst_user) dnnl::reorder(dst, dst_user).execute(stream, dst, dst_user);
  stream.wait();
}

}  // namespace celeriac::nn
