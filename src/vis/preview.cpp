#include "aligndetr/vis/preview.h"

#include <filesystem>

#include "aligndetr/util/progress.h"
#include "aligndetr/vis/draw.h"

namespace aligndetr::vis {

int render_preview(const data::CocoDetection& dataset, const PreviewOptions& options) {
  namespace fs = std::filesystem;
  fs::create_directories(options.out_dir);
  std::vector<std::string> names;
  for (int c = 0; c < dataset.categories().num_classes(); ++c) {
    names.push_back(dataset.categories().name(c));
  }
  const int count = std::min<int>(options.limit, static_cast<int>(dataset.size()));
  util::ProgressBar progress(count, "rendering", "img");
  for (int i = 0; i < count; ++i) {
    const size_t index = static_cast<size_t>(i);
    data::Annotated sample =
        options.augment ? dataset.get_annotated(index, options.seed, 0) : dataset.load(index);
    std::vector<DrawnBox> drawn;
    for (size_t b = 0; b < sample.boxes.size(); ++b) {
      drawn.push_back({sample.boxes[b], static_cast<int>(sample.labels[b])});
    }
    draw_boxes(sample.image, drawn, names);
    const fs::path source(dataset.image_info(index).file_name);
    write_image_rgb((fs::path(options.out_dir) / source.stem()).string() + ".png", sample.image);
    progress.advance();
  }
  progress.finish();
  return count;
}

}  // namespace aligndetr::vis
