// Runs a model file written by torchqat.save (Python) without Python: loads it
// with torchqat::load (format, version and checksum checked; the integer ops
// come from libtorchqat), classifies Fashion-MNIST test images and reports
// accuracy and throughput. --logits writes the raw float32 outputs so a test
// can compare them with Python's.
//
//   deploy MODEL [--data DIR] [--limit N] [--batch B] [--logits FILE]
#include <torch/script.h>

#include <chrono>
#include <cstdio>
#include <fstream>
#include <iostream>
#include <string>

#include "fashion_mnist.h"
#include "torchqat/deploy.h"

int main(int argc, char** argv) {
  if (argc < 2 || std::string(argv[1]).rfind("--", 0) == 0) {
    std::cerr << "usage: deploy MODEL [--data DIR] [--limit N] [--batch B] [--logits FILE]\n";
    return 2;
  }
  const std::string model_path = argv[1];
  std::string data_dir = fashion_mnist::kDefaultDir, logits_path;
  int64_t limit = 10000, batch = 256;
  for (int i = 2; i + 1 < argc; i += 2) {
    const std::string flag = argv[i], value = argv[i + 1];
    if (flag == "--data") data_dir = value;
    else if (flag == "--limit") limit = std::stoll(value);
    else if (flag == "--batch") batch = std::stoll(value);
    else if (flag == "--logits") logits_path = value;
    else {
      std::cerr << "deploy: unknown flag " << flag << "\n";
      return 2;
    }
  }
  try {
    torch::jit::Module model = torchqat::load(model_path);
    const auto test = fashion_mnist::load(data_dir, "t10k", limit);
    torch::NoGradGuard no_grad;
    std::vector<torch::Tensor> outputs;
    const auto start = std::chrono::steady_clock::now();
    for (int64_t i = 0; i < test.images.size(0); i += batch) {
      outputs.push_back(model.forward({test.images.slice(0, i, i + batch)}).toTensor());
    }
    const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    const torch::Tensor logits = torch::cat(outputs).contiguous();
    const double accuracy = logits.argmax(1).eq(test.labels).to(torch::kDouble).mean().item<double>();
    std::printf("%s: %lld images, accuracy %.4f, %.1f images/s\n", model_path.c_str(),
                static_cast<long long>(logits.size(0)), accuracy, double(logits.size(0)) / seconds);
    if (!logits_path.empty()) {
      std::ofstream out(logits_path, std::ios::binary);
      out.write(reinterpret_cast<const char*>(logits.const_data_ptr<float>()),
                std::streamsize(logits.numel() * sizeof(float)));
      if (!out.good()) throw std::runtime_error("cannot write " + logits_path);
    }
  } catch (const std::exception& e) {
    std::cerr << "deploy: " << e.what() << "\n";
    return 1;
  }
  return 0;
}
