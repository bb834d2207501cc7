// torchqat._C: non-tensor helpers. Tensor work goes through torch.ops.torchqat.
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <string>
#include <vector>

#include "torchqat/deploy.h"
#include "torchqat/kernels/cpu_features.h"
#include "torchqat/kernels/fake_quant.h"
#include "torchqat/kernels/quant_math.h"

namespace py = pybind11;
namespace k = torchqat::kernels;

PYBIND11_MODULE(_C, m) {
  m.doc() = "torchqat native helpers (CPU features, kernel selection)";
  m.attr("__version__") = TORCHQAT_VERSION;
  m.attr("cuda_compiled") = bool(TORCHQAT_WITH_CUDA);

  m.def("quant_range", [](int bits, bool is_signed, bool narrow_range) {
    const int max_bits = is_signed ? 32 : 31;  // the range must fit int32
    if (bits < 2 || bits > max_bits) {
      throw py::value_error("quant_range: bits must be in [2, " + std::to_string(max_bits) +
                            "] for " + (is_signed ? "signed" : "unsigned") + " integers, got " +
                            std::to_string(bits));
    }
    const auto r = k::quant_range(bits, is_signed, narrow_range);
    return py::make_tuple(r.qmin, r.qmax);
  }, py::arg("bits"), py::arg("signed") = true, py::arg("narrow_range") = false,
     "(quant_min, quant_max) of `bits`-bit integers.");

  m.def("cpu_features", [] {
    const auto& f = k::cpu_features();
    py::dict d;
    d["avx2"] = f.avx2;
    d["avx512"] = f.avx512;
    d["avx512_vnni"] = f.avx512_vnni;
    d["avx_vnni"] = f.avx_vnni;
    return d;
  }, "Features of this CPU that torchqat's kernels use.");

  m.def("supported_isas", [] {
    std::vector<std::string> names;
    for (const auto& v : k::fake_quant_variants()) {
      if (k::isa_supported(v.isa)) names.emplace_back(k::isa_name(v.isa));
    }
    return names;
  }, "Kernel variants this build has and this CPU can run, scalar reference first.");

  // The model file (torchqat/deploy.h): Python and C++ read and write it with
  // the same code. Errors (c10::Error) become ValueError here.
  m.def("write_artifact", [](const std::string& path, const std::string& metadata, const py::bytes& payload) {
    torchqat::write_artifact(path, {metadata, std::string(payload)});
  }, py::arg("path"), py::arg("metadata"), py::arg("payload"));

  m.def("read_artifact", [](const std::string& path) {
    torchqat::Artifact a;
    try {
      a = torchqat::read_artifact(path);
    } catch (const c10::Error& e) {
      throw py::value_error(e.what_without_backtrace());
    }
    return py::make_tuple(a.metadata, py::bytes(a.payload));
  }, py::arg("path"), "(metadata JSON, TorchScript payload) of a checked model file.");

  m.def("active_isa", [] { return std::string(k::isa_name(k::active_isa())); },
        "The kernel variant the CPU ops use now.");

  m.def("set_isa", [](const std::string& name) {
    try {
      k::set_isa(name);
    } catch (const std::invalid_argument& e) {
      throw py::value_error(e.what());
    }
  }, py::arg("name"),
     "Use the named kernel variant ('scalar', 'avx2', 'avx512') for CPU ops (tests, benchmarks).");
}
