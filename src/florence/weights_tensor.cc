// DType names and sizes, and exact upcasts of half-precision storage to float32.
#include "florence/weights_tensor.h"

#include <immintrin.h>

#include <cstring>

namespace celeriac::florence {

std::size_t dtype_size(DType dtype) {
  switch (dtype) {
    case DType::kF64:
    case DType::kI64:
      return 8;
    case DType::kF32:
    case DType::kI32:
      return 4;
    case DType::kF16:
    case DType::kBF16:
    case DType::kI16:
      return 2;
    case DType::kI8:
    case DType::kU8:
    case DType::kBool:
      return 1;
  }
  return 0;
}

std::string_view dtype_name(DType dtype) {
  switch (dtype) {
    case DType::kF32:
      return "F32";
    case DType::kF16:
      return "F16";
    case DType::kBF16:
      return "BF16";
    case DType::kF64:
      return "F64";
    case DType::kI64:
      return "I64";
    case DType::kI32:
      return "I32";
    case DType::kI16:
      return "I16";
    case DType::kI8:
      return "I8";
    case DType::kU8:
      return "U8";
    case DType::kBool:
      return "BOOL";
  }
  return "?";
}

DType dtype_from_safetensors_name(std::string_view name) {
  static constexpr DType all[] = {DType::kF32, DType::kF16, DType::kBF16, DType::kF64,
                                  DType::kI64, DType::kI32, DType::kI16,  DType::kI8,
                                  DType::kU8,  DType::kBool};
  for (DType d : all) {
    if (dtype_name(d) == name) return d;
  }
  throw WeightsError(WeightsError::Kind::kUnsupported,
                     "unsupported tensor dtype \"" + std::string(name) + "\"");
}

int64_t TensorView::numel() const {
  int64_t n = 1;
  for (int64_t d : shape) n *= d;
  return n;
}

std::string shape_to_string(std::span<const int64_t> shape) {
  std::string s = "[";
  for (std::size_t i = 0; i < shape.size(); ++i) {
    if (i) s += ", ";
    s += std::to_string(shape[i]);
  }
  return s + "]";
}

std::string TensorView::shape_string() const { return shape_to_string(shape); }

float half_to_float(uint16_t h) {
  const uint32_t sign = static_cast<uint32_t>(h & 0x8000u) << 16;
  uint32_t exp = (h >> 10) & 0x1fu;
  uint32_t mant = h & 0x3ffu;
  uint32_t bits;
  if (exp == 0x1f) {
    bits = sign | 0x7f800000u | (mant << 13);  // inf / nan (payload kept)
  } else if (exp != 0) {
    bits = sign | ((exp + 112) << 23) | (mant << 13);  // rebias 15 -> 127
  } else if (mant == 0) {
    bits = sign;  // +-0
  } else {
    // Subnormal half: normalise the mantissa into a float exponent.
    int e = -1;
    do {
      ++e;
      mant <<= 1;
    } while ((mant & 0x400u) == 0);
    bits = sign | (static_cast<uint32_t>(112 - e) << 23) | ((mant & 0x3ffu) << 13);
  }
  float f;
  std::memcpy(&f, &bits, sizeof f);
  return f;
}

namespace {

// F16C converts 8 halves per instruction; every x86-64 CPU of the last decade has it, the check
// keeps the binary portable to the others.
__attribute__((target("f16c,avx"))) void halves_to_floats_f16c(const std::byte* in, float* out,
                                                               std::size_t n) {
  std::size_t i = 0;
  for (; i + 8 <= n; i += 8) {
    __m128i h = _mm_loadu_si128(reinterpret_cast<const __m128i*>(in + 2 * i));
    _mm256_storeu_ps(out + i, _mm256_cvtph_ps(h));
  }
  for (; i < n; ++i) {
    uint16_t v;
    std::memcpy(&v, in + 2 * i, 2);
    out[i] = half_to_float(v);
  }
}

void halves_to_floats(const std::byte* in, float* out, std::size_t n) {
  static const bool f16c = __builtin_cpu_supports("f16c") && __builtin_cpu_supports("avx");
  if (f16c) return halves_to_floats_f16c(in, out, n);
  for (std::size_t i = 0; i < n; ++i) {
    uint16_t v;
    std::memcpy(&v, in + 2 * i, 2);
    out[i] = half_to_float(v);
  }
}

}  // namespace

void convert_to_f32(const TensorView& tensor, std::span<float> out) {
  const auto n = static_cast<std::size_t>(tensor.numel());
  if (out.size() < n) {
    throw WeightsError(WeightsError::Kind::kDtype, "convert_to_f32: output too small");
  }
  const std::byte* p = tensor.data;
  switch (tensor.dtype) {
    case DType::kF32:
      std::memcpy(out.data(), p, n * 4);
      return;
    case DType::kF16:
      halves_to_floats(p, out.data(), n);
      return;
    case DType::kBF16: {
      uint32_t* bits = reinterpret_cast<uint32_t*>(out.data());
      for (std::size_t i = 0; i < n; ++i) {  // a shift per value; vectorised by the compiler
        uint16_t v;
        std::memcpy(&v, p + 2 * i, 2);
        bits[i] = static_cast<uint32_t>(v) << 16;
      }
      return;
    }
    case DType::kF64:
      for (std::size_t i = 0; i < n; ++i) {
        double v;
        std::memcpy(&v, p + 8 * i, 8);
        out[i] = static_cast<float>(v);
      }
      return;
    default:
      throw WeightsError(
          WeightsError::Kind::kDtype,
          "cannot convert a " + std::string(dtype_name(tensor.dtype)) + " tensor to float32");
  }
}

}  // namespace celeriac::florence
