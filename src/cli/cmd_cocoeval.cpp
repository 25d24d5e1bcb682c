// `aligndetr cocoeval`: COCO bbox AP of a results file, as pycocotools computes it.

#include <chrono>
#include <cstdio>
#include <exception>
#include <future>
#include <memory>
#include <string>

#include "aligndetr/coco/annotations.h"
#include "aligndetr/coco/results.h"
#include "aligndetr/eval/coco_eval.h"
#include "command.h"

namespace aligndetr::cli {
namespace {

double seconds_since(std::chrono::steady_clock::time_point start) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
}

void setup_cocoeval(CLI::App& app) {
  struct Args {
    std::string gt, dt;
    bool json = false, per_class = false, timing = false;
  };
  auto args = std::make_shared<Args>();
  auto* cmd = app.add_subcommand(
      "cocoeval",
      "COCO bbox evaluation of a results file: pycocotools' COCOeval numbers, exactly. Runs on "
      "the cores the global --threads option gives (default all)");
  cmd->add_option("--gt", args->gt, "COCO instances JSON (ground truth)")->required();
  cmd->add_option("--dt", args->dt, "COCO results JSON (detections)")->required();
  cmd->add_flag("--json", args->json, "Print the 12 numbers as one JSON object");
  cmd->add_flag("--per-class", args->per_class, "Also print each category's AP");
  cmd->add_flag("--timing", args->timing, "Print the time of each stage to stderr");
  CLI::App* root = &app;
  cmd->callback([args, root] {
    eval::CocoEvalOptions options;
    options.threads = root->get_option("--threads")->as<int>();
    options.detections_source = args->dt;

    const auto start = std::chrono::steady_clock::now();
    // The two files are independent: read them side by side unless told to use one thread.
    auto gt_future = std::async(options.threads == 1 ? std::launch::deferred : std::launch::async,
                                [&] { return coco::read_coco(args->gt); });
    std::vector<coco::Detection> dts;
    std::exception_ptr dt_error;
    try {
      dts = coco::read_coco_results(args->dt, options.threads);
    } catch (...) {
      dt_error = std::current_exception();
    }
    // A problem with the ground truth is reported first, as if the files were read in turn.
    const coco::CocoDataset gt = gt_future.get();
    if (dt_error) std::rethrow_exception(dt_error);
    const double t_load = seconds_since(start);

    eval::CocoEvaluator evaluator(gt, options);
    evaluator.evaluate(dts);
    const double t_eval = seconds_since(start);
    const eval::CocoEvalResult result = evaluator.accumulate();
    const double t_acc = seconds_since(start);

    if (args->json) {
      std::printf("%s\n", result.stats_json().c_str());
    } else {
      std::fputs(result.summary().c_str(), stdout);
    }
    if (args->per_class) std::printf("\n%s", result.per_category_table().c_str());
    if (args->timing) {
      std::fprintf(stderr,
                   "load %.3f s (%zu GT boxes, %zu detections), evaluate %.3f s, accumulate and "
                   "summarize %.3f s, total %.3f s\n",
                   t_load, gt.annotations.size(), dts.size(), t_eval - t_load, t_acc - t_eval,
                   t_acc);
    }
  });
}

const CommandRegistrar cocoeval_registrar(40, setup_cocoeval);

}  // namespace
}  // namespace aligndetr::cli
