#include "vggflow/nets.h"

#include "autograd/ops.h"
#include "tensor/error.h"

namespace vgg::flow {

FeatureNet::FeatureNet(const std::string& kind, nn::LayerOptions o) : kind_(kind) {
  if (kind == "fa") {
    conv1 = std::make_shared<nn::Conv2d>(1, 32, 3, 1, 1, true, o);
    conv2 = std::make_shared<nn::Conv2d>(32, 64, 3, 1, 1, true, o);
    conv3 = std::make_shared<nn::Conv2d>(64, 128, 3, 1, 1, true, o);
    fc = std::make_shared<nn::Linear>(128 * 4 * 4, 128, true, o);
    head = std::make_shared<nn::Linear>(128, 10, true, o);
    register_module("conv1", conv1);
    register_module("conv2", conv2);
    register_module("conv3", conv3);
    register_module("fc", fc);
  } else if (kind == "fb") {
    conv1 = std::make_shared<nn::Conv2d>(1, 24, 5, 1, 2, true, o);
    conv2 = std::make_shared<nn::Conv2d>(24, 48, 5, 1, 2, true, o);
    fc = std::make_shared<nn::Linear>(48 * 8 * 8, 96, true, o);
    head = std::make_shared<nn::Linear>(96, 10, true, o);
    register_module("conv1", conv1);
    register_module("conv2", conv2);
    register_module("fc", fc);
  } else {
    VGG_FAIL("FeatureNet: unknown kind '", kind, "' (fa or fb)");
  }
  register_module("head", head);
}

Tensor FeatureNet::logits_from_embedding(const Tensor& e) {
  const Device d = param_device();
  return e.device() == d ? head->forward(e) : ops::to(head->forward(ops::to(e, d)), e.device());
}

Tensor FeatureNet::embed(const Tensor& x) {
  VGG_CHECK(x.dim() == 4 && x.size(1) == 1 && x.size(2) == 32 && x.size(3) == 32, "FeatureNet(", kind_,
            "): images must be [B, 1, 32, 32], got ", describe(x));
  const Device d = param_device();  // on the network's device, the result back on x's
  if (x.device() != d) return ops::to(embed(ops::to(x, d)), x.device());
  if (kind_ == "fa") {
    Tensor h = ops::avg_pool2d(ops::silu(conv1->forward(x)), 2, 2, {2, 2, 0, 0});
    h = ops::avg_pool2d(ops::silu(conv2->forward(h)), 2, 2, {2, 2, 0, 0});
    h = ops::avg_pool2d(ops::silu(conv3->forward(h)), 2, 2, {2, 2, 0, 0});  // [B, 128, 4, 4]
    return ops::silu(fc->forward(ops::flatten(h, 1)));                       // [B, 128]
  }
  Tensor h = ops::avg_pool2d(ops::gelu(conv1->forward(x)), 2, 2, {2, 2, 0, 0});
  h = ops::avg_pool2d(ops::gelu(conv2->forward(h)), 2, 2, {2, 2, 0, 0});  // [B, 48, 8, 8]
  return ops::gelu(fc->forward(ops::flatten(h, 1)));
}

}  // namespace vgg::flow
