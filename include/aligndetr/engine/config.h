#pragma once
// YAML configs: a file may name `_base_` (a path relative to it, or a list of them) whose
// contents it extends; maps merge key by key, anything else is replaced. Overrides
// (`--set solver.lr=2e-4`) may only change keys that exist, so a typo is an error, not a silent
// no-op. Typed getters name the file and the key when something is missing or of the wrong type.

#include <cstdint>
#include <map>
#include <memory>
#include <set>
#include <string>
#include <vector>

namespace YAML {
class Node;
}

namespace aligndetr::engine {

class Config {
 public:
  Config();
  ~Config();
  Config(const Config&);
  Config& operator=(const Config&);

  // Loads a file and its bases. Throws InputError (missing file, bad YAML, base cycle).
  static Config load(const std::string& path);
  static Config parse(const std::string& yaml_text, const std::string& source = "<string>");

  // "a.b.c=value"; value is parsed as YAML (numbers, booleans, lists like [1, 2]).
  void set(const std::string& assignment);

  bool has(const std::string& key) const;
  double get_double(const std::string& key) const;
  int64_t get_int(const std::string& key) const;
  bool get_bool(const std::string& key) const;
  std::string get_string(const std::string& key) const;
  std::vector<int64_t> get_int_list(const std::string& key) const;
  std::vector<double> get_double_list(const std::string& key) const;

  // Getters with a default for keys that may be absent.
  double get_double(const std::string& key, double fallback) const;
  int64_t get_int(const std::string& key, int64_t fallback) const;
  bool get_bool(const std::string& key, bool fallback) const;
  std::string get_string(const std::string& key, const std::string& fallback) const;

  // Lists of maps are addressed by index: "model.init_weights.0.file".
  // Elements of the list at `key`: 0 when absent; InputError when it is not a list.
  size_t list_size(const std::string& key) const;
  // Sets a string value, creating the keys (and a list element at index == size) on the way.
  // For records the engine adds to a resolved config (e.g. the sha256 of an initial weights file),
  // not for user overrides, which must name existing keys (set).
  void assign(const std::string& key, const std::string& value);
  // Removes a key of a map (nothing when absent).
  void remove(const std::string& key);

  // Leaf keys under `prefix` ("" for all) that no getter has read: left-over typos.
  std::vector<std::string> unused_keys(const std::string& prefix = "") const;
  // Throws InputError listing unused keys under prefix.
  void require_all_used(const std::string& prefix = "") const;

  // Every leaf key with its value as YAML text (lists in flow style: "[1, 2]").
  std::map<std::string, std::string> leaf_values() const;

  // The resolved config as YAML text (saved next to every run).
  std::string dump() const;
  const std::string& source() const { return source_; }

 private:
  // The node at a dotted key; a null node when absent.
  YAML::Node lookup(const std::string& key) const;
  YAML::Node require(const std::string& key) const;

  std::unique_ptr<YAML::Node> root_;
  std::string source_;
  mutable std::set<std::string> used_;
};

}  // namespace aligndetr::engine
