#pragma once
// Reads the tensors of a file written by Python's torch.save (zip format, pickle protocols 2-5)
// or by LibTorch's pickle_save. LibTorch's own unpickler turns a collections.OrderedDict, the
// type of every PyTorch state_dict, into None, so state_dicts need this reader.
//
// It understands the subset of pickle that such files use: plain containers, numbers, strings,
// OrderedDict (read as a dict, its `_metadata` attribute dropped), tensors rebuilt by
// torch._utils._rebuild_tensor_v2 / _rebuild_parameter from typed storages, and LibTorch's
// type tags. Any other Python object (in a training checkpoint's optimizer or trainer entries, say)
// is kept as an opaque kObject, so the tensors beside it still load.

#include <memory>
#include <string>
#include <utility>
#include <vector>

#include <torch/types.h>

namespace aligndetr::model::detail {

// A value of the unpickled object tree, reduced to what tensor checkpoints hold.
struct PickleValue {
  enum class Kind {
    kNone,
    kBool,
    kInt,
    kFloat,
    kString,
    kTuple,
    kList,
    kDict,
    kTensor,
    kGlobal,
    kObject  // any other Python object, kept opaque: text names its class or constructor
  };
  Kind kind = Kind::kNone;
  int64_t integer = 0;
  double real = 0;
  std::string text;                                 // kString; kGlobal: "module.name"
  std::vector<std::shared_ptr<PickleValue>> items;  // kTuple, kList
  std::vector<std::pair<std::shared_ptr<PickleValue>, std::shared_ptr<PickleValue>>> entries;
  torch::Tensor tensor;  // kTensor
};
using PickleValuePtr = std::shared_ptr<PickleValue>;

PickleValuePtr read_torch_file(const std::string& path);

}  // namespace aligndetr::model::detail
