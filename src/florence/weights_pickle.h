// A restricted unpickler for the `data.pkl` that torch.save writes for a state_dict. It knows the
// opcodes of pickle protocols 2-4 that such a file uses, builds plain values (ints, strings,
// tuples, dicts, ...) and calls back for the persistent ids of tensor storages. Only a short list
// of globals is accepted (collections.OrderedDict, torch._utils._rebuild_tensor_v2,
// torch._utils._rebuild_parameter, torch.*Storage); anything else is refused with a WeightsError
// naming it, so no pickle can make us run code.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <span>
#include <string>
#include <utility>
#include <vector>

#include "florence/weights_tensor.h"

namespace celeriac::florence::pickle {

struct Value;
using ValueRef = std::shared_ptr<Value>;

// A tensor as _rebuild_tensor_v2 describes it: a view (offset, size, stride, in elements) of a
// storage identified by its key in the archive (data/<key>).
struct TensorRef {
  std::string storage_key;
  DType dtype = DType::kF32;
  int64_t storage_numel = 0;
  int64_t storage_offset = 0;
  std::vector<int64_t> shape;
  std::vector<int64_t> stride;
};

struct Value {
  enum class Type {
    kNone,
    kBool,
    kInt,
    kFloat,
    kString,
    kBytes,
    kTuple,
    kList,
    kDict,
    kGlobal,
    kStorage,
    kTensor
  };
  Type type = Type::kNone;
  bool boolean = false;
  int64_t integer = 0;
  double real = 0;
  std::string text;                                    // kString, kBytes, kGlobal ("module.name")
  std::vector<ValueRef> items;                         // kTuple, kList
  std::vector<std::pair<ValueRef, ValueRef>> entries;  // kDict (insertion order kept)
  TensorRef tensor;                                    // kStorage (key, dtype, numel) and kTensor
};

// Parses a pickle. `persistent_load` receives the persistent id (a tuple) and returns the value
// that stands for it; the default used by read_torch_zip turns ('storage', torch.XStorage, key,
// location, numel) into a kStorage value. Throws WeightsError(kFormat / kUnsupported).
ValueRef unpickle(std::span<const std::byte> data,
                  const std::function<ValueRef(const ValueRef&)>& persistent_load);

// The persistent_load torch.save archives need.
ValueRef torch_storage_from_persistent_id(const ValueRef& pid);

}  // namespace celeriac::florence::pickle
