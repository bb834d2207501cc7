// INT8 GEMM kernels (every variant this CPU runs) and this machine's
// multiply-accumulate peaks, measured with register-only loops:
// vpmaddwd (the AVX2 GEMM's instruction: 16 int16 MACs), vfmadd231ps
// (float32's: 8 MACs) and, where the CPU has AVX-512 VNNI, vpdpbusd (64 u8 x s8 MACs);
// and the peaks of the AVX2 GEMM's two inner steps, whose adds share the
// vector ports with the multiplies: vpmaddwd + vpaddd (16 MACs, any uint8) and
// vpmaddubsw + vpmaddwd + vpaddd (32 MACs, 7-bit activations).
#include <benchmark/benchmark.h>
#include <immintrin.h>

#include <random>
#include <string>
#include <vector>

#include "torchqat/kernels/gemm_int8.h"

namespace k = torchqat::kernels;

namespace {

constexpr int64_t kChains = 10;  // independent accumulators: more than latency x throughput

#define TQ_REPEAT10(X) X(0) X(1) X(2) X(3) X(4) X(5) X(6) X(7) X(8) X(9)
#define TQ_KEEP(i) benchmark::DoNotOptimize(a##i);

__attribute__((target("avx2"))) void BM_PeakVpmaddwd(benchmark::State& state) {
#define TQ_DECL(i) __m256i a##i = _mm256_set1_epi16(i + 1);
  TQ_REPEAT10(TQ_DECL)
#undef TQ_DECL
  const __m256i b = _mm256_set1_epi16(3);
  for (auto _ : state) {
    for (int it = 0; it < 1000; ++it) {
#define TQ_STEP(i) a##i = _mm256_madd_epi16(a##i, b);
      TQ_REPEAT10(TQ_STEP)
#undef TQ_STEP
    }
  }
  TQ_REPEAT10(TQ_KEEP)
  state.counters["MAC/s"] = benchmark::Counter(double(state.iterations()) * 1000 * kChains * 16,
                                               benchmark::Counter::kIsRate);
}

__attribute__((target("avx2"))) void BM_PeakMaddAdd(benchmark::State& state) {
#define TQ_DECL(i) __m256i a##i = _mm256_set1_epi32(i);
  TQ_REPEAT10(TQ_DECL)
#undef TQ_DECL
  const __m256i w = _mm256_set1_epi16(-2);
  for (auto _ : state) {
    for (int it = 0; it < 1000; ++it) {
      // Each product reads its own accumulator, so none is loop-invariant;
      // 10 chains of 4 cycles keep more products in flight than the ports take.
#define TQ_STEP(i) a##i = _mm256_add_epi32(a##i, _mm256_madd_epi16(a##i, w));
      TQ_REPEAT10(TQ_STEP)
#undef TQ_STEP
    }
  }
  TQ_REPEAT10(TQ_KEEP)
  state.counters["MAC/s"] = benchmark::Counter(double(state.iterations()) * 1000 * kChains * 16,
                                               benchmark::Counter::kIsRate);
}

__attribute__((target("avx2"))) void BM_PeakMaddubsMaddAdd(benchmark::State& state) {
#define TQ_DECL(i) __m256i a##i = _mm256_set1_epi32(i);
  TQ_REPEAT10(TQ_DECL)
#undef TQ_DECL
  const __m256i w = _mm256_set1_epi8(-2), ones = _mm256_set1_epi16(1);
  for (auto _ : state) {
    for (int it = 0; it < 1000; ++it) {
#define TQ_STEP(i) a##i = _mm256_add_epi32(a##i, _mm256_madd_epi16(_mm256_maddubs_epi16(a##i, w), ones));
      TQ_REPEAT10(TQ_STEP)
#undef TQ_STEP
    }
  }
  TQ_REPEAT10(TQ_KEEP)
  state.counters["MAC/s"] = benchmark::Counter(double(state.iterations()) * 1000 * kChains * 32,
                                               benchmark::Counter::kIsRate);
}

__attribute__((target("avx2,fma"))) void BM_PeakVfmadd231ps(benchmark::State& state) {
#define TQ_DECL(i) __m256 a##i = _mm256_set1_ps(1.0f + i * 1e-7f);
  TQ_REPEAT10(TQ_DECL)
#undef TQ_DECL
  const __m256 b = _mm256_set1_ps(0.999999f), c = _mm256_set1_ps(1e-7f);
  for (auto _ : state) {
    for (int it = 0; it < 1000; ++it) {
#define TQ_STEP(i) a##i = _mm256_fmadd_ps(a##i, b, c);
      TQ_REPEAT10(TQ_STEP)
#undef TQ_STEP
    }
  }
  TQ_REPEAT10(TQ_KEEP)
  state.counters["MAC/s"] = benchmark::Counter(double(state.iterations()) * 1000 * kChains * 8,
                                               benchmark::Counter::kIsRate);
}

__attribute__((target("avx512f,avx512vnni"))) void BM_PeakVpdpbusd(benchmark::State& state) {
  if (!__builtin_cpu_supports("avx512vnni")) {
    state.SkipWithError("this CPU has no AVX-512 VNNI: vpdpbusd peak not measured");
    return;
  }
#define TQ_DECL(i) __m512i a##i = _mm512_set1_epi32(i);
  TQ_REPEAT10(TQ_DECL)
#undef TQ_DECL
  const __m512i u = _mm512_set1_epi8(3), s = _mm512_set1_epi8(-2);
  for (auto _ : state) {
    for (int it = 0; it < 1000; ++it) {
#define TQ_STEP(i) a##i = _mm512_dpbusd_epi32(a##i, u, s);
      TQ_REPEAT10(TQ_STEP)
#undef TQ_STEP
    }
  }
  TQ_REPEAT10(TQ_KEEP)
  state.counters["MAC/s"] = benchmark::Counter(double(state.iterations()) * 1000 * kChains * 64,
                                               benchmark::Counter::kIsRate);
}
#undef TQ_KEEP

// Args: M, N = K, activation bits (8: any uint8; 7: below 128, the AVX2
// GEMM's vpmaddubsw path).
void BM_GemmInt8(benchmark::State& state, k::GemmInt8Kernels kern) {
  const int64_t m = state.range(0), nk = state.range(1), bits = state.range(2);
  std::mt19937 gen(0);
  std::uniform_int_distribution<int> ua(0, (1 << bits) - 1), ub(-127, 127);
  std::vector<uint8_t> a(size_t(m * nk));
  std::vector<int8_t> b(size_t(nk * nk));
  for (auto& v : a) v = uint8_t(ua(gen));
  for (auto& v : b) v = int8_t(ub(gen));
  const k::PackedInt8Weights packed(b.data(), nk, nk, nk);
  std::vector<float> multiplier(size_t(nk), 1e-4f), out(size_t(m * nk));
  k::GemmInt8Args args;
  args.a = a.data();
  args.lda = nk;
  args.a_zero = 128;
  args.b = packed.view();
  args.m = m;
  args.output = k::GemmOutput::kFloat;
  args.multiplier = multiplier.data();
  args.out = out.data();
  args.ldc = nk;
  for (auto _ : state) {
    kern.gemm(args, 0, m, 0, args.b.panels());
    benchmark::DoNotOptimize(out.data());
    benchmark::ClobberMemory();
  }
  state.counters["OP/s"] = benchmark::Counter(double(state.iterations()) * 2.0 * double(m) * double(nk * nk),
                                              benchmark::Counter::kIsRate);
}

int register_all() {
  benchmark::RegisterBenchmark("peak/vpmaddwd", BM_PeakVpmaddwd);
  benchmark::RegisterBenchmark("peak/vpmaddwd+vpaddd", BM_PeakMaddAdd);
  benchmark::RegisterBenchmark("peak/vpmaddubsw+vpmaddwd+vpaddd", BM_PeakMaddubsMaddAdd);
  benchmark::RegisterBenchmark("peak/vfmadd231ps", BM_PeakVfmadd231ps);
  benchmark::RegisterBenchmark("peak/vpdpbusd", BM_PeakVpdpbusd);
  for (const auto& v : k::gemm_int8_variants()) {
    if (!k::isa_supported(v.isa) || v.isa == k::Isa::kScalar) continue;  // the reference is for tests
    auto* bm = benchmark::RegisterBenchmark(("gemm_int8/" + std::string(k::isa_name(v.isa))).c_str(),
                                            BM_GemmInt8, v);
    for (int64_t m : {1, 16, 128, 1024}) {
      for (int64_t nk : {768, 4096}) {
        for (int64_t bits : {8, 7}) bm->Args({m, nk, bits});
      }
    }
    bm->Unit(benchmark::kMicrosecond);
  }
  return 0;
}

const int registered = register_all();

}  // namespace
