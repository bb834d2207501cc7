// export_model (export.h): each QAT layer's constants frozen and the integer
// kernel chosen by what its specs allow, as torchqat.export does in Python.
#include "torchqat/qat/export.h"

#include <torch/torch.h>

#include <sstream>

#include "fakequant/ops.h"
#include "torchqat/qat/modules.h"
#include "torchqat/qat/prepare.h"

namespace torchqat {
namespace {

constexpr int64_t kInt4Block = 32;  // the INT4 kernel's packing block (kernels/gemv_int4.h)

std::optional<at::Tensor> optional(const torch::Tensor& t) {
  return t.defined() ? std::optional<at::Tensor>(t) : std::nullopt;
}

// A per-tensor activation grid in the uint8 domain: a signed grid [qmin, qmax]
// with zero point z is carried as [qmin + 128, qmax + 128] with z + 128, the
// same integers shifted.
struct InputGrid {
  torch::Tensor scale, zero_point;  // one value each, as quantize_uint8 takes them
  double scale_value = 1;
  int64_t zero = 0, qmin = 0, qmax = 255;

  torch::Tensor quantize(const torch::Tensor& x) const {
    return ops::quantize_uint8(x, scale, zero_point, qmin, qmax);
  }
};

InputGrid input_grid(const Quantizer& q) {
  auto [scale, zero_point] = q->qparams();
  const int64_t shift = q->spec().quant_min() < 0 ? 128 : 0;
  InputGrid g;
  g.scale = scale.detach().to(torch::kFloat).reshape({1}).clone();
  g.scale_value = g.scale.item<double>();
  g.zero = zero_point.reshape({-1})[0].item<int64_t>() + shift;
  g.zero_point = torch::tensor({g.zero}, torch::kInt);
  g.qmin = q->spec().quant_min() + shift;
  g.qmax = q->spec().quant_max() + shift;
  return g;
}

// The weight as integers (int8, shaped like the weight; zero point 0) and
// its scales: per tensor {1}, per channel {out}, per group {out, groups}.
struct IntegerWeight {
  torch::Tensor ints, scale;
};

// The integers are those the layer's weight quantizer rounds to: checked,
// their dequantized values equal its fake-quantized weight bit for bit.
IntegerWeight integer_weight(QuantWeighted& layer, const torch::Tensor& w, const std::string& name) {
  QuantizerImpl& q = *layer.weight_quantizer;
  const QuantSpec& spec = q.spec();
  const bool grouped = spec.granularity == Granularity::kPerGroup;
  const torch::Tensor view = grouped ? group_rows(w) : w;
  // The quantizer's own forward settles its qparams as the eval forward does
  // (a "current" observer takes this weight's range, LSQ initialises).
  const torch::Tensor fake_quantized = q.forward(view);
  auto [scale, zero_point] = q.qparams();
  TORCH_CHECK(zero_point.eq(0).all().item<bool>(), "torchqat::export_model: layer '", name,
              "': the integer kernels take symmetric weights (zero point 0)");
  torch::Tensor s = scale.to(torch::kFloat);
  torch::Tensor shaped = view;
  if (grouped) {
    shaped = view.reshape({view.size(0), -1, spec.group_size});
    s = s.reshape({view.size(0), -1, 1});
  } else if (spec.granularity == Granularity::kPerChannel) {
    std::vector<int64_t> per_row(size_t(view.dim()), 1);
    per_row[0] = -1;
    s = s.reshape(per_row);
  } else {
    s = s.reshape({});
  }
  const auto ints = torch::clamp(torch::round(shaped * (1.0 / s)), spec.quant_min(), spec.quant_max());
  TORCH_CHECK(torch::equal((ints * s).reshape(view.sizes()), fake_quantized), "torchqat::export_model: layer '",
              name, "': the integer weights do not reproduce the fake-quantized ones (please report this)");
  const torch::Tensor rows = ints.reshape(view.sizes());
  return {(grouped ? ungroup_rows(rows, w.sizes()) : rows).to(torch::kChar), scale.to(torch::kFloat).contiguous()};
}

// INT8 layers: packed weights (and their sums), multiplier x_scale *
// w_scale[n], bias, input grid, fused ReLU; float output.
class Int8Gemm : public LoweredLayer {
 public:
  Int8Gemm(std::tuple<torch::Tensor, torch::Tensor> packed, const torch::Tensor& weight_scale,
           const torch::Tensor& bias, InputGrid in, bool relu)
      : in_(std::move(in)), relu_(relu) {
    std::tie(packed_, col_sums_) = std::move(packed);
    multiplier_ = (weight_scale.reshape({-1}).expand({col_sums_.numel()}) * in_.scale_value).contiguous();
    if (bias.defined()) bias_ = bias.detach().to(torch::kFloat).contiguous();
  }

 protected:
  InputGrid in_;
  bool relu_;
  torch::Tensor packed_, col_sums_, multiplier_, bias_;
};

class Int8Linear final : public Int8Gemm {
 public:
  Int8Linear(const torch::Tensor& w, const torch::Tensor& weight_scale, const torch::Tensor& bias, InputGrid in,
             bool relu)
      : Int8Gemm(ops::pack_linear_int8(w.contiguous()), weight_scale, bias, std::move(in), relu) {}

  torch::Tensor forward(const torch::Tensor& x) const override {
    return ops::linear_int8(in_.quantize(x), in_.zero, packed_, col_sums_, multiplier_, optional(bias_),
                            std::nullopt, std::nullopt, relu_);
  }
};

// Over channels-last im2col (weights packed with taps in (ky, kx, c) order),
// per run of groups for a grouped conv, or the depthwise kernel (groups ==
// channels); output channels-last.
enum class ConvKind { kDense, kGrouped, kDepthwise };

std::tuple<torch::Tensor, torch::Tensor> pack_conv(const torch::Tensor& w, ConvKind kind, int64_t groups) {
  switch (kind) {
    case ConvKind::kDepthwise: return ops::pack_depthwise_int8(w.contiguous());
    case ConvKind::kGrouped: return ops::pack_grouped_conv2d_int8(w.contiguous(), groups);
    default: return ops::pack_linear_int8(w.permute({0, 2, 3, 1}).flatten(1).contiguous());
  }
}

class Int8Conv2d final : public Int8Gemm {
 public:
  Int8Conv2d(const torch::Tensor& w, const torch::Tensor& weight_scale, const torch::Tensor& bias, InputGrid in,
             bool relu, const torch::nn::detail::ConvNdOptions<2>& options, ConvKind kind)
      : Int8Gemm(pack_conv(w, kind, options.groups()), weight_scale, bias, std::move(in), relu),
        kind_(kind),
        kernel_(w.sizes().slice(2).vec()),
        stride_(c10::IntArrayRef(options.stride()).vec()),
        padding_(c10::IntArrayRef(std::get<torch::ExpandingArray<2>>(options.padding())).vec()),
        dilation_(c10::IntArrayRef(options.dilation()).vec()) {}

  torch::Tensor forward(const torch::Tensor& x) const override {
    const auto conv = kind_ == ConvKind::kDepthwise ? &ops::depthwise_conv2d_int8
                      : kind_ == ConvKind::kGrouped ? &ops::grouped_conv2d_int8
                                                    : &ops::conv2d_int8;
    return conv(in_.quantize(x), in_.zero, packed_, col_sums_, multiplier_, optional(bias_), kernel_, stride_,
                padding_, dilation_, std::nullopt, std::nullopt, relu_);
  }

 private:
  ConvKind kind_;
  std::vector<int64_t> kernel_, stride_, padding_, dilation_;
};

// int4 weights two per byte with a float scale per group: the W4A8 kernel
// on a uint8 input, or the weight-only INT4 kernel on a float one.
class Int4Linear final : public LoweredLayer {
 public:
  Int4Linear(const IntegerWeight& w, const torch::Tensor& bias, std::optional<InputGrid> in, bool relu)
      : scales_(w.scale.reshape({w.ints.size(0), -1}).contiguous()), in_(std::move(in)), relu_(relu) {
    std::tie(packed_, weight_sums_) = ops::pack_linear_w4a8(w.ints, scales_);
    if (bias.defined()) bias_ = bias.detach().to(torch::kFloat).contiguous();
  }

  torch::Tensor forward(const torch::Tensor& x) const override {
    const auto y = in_ ? ops::linear_w4a8(in_->quantize(x), in_->zero, in_->scale_value, packed_, scales_,
                                          weight_sums_, optional(bias_))
                       : ops::linear_int4(x.contiguous(), packed_, scales_, optional(bias_));
    return relu_ ? torch::relu(y) : y;
  }

 private:
  torch::Tensor scales_, packed_, weight_sums_, bias_;
  std::optional<InputGrid> in_;
  bool relu_;
};

// A Conv2d (groups 1) with int4 weights in groups along input channels on a
// uint8 input: the W4A8 kernel over channels-last im2col.
class Int4Conv2d final : public LoweredLayer {
 public:
  Int4Conv2d(const IntegerWeight& w, const torch::Tensor& bias, InputGrid in, bool relu,
             const torch::nn::detail::ConvNdOptions<2>& options)
      : scales_(w.scale.reshape({w.ints.size(0), -1}).contiguous()),
        in_(std::move(in)),
        relu_(relu),
        kernel_(w.ints.sizes().slice(2).vec()),
        stride_(c10::IntArrayRef(options.stride()).vec()),
        padding_(c10::IntArrayRef(std::get<torch::ExpandingArray<2>>(options.padding())).vec()),
        dilation_(c10::IntArrayRef(options.dilation()).vec()) {
    std::tie(packed_, weight_sums_) = ops::pack_linear_w4a8(group_rows(w.ints).contiguous(), scales_);
    if (bias.defined()) bias_ = bias.detach().to(torch::kFloat).contiguous();
  }

  torch::Tensor forward(const torch::Tensor& x) const override {
    return ops::conv2d_w4a8(in_.quantize(x), in_.zero, in_.scale_value, packed_, scales_, weight_sums_,
                            optional(bias_), kernel_, stride_, padding_, dilation_, std::nullopt, std::nullopt, relu_);
  }

 private:
  torch::Tensor scales_, packed_, weight_sums_, bias_;
  InputGrid in_;
  bool relu_;
  std::vector<int64_t> kernel_, stride_, padding_, dilation_;
};

struct Lowering {
  std::shared_ptr<const LoweredLayer> layer;  // null: stays fake-quantized float
  std::string kernel;
};

Lowering lower(torch::nn::Module& module, QuantWeighted& layer, const std::string& name) {
  const Quantizer& wq = layer.weight_quantizer;
  const Quantizer& aq = layer.input_quantizer;
  auto* linear = dynamic_cast<QuantLinearImpl*>(&module);
  auto* conv = dynamic_cast<QuantConv2dImpl*>(&module);
  auto* conv_bn = dynamic_cast<QuantConvBn2dImpl*>(&module);
  if (!linear && !conv) return {nullptr, "unchanged (not a torchqat layer the export knows)"};
  const torch::Tensor& weight = linear ? linear->weight : conv->weight;
  TORCH_CHECK(weight.device().is_cpu(), "torchqat::export_model: layer '", name, "' is on ", weight.device(),
              "; the integer kernels run on the CPU: move the model there (model->to(torch::kCPU)) first");
  const bool float_input = !aq || !aq->fake_quant_enabled();
  if (!float_input) {
    try {
      aq->qparams();
    } catch (const c10::Error&) {
      TORCH_CHECK(false, "torchqat::export_model: layer '", name, "': its input quantizer never saw data (no "
                  "calibration, no training step); run data through the model first");
    }
  }
  if (!wq || !wq->fake_quant_enabled()) return {nullptr, "fake-quantized float (float weights)"};
  const QuantSpec& ws = wq->spec();
  if (!ws.symmetric || !ws.is_signed) {
    return {nullptr, "fake-quantized float (" + ws.describe() + " weights: the kernels take symmetric ones)"};
  }
  torch::Tensor w = weight, bias = linear ? linear->bias : conv->bias;
  if (conv_bn) {
    w = weight * conv_bn->bn_scale().reshape({-1, 1, 1, 1});
    bias = conv_bn->folded_bias();
  }
  w = w.detach();
  if (ws.granularity == Granularity::kPerGroup) {
    if (ws.bits != 4 || ws.group_size % kInt4Block != 0) {
      return {nullptr, "fake-quantized float (" + ws.describe() + " weights: the INT4 kernels take int4 groups of "
                       "a multiple of 32)"};
    }
    if (conv) {
      if (conv->options.groups() != 1 || float_input) {
        return {nullptr, "fake-quantized float (" + ws.describe() + " weights: the W4A8 conv takes groups=1 and an "
                         "integer input)"};
      }
      return {std::make_shared<Int4Conv2d>(integer_weight(layer, w, name), bias, input_grid(aq), layer.relu,
                                           conv->options),
              "w4a8 conv (int4 weights x uint8 input, im2col + W4A8 kernel)"};
    }
    const IntegerWeight iw = integer_weight(layer, w, name);
    if (float_input) {
      return {std::make_shared<Int4Linear>(iw, bias, std::nullopt, layer.relu),
              "int4 weights (INT4 weight-only kernel, float input)"};
    }
    return {std::make_shared<Int4Linear>(iw, bias, input_grid(aq), layer.relu),
            "int4 weights x uint8 input (W4A8 kernel)"};
  }
  if (float_input) return {nullptr, "fake-quantized float (float input, weight-only quantization)"};
  const int64_t groups = conv ? conv->options.groups() : 1;
  const bool depthwise =
      conv && groups != 1 && groups == conv->options.in_channels() && groups == conv->options.out_channels();
  const IntegerWeight iw = integer_weight(layer, w, name);
  if (linear) return {std::make_shared<Int8Linear>(iw.ints, iw.scale, bias, input_grid(aq), layer.relu), "int8 GEMM"};
  const ConvKind kind = depthwise ? ConvKind::kDepthwise : groups != 1 ? ConvKind::kGrouped : ConvKind::kDense;
  const std::string what = depthwise ? "int8 depthwise conv"
                           : groups != 1 ? "int8 grouped conv (" + std::to_string(groups) + " groups, im2col + GEMM per run)"
                                         : "int8 conv (im2col + GEMM)";
  return {std::make_shared<Int8Conv2d>(iw.ints, iw.scale, bias, input_grid(aq), layer.relu, conv->options, kind),
          what};
}

}  // namespace

std::vector<ExportedLayer> export_model(torch::nn::Module& model) {
  torch::NoGradGuard no_grad;
  struct Pending {
    QuantWeighted* layer;
    Lowering lowering;
  };
  std::vector<Pending> pending;
  std::vector<ExportedLayer> report;
  // Every layer is lowered before any is switched: a refusal leaves the model as it was.
  const auto visit = [&](torch::nn::Module& module, const std::string& path) {
    auto* layer = dynamic_cast<QuantWeighted*>(&module);
    if (!layer) return;
    const std::string name = path.empty() ? layer->layer_name : path;
    TORCH_CHECK(!layer->lowered, "torchqat::export_model: layer '", name, "' is exported already");
    pending.push_back({layer, lower(module, *layer, name)});
    report.push_back({name, pending.back().lowering.kernel});
  };
  visit(model, "");  // the root need not be held by a shared_ptr: not through named_modules
  for (const auto& item : model.named_modules("", /*include_self=*/false)) visit(*item.value(), item.key());
  model.eval();
  freeze(model);  // what stays fake-quantized no longer observes
  for (auto& p : pending) p.layer->lowered = std::move(p.lowering.layer);
  return report;
}

std::string to_string(const std::vector<ExportedLayer>& layers) {
  std::ostringstream out;
  for (const auto& l : layers) out << l.name << ": " << l.kernel << "\n";
  return out.str();
}

}  // namespace torchqat
