// Single-thread throughput of each fake-quant kernel variant this CPU runs,
// in bytes moved per second (the kernels are memory-bound).
#include <benchmark/benchmark.h>

#include <random>
#include <vector>

#include "torchqat/kernels/fake_quant.h"

namespace k = torchqat::kernels;

namespace {

std::vector<float> random_floats(int64_t n) {
  std::mt19937 rng(0);
  std::normal_distribution<float> d(0.0f, 1.0f);
  std::vector<float> v(static_cast<size_t>(n));
  for (auto& x : v) x = d(rng);
  return v;
}

void BM_AffineForward(benchmark::State& state, k::FakeQuantKernels kern, int64_t channels) {
  const int64_t n = state.range(0);
  const auto x = random_floats(n);
  std::vector<float> y(static_cast<size_t>(n));
  std::vector<uint8_t> mask(size_t(k::mask_bytes(n)));
  std::vector<float> scale(size_t(channels), 0.02f), zp(size_t(channels), 0.0f);
  const k::AffineArgs args{scale.data(), zp.data(), -128.0f, 127.0f, {channels, n / channels}};
  for (auto _ : state) {
    kern.affine(args, k::DType::kFloat32, x.data(), y.data(), mask.data(), 0, n);
    benchmark::DoNotOptimize(y.data());
    benchmark::ClobberMemory();
  }
  // read x, write y, write 1 bit per element
  state.SetBytesProcessed(state.iterations() * (8 * n + n / 8));
}

void BM_MaskedGrad(benchmark::State& state, k::FakeQuantKernels kern) {
  const int64_t n = state.range(0);
  const auto g = random_floats(n);
  std::vector<float> out(static_cast<size_t>(n));
  std::vector<uint8_t> mask(size_t(k::mask_bytes(n)), 0xb7);
  for (auto _ : state) {
    kern.masked_grad(4, g.data(), mask.data(), out.data(), 0, n);
    benchmark::DoNotOptimize(out.data());
    benchmark::ClobberMemory();
  }
  state.SetBytesProcessed(state.iterations() * (8 * n + n / 8));
}

int register_all() {
  for (const auto& v : k::fake_quant_variants()) {
    if (!k::isa_supported(v.isa)) continue;
    const std::string isa = k::isa_name(v.isa);
    benchmark::RegisterBenchmark(("affine_per_tensor/" + isa).c_str(), BM_AffineForward, v, 1)
        ->Arg(1 << 20)->Arg(1 << 24)->Unit(benchmark::kMicrosecond);
    benchmark::RegisterBenchmark(("affine_per_channel64/" + isa).c_str(), BM_AffineForward, v, 64)
        ->Arg(1 << 20)->Arg(1 << 24)->Unit(benchmark::kMicrosecond);
    benchmark::RegisterBenchmark(("masked_grad/" + isa).c_str(), BM_MaskedGrad, v)
        ->Arg(1 << 20)->Arg(1 << 24)->Unit(benchmark::kMicrosecond);
  }
  return 0;
}

const int registered = register_all();

}  // namespace
