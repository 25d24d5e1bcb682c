#pragma once
// Datasets as users have them, converted to COCO instances files: YOLO text labels and Pascal VOC
// XML annotations. The result is an ordinary COCO file, so the reader's validation (clipping,
// invalid boxes, missing images) applies to it unchanged; what only the source format can get
// wrong (a malformed line, an unknown class) stops the conversion naming the file and line.

#include <string>
#include <vector>

#include "aligndetr/coco/annotations.h"

namespace aligndetr::data {

// One class name per non-empty line (YOLO's classes.txt, or VOC's class list); category ids are
// 1, 2, ... in that order. InputError for a missing file, no names, or a name given twice.
std::vector<std::string> read_class_names(const std::string& path);

// YOLO: every image file (.jpg, .jpeg, .png, .bmp) of `images_dir`, in name order, with the label
// file `labels_dir/<stem>.txt` holding one "class cx cy w h" line per box (normalized to the
// image size; the image is decoded for its size). An image without a label file (or with an
// empty one) is a background image: listed, with no annotation.
coco::CocoDataset convert_yolo(const std::string& images_dir, const std::string& labels_dir,
                               const std::vector<std::string>& classes);

// Pascal VOC: every .xml file of `annotations_dir`, in name order: <filename>, <size> and one
// <object> per box with <name> and <bndbox> (1-based pixel corners, made 0-based as detectron2
// does: x = xmin - 1, w = xmax - xmin + 1). <difficult>1 objects become crowd boxes, which
// training leaves out and evaluation ignores, as VOC's own evaluation does.
coco::CocoDataset convert_voc(const std::string& annotations_dir,
                              const std::vector<std::string>& classes);

}  // namespace aligndetr::data
