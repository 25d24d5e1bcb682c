#pragma once
// The built-in dataset: a COCO-format detection problem drawn from scratch, so the demo and the
// tests need no third-party images. Eight shape classes from small to large, random colours,
// textured noisy backgrounds with clutter, several objects per image and partial occlusion.
// Boxes and areas are those of the visible pixels, as COCO's are. Deterministic for a seed.

#include <cstdint>
#include <string>
#include <vector>

namespace aligndetr::data {

struct SynthOptions {
  std::string out_dir;
  int train_images = 800;
  int val_images = 200;
  int size = 320;  // longer image side in pixels
  uint64_t seed = 0;
  int min_objects = 3;
  int max_objects = 8;
  // Smallest object diameter in pixels; sizes are log-uniform from it to 60% of the shorter side.
  int min_object_size = 8;
  int threads = 0;  // 0: all cores
};

const std::vector<std::string>& synth_class_names();

// Writes DIR/images/{train,val}/*.jpg and DIR/annotations/instances_{train,val}.json.
// The JSON files are written last and atomically: a dataset with both files is complete.
void write_synthetic_dataset(const SynthOptions& options);

}  // namespace aligndetr::data
