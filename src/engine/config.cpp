#include "aligndetr/engine/config.h"

#include <filesystem>
#include <sstream>

#include <fmt/format.h>
#include <yaml-cpp/yaml.h>

#include "aligndetr/util/error.h"

namespace aligndetr::engine {

namespace fs = std::filesystem;

namespace {

std::vector<std::string> split_key(const std::string& key) {
  std::vector<std::string> parts;
  std::stringstream ss(key);
  std::string part;
  while (std::getline(ss, part, '.')) parts.push_back(part);
  return parts;
}

// Deep copy of `overlay` merged onto `base`: maps merge recursively, other values replace.
YAML::Node merge(const YAML::Node& base, const YAML::Node& overlay) {
  if (!base.IsMap() || !overlay.IsMap()) return YAML::Clone(overlay);
  YAML::Node out = YAML::Clone(base);
  for (const auto& kv : overlay) {
    const auto key = kv.first.as<std::string>();
    out[key] = out[key] ? merge(out[key], kv.second) : YAML::Clone(kv.second);
  }
  return out;
}

// A config is a tree of maps with plain names for keys: a key that is a list or a map, or holds
// the '.' that separates key names, could not be addressed. Nesting and size are bounded, so that
// aliases repeating an anchor cannot make a small file take exponential time.
void check_tree(const YAML::Node& node, const std::string& source, const std::string& where,
                int depth, size_t& nodes) {
  constexpr int kMaxDepth = 64;
  constexpr size_t kMaxNodes = 1'000'000;
  if (depth > kMaxDepth || ++nodes > kMaxNodes) {
    throw util::InputError(
        fmt::format("config '{}': nested too deeply or too large at '{}'", source, where));
  }
  const auto line = [](const YAML::Node& n) { return n.Mark().line + 1; };
  if (node.IsMap()) {
    for (const auto& kv : node) {
      if (!kv.first.IsScalar()) {
        throw util::InputError(
            fmt::format("config '{}': line {}: a key under '{}' is a list or a map, not a name",
                        source, line(kv.first), where));
      }
      const auto& key = kv.first.Scalar();
      if (key.empty() || key.find('.') != std::string::npos) {
        throw util::InputError(fmt::format(
            "config '{}': line {}: key '{}' under '{}' is empty or holds a '.' (write nested keys "
            "as nested maps)",
            source, line(kv.first), key, where));
      }
      check_tree(kv.second, source, where.empty() ? key : where + "." + key, depth + 1, nodes);
    }
  } else if (node.IsSequence()) {
    for (size_t i = 0; i < node.size(); ++i) {
      check_tree(node[i], source, where + "." + std::to_string(i), depth + 1, nodes);
    }
  }
}

// The document of a config file or text: a map (empty when the document is), checked.
YAML::Node checked_root(YAML::Node node, const std::string& source) {
  if (node.IsNull()) return YAML::Node(YAML::NodeType::Map);
  if (!node.IsMap()) throw util::InputError(fmt::format("config '{}' is not a YAML map", source));
  size_t nodes = 0;
  check_tree(node, source, "", 0, nodes);
  return node;
}

YAML::Node load_with_bases(const fs::path& path, std::vector<fs::path>& chain) {
  const fs::path canonical = fs::weakly_canonical(path);
  for (const auto& p : chain) {
    if (p == canonical) {
      throw util::InputError(
          fmt::format("config '{}': `_base_` chain loops back to itself", path.string()));
    }
  }
  if (!fs::exists(path))
    throw util::InputError(fmt::format("config file '{}' not found", path.string()));
  YAML::Node node;
  try {
    node = YAML::LoadFile(path.string());
  } catch (const YAML::Exception& e) {
    throw util::InputError(fmt::format("config '{}': invalid YAML at line {}: {}", path.string(),
                                       e.mark.line + 1, e.msg));
  }
  node = checked_root(node, path.string());
  chain.push_back(canonical);
  YAML::Node merged(YAML::NodeType::Map);
  if (const auto bases = node["_base_"]) {
    std::vector<std::string> names;
    for (const auto& b : bases.IsSequence() ? bases : YAML::Node(std::vector<YAML::Node>{bases})) {
      if (!b.IsScalar()) {
        throw util::InputError(
            fmt::format("config '{}': line {}: `_base_` must be a path or a list of paths",
                        path.string(), b.Mark().line + 1));
      }
      names.push_back(b.Scalar());
    }
    for (const auto& name : names) {
      merged = merge(merged, load_with_bases(path.parent_path() / name, chain));
    }
    node.remove("_base_");
  }
  chain.pop_back();
  return merge(merged, node);
}

// A sequence of maps (e.g. model.init_weights) is walked like a map with keys 0, 1, ...; any other
// sequence is one value.
bool is_map_sequence(const YAML::Node& node) {
  if (!node.IsSequence() || node.size() == 0) return false;
  for (const auto& item : node) {
    if (!item.IsMap()) return false;
  }
  return true;
}

// An index into a sequence: digits only.
// An index into a sequence: up to 9 digits (a longer one is no index any list has).
bool index_of(const std::string& part, size_t* index) {
  if (part.empty() || part.size() > 9 ||
      part.find_first_not_of("0123456789") != std::string::npos) {
    return false;
  }
  *index = std::stoul(part);
  return true;
}

void collect_leaves(const YAML::Node& node, const std::string& prefix,
                    std::vector<std::string>& out) {
  if (is_map_sequence(node)) {
    for (size_t i = 0; i < node.size(); ++i) {
      collect_leaves(node[i], prefix + "." + std::to_string(i), out);
    }
    return;
  }
  if (node.IsMap()) {
    for (const auto& kv : node) {
      const auto key = kv.first.as<std::string>();
      collect_leaves(kv.second, prefix.empty() ? key : prefix + "." + key, out);
    }
  } else {
    out.push_back(prefix);
  }
}

}  // namespace

Config::Config() : root_(std::make_unique<YAML::Node>(YAML::NodeType::Map)) {}
Config::~Config() = default;
Config::Config(const Config& other)
    : root_(std::make_unique<YAML::Node>(YAML::Clone(*other.root_))),
      source_(other.source_),
      used_(other.used_) {}
Config& Config::operator=(const Config& other) {
  if (this != &other) {
    root_ = std::make_unique<YAML::Node>(YAML::Clone(*other.root_));
    source_ = other.source_;
    used_ = other.used_;
  }
  return *this;
}

Config Config::load(const std::string& path) {
  Config c;
  std::vector<fs::path> chain;
  *c.root_ = load_with_bases(path, chain);
  c.source_ = path;
  return c;
}

Config Config::parse(const std::string& yaml_text, const std::string& source) {
  Config c;
  c.source_ = source;
  try {
    *c.root_ = checked_root(YAML::Load(yaml_text), source);
  } catch (const YAML::Exception& e) {
    throw util::InputError(
        fmt::format("config '{}': invalid YAML at line {}: {}", source, e.mark.line + 1, e.msg));
  }
  return c;
}

void Config::set(const std::string& assignment) {
  const auto eq = assignment.find('=');
  if (eq == std::string::npos || eq == 0) {
    throw util::InputError(fmt::format("override '{}' is not of the form key=value", assignment));
  }
  const std::string key = assignment.substr(0, eq);
  const std::string text = assignment.substr(eq + 1);
  if (!has(key)) {
    throw util::InputError(fmt::format("unknown config key '{}' in override '{}' (config '{}')",
                                       key, assignment, source_));
  }
  YAML::Node value;
  try {
    value = YAML::Load(text);
  } catch (const YAML::Exception& e) {
    throw util::InputError(fmt::format("override '{}': invalid value: {}", assignment, e.msg));
  }
  size_t nodes = 0;
  check_tree(value, "override " + assignment, key, 0, nodes);
  const auto parts = split_key(key);
  // yaml-cpp nodes are handles: walking with operator[] on a copy of the root edits the tree. A
  // list element is reached by its number (a string subscript would turn the list into a map).
  YAML::Node node = *root_;
  for (size_t i = 0; i < parts.size(); ++i) {
    size_t index = 0;
    const bool element = node.IsSequence() && index_of(parts[i], &index);
    if (i + 1 == parts.size()) {
      if (element) {
        node[index] = value;
      } else {
        node[parts[i]] = value;
      }
      return;
    }
    YAML::Node child = element ? node[index] : node[parts[i]];
    node.reset(child);
  }
}

YAML::Node Config::lookup(const std::string& key) const {
  const YAML::Node& root = *root_;
  YAML::Node node = root;
  for (const auto& part : split_key(key)) {
    const YAML::Node& current = node;  // const access never inserts
    size_t index = 0;
    if (current.IsSequence() && index_of(part, &index) && index < current.size()) {
      node.reset(current[index]);
      continue;
    }
    if (!current.IsMap() || !current[part]) return YAML::Node(YAML::NodeType::Undefined);
    node.reset(current[part]);
  }
  return node;
}

void Config::remove(const std::string& key) {
  const auto parts = split_key(key);
  const std::string parent_key = key.substr(0, key.size() - parts.back().size());
  YAML::Node parent =
      parent_key.empty() ? *root_ : lookup(parent_key.substr(0, parent_key.size() - 1));
  if (parent.IsMap()) parent.remove(parts.back());
}

size_t Config::list_size(const std::string& key) const {
  const YAML::Node node = lookup(key);
  if (!node.IsDefined()) return 0;
  used_.insert(key);
  if (node.IsNull()) return 0;  // `init_weights:` with nothing: an empty list
  if (!node.IsSequence()) {
    throw util::InputError(fmt::format("config '{}': key '{}' must be a list", source_, key));
  }
  return node.size();
}

void Config::assign(const std::string& key, const std::string& value) {
  YAML::Node node = *root_;
  const auto parts = split_key(key);
  for (size_t i = 0; i < parts.size(); ++i) {
    const bool last = i + 1 == parts.size();
    size_t index = 0;
    if (node.IsSequence() && index_of(parts[i], &index)) {
      if (index > node.size()) {
        throw std::logic_error("Config::assign: index past the end of " + key);
      }
      if (index == node.size()) node.push_back(YAML::Node(YAML::NodeType::Map));
      YAML::Node child = node[index];
      if (last) {
        node[index] = value;
        return;
      }
      node.reset(child);
      continue;
    }
    if (!node.IsMap() && !node.IsNull()) {
      throw util::InputError(
          fmt::format("config '{}': cannot set '{}': '{}' is not a map", source_, key, parts[i]));
    }
    if (last) {
      node[parts[i]] = value;
      return;
    }
    YAML::Node child = node[parts[i]];
    if (!child.IsDefined() || child.IsNull()) {
      const bool next_is_index = index_of(parts[i + 1], &index);
      node[parts[i]] = YAML::Node(next_is_index ? YAML::NodeType::Sequence : YAML::NodeType::Map);
      child = node[parts[i]];
    }
    node.reset(child);
  }
}

YAML::Node Config::require(const std::string& key) const {
  YAML::Node node = lookup(key);
  if (!node.IsDefined())
    throw util::InputError(fmt::format("config '{}': missing key '{}'", source_, key));
  used_.insert(key);
  return node;
}

bool Config::has(const std::string& key) const {
  return lookup(key).IsDefined();
}

namespace {
template <typename T>
T convert(const YAML::Node& node, const std::string& key, const std::string& source,
          const char* type) {
  try {
    return node.as<T>();
  } catch (const YAML::Exception&) {
    std::stringstream ss;
    ss << node;
    throw util::InputError(
        fmt::format("config '{}': key '{}' must be {}, got '{}'", source, key, type, ss.str()));
  }
}
}  // namespace

double Config::get_double(const std::string& key) const {
  return convert<double>(require(key), key, source_, "a number");
}
int64_t Config::get_int(const std::string& key) const {
  return convert<int64_t>(require(key), key, source_, "an integer");
}
bool Config::get_bool(const std::string& key) const {
  return convert<bool>(require(key), key, source_, "true or false");
}
std::string Config::get_string(const std::string& key) const {
  return convert<std::string>(require(key), key, source_, "a string");
}
std::vector<int64_t> Config::get_int_list(const std::string& key) const {
  return convert<std::vector<int64_t>>(require(key), key, source_, "a list of integers");
}
std::vector<double> Config::get_double_list(const std::string& key) const {
  return convert<std::vector<double>>(require(key), key, source_, "a list of numbers");
}

double Config::get_double(const std::string& key, double fallback) const {
  return has(key) ? get_double(key) : fallback;
}
int64_t Config::get_int(const std::string& key, int64_t fallback) const {
  return has(key) ? get_int(key) : fallback;
}
bool Config::get_bool(const std::string& key, bool fallback) const {
  return has(key) ? get_bool(key) : fallback;
}
std::string Config::get_string(const std::string& key, const std::string& fallback) const {
  return has(key) ? get_string(key) : fallback;
}

std::vector<std::string> Config::unused_keys(const std::string& prefix) const {
  std::vector<std::string> leaves, unused;
  collect_leaves(*root_, "", leaves);
  for (const auto& leaf : leaves) {
    if (!prefix.empty() && leaf.rfind(prefix + ".", 0) != 0 && leaf != prefix) continue;
    if (!used_.count(leaf)) unused.push_back(leaf);
  }
  return unused;
}

void Config::require_all_used(const std::string& prefix) const {
  const auto unused = unused_keys(prefix);
  if (unused.empty()) return;
  throw util::InputError(
      fmt::format("config '{}': unknown key(s) {}", source_, fmt::join(unused, ", ")));
}

std::map<std::string, std::string> Config::leaf_values() const {
  std::vector<std::string> leaves;
  collect_leaves(*root_, "", leaves);
  std::map<std::string, std::string> out;
  for (const auto& leaf : leaves) {
    YAML::Emitter text;
    text << YAML::Flow << lookup(leaf);
    out[leaf] = text.c_str();
  }
  return out;
}

std::string Config::dump() const {
  YAML::Emitter out;
  out << *root_;
  return std::string(out.c_str()) + "\n";
}

}  // namespace aligndetr::engine
