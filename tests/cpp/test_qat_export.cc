// export_model: LibTorch QAT models lowered in place to the integer kernels,
// against the written-out integer arithmetic and the QAT model's own eval
// forward; refusals leave the model untouched.
#include <gtest/gtest.h>
#include <torch/torch.h>

#include "torchqat/qat.h"

namespace {

using torchqat::QConfig;

torch::nn::Sequential tiny_cnn() {
  using namespace torch::nn;
  return Sequential(Conv2d(Conv2dOptions(1, 8, 3).padding(1)), BatchNorm2d(8), ReLU(), MaxPool2d(2),
                    Conv2d(Conv2dOptions(8, 16, 3).stride(2).padding(1)), ReLU(), Flatten(), Linear(16 * 2 * 2, 64),
                    ReLU(), Linear(64, 10));
}

// A few training steps: observers see data, BatchNorm gets running statistics.
void train_briefly(torch::nn::Module& model, const std::function<torch::Tensor(const torch::Tensor&)>& forward,
                   const torch::Tensor& x, const torch::Tensor& y) {
  torch::optim::SGD opt(model.parameters(), torch::optim::SGDOptions(0.01).momentum(0.9));
  model.train();
  for (int step = 0; step < 5; ++step) {
    opt.zero_grad();
    torch::nn::functional::cross_entropy(forward(x), y).backward();
    opt.step();
  }
  model.eval();
}

// Largest difference relative to the largest magnitude of `expected`.
double relative_error(const torch::Tensor& got, const torch::Tensor& expected) {
  return ((got - expected).abs().max() / expected.abs().max()).item<double>();
}

std::vector<std::string> kernels_of(const std::vector<torchqat::ExportedLayer>& layers) {
  std::vector<std::string> out;
  for (const auto& l : layers) out.push_back(l.kernel);
  return out;
}

TEST(QatExport, LinearEqualsTheWrittenOutIntegerSum) {
  torch::manual_seed(0);
  torch::nn::Linear linear(40, 12);
  torchqat::QuantLinear q(linear, torchqat::LayerSpecs{QConfig::int8().weight, QConfig::int8().activation, true, "fc"});
  const auto x = torch::randn({7, 40}) * 2;
  q->forward(x);  // the input observer sees data
  q->eval();
  const auto fake_quantized = q->forward(x).detach();
  auto [x_scale, x_zero] = q->input_quantizer->qparams();
  const auto w = linear->weight.detach();
  const auto w_scale = w.abs().amax(1).clamp_min(1.1920928955078125e-07) / 127.0;
  const auto xs = x_scale.to(torch::kDouble).item<double>();
  const auto xz = x_zero.item<int64_t>();

  const auto report = torchqat::export_model(*q);
  ASSERT_EQ(kernels_of(report), std::vector<std::string>{"int8 GEMM"});
  const auto qx = torch::clamp(torch::round(x * (1.0f / x_scale.item<float>())) + double(xz), 0, 255);
  const auto qw = torch::clamp(torch::round(w * (1.0 / w_scale.reshape({-1, 1}))), -127, 127);
  // int32 sums in double (exact), then the float epilogue's multiplier and bias.
  const auto sums = torch::matmul((qx - double(xz)).to(torch::kDouble), qw.to(torch::kDouble).t());
  const auto expected = torch::relu(sums * (w_scale.to(torch::kDouble) * xs) + linear->bias.detach().to(torch::kDouble));
  const auto got = q->forward(x);
  EXPECT_EQ(got.scalar_type(), torch::kFloat);
  EXPECT_LT(relative_error(got.to(torch::kDouble), expected), 1e-6);
  EXPECT_LT(relative_error(got, fake_quantized), 1e-5);
}

TEST(QatExport, Int8SequentialMatchesTheQatModel) {
  torch::manual_seed(0);
  auto qat = torchqat::prepare_qat(tiny_cnn(), QConfig::int8());
  const auto x = torch::randn({32, 1, 8, 8});
  const auto y = torch::arange(32) % 10;
  train_briefly(*qat, [&](const torch::Tensor& in) { return qat->forward(in); }, x, y);
  torchqat::freeze(*qat);
  const auto expected = qat->forward(x).detach();

  const auto report = torchqat::export_model(*qat);
  EXPECT_EQ(kernels_of(report), (std::vector<std::string>{"int8 conv (im2col + GEMM)", "int8 conv (im2col + GEMM)",
                                                          "int8 GEMM", "int8 GEMM"}));
  EXPECT_EQ(report.front().name, "0");
  const auto got = qat->forward(x);
  // Integer sums are exact and the epilogue's float rounding is ~1e-7; an
  // activation moved across a rounding boundary of the next layer's grid
  // (float sums in another order) would show as ~1e-3.
  EXPECT_LT(relative_error(got, expected), 1e-4);
  EXPECT_TRUE(torch::equal(got.argmax(1), expected.argmax(1)));
  EXPECT_THROW(torchqat::export_model(*qat), c10::Error);  // exported twice
}

// MobileNet's pattern: a depthwise 3x3 (groups == channels) between 1x1
// convs; a grouped conv that is not depthwise runs the grouped INT8 conv.
TEST(QatExport, DepthwiseConvRunsTheDepthwiseKernel) {
  using namespace torch::nn;
  torch::manual_seed(0);
  auto model = Sequential(Conv2d(Conv2dOptions(3, 24, 1)), BatchNorm2d(24), ReLU(),
                          Conv2d(Conv2dOptions(24, 24, 3).padding(1).stride(2).groups(24)), BatchNorm2d(24), ReLU(),
                          Conv2d(Conv2dOptions(24, 16, 3).padding(1).groups(4)), ReLU(), Flatten(),
                          Linear(16 * 4 * 4, 10));
  auto qat = torchqat::prepare_qat(model, QConfig::int8());
  const auto x = torch::randn({32, 3, 8, 8});
  train_briefly(*qat, [&](const torch::Tensor& in) { return qat->forward(in); }, x, torch::arange(32) % 10);
  torchqat::freeze(*qat);
  const auto expected = qat->forward(x).detach();
  const auto report = torchqat::export_model(*qat);
  EXPECT_EQ(kernels_of(report),
            (std::vector<std::string>{"int8 conv (im2col + GEMM)", "int8 depthwise conv",
                                      "int8 grouped conv (4 groups, im2col + GEMM per run)", "int8 GEMM"}));
  EXPECT_LT(relative_error(qat->forward(x), expected), 1e-4);
}

// W4A8 convs: int4 weights in groups of 32 input channels per tap (the
// first and last layers stay at 8 bits).
TEST(QatExport, W4a8ConvsRunTheW4a8Kernel) {
  using namespace torch::nn;
  torch::manual_seed(0);
  auto model = Sequential(Conv2d(Conv2dOptions(3, 32, 3).padding(1)), BatchNorm2d(32), ReLU(),
                          Conv2d(Conv2dOptions(32, 64, 3).padding(1).stride(2)), BatchNorm2d(64), ReLU(),
                          Conv2d(Conv2dOptions(64, 32, 1)), ReLU(), Flatten(), Linear(32 * 4 * 4, 10));
  auto qat = torchqat::prepare_qat(model, QConfig::w4a8());
  const auto x = torch::randn({32, 3, 8, 8});
  train_briefly(*qat, [&](const torch::Tensor& in) { return qat->forward(in); }, x, torch::arange(32) % 10);
  torchqat::freeze(*qat);
  const auto expected = qat->forward(x).detach();
  const auto report = torchqat::export_model(*qat);
  const std::string w4a8 = "w4a8 conv (int4 weights x uint8 input, im2col + W4A8 kernel)";
  EXPECT_EQ(kernels_of(report), (std::vector<std::string>{"int8 conv (im2col + GEMM)", w4a8, w4a8, "int8 GEMM"}));
  const auto got = qat->forward(x);
  EXPECT_LT(relative_error(got, expected), 1e-4);
  EXPECT_TRUE(torch::equal(got.argmax(1), expected.argmax(1)));
}

// A conv over 16 channels x 3 x 3 = 144 weights per filter cannot be split
// into groups of 32: prepare_qat gives it per-channel int8 weights, and it
// deploys on the INT8 conv between two W4A8 ones.
TEST(QatExport, W4a8LayersWhoseRowsGroupsDoNotDivideGetInt8Weights) {
  using namespace torch::nn;
  torch::manual_seed(0);
  auto model = Sequential(Conv2d(Conv2dOptions(3, 32, 3).padding(1)), ReLU(), Conv2d(Conv2dOptions(32, 16, 1)),
                          ReLU(), Conv2d(Conv2dOptions(16, 32, 3).padding(1)), ReLU(),
                          Conv2d(Conv2dOptions(32, 32, 3).padding(1).stride(2)), ReLU(), Flatten(),
                          Linear(32 * 4 * 4, 10));
  auto qat = torchqat::prepare_qat(model, QConfig::w4a8());
  const auto* fitted = qat[2]->as<torchqat::QuantConv2dImpl>();
  ASSERT_NE(fitted, nullptr);
  EXPECT_EQ(fitted->weight_quantizer->spec().bits, 8);
  EXPECT_EQ(fitted->weight_quantizer->spec().granularity, torchqat::Granularity::kPerChannel);
  const auto x = torch::randn({32, 3, 8, 8});
  train_briefly(*qat, [&](const torch::Tensor& in) { return qat->forward(in); }, x, torch::arange(32) % 10);
  torchqat::freeze(*qat);
  const auto expected = qat->forward(x).detach();
  const auto report = torchqat::export_model(*qat);
  const std::string int8 = "int8 conv (im2col + GEMM)", w4a8 = "w4a8 conv (int4 weights x uint8 input, im2col + W4A8 kernel)";
  EXPECT_EQ(kernels_of(report), (std::vector<std::string>{int8, w4a8, int8, w4a8, "int8 GEMM"}));
  EXPECT_LT(relative_error(qat->forward(x), expected), 1e-4);
}

// Grouped convs (4 groups of 8 outputs, merged in pairs; 2 of 16) deploy on
// the INT8 GEMM per run of groups, as in Python.
TEST(QatExport, GroupedConvsRunTheInt8Gemm) {
  using namespace torch::nn;
  torch::manual_seed(0);
  auto model = Sequential(Conv2d(Conv2dOptions(3, 16, 3).padding(1)), ReLU(),
                          Conv2d(Conv2dOptions(16, 32, 3).padding(1).groups(4)), BatchNorm2d(32), ReLU(),
                          Conv2d(Conv2dOptions(32, 32, 3).padding(1).stride(2).groups(2)), ReLU(), Flatten(),
                          Linear(32 * 4 * 4, 10));
  auto qat = torchqat::prepare_qat(model, QConfig::int8());
  const auto x = torch::randn({32, 3, 8, 8});
  train_briefly(*qat, [&](const torch::Tensor& in) { return qat->forward(in); }, x, torch::arange(32) % 10);
  torchqat::freeze(*qat);
  const auto expected = qat->forward(x).detach();
  const auto report = torchqat::export_model(*qat);
  EXPECT_EQ(kernels_of(report),
            (std::vector<std::string>{"int8 conv (im2col + GEMM)", "int8 grouped conv (4 groups, im2col + GEMM per run)",
                                      "int8 grouped conv (2 groups, im2col + GEMM per run)", "int8 GEMM"}));
  const auto got = qat->forward(x);
  EXPECT_LT(relative_error(got, expected), 1e-4);
  EXPECT_TRUE(torch::equal(got.argmax(1), expected.argmax(1)));
}

// A custom module holds its layers by type: they are switched in place.
struct TwoLayerNet : torch::nn::Module {
  TwoLayerNet(const QConfig& config) {
    torch::nn::Linear a(64, 96), b(96, 10);
    fc1 = register_module("fc1", torchqat::QuantLinear(a, torchqat::LayerSpecs{config.weight, config.activation,
                                                                                true, "fc1"}));
    fc2 = register_module("fc2", torchqat::QuantLinear(b, torchqat::LayerSpecs{QConfig::int8().weight,
                                                                                config.activation, false, "fc2"}));
  }
  torch::Tensor forward(const torch::Tensor& x) { return fc2->forward(fc1->forward(x)); }
  torchqat::QuantLinear fc1{nullptr}, fc2{nullptr};
};

TEST(QatExport, W4a8CustomModuleRunsTheInt4Kernels) {
  torch::manual_seed(0);
  TwoLayerNet net(QConfig::w4a8(32));
  const auto x = torch::randn({16, 64});
  const auto y = torch::arange(16) % 10;
  train_briefly(net, [&](const torch::Tensor& in) { return net.forward(in); }, x, y);
  const auto expected = net.forward(x).detach();
  const auto report = torchqat::export_model(net);
  EXPECT_EQ(kernels_of(report), (std::vector<std::string>{"int4 weights x uint8 input (W4A8 kernel)", "int8 GEMM"}));
  EXPECT_EQ(report.front().name, "fc1");
  ASSERT_TRUE(net.fc1->lowered);
  EXPECT_LT(relative_error(net.forward(x), expected), 1e-4);
}

TEST(QatExport, WeightOnlyInt4AndFloatLayersAreReported) {
  torch::manual_seed(0);
  QConfig weight_only = QConfig::w4a8(32);
  weight_only.activation.reset();
  TwoLayerNet net(weight_only);
  const auto x = torch::randn({4, 64});
  net.eval();
  const auto expected = net.forward(x).detach();
  const auto report = torchqat::export_model(net);
  EXPECT_EQ(kernels_of(report), (std::vector<std::string>{"int4 weights (INT4 weight-only kernel, float input)",
                                                          "fake-quantized float (float input, weight-only "
                                                          "quantization)"}));
  EXPECT_FALSE(net.fc2->lowered);
  EXPECT_LT(relative_error(net.forward(x), expected), 1e-5);
}

TEST(QatExport, LsqW4a4MatchesTheQatModel) {
  torch::manual_seed(1);
  auto qat = torchqat::prepare_qat(tiny_cnn(), QConfig::w4a4_lsq());
  const auto x = torch::randn({32, 1, 8, 8});
  train_briefly(*qat, [&](const torch::Tensor& in) { return qat->forward(in); }, x, torch::arange(32) % 10);
  torchqat::freeze(*qat);
  const auto expected = qat->forward(x).detach();
  torchqat::export_model(*qat);
  EXPECT_LT(relative_error(qat->forward(x), expected), 1e-4);
}

TEST(QatExport, RefusesAQuantizerThatNeverSawDataAndLeavesTheModelAsItWas) {
  torch::manual_seed(0);
  auto qat = torchqat::prepare_qat(tiny_cnn(), QConfig::int8());
  try {
    torchqat::export_model(*qat);
    FAIL() << "exported a model whose quantizers never saw data";
  } catch (const c10::Error& e) {
    EXPECT_NE(std::string(e.what_without_backtrace()).find("layer '0'"), std::string::npos) << e.what();
  }
  for (const auto& m : qat->modules()) {
    if (auto* layer = dynamic_cast<torchqat::QuantWeighted*>(m.get())) EXPECT_FALSE(layer->lowered);
  }
}

}  // namespace
