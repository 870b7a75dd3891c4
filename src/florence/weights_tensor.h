// Tensors as the weight loaders hand them out: a dtype, a shape and a pointer into a memory-mapped
// checkpoint file (or into a buffer the loader owns when a tensor had to be made, e.g. a
// transpose). Also the typed error every loader throws, and exact fp16/bf16 -> fp32 conversion.
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>
#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

namespace celeriac::florence {

// Storage types found in Florence-2 checkpoints (and the few others safetensors/torch can hold, so
// that a file with e.g. an int64 buffer is read and only refused if the model asks for it).
enum class DType { kF32, kF16, kBF16, kF64, kI64, kI32, kI16, kI8, kU8, kBool };

std::size_t dtype_size(DType dtype);
// Name as safetensors writes it: "F32", "F16", "BF16", "I64", ...
std::string_view dtype_name(DType dtype);
// Inverse of dtype_name; throws WeightsError for an unknown name.
DType dtype_from_safetensors_name(std::string_view name);

// A tensor stored row-major (C-contiguous) somewhere that outlives the view.
struct TensorView {
  DType dtype = DType::kF32;
  std::vector<int64_t> shape;
  const std::byte* data = nullptr;
  std::size_t nbytes = 0;

  int64_t numel() const;
  // Shape as "[51289, 768]", for messages.
  std::string shape_string() const;
};

std::string shape_to_string(std::span<const int64_t> shape);

// Why a checkpoint could not be used. `tensor` names the offending tensor where there is one.
class WeightsError : public std::runtime_error {
 public:
  enum class Kind {
    kIo,           // file missing or unreadable
    kFormat,       // not a valid safetensors / PyTorch zip / pickle / config file
    kUnsupported,  // valid but uses something we refuse (compressed zip entry, foreign pickle
                   // global)
    kMissing,      // a tensor the model needs is absent
    kShape,        // a tensor has the wrong shape
    kDtype,        // a tensor has a dtype the model cannot use
  };
  WeightsError(Kind kind, std::string message, std::string tensor = {})
      : std::runtime_error(std::move(message)), kind_(kind), tensor_(std::move(tensor)) {}
  Kind kind() const { return kind_; }
  const std::string& tensor() const { return tensor_; }

 private:
  Kind kind_;
  std::string tensor_;
};

// IEEE half -> float, exact (every half value is a float value), subnormals and inf/nan included.
float half_to_float(uint16_t h);
// bfloat16 -> float, exact (the upper 16 bits of a float).
inline float bf16_to_float(uint16_t b) {
  uint32_t bits = static_cast<uint32_t>(b) << 16;
  float f;
  static_assert(sizeof f == sizeof bits);
  __builtin_memcpy(&f, &bits, sizeof f);
  return f;
}

// Converts a floating tensor (F32, F16, BF16, F64) to float32 into `out` (numel() elements).
// F64 is rounded to nearest; the others are exact. Throws WeightsError(kDtype) for other dtypes.
void convert_to_f32(const TensorView& tensor, std::span<float> out);

}  // namespace celeriac::florence
