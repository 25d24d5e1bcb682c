// ops::TensorStamp: when a copy derived from some tensors (a packed weight, a folded norm) must
// be made again.

#include <gtest/gtest.h>
#include <torch/torch.h>

#include "aligndetr/ops/tensor_stamp.h"

namespace aligndetr {
namespace {

using ops::TensorStamp;

TEST(TensorStamp, MatchesItsSourcesInOrderUntilOneChanges) {
  auto a = torch::randn({3, 2}), b = torch::randn({3});
  EXPECT_FALSE(TensorStamp().matches({})) << "a stamp taken of nothing matches nothing";
  EXPECT_FALSE(TensorStamp().matches({a, b}));

  TensorStamp stamp({a, b});
  EXPECT_TRUE(stamp.matches({a, b}));
  EXPECT_TRUE(stamp.matches({a, b})) << "matching changes nothing";
  EXPECT_FALSE(stamp.matches({b, a})) << "order";
  EXPECT_FALSE(stamp.matches({a})) << "fewer";
  EXPECT_FALSE(stamp.matches({a, b, a})) << "more";

  a.mul_(2);
  EXPECT_FALSE(stamp.matches({a, b})) << "changed in place";
  stamp = TensorStamp({a, b});
  EXPECT_TRUE(stamp.matches({a, b}));
  {
    const torch::NoGradGuard no_grad;
    b.index_put_({0}, 5.0);
  }
  EXPECT_FALSE(stamp.matches({a, b})) << "one element written";
  stamp = TensorStamp({a, b});
  b.set_data(torch::randn({3}));
  EXPECT_FALSE(stamp.matches({a, b})) << "the same tensor over new storage";
}

TEST(TensorStamp, AnotherTensorOverTheSameBytesIsNotItsSource) {
  const auto a = torch::randn({4, 4});
  const TensorStamp stamp({a});
  EXPECT_FALSE(stamp.matches({a.clone()})) << "a copy";
  EXPECT_FALSE(stamp.matches({a.view({16})})) << "a view: same storage and data pointer";
  EXPECT_FALSE(stamp.matches({a.detach()})) << "a detached alias: same storage and version counter";
}

TEST(TensorStamp, HoldsItsSourcesSoTheirAddressesAreNotReused) {
  auto a = torch::randn({8});
  const auto before = a.use_count();
  const TensorStamp stamp({a});
  EXPECT_EQ(a.use_count(), before + 1);
  const void* address = a.data_ptr();
  a = torch::Tensor();  // the stamp's reference keeps the storage alive
  const auto b = torch::randn({8});
  EXPECT_NE(b.data_ptr(), address);
  EXPECT_FALSE(stamp.matches({b}));
}

TEST(TensorStamp, AnUndefinedSourceMatchesOnlyAnUndefinedTensor) {
  const auto w = torch::randn({2, 2});
  const TensorStamp stamp({w, torch::Tensor()});
  EXPECT_TRUE(stamp.matches({w, torch::Tensor()}));
  EXPECT_FALSE(stamp.matches({w, torch::zeros({2})}));
  EXPECT_FALSE(TensorStamp({w, torch::zeros({2})}).matches({w, torch::Tensor()}));
}

}  // namespace
}  // namespace aligndetr
