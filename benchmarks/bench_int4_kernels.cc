// INT4-weight kernels, every variant this CPU runs: the W4A8 kernel (uint8
// activations, exact integer group sums) and the weight-only GEMV (float
// activations), M rows x N = K, groups of 32 and 128. MAC/s counts
// multiply-adds; bytes/s the packed weights and scales read once per call.
#include <benchmark/benchmark.h>

#include <random>
#include <string>
#include <vector>

#include "torchqat/kernels/gemm_w4a8.h"
#include "torchqat/kernels/gemv_int4.h"

namespace k = torchqat::kernels;

namespace {

struct Int4Problem {
  std::vector<uint8_t> x_u8, packed;
  std::vector<float> x_f32, scales, weight_sums, y;
  Int4Problem(int64_t m, int64_t nk, int64_t group) {
    std::mt19937 gen(0);
    std::uniform_int_distribution<int> ux(0, 255), uq(-8, 7);
    std::vector<int8_t> q(size_t(nk * nk));
    for (auto& v : q) v = int8_t(uq(gen));
    packed.resize(size_t(nk * nk / 2));
    k::pack_int4_weights(q.data(), nk, nk, nk, packed.data());
    scales.assign(size_t(nk * (nk / group)), 0.01f);
    weight_sums.resize(size_t(nk));
    k::int4_weight_sums(q.data(), nk, nk, nk, scales.data(), group, weight_sums.data());
    x_u8.resize(size_t(m * nk));
    for (auto& v : x_u8) v = uint8_t(ux(gen));
    x_f32.assign(x_u8.begin(), x_u8.end());
    y.resize(size_t(m * nk));
  }
};

void counters(benchmark::State& state, int64_t m, int64_t nk, int64_t group) {
  const double calls = double(state.iterations());
  state.counters["MAC/s"] = benchmark::Counter(calls * double(m) * double(nk * nk), benchmark::Counter::kIsRate);
  state.counters["bytes/s"] =
      benchmark::Counter(calls * (double(nk * nk) / 2 + 4.0 * double(nk * (nk / group))), benchmark::Counter::kIsRate);
}

void BM_W4A8(benchmark::State& state, k::GemmW4A8Kernels kern) {
  const int64_t m = state.range(0), nk = state.range(1), group = state.range(2);
  Int4Problem p(m, nk, group);
  k::GemmW4A8Args a;
  a.x = p.x_u8.data();
  a.m = m;
  a.n = a.k = nk;
  a.x_zero = 128;
  a.x_scale = 0.02f;
  a.q = p.packed.data();
  a.scales = p.scales.data();
  a.weight_sums = p.weight_sums.data();
  a.group_size = group;
  a.y = p.y.data();
  for (auto _ : state) {
    kern.gemm(a, 0, nk);
    benchmark::DoNotOptimize(p.y.data());
    benchmark::ClobberMemory();
  }
  counters(state, m, nk, group);
}

void BM_GemvInt4(benchmark::State& state, k::GemvInt4Kernels kern) {
  const int64_t m = state.range(0), nk = state.range(1), group = state.range(2);
  Int4Problem p(m, nk, group);
  k::GemvInt4Args a;
  a.x = p.x_f32.data();
  a.m = m;
  a.n = a.k = nk;
  a.q = p.packed.data();
  a.scales = p.scales.data();
  a.group_size = group;
  a.y = p.y.data();
  for (auto _ : state) {
    kern.gemv(a, 0, nk);
    benchmark::DoNotOptimize(p.y.data());
    benchmark::ClobberMemory();
  }
  counters(state, m, nk, group);
}

template <class Kernels, class Fn>
void register_variants(const std::vector<Kernels>& variants, const std::string& name, Fn fn) {
  for (const auto& v : variants) {
    if (!k::isa_supported(v.isa) || v.isa == k::Isa::kScalar) continue;  // the reference is for tests
    auto* bm = benchmark::RegisterBenchmark((name + "/" + k::isa_name(v.isa)).c_str(), fn, v);
    for (int64_t m : {1, 16}) {
      for (int64_t nk : {768, 4096}) {
        for (int64_t group : {32, 128}) bm->Args({m, nk, group});
      }
    }
    bm->Unit(benchmark::kMicrosecond);
  }
}

int register_all() {
  register_variants(k::gemm_w4a8_variants(), "w4a8", BM_W4A8);
  register_variants(k::gemv_int4_variants(), "gemv_int4", BM_GemvInt4);
  return 0;
}

const int registered = register_all();

}  // namespace
