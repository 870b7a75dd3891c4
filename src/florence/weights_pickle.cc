// Stack machine of the restricted unpickler (see weights_pickle.h for what it accepts).
#include "florence/weights_pickle.h"

#include <cstring>
#include <map>
#include <optional>

namespace celeriac::florence::pickle {
namespace {

using Kind = WeightsError::Kind;

constexpr std::size_t kMaxMemo = 1u << 24;

[[noreturn]] void fail(const std::string& why) {
  throw WeightsError(Kind::kFormat, "data.pkl: " + why);
}

ValueRef make(Value::Type t) {
  auto v = std::make_shared<Value>();
  v->type = t;
  return v;
}
ValueRef make_int(int64_t i) {
  auto v = make(Value::Type::kInt);
  v->integer = i;
  return v;
}
ValueRef make_string(std::string s, Value::Type t = Value::Type::kString) {
  auto v = make(t);
  v->text = std::move(s);
  return v;
}

std::optional<DType> storage_dtype(const std::string& global) {
  static const std::map<std::string, DType> kinds = {
      {"torch.FloatStorage", DType::kF32},     {"torch.HalfStorage", DType::kF16},
      {"torch.BFloat16Storage", DType::kBF16}, {"torch.DoubleStorage", DType::kF64},
      {"torch.LongStorage", DType::kI64},      {"torch.IntStorage", DType::kI32},
      {"torch.ShortStorage", DType::kI16},     {"torch.CharStorage", DType::kI8},
      {"torch.ByteStorage", DType::kU8},       {"torch.BoolStorage", DType::kBool},
  };
  auto it = kinds.find(global);
  if (it == kinds.end()) return std::nullopt;
  return it->second;
}

bool allowed_global(const std::string& name) {
  return name == "collections.OrderedDict" || name == "torch._utils._rebuild_tensor_v2" ||
         name == "torch._utils._rebuild_parameter" || storage_dtype(name).has_value();
}

std::vector<int64_t> int_tuple(const ValueRef& v, const char* what) {
  if (v->type != Value::Type::kTuple && v->type != Value::Type::kList) {
    fail(std::string(what) + " is not a tuple");
  }
  std::vector<int64_t> out;
  for (const auto& item : v->items) {
    if (item->type != Value::Type::kInt) fail(std::string(what) + " holds a non-integer");
    out.push_back(item->integer);
  }
  return out;
}

// The result of calling an accepted global with `args`.
ValueRef call_global(const std::string& name, const ValueRef& args) {
  if (args->type != Value::Type::kTuple) fail("REDUCE arguments are not a tuple");
  const auto& a = args->items;
  if (name == "collections.OrderedDict") {
    if (!a.empty()) fail("OrderedDict called with arguments");
    return make(Value::Type::kDict);
  }
  if (name == "torch._utils._rebuild_tensor_v2") {
    // (storage, storage_offset, size, stride, requires_grad, backward_hooks[, metadata])
    if (a.size() < 4 || a[0]->type != Value::Type::kStorage || a[1]->type != Value::Type::kInt) {
      fail("_rebuild_tensor_v2 with unexpected arguments");
    }
    auto t = make(Value::Type::kTensor);
    t->tensor = a[0]->tensor;
    t->tensor.storage_offset = a[1]->integer;
    t->tensor.shape = int_tuple(a[2], "tensor size");
    t->tensor.stride = int_tuple(a[3], "tensor stride");
    if (t->tensor.shape.size() != t->tensor.stride.size()) fail("size and stride ranks differ");
    return t;
  }
  if (name == "torch._utils._rebuild_parameter") {
    // (data, requires_grad, backward_hooks): a Parameter is its tensor for us.
    if (a.empty() || a[0]->type != Value::Type::kTensor) fail("_rebuild_parameter without tensor");
    return a[0];
  }
  throw WeightsError(Kind::kUnsupported, "data.pkl: " + name + " cannot be called");
}

class Machine {
 public:
  Machine(std::span<const std::byte> data,
          const std::function<ValueRef(const ValueRef&)>& persistent_load)
      : p_(reinterpret_cast<const uint8_t*>(data.data())),
        end_(p_ + data.size()),
        persistent_load_(persistent_load) {}

  ValueRef run() {
    while (true) {
      const uint8_t op = u8();
      switch (op) {
        case 0x80:
          u8();
          break;  // PROTO
        case 0x95:
          take(8);
          break;   // FRAME (framing only)
        case '.':  // STOP
          if (stack_.size() != 1) fail("STOP with " + std::to_string(stack_.size()) + " values");
          return stack_.back();
        case '(':
          marks_.push_back(stack_.size());
          break;  // MARK
        case 'N':
          push(make(Value::Type::kNone));
          break;
        case 0x88:
          push_bool(true);
          break;  // NEWTRUE
        case 0x89:
          push_bool(false);
          break;  // NEWFALSE
        case 'K':
          push(make_int(u8()));
          break;  // BININT1
        case 'M':
          push(make_int(le(2)));
          break;  // BININT2
        case 'J':
          push(make_int(static_cast<int32_t>(le(4))));
          break;  // BININT
        case 0x8a:
          push(make_int(long1(u8())));
          break;     // LONG1
        case 'G': {  // BINFLOAT (big-endian double)
          uint64_t bits = 0;
          for (int i = 0; i < 8; ++i) bits = (bits << 8) | u8();
          auto v = make(Value::Type::kFloat);
          std::memcpy(&v->real, &bits, 8);
          push(v);
          break;
        }
        case 'X':
          push(make_string(str(le(4))));
          break;  // BINUNICODE
        case 0x8c:
          push(make_string(str(u8())));
          break;  // SHORT_BINUNICODE
        case 0x8d:
          push(make_string(str(le(8))));
          break;  // BINUNICODE8
        case 'T':
          push(make_string(str(le(4)), Value::Type::kBytes));
          break;  // BINSTRING
        case 'U':
          push(make_string(str(u8()), Value::Type::kBytes));
          break;  // SHORT_BINSTRING
        case 'B':
          push(make_string(str(le(4)), Value::Type::kBytes));
          break;  // BINBYTES
        case 'C':
          push(make_string(str(u8()), Value::Type::kBytes));
          break;  // SHORT_BINBYTES
        case ')':
          push(make(Value::Type::kTuple));
          break;  // EMPTY_TUPLE
        case ']':
          push(make(Value::Type::kList));
          break;  // EMPTY_LIST
        case '}':
          push(make(Value::Type::kDict));
          break;     // EMPTY_DICT
        case 't': {  // TUPLE
          auto v = make(Value::Type::kTuple);
          v->items = pop_mark();
          push(v);
          break;
        }
        case 0x85:
        case 0x86:
        case 0x87: {  // TUPLE1..3
          const std::size_t n = op - 0x84;
          if (stack_.size() < n + base()) fail("stack underflow in TUPLEn");
          auto v = make(Value::Type::kTuple);
          v->items.assign(stack_.end() - n, stack_.end());
          stack_.resize(stack_.size() - n);
          push(v);
          break;
        }
        case 'l': {  // LIST
          auto v = make(Value::Type::kList);
          v->items = pop_mark();
          push(v);
          break;
        }
        case 'a': {  // APPEND
          auto item = pop();
          list_top()->items.push_back(item);
          break;
        }
        case 'e': {  // APPENDS
          auto items = pop_mark();
          auto list = list_top();
          list->items.insert(list->items.end(), items.begin(), items.end());
          break;
        }
        case 's': {  // SETITEM
          auto value = pop();
          auto key = pop();
          dict_top()->entries.emplace_back(key, value);
          break;
        }
        case 'u': {  // SETITEMS
          auto items = pop_mark();
          if (items.size() % 2) fail("SETITEMS with an odd number of items");
          auto dict = dict_top();
          for (std::size_t i = 0; i < items.size(); i += 2) {
            dict->entries.emplace_back(items[i], items[i + 1]);
          }
          break;
        }
        case 'q':
          memo_put(u8());
          break;  // BINPUT
        case 'r':
          memo_put(le(4));
          break;  // LONG_BINPUT
        case 0x94:
          memo_put(memo_.size());
          break;  // MEMOIZE
        case 'h':
          push(memo_get(u8()));
          break;  // BINGET
        case 'j':
          push(memo_get(le(4)));
          break;     // LONG_BINGET
        case 'c': {  // GLOBAL "module\nname\n"
          std::string module = line();
          std::string name = line();
          push_global(module + "." + name);
          break;
        }
        case 0x93: {  // STACK_GLOBAL
          auto name = pop();
          auto module = pop();
          if (module->type != Value::Type::kString || name->type != Value::Type::kString) {
            fail("STACK_GLOBAL operands are not strings");
          }
          push_global(module->text + "." + name->text);
          break;
        }
        case 'R': {  // REDUCE
          auto args = pop();
          auto callable = pop();
          if (callable->type != Value::Type::kGlobal) fail("REDUCE on a non-global");
          push(call_global(callable->text, args));
          break;
        }
        case 'b': {  // BUILD: object state, ignored
          pop();
          if (stack_.empty()) fail("BUILD on an empty stack");
          // torch.save keeps the state_dict's `_metadata` (module versions) here; tensors may
          // carry Python attributes. Neither changes the numbers.
          break;
        }
        case 'Q': {  // BINPERSID
          auto pid = pop();
          push(persistent_load_(pid));
          break;
        }
        default: {
          char hex[8];
          std::snprintf(hex, sizeof hex, "0x%02x", op);
          throw WeightsError(Kind::kUnsupported, std::string("data.pkl: pickle opcode ") + hex +
                                                     " is not used by torch.save of a state_dict");
        }
      }
    }
  }

 private:
  uint8_t u8() {
    if (p_ >= end_) fail("truncated pickle");
    return *p_++;
  }
  const uint8_t* take(uint64_t n) {
    if (n > static_cast<uint64_t>(end_ - p_)) fail("truncated pickle");
    const uint8_t* at = p_;
    p_ += n;
    return at;
  }
  uint64_t le(int n) {
    const uint8_t* b = take(n);
    uint64_t v = 0;
    for (int i = n - 1; i >= 0; --i) v = (v << 8) | b[i];
    return v;
  }
  int64_t long1(uint8_t n) {
    if (n > 8) fail("LONG1 wider than 64 bits");
    const uint8_t* b = take(n);
    if (n == 0) return 0;
    uint64_t v = 0;
    for (int i = n - 1; i >= 0; --i) v = (v << 8) | b[i];
    if (n < 8 && (b[n - 1] & 0x80)) v |= ~uint64_t{0} << (8 * n);  // sign-extend
    return static_cast<int64_t>(v);
  }
  std::string str(uint64_t n) {
    const uint8_t* b = take(n);
    return std::string(reinterpret_cast<const char*>(b), n);
  }
  std::string line() {
    const uint8_t* start = p_;
    while (p_ < end_ && *p_ != '\n') ++p_;
    if (p_ >= end_) fail("truncated GLOBAL");
    std::string s(reinterpret_cast<const char*>(start), p_ - start);
    ++p_;
    return s;
  }
  std::size_t base() const { return marks_.empty() ? 0 : marks_.back(); }
  void push(ValueRef v) { stack_.push_back(std::move(v)); }
  void push_bool(bool b) {
    auto v = make(Value::Type::kBool);
    v->boolean = b;
    push(v);
  }
  void push_global(const std::string& name) {
    if (!allowed_global(name)) {
      throw WeightsError(Kind::kUnsupported,
                         "data.pkl: refusing global " + name +
                             " (only a torch.save state_dict of tensors can be read)");
    }
    push(make_string(name, Value::Type::kGlobal));
  }
  ValueRef pop() {
    if (stack_.size() <= base()) fail("stack underflow");
    auto v = std::move(stack_.back());
    stack_.pop_back();
    return v;
  }
  std::vector<ValueRef> pop_mark() {
    if (marks_.empty()) fail("no MARK");
    const std::size_t m = marks_.back();
    marks_.pop_back();
    std::vector<ValueRef> items(stack_.begin() + m, stack_.end());
    stack_.resize(m);
    return items;
  }
  ValueRef list_top() {
    if (stack_.size() <= base() || stack_.back()->type != Value::Type::kList) {
      fail("APPEND to a non-list");
    }
    return stack_.back();
  }
  ValueRef dict_top() {
    if (stack_.size() <= base() || stack_.back()->type != Value::Type::kDict) {
      fail("SETITEM on a non-dict");
    }
    return stack_.back();
  }
  void memo_put(uint64_t index) {
    if (stack_.empty()) fail("PUT on an empty stack");
    if (index >= kMaxMemo) fail("memo index too large");
    if (memo_.size() <= index) memo_.resize(index + 1);
    memo_[index] = stack_.back();
  }
  ValueRef memo_get(uint64_t index) {
    if (index >= memo_.size() || !memo_[index]) fail("GET of an unset memo entry");
    return memo_[index];
  }

  const uint8_t* p_;
  const uint8_t* end_;
  const std::function<ValueRef(const ValueRef&)>& persistent_load_;
  std::vector<ValueRef> stack_;
  std::vector<std::size_t> marks_;
  std::vector<ValueRef> memo_;
};

}  // namespace

ValueRef unpickle(std::span<const std::byte> data,
                  const std::function<ValueRef(const ValueRef&)>& persistent_load) {
  return Machine(data, persistent_load).run();
}

ValueRef torch_storage_from_persistent_id(const ValueRef& pid) {
  // ('storage', torch.<Type>Storage, key, location, numel)
  if (pid->type != Value::Type::kTuple || pid->items.size() != 5 ||
      pid->items[0]->type != Value::Type::kString || pid->items[0]->text != "storage" ||
      pid->items[1]->type != Value::Type::kGlobal || pid->items[2]->type != Value::Type::kString ||
      pid->items[4]->type != Value::Type::kInt) {
    fail("persistent id is not ('storage', type, key, location, numel)");
  }
  auto dtype = storage_dtype(pid->items[1]->text);
  if (!dtype) {
    throw WeightsError(Kind::kUnsupported, "data.pkl: storage type " + pid->items[1]->text);
  }
  auto v = make(Value::Type::kStorage);
  v->tensor.storage_key = pid->items[2]->text;
  v->tensor.dtype = *dtype;
  v->tensor.storage_numel = pid->items[4]->integer;
  return v;
}

}  // namespace celeriac::florence::pickle
