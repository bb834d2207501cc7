// The C++ QAT layer: layers against written-out fake quantization, Conv-BN
// folding, prepare_qat on a Sequential, save/load, bad specs.
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <sstream>

#include "torchqat/qat.h"

namespace {

using torchqat::QConfig;

// Symmetric narrow-range int8 per output channel, x * (1 / scale) as ATen rounds.
torch::Tensor per_channel_int8(const torch::Tensor& w) {
  const auto amax = w.reshape({w.size(0), -1}).abs().amax(1).clamp_min(1.1920928955078125e-07);
  std::vector<int64_t> shape(size_t(w.dim()), 1);
  shape[0] = -1;
  const auto scale = (amax / 127.0).reshape(shape);
  return torch::round(w * (1.0 / scale)).clamp(-127, 127) * scale;
}

TEST(QatModules, LinearQuantizesWeightPerChannel) {
  torch::manual_seed(0);
  torch::nn::Linear linear(16, 8);
  torchqat::LayerSpecs specs{QConfig::int8().weight, std::nullopt, false, "fc"};
  torchqat::QuantLinear q(linear, specs);
  const auto x = torch::randn({4, 16});
  const auto expected = torch::nn::functional::linear(x, per_channel_int8(linear->weight.detach()), linear->bias);
  EXPECT_TRUE(torch::allclose(q(x), expected, 1e-5, 1e-6));
  EXPECT_TRUE(q->weight.is_same(linear->weight));  // shared, not copied
}

// Per-group conv weights: groups of 8 input channels within one kernel tap
// (the channels-last im2col row), symmetric int4 with scale amax / 7.5.
TEST(QatModules, PerGroupConvWeightIsGroupedAlongInputChannelsPerTap) {
  torch::manual_seed(0);
  torch::nn::Conv2d conv(torch::nn::Conv2dOptions(8, 4, 3).bias(false));
  torchqat::QuantConv2d q(conv, torchqat::LayerSpecs{QConfig::w4a8(8).weight, std::nullopt, false, "conv"});
  const auto taps = conv->weight.detach().permute({0, 2, 3, 1});  // [out, ky, kx, in]: a group per tap
  const auto scale = taps.abs().amax(-1, true) / 7.5;
  const auto w = (torch::round(taps * (1.0 / scale)).clamp(-8, 7) * scale).permute({0, 3, 1, 2});
  const auto x = torch::randn({2, 8, 5, 5});
  EXPECT_TRUE(torch::allclose(q(x), torch::conv2d(x, w), 1e-5, 1e-5));
  const auto rows = torchqat::group_rows(conv->weight.detach());
  EXPECT_TRUE(torch::equal(rows.select(1, 1), conv->weight.detach().select(1, 1).select(1, 0).select(1, 0)));
  EXPECT_TRUE(torch::equal(torchqat::ungroup_rows(rows, conv->weight.sizes()), conv->weight.detach()));
}

TEST(QatModules, ConvBnEvalIsTheFoldedConv) {
  torch::manual_seed(0);
  torch::nn::Conv2d conv(torch::nn::Conv2dOptions(3, 6, 3).padding(1));
  torch::nn::BatchNorm2d bn(6);
  {
    torch::NoGradGuard no_grad;
    bn->running_mean.uniform_(-1, 1);
    bn->running_var.uniform_(0.5, 2);
    bn->weight.uniform_(0.5, 1.5);
    bn->bias.uniform_(-0.5, 0.5);
  }
  torchqat::QuantConvBn2d m(conv, bn, torchqat::LayerSpecs{QConfig::int8().weight, std::nullopt, true, "c"});
  m->eval();
  const auto x = torch::randn({2, 3, 8, 8});
  torch::NoGradGuard no_grad;
  const auto g = bn->weight / torch::sqrt(bn->running_var + bn->options.eps());
  const auto w = per_channel_int8(conv->weight * g.reshape({-1, 1, 1, 1}));
  const auto b = (conv->bias - bn->running_mean) * g + bn->bias;
  const auto expected = torch::relu(torch::conv2d(x, w, b, 1, 1));
  EXPECT_TRUE(torch::allclose(m(x), expected, 1e-5, 1e-5));
}

torch::nn::Sequential tiny_cnn() {
  using namespace torch::nn;
  return Sequential(Conv2d(Conv2dOptions(1, 8, 3).padding(1)), BatchNorm2d(8), ReLU(), MaxPool2d(2),
                    Conv2d(Conv2dOptions(8, 8, 3).padding(1)), ReLU(), Flatten(), Linear(8 * 4 * 4, 32), ReLU(),
                    Linear(32, 10));
}

TEST(QatPrepare, FusesAndSwapsLayersOfASequential) {
  torch::manual_seed(0);
  auto model = tiny_cnn();
  auto qat = torchqat::prepare_qat(model, QConfig::w4a8(8));
  ASSERT_EQ(qat->size(), 6u);  // conv-bn-relu, pool, conv-relu, flatten, linear-relu, linear
  auto first = qat->ptr<torchqat::QuantConvBn2dImpl>(0);
  EXPECT_TRUE(first->relu);
  EXPECT_EQ(first->weight_quantizer->spec().bits, 8);  // the first layer stays 8-bit
  auto mid = qat->ptr<torchqat::QuantConv2dImpl>(2);
  EXPECT_TRUE(mid->relu);
  EXPECT_EQ(mid->weight_quantizer->spec().describe(), "int4 per_group(8) sym ste");
  EXPECT_EQ(qat->ptr<torchqat::QuantLinearImpl>(5)->weight_quantizer->spec().bits, 8);  // the last layer
  const auto x = torch::randn({2, 1, 8, 8});
  torchqat::enable_fake_quant(*qat, false);
  model->train();
  qat->train();
  EXPECT_TRUE(torch::allclose(qat->forward(x), model->forward(x), 1e-4, 1e-5));  // quantizers off: float
  const auto table = torchqat::summary(*qat);
  EXPECT_NE(table.find("QuantConvBn2d"), std::string::npos);
  EXPECT_THROW(torchqat::prepare_qat(qat, QConfig::int8()), c10::Error);  // prepared twice
}

TEST(QatPrepare, TrainsAndRoundTripsThroughSaveLoad) {
  torch::manual_seed(0);
  auto qat = torchqat::prepare_qat(tiny_cnn(), QConfig::w4a4_lsq());
  const auto x = torch::randn({16, 1, 8, 8});
  const auto y = torch::arange(16) % 10;
  torch::optim::Adam opt(qat->parameters(), 0.01);
  float first = 0, last = 0;
  for (int step = 0; step < 30; ++step) {
    opt.zero_grad();
    auto loss = torch::nn::functional::cross_entropy(qat->forward(x), y);
    loss.backward();
    opt.step();
    (step == 0 ? first : last) = loss.item<float>();
  }
  EXPECT_LT(last, 0.5f * first);
  std::stringstream buffer;
  torch::save(qat, buffer);
  auto fresh = torchqat::prepare_qat(tiny_cnn(), QConfig::w4a4_lsq());
  torch::load(fresh, buffer);
  qat->eval();
  fresh->eval();
  EXPECT_TRUE(torch::equal(qat->forward(x), fresh->forward(x)));
}

TEST(QatSpec, ImpossibleSpecsAreRefused) {
  torchqat::QuantSpec s;
  s.bits = 1;
  EXPECT_THROW(s.validate(), c10::Error);
  s = {};
  s.granularity = torchqat::Granularity::kPerGroup;
  EXPECT_THROW(s.validate(), c10::Error);
  s = {};
  s.estimator = torchqat::Estimator::kLsqPlus;  // symmetric by default
  EXPECT_THROW(s.validate(), c10::Error);
  torch::nn::Linear odd(30, 4);
  EXPECT_THROW(torchqat::QuantLinear(odd, torchqat::LayerSpecs{QConfig::w4a8(8).weight, std::nullopt, false, "odd"}),
               c10::Error);
}

}  // namespace
