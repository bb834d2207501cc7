// Quantization-aware training in pure C++ (LibTorch + libtorchqat, no Python):
// a small CNN written as a torch::nn::Sequential is trained in float32 on
// Fashion-MNIST, prepared with torchqat::prepare_qat (Conv-BN-ReLU folded,
// int8 weights and uint8 activations), fine-tuned with fake quantization,
// evaluated, then lowered in place to the integer kernels with
// torchqat::export_model and evaluated again. Exits non-zero if the QAT or
// the exported model's accuracy falls below --min-accuracy, or if the two
// disagree on more than 1% of the images, so `make test` checks it really
// learns and deploys.
//
//   qat_train [--data DIR] [--train-limit N] [--test-limit N] [--epochs E]
//             [--min-accuracy A]
#include <torch/torch.h>

#include <algorithm>
#include <cstdio>
#include <iostream>
#include <stdexcept>
#include <string>

#include "fashion_mnist.h"
#include "torchqat/qat.h"

namespace {

torch::nn::Sequential small_cnn() {
  using namespace torch::nn;
  return Sequential(Conv2d(Conv2dOptions(1, 32, 3).padding(1).bias(false)), BatchNorm2d(32), ReLU(),
                    MaxPool2d(2), Conv2d(Conv2dOptions(32, 64, 3).padding(1).bias(false)), BatchNorm2d(64),
                    ReLU(), MaxPool2d(2), Flatten(), Linear(64 * 7 * 7, 128), ReLU(), Linear(128, 10));
}

void train(torch::nn::Sequential& model, const fashion_mnist::Split& data, int epochs, double lr) {
  torch::optim::SGD opt(model->parameters(), torch::optim::SGDOptions(lr).momentum(0.9));
  model->train();
  const int64_t n = data.images.size(0), batch = 128;
  for (int e = 0; e < epochs; ++e) {
    const auto order = torch::randperm(n);
    for (int64_t i = 0; i < n; i += batch) {
      const auto idx = order.slice(0, i, std::min(i + batch, n));
      opt.zero_grad();
      auto loss = torch::nn::functional::cross_entropy(model->forward(data.images.index_select(0, idx)),
                                                       data.labels.index_select(0, idx));
      loss.backward();
      opt.step();
    }
  }
}

torch::Tensor predictions(torch::nn::Sequential& model, const fashion_mnist::Split& data) {
  torch::NoGradGuard no_grad;
  model->eval();
  return model->forward(data.images).argmax(1);
}

double accuracy(torch::nn::Sequential& model, const fashion_mnist::Split& data) {
  return predictions(model, data).eq(data.labels).to(torch::kDouble).mean().item<double>();
}

}  // namespace

int main(int argc, char** argv) {
  std::string data_dir = fashion_mnist::kDefaultDir;
  int64_t train_limit = 60000, test_limit = 10000;
  int epochs = 1;
  double min_accuracy = 0.0;
  for (int i = 1; i + 1 < argc; i += 2) {
    const std::string flag = argv[i], value = argv[i + 1];
    if (flag == "--data") data_dir = value;
    else if (flag == "--train-limit") train_limit = std::stoll(value);
    else if (flag == "--test-limit") test_limit = std::stoll(value);
    else if (flag == "--epochs") epochs = std::stoi(value);
    else if (flag == "--min-accuracy") min_accuracy = std::stod(value);
    else {
      std::cerr << "unknown flag " << flag << "\n";
      return 2;
    }
  }
  torch::manual_seed(0);
  try {
    const auto train_set = fashion_mnist::load(data_dir, "train", train_limit);
    const auto test_set = fashion_mnist::load(data_dir, "t10k", test_limit);
    auto model = small_cnn();
    train(model, train_set, epochs, 0.05);
    const double fp32 = accuracy(model, test_set);

    auto qat = torchqat::prepare_qat(model, torchqat::QConfig::int8());
    train(qat, train_set, epochs, 0.01);
    const double int8 = accuracy(qat, test_set);
    std::cout << torchqat::summary(*qat) << "\n";
    const auto qat_pred = predictions(qat, test_set);

    std::cout << torchqat::to_string(torchqat::export_model(*qat));
    const auto exported_pred = predictions(qat, test_set);
    const double exported = exported_pred.eq(test_set.labels).to(torch::kDouble).mean().item<double>();
    const double agreement = exported_pred.eq(qat_pred).to(torch::kDouble).mean().item<double>();
    std::printf("float32 accuracy %.4f, int8 QAT accuracy %.4f, exported INT8 accuracy %.4f (top-1 agreement "
                "with QAT %.4f; %lld train / %lld test images)\n", fp32, int8, exported, agreement,
                static_cast<long long>(train_set.images.size(0)), static_cast<long long>(test_set.images.size(0)));
    if (std::min(int8, exported) < min_accuracy || agreement < 0.99) {
      std::fprintf(stderr, "below --min-accuracy %.4f, or exported and QAT models disagree\n", min_accuracy);
      return 1;
    }
  } catch (const std::exception& e) {
    std::cerr << "qat_train: " << e.what() << "\n";
    return 1;
  }
  return 0;
}
