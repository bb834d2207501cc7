#include "torchqat/qat/prepare.h"

#include <torch/torch.h>

#include <algorithm>
#include <iomanip>
#include <sstream>

#include "torchqat/qat/modules.h"

namespace torchqat {
namespace {

template <class Impl>
std::shared_ptr<Impl> as(const std::shared_ptr<torch::nn::Module>& m) {
  return std::dynamic_pointer_cast<Impl>(m);
}

// The layers that get quantized, in execution order: the first and last are
// the "edge" layers of the low-bit presets.
std::vector<const torch::nn::Module*> quantizable_layers(const torch::nn::Sequential& seq) {
  std::vector<const torch::nn::Module*> out;
  for (const auto& child : seq->children()) {
    if (as<torch::nn::Conv2dImpl>(child) || as<torch::nn::LinearImpl>(child)) out.push_back(child.get());
  }
  return out;
}

QuantSpec at_least_bits(QuantSpec s, int bits) {
  if (s.bits >= bits) return s;
  s.bits = bits;
  if (s.granularity == Granularity::kPerGroup) {
    s.granularity = Granularity::kPerChannel;
    s.group_size = 0;
  }
  return s;
}

// A per-group spec on a grouped conv, or on weight rows its groups do not
// divide, becomes per-channel at 8 bits or more (as prepare_qat in Python does).
QuantSpec fit_groups(QuantSpec s, int64_t row, int64_t groups) {
  if (s.granularity != Granularity::kPerGroup || (groups == 1 && row % s.group_size == 0)) return s;
  s.bits = std::max(s.bits, 8);
  s.granularity = Granularity::kPerChannel;
  s.group_size = 0;
  return s;
}

struct Rewriter {
  const QConfig& qconfig;
  const torch::nn::Module* first = nullptr;
  const torch::nn::Module* last = nullptr;

  LayerSpecs specs_for(const torch::nn::Module* layer, const torch::Tensor& weight, int64_t groups,
                       const std::string& name, bool relu) const {
    LayerSpecs s{qconfig.weight, qconfig.activation, relu, name};
    if ((layer == first || layer == last) && qconfig.first_last_bits) {
      if (s.weight) s.weight = at_least_bits(*s.weight, *qconfig.first_last_bits);
      if (s.activation) s.activation = at_least_bits(*s.activation, *qconfig.first_last_bits);
    }
    if (s.weight) s.weight = fit_groups(*s.weight, weight.numel() / weight.size(0), groups);
    return s;
  }

  torch::nn::Sequential rewrite(const torch::nn::Sequential& seq) const {
    torch::nn::Sequential out;
    const auto children = seq->named_children();
    for (size_t i = 0; i < children.size(); ++i) {
      const std::string& key = children[i].key();
      const std::shared_ptr<torch::nn::Module>& child = children[i].value();
      const std::string& name = key;
      const auto next = [&](size_t k) {
        return k < children.size() ? children[k].value() : nullptr;
      };
      if (auto conv = as<torch::nn::Conv2dImpl>(child)) {
        auto bn = as<torch::nn::BatchNorm2dImpl>(next(i + 1));
        const size_t after = bn ? i + 2 : i + 1;
        const bool relu = as<torch::nn::ReLUImpl>(next(after)) != nullptr;
        const auto specs = specs_for(child.get(), conv->weight, conv->options.groups(), name, relu);
        if (bn) {
          out->push_back(key, QuantConvBn2d(torch::nn::Conv2d(conv), torch::nn::BatchNorm2d(bn), specs).ptr());
        } else {
          out->push_back(key, QuantConv2d(torch::nn::Conv2d(conv), specs).ptr());
        }
        i = relu ? after : after - 1;  // the fused BatchNorm and ReLU are consumed
      } else if (auto linear = as<torch::nn::LinearImpl>(child)) {
        const bool relu = as<torch::nn::ReLUImpl>(next(i + 1)) != nullptr;
        const auto specs = specs_for(child.get(), linear->weight, /*groups=*/1, name, relu);
        out->push_back(key, QuantLinear(torch::nn::Linear(linear), specs).ptr());
        if (relu) ++i;
      } else {
        TORCH_CHECK(!as<QuantizerImpl>(child) && !dynamic_cast<QuantWeighted*>(child.get()),
                    "prepare_qat: this model is already prepared ('", name, "' is a torchqat layer)");
        out->push_back(key, *(seq->begin() + static_cast<std::ptrdiff_t>(i)));
      }
    }
    return out;
  }
};

// The module and its descendants; `model` itself may live on the stack
// (Module::modules() with the root needs it held by a shared_ptr).
template <class Impl, class Fn>
void for_each(torch::nn::Module& model, Fn fn) {
  if (auto* self = dynamic_cast<Impl*>(&model)) fn(*self);
  for (const auto& m : model.modules(/*include_self=*/false)) {
    if (auto* impl = dynamic_cast<Impl*>(m.get())) fn(*impl);
  }
}

template <class Fn>
void for_each_quantizer(torch::nn::Module& model, Fn fn) {
  for_each<QuantizerImpl>(model, fn);
}

}  // namespace

torch::nn::Sequential prepare_qat(const torch::nn::Sequential& model, const QConfig& qconfig) {
  if (qconfig.weight) qconfig.weight->validate();
  if (qconfig.activation) qconfig.activation->validate();
  const auto layers = quantizable_layers(model);
  Rewriter r{qconfig};
  if (!layers.empty()) {
    r.first = layers.front();
    r.last = layers.back();
  }
  auto prepared = r.rewrite(model);
  prepared->train(model->is_training());
  return prepared;
}

void enable_fake_quant(torch::nn::Module& model, bool on) {
  for_each_quantizer(model, [on](QuantizerImpl& q) { q.enable_fake_quant(on); });
}

void enable_observer(torch::nn::Module& model, bool on) {
  for_each_quantizer(model, [on](QuantizerImpl& q) { q.enable_observer(on); });
}

void freeze(torch::nn::Module& model) {
  for_each_quantizer(model, [](QuantizerImpl& q) { q.freeze(); });
}

void freeze_bn_stats(torch::nn::Module& model, bool frozen) {
  for_each<QuantConvBn2dImpl>(model, [frozen](QuantConvBn2dImpl& cb) { cb.freeze_bn_stats(frozen); });
}

std::string summary(torch::nn::Module& model) {
  std::ostringstream out;
  const auto text = [](const Quantizer& q) { return q ? q->spec().describe() : std::string("float"); };
  const auto scale = [](const Quantizer& q) -> std::string {
    if (!q) return "-";
    try {
      const auto s = std::get<0>(q->qparams());
      std::ostringstream o;
      o << std::setprecision(4) << s.min().item<float>();
      if (s.numel() > 1) o << ".." << s.max().item<float>();
      return o.str();
    } catch (const c10::Error&) {
      return "(no data yet)";
    }
  };
  out << "| layer | kind | weight | weight scale | input | input scale |\n|---|---|---|---|---|---|\n";
  const auto row = [&](const torch::nn::Module& module, const std::string& path) {
    const auto* layer = dynamic_cast<const QuantWeighted*>(&module);
    if (!layer) return;
    out << "| " << (path.empty() ? layer->layer_name : path) << " | " << module.name() << (layer->relu ? "+ReLU" : "")
        << " | " << text(layer->weight_quantizer) << " | " << scale(layer->weight_quantizer) << " | "
        << text(layer->input_quantizer) << " | " << scale(layer->input_quantizer) << " |\n";
  };
  row(model, "");  // as for_each: the root may live on the stack
  for (const auto& item : model.named_modules("", /*include_self=*/false)) row(*item.value(), item.key());
  return out.str();
}

}  // namespace torchqat
