#include "torch_pickle.h"

#include <algorithm>
#include <array>
#include <cerrno>
#include <cstdint>
#include <cstring>
#include <fstream>
#include <map>
#include <sstream>

#include <caffe2/serialize/inline_container.h>

#include "aligndetr/util/error.h"

namespace aligndetr::model::detail {
namespace {

using Kind = PickleValue::Kind;

PickleValuePtr make(Kind kind) {
  auto v = std::make_shared<PickleValue>();
  v->kind = kind;
  return v;
}

torch::ScalarType storage_dtype(const std::string& global, const std::string& path) {
  static const std::map<std::string, torch::ScalarType> types = {
      {"torch.FloatStorage", torch::kFloat},
      {"torch.DoubleStorage", torch::kDouble},
      {"torch.HalfStorage", torch::kHalf},
      {"torch.BFloat16Storage", torch::kBFloat16},
      {"torch.LongStorage", torch::kLong},
      {"torch.IntStorage", torch::kInt},
      {"torch.ShortStorage", torch::kShort},
      {"torch.CharStorage", torch::kChar},
      {"torch.ByteStorage", torch::kByte},
      {"torch.BoolStorage", torch::kBool},
      {"torch.ComplexFloatStorage", torch::kComplexFloat},
      {"torch.ComplexDoubleStorage", torch::kComplexDouble}};
  const auto it = types.find(global);
  if (it == types.end())
    throw util::InputError("'" + path + "': unsupported storage type " + global);
  return it->second;
}

uint32_t crc32(const char* bytes, size_t n) {
  static const auto table = [] {
    std::array<uint32_t, 256> t{};
    for (uint32_t i = 0; i < 256; ++i) {
      uint32_t c = i;
      for (int k = 0; k < 8; ++k) c = (c & 1) ? 0xEDB88320u ^ (c >> 1) : c >> 1;
      t[i] = c;
    }
    return t;
  }();
  uint32_t c = 0xFFFFFFFFu;
  for (size_t i = 0; i < n; ++i) c = table[(c ^ uint8_t(bytes[i])) & 0xFFu] ^ (c >> 8);
  return c ^ 0xFFFFFFFFu;
}

uint64_t little_endian(const std::string& b, size_t at, int bytes) {
  uint64_t v = 0;
  for (int i = bytes - 1; i >= 0; --i) v = (v << 8) | uint8_t(b.at(at + size_t(i)));
  return v;
}

// The CRC-32 that the zip central directory records for each entry, by its name below the
// archive's top folder ("data.pkl", "data/0"). Throws CorruptInput when there is no directory
// to read (a truncated file).
std::map<std::string, uint32_t> zip_crcs(const std::string& path) {
  const auto fail = [&](const std::string& why) {
    throw util::CorruptInput("'" + path + "' is truncated or damaged: " + why);
  };
  std::ifstream in(path, std::ios::binary | std::ios::ate);
  const int64_t size = in.tellg();
  const int64_t tail_size = std::min<int64_t>(size, 22 + 65535);
  std::string tail(size_t(std::max<int64_t>(tail_size, 0)), '\0');
  in.seekg(size - tail_size);
  in.read(tail.data(), tail_size);
  const size_t eocd = tail.rfind(std::string("PK\x05\x06", 4));
  if (eocd == std::string::npos || eocd + 22 > tail.size()) fail("no zip directory at its end");
  uint64_t entries = little_endian(tail, eocd + 10, 2);
  uint64_t cd_size = little_endian(tail, eocd + 12, 4);
  uint64_t cd_offset = little_endian(tail, eocd + 16, 4);
  if (cd_offset == 0xFFFFFFFFu || entries == 0xFFFFu) {
    // Zip64: the locator just before the end record points at the 64-bit end record.
    if (eocd < 20 || tail.compare(eocd - 20, 4, std::string("PK\x06\x07", 4)) != 0) {
      fail("a zip64 directory without its locator");
    }
    std::string end64(56, '\0');
    in.seekg(int64_t(little_endian(tail, eocd - 20 + 8, 8)));
    in.read(end64.data(), 56);
    if (!in || end64.compare(0, 4, std::string("PK\x06\x06", 4)) != 0) {
      fail("the zip64 directory record is missing");
    }
    entries = little_endian(end64, 32, 8);
    cd_size = little_endian(end64, 40, 8);
    cd_offset = little_endian(end64, 48, 8);
  }
  if (cd_offset + cd_size > uint64_t(size)) fail("its zip directory lies past the end of the file");
  std::string cd(cd_size, '\0');
  in.seekg(int64_t(cd_offset));
  in.read(cd.data(), int64_t(cd_size));
  if (!in) fail("its zip directory cannot be read");
  std::map<std::string, uint32_t> crcs;
  size_t at = 0;
  for (uint64_t e = 0; e < entries; ++e) {
    if (at + 46 > cd.size() || cd.compare(at, 4, std::string("PK\x01\x02", 4)) != 0) {
      fail("a damaged zip directory entry");
    }
    const auto name_len = size_t(little_endian(cd, at + 28, 2));
    const auto extra_len = size_t(little_endian(cd, at + 30, 2));
    const auto comment_len = size_t(little_endian(cd, at + 32, 2));
    if (at + 46 + name_len > cd.size()) fail("a damaged zip directory entry");
    std::string name = cd.substr(at + 46, name_len);
    const size_t slash = name.find('/');
    if (slash != std::string::npos) name = name.substr(slash + 1);
    crcs[name] = uint32_t(little_endian(cd, at + 16, 4));
    at += 46 + name_len + extra_len + comment_len;
  }
  return crcs;
}

// What a file that PyTorchStreamReader refuses is, by its first bytes.
std::string unreadable_archive(const std::string& path, const std::string& why) {
  std::ifstream in(path, std::ios::binary);
  char magic[2] = {0, 0};
  in.read(magic, 2);
  if (magic[0] == 'P' && magic[1] == 'K') {
    throw util::CorruptInput("'" + path + "' is a truncated or damaged torch.save archive (" + why +
                             ")");
  }
  if (uint8_t(magic[0]) == 0x80) {
    return "'" + path +
           "' is a legacy torch.save file (_use_new_zipfile_serialization=False), "
           "which is not supported: save it again with a current torch.save";
  }
  return "'" + path + "' is not a torch.save file (" + why + ")";
}

class Reader {
 public:
  explicit Reader(const std::string& path) : path_(path) {
    if (!std::ifstream(path, std::ios::binary)) {
      throw util::InputError("cannot open '" + path + "': " + std::strerror(errno));
    }
    try {
      // Reads records straight from the file: a checkpoint is never held in memory twice.
      archive_ = std::make_unique<caffe2::serialize::PyTorchStreamReader>(path);
    } catch (const c10::Error& e) {
      throw util::InputError(unreadable_archive(path, e.what_without_backtrace()));
    }
    crcs_ = zip_crcs(path);
    if (archive_->hasRecord("byteorder")) {
      auto [data, size] = archive_->getRecord("byteorder");
      if (std::string(static_cast<const char*>(data.get()), size) != "little") {
        throw util::InputError("'" + path + "': big-endian tensor data is not supported");
      }
    }
    auto [data, size] = archive_->getRecord("data.pkl");
    verify("data.pkl", static_cast<const char*>(data.get()), size);
    pickle_.assign(static_cast<const char*>(data.get()), size);
  }

  PickleValuePtr run() {
    while (true) {
      need(1);
      const auto op = static_cast<unsigned char>(pickle_[pos_++]);
      if (op == '.') break;  // STOP
      step(op);
    }
    if (stack_.size() != 1) fail("unbalanced pickle stack");
    return stack_.back();
  }

 private:
  [[noreturn]] void fail(const std::string& what) const {
    throw util::InputError("'" + path_ + "': " + what + " (at byte " + std::to_string(pos_) +
                           " of data.pkl)");
  }
  void need(size_t n) const {
    if (pos_ + n > pickle_.size()) fail("truncated pickle data");
  }
  uint64_t read_uint(size_t n) {
    need(n);
    uint64_t v = 0;
    for (size_t i = 0; i < n; ++i) {
      v |= uint64_t(static_cast<unsigned char>(pickle_[pos_ + i])) << (8 * i);
    }
    pos_ += n;
    return v;
  }
  std::string read_bytes(size_t n) {
    need(n);
    std::string s = pickle_.substr(pos_, n);
    pos_ += n;
    return s;
  }
  std::string read_line() {
    const size_t nl = pickle_.find('\n', pos_);
    if (nl == std::string::npos) fail("truncated pickle data");
    std::string s = pickle_.substr(pos_, nl - pos_);
    pos_ = nl + 1;
    return s;
  }
  PickleValuePtr pop() {
    if (stack_.empty() || (!marks_.empty() && stack_.size() <= marks_.back())) {
      fail("pickle stack underflow");
    }
    PickleValuePtr v = stack_.back();
    stack_.pop_back();
    return v;
  }
  std::vector<PickleValuePtr> pop_to_mark() {
    if (marks_.empty()) fail("pickle MARK missing");
    const size_t start = marks_.back();
    marks_.pop_back();
    std::vector<PickleValuePtr> items(stack_.begin() + static_cast<std::ptrdiff_t>(start),
                                      stack_.end());
    stack_.resize(start);
    return items;
  }
  void push_int(int64_t v) {
    auto p = make(Kind::kInt);
    p->integer = v;
    stack_.push_back(p);
  }
  void push_string(std::string s) {
    auto p = make(Kind::kString);
    p->text = std::move(s);
    stack_.push_back(p);
  }
  void push_tuple(std::vector<PickleValuePtr> items) {
    auto p = make(Kind::kTuple);
    p->items = std::move(items);
    stack_.push_back(p);
  }
  void push_global(std::string name) {
    auto p = make(Kind::kGlobal);
    p->text = std::move(name);
    stack_.push_back(p);
  }
  PickleValuePtr& top() {
    if (stack_.empty()) fail("pickle stack underflow");
    return stack_.back();
  }
  void memo_put(size_t slot) { memo_[slot] = top(); }
  void memo_get(size_t slot) {
    const auto it = memo_.find(slot);
    if (it == memo_.end()) fail("pickle memo slot " + std::to_string(slot) + " unset");
    stack_.push_back(it->second);
  }
  void set_items(const PickleValuePtr& dict, const std::vector<PickleValuePtr>& kv) {
    if (dict->kind != Kind::kDict || kv.size() % 2 != 0) fail("bad SETITEMS");
    for (size_t i = 0; i < kv.size(); i += 2) dict->entries.emplace_back(kv[i], kv[i + 1]);
  }
  void append_items(const PickleValuePtr& list, const std::vector<PickleValuePtr>& items) {
    if (list->kind != Kind::kList) fail("bad APPENDS");
    list->items.insert(list->items.end(), items.begin(), items.end());
  }

  std::vector<int64_t> int_tuple(const PickleValuePtr& v) {
    if (v->kind != Kind::kTuple) fail("expected a tuple of ints");
    std::vector<int64_t> out;
    for (const auto& item : v->items) {
      if (item->kind != Kind::kInt) fail("expected a tuple of ints");
      out.push_back(item->integer);
    }
    return out;
  }

  // BINPERSID: ('storage', storage class, key, location, numel) -> a flat tensor of the data.
  PickleValuePtr load_storage(const PickleValuePtr& pid) {
    if (pid->kind != Kind::kTuple || pid->items.size() < 5 ||
        pid->items[0]->kind != Kind::kString || pid->items[0]->text != "storage" ||
        pid->items[1]->kind != Kind::kGlobal || pid->items[2]->kind != Kind::kString ||
        pid->items[4]->kind != Kind::kInt) {
      fail("unsupported persistent id");
    }
    const std::string& key = pid->items[2]->text;
    auto cached = storages_.find(key);
    if (cached == storages_.end()) {
      const torch::ScalarType dtype = storage_dtype(pid->items[1]->text, path_);
      const int64_t numel = pid->items[4]->integer;
      torch::Tensor storage = torch::empty({numel}, torch::TensorOptions().dtype(dtype));
      const size_t bytes = static_cast<size_t>(numel) * storage.element_size();
      if (bytes > 0) {
        auto [data, size] = archive_->getRecord("data/" + key);
        verify("data/" + key, static_cast<const char*>(data.get()), size);
        if (size < bytes) fail("tensor data record data/" + key + " is too short");
        std::memcpy(storage.data_ptr(), data.get(), bytes);
      }
      cached = storages_.emplace(key, storage).first;
    }
    auto v = make(Kind::kTensor);
    v->tensor = cached->second;
    return v;
  }

  PickleValuePtr call(const PickleValuePtr& callable, const PickleValuePtr& args) {
    if (callable->kind == Kind::kObject) return callable;
    if (callable->kind != Kind::kGlobal || args->kind != Kind::kTuple) fail("bad REDUCE");
    const std::string& name = callable->text;
    const auto& a = args->items;
    if (name == "collections.OrderedDict" || name == "builtins.dict") {
      auto d = make(Kind::kDict);
      if (!a.empty() && a[0]->kind == Kind::kList) {
        for (const auto& pair : a[0]->items) {
          if (pair->kind != Kind::kTuple || pair->items.size() != 2) fail("bad dict items");
          d->entries.emplace_back(pair->items[0], pair->items[1]);
        }
      }
      return d;
    }
    if (name == "torch._utils._rebuild_tensor_v2" || name == "torch._utils._rebuild_tensor") {
      if (a.size() < 4 || a[0]->kind != Kind::kTensor || a[1]->kind != Kind::kInt) {
        fail("bad arguments to " + name);
      }
      auto v = make(Kind::kTensor);
      v->tensor = a[0]->tensor.as_strided(int_tuple(a[2]), int_tuple(a[3]), a[1]->integer);
      return v;
    }
    if (name == "torch._utils._rebuild_parameter" ||
        name == "torch._utils._rebuild_parameter_with_state" ||
        name == "torch.jit._pickle.restore_type_tag" || name == "torch.jit._pickle.build_intlist" ||
        name == "torch.jit._pickle.build_tensorlist" ||
        name == "torch.jit._pickle.build_doublelist" ||
        name == "torch.jit._pickle.build_boollist") {
      if (a.empty()) fail("bad arguments to " + name);
      return a[0];
    }
    auto object = make(Kind::kObject);
    object->text = name;
    return object;
  }

  void step(unsigned char op) {
    switch (op) {
      case 0x80:
        read_uint(1);
        break;  // PROTO
      case 0x95:
        read_uint(8);
        break;  // FRAME: a framing hint only
      case '(':
        marks_.push_back(stack_.size());
        break;
      case 'N':
        stack_.push_back(make(Kind::kNone));
        break;
      case 0x88:
      case 0x89: {
        auto v = make(Kind::kBool);
        v->integer = op == 0x88;
        stack_.push_back(v);
        break;
      }
      case 'K':
        push_int(static_cast<int64_t>(read_uint(1)));
        break;
      case 'M':
        push_int(static_cast<int64_t>(read_uint(2)));
        break;
      case 'J':
        push_int(static_cast<int32_t>(read_uint(4)));
        break;
      case 0x8a: {  // LONG1: little-endian two's complement of n bytes
        const size_t n = read_uint(1);
        if (n > 8) fail("integer too large");
        uint64_t v = read_uint(n);
        if (n > 0 && n < 8 && (v >> (8 * n - 1)) & 1) v |= ~uint64_t{0} << (8 * n);
        push_int(static_cast<int64_t>(v));
        break;
      }
      case 'G': {  // BINFLOAT: big-endian double
        need(8);
        uint64_t bits = 0;
        for (int i = 0; i < 8; ++i)
          bits = (bits << 8) | static_cast<unsigned char>(pickle_[pos_++]);
        auto v = make(Kind::kFloat);
        std::memcpy(&v->real, &bits, 8);
        stack_.push_back(v);
        break;
      }
      case 'X':
      case 'T':
      case 'B':
        push_string(read_bytes(read_uint(4)));
        break;
      case 0x8c:
      case 'U':
      case 'C':
        push_string(read_bytes(read_uint(1)));
        break;
      case 0x8d:
      case 0x8e:
        push_string(read_bytes(read_uint(8)));
        break;
      case ')':
        push_tuple({});
        break;
      case 't':
        push_tuple(pop_to_mark());
        break;
      case 0x85:
      case 0x86:
      case 0x87: {
        std::vector<PickleValuePtr> items(op - 0x84);
        for (auto it = items.rbegin(); it != items.rend(); ++it) *it = pop();
        push_tuple(std::move(items));
        break;
      }
      case ']':
        stack_.push_back(make(Kind::kList));
        break;
      case 'l': {
        auto list = make(Kind::kList);
        list->items = pop_to_mark();
        stack_.push_back(list);
        break;
      }
      case 'a': {
        auto item = pop();
        append_items(top(), {item});
        break;
      }
      case 'e': {
        auto items = pop_to_mark();
        append_items(top(), items);
        break;
      }
      case '}':
        stack_.push_back(make(Kind::kDict));
        break;
      case 'd': {
        auto dict = make(Kind::kDict);
        set_items(dict, pop_to_mark());
        stack_.push_back(dict);
        break;
      }
      case 's': {
        auto value = pop();
        auto key = pop();
        set_items(top(), {key, value});
        break;
      }
      case 'u': {
        auto kv = pop_to_mark();
        set_items(top(), kv);
        break;
      }
      case 'q':
        memo_put(read_uint(1));
        break;
      case 'r':
        memo_put(read_uint(4));
        break;
      case 0x94:
        memo_put(memo_.size());
        break;  // MEMOIZE
      case 'h':
        memo_get(read_uint(1));
        break;
      case 'j':
        memo_get(read_uint(4));
        break;
      case 'c': {  // GLOBAL module\nname\n
        std::string module = read_line();
        push_global(module + "." + read_line());
        break;
      }
      case 0x93: {  // STACK_GLOBAL
        auto name = pop();
        auto module = pop();
        if (name->kind != Kind::kString || module->kind != Kind::kString) fail("bad STACK_GLOBAL");
        push_global(module->text + "." + name->text);
        break;
      }
      case 0x92: {  // NEWOBJ_EX: keyword arguments are not needed for opaque objects
        pop();
        auto args = pop();
        auto callable = pop();
        stack_.push_back(call(callable, args));
        break;
      }
      case 'R':
      case 0x81: {  // REDUCE, NEWOBJ
        auto args = pop();
        auto callable = pop();
        stack_.push_back(call(callable, args));
        break;
      }
      case 'b': {  // BUILD: object attributes, e.g. an OrderedDict's _metadata; not needed
        pop();
        const Kind kind = top()->kind;
        if (kind != Kind::kDict && kind != Kind::kObject) fail("BUILD on a plain value");
        break;
      }
      case 'Q': {  // BINPERSID
        auto pid = pop();
        stack_.push_back(load_storage(pid));
        break;
      }
      case '0':
        pop();
        break;
      case '2':
        stack_.push_back(top());
        break;
      default: {
        std::ostringstream msg;
        msg << "unsupported pickle opcode 0x" << std::hex << int(op);
        fail(msg.str());
      }
    }
  }

  // Each record against the CRC-32 the archive recorded when it was written: a flipped bit in a
  // checkpoint would otherwise load as valid, wrong weights.
  void verify(const std::string& record, const char* bytes, size_t size) const {
    const auto it = crcs_.find(record);
    if (it == crcs_.end()) return;
    if (crc32(bytes, size) != it->second) {
      throw util::CorruptInput("'" + path_ + "' is damaged: record '" + record +
                               "' does not match its CRC-32 (the file changed after it was "
                               "written)");
    }
  }

  std::string path_;
  std::map<std::string, uint32_t> crcs_;
  std::unique_ptr<caffe2::serialize::PyTorchStreamReader> archive_;
  std::string pickle_;
  size_t pos_ = 0;
  std::vector<PickleValuePtr> stack_;
  std::vector<size_t> marks_;
  std::map<size_t, PickleValuePtr> memo_;
  std::map<std::string, torch::Tensor> storages_;
};

}  // namespace

PickleValuePtr read_torch_file(const std::string& path) {
  try {
    return Reader(path).run();
  } catch (const c10::Error& e) {
    // The archive opened, so a failure reading it is damage, not a wrong kind of file.
    throw util::CorruptInput("'" + path + "': " + e.what_without_backtrace());
  }
}

}  // namespace aligndetr::model::detail
