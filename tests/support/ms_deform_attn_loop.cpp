#include "support/ms_deform_attn_loop.h"

#include <cmath>
#include <vector>

#include <torch/torch.h>

namespace aligndetr::testing {

torch::Tensor ms_deform_attn_loop(const torch::Tensor& value, const ops::SpatialShapes& shapes,
                                  const torch::Tensor& sampling_locations,
                                  const torch::Tensor& attention_weights) {
  const int64_t B = value.size(0), heads = value.size(2), dh = value.size(3);
  const int64_t Q = sampling_locations.size(1), L = int64_t(shapes.size());
  const int64_t P = sampling_locations.size(4);
  std::vector<int64_t> starts;
  int64_t start = 0;
  for (const auto& s : shapes) {
    starts.push_back(start);
    start += s[0] * s[1];
  }
  std::vector<torch::Tensor> rows;
  for (int64_t b = 0; b < B; ++b) {
    for (int64_t q = 0; q < Q; ++q) {
      for (int64_t m = 0; m < heads; ++m) {
        auto acc = torch::zeros({dh}, value.options());
        for (int64_t l = 0; l < L; ++l) {
          const int64_t h = shapes[size_t(l)][0], w = shapes[size_t(l)][1];
          for (int64_t p = 0; p < P; ++p) {
            const auto loc = sampling_locations[b][q][m][l][p];
            // Continuous pixel coordinates with centres at integers.
            const auto x = loc[0] * w - 0.5;
            const auto y = loc[1] * h - 0.5;
            const double xf = std::floor(x.item<double>()), yf = std::floor(y.item<double>());
            const auto fx = x - xf, fy = y - yf;
            auto sample = torch::zeros({dh}, value.options());
            for (int dy = 0; dy <= 1; ++dy) {
              for (int dx = 0; dx <= 1; ++dx) {
                const int64_t xi = int64_t(xf) + dx, yi = int64_t(yf) + dy;
                if (xi < 0 || yi < 0 || xi >= w || yi >= h) continue;  // zero padding
                const auto wx = dx ? fx : 1 - fx;
                const auto wy = dy ? fy : 1 - fy;
                sample = sample + wx * wy * value[b][starts[size_t(l)] + yi * w + xi][m];
              }
            }
            acc = acc + attention_weights[b][q][m][l][p] * sample;
          }
        }
        rows.push_back(acc);
      }
    }
  }
  return torch::stack(rows).view({B, Q, heads * dh});
}

}  // namespace aligndetr::testing
