#include "aligndetr/engine/criterion_case.h"

#include <cmath>

#include <simdjson.h>
#include <torch/torch.h>

#include <cstdio>

#include "aligndetr/util/error.h"

namespace aligndetr::engine {
namespace {

namespace dom = simdjson::dom;

// Flattens a nested array of numbers of the given shape ([] = scalar) into out.
void read_numbers(dom::element e, const std::vector<int64_t>& shape, size_t axis,
                  std::vector<float>& out, const std::string& what) {
  if (axis == shape.size()) {
    out.push_back(static_cast<float>(double(e)));
    return;
  }
  const dom::array a = e.get_array();
  if (static_cast<int64_t>(a.size()) != shape[axis]) {
    throw util::InputError(what + ": expected " + std::to_string(shape[axis]) +
                           " entries on axis " + std::to_string(axis) + ", got " +
                           std::to_string(a.size()));
  }
  for (dom::element x : a) read_numbers(x, shape, axis + 1, out, what);
}

torch::Tensor read_tensor(dom::element e, std::vector<int64_t> shape, const std::string& what) {
  std::vector<float> values;
  read_numbers(e, shape, 0, values, what);
  return torch::tensor(values, torch::kFloat32).reshape(shape);
}

double number(dom::element e) {
  return double(e);
}

}  // namespace

CriterionCase read_criterion_case(const std::string& path) {
  CriterionCase c;
  dom::parser parser;
  std::string field = "the document";
  try {
    const dom::element doc = parser.load(path);
    field = "num_classes";
    const int64_t classes = int64_t(doc["num_classes"]);
    field = "alpha/gamma/tau";
    c.options.alpha = number(doc["alpha"]);
    c.options.gamma = number(doc["gamma"]);
    c.options.tau = number(doc["tau"]);
    field = "matcher";
    const dom::element m = doc["matcher"];
    c.options.matcher.cost_class = number(m["cost_class"]);
    c.options.matcher.cost_bbox = number(m["cost_bbox"]);
    c.options.matcher.cost_giou = number(m["cost_giou"]);
    c.options.matcher.focal_alpha = number(m["focal_alpha"]);
    c.options.matcher.focal_gamma = number(m["focal_gamma"]);
    field = "k";
    for (dom::element k : doc["k"].get_array()) c.options.decoder_k.push_back(int64_t(k));

    field = "targets";
    for (dom::element t : doc["targets"].get_array()) {
      std::vector<int64_t> labels;
      for (dom::element l : t["labels"].get_array()) labels.push_back(int64_t(l));
      const auto n = static_cast<int64_t>(labels.size());
      for (int64_t l : labels) {
        if (l < 0 || l >= classes) {
          throw util::InputError(path + ": targets: label " + std::to_string(l) + " outside [0, " +
                                 std::to_string(classes) + ")");
        }
      }
      c.targets.push_back({torch::tensor(labels, torch::kLong),
                           read_tensor(t["boxes"], {n, 4}, path + ": targets boxes")});
    }
    const auto batch = static_cast<int64_t>(c.targets.size());

    field = "layers";
    for (dom::element layer : doc["layers"].get_array()) {
      const dom::array images = layer["logits"].get_array();
      const int64_t queries =
          images.size() > 0 ? dom::array((*images.begin()).get_array()).size() : 0;
      const std::string where = path + ": layer " + std::to_string(c.inputs.decoder.size());
      c.inputs.decoder.push_back(
          {read_tensor(layer["logits"], {batch, queries, classes}, where + " logits"),
           read_tensor(layer["boxes"], {batch, queries, 4}, where + " boxes")});
    }
    if (c.options.decoder_k.size() != c.inputs.decoder.size()) {
      throw util::InputError(path + ": " + std::to_string(c.options.decoder_k.size()) +
                             " k values for " + std::to_string(c.inputs.decoder.size()) +
                             " layers");
    }

    field = "expected";
    dom::element expected;
    if (doc["expected"].get(expected) == simdjson::SUCCESS) {
      for (dom::element layer : expected["layers"].get_array()) {
        std::map<std::string, double> terms;
        for (const char* name : {"loss_class", "loss_bbox", "loss_giou"}) {
          terms[name] = number(layer[name]);
        }
        c.expected.push_back(std::move(terms));
      }
    }
  } catch (const simdjson::simdjson_error& e) {
    throw util::InputError(path + ": " + field + ": " + e.what());
  }
  return c;
}

std::string criterion_case_result_json(const CriterionCase& c) {
  const loss::LossTerms terms = loss::compute_criterion(c.inputs, c.targets, c.options);
  const size_t layers = c.inputs.decoder.size();
  std::string out = "{\"layers\":[";
  for (size_t l = 0; l < layers; ++l) {
    const std::string suffix = l + 1 == layers ? "" : std::string("_").append(std::to_string(l));
    out += l == 0 ? "{" : ",{";
    bool first = true;
    for (const char* name : {"loss_class", "loss_bbox", "loss_giou"}) {
      char buf[64];
      const double value = terms.unweighted.at(name + suffix).item<double>();
      // JSON has no NaN or infinity: such a term is written as null.
      if (std::isfinite(value)) {
        std::snprintf(buf, sizeof buf, "%s\"%s\":%.9g", first ? "" : ",", name, value);
      } else {
        std::snprintf(buf, sizeof buf, "%s\"%s\":null", first ? "" : ",", name);
      }
      out += buf;
      first = false;
    }
    out += "}";
  }
  return out + "]}";
}

}  // namespace aligndetr::engine
