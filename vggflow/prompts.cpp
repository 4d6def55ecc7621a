#include "vggflow/prompts.h"

#include "autograd/ops.h"
#include "tensor/error.h"

namespace vgg::flow {

PromptEncoder::PromptEncoder(int64_t num_prompts, int64_t n_tokens, int64_t token_dim, int64_t pooled_dim,
                             nn::LayerOptions o)
    : num_prompts_(num_prompts) {
  VGG_CHECK(num_prompts >= 2 && n_tokens > 0 && token_dim > 0 && pooled_dim > 0,
            "PromptEncoder: need >= 2 prompts and positive sizes, got ", num_prompts, " prompts, ", n_tokens,
            " tokens, widths ", token_dim, " / ", pooled_dim);
  tokens = nn::new_parameter({num_prompts, n_tokens, token_dim}, o);
  pooled = nn::new_parameter({num_prompts, pooled_dim}, o);
  register_parameter("tokens", tokens);
  register_parameter("pooled", pooled);
  if (!o.deferred) reset_parameters(o.gen);
}

void PromptEncoder::reset_parameters(Generator* gen) {
  nn::normal_(tokens, 0.0, 1.0, gen);
  nn::normal_(pooled, 0.0, 1.0, gen);
}

Conditioning PromptEncoder::encode(const Tensor& ids) const {
  VGG_CHECK(ids.dim() == 1 && (ids.dtype() == DType::I64 || ids.dtype() == DType::I32),
            "PromptEncoder: ids must be a 1-D integer tensor, got ", describe(ids));
  for (double v : ids.to_vector())
    VGG_CHECK(v >= 0 && v < static_cast<double>(num_prompts_), "PromptEncoder: prompt id ", v, " is outside [0, ",
              num_prompts_, ")");
  return {ops::index_select(tokens, 0, ids), ops::index_select(pooled, 0, ids)};
}

Tensor PromptEncoder::drop(const Tensor& ids, double p, Generator& gen) const {
  VGG_CHECK(p >= 0 && p <= 1, "PromptEncoder: drop probability must be in [0, 1], got ", p);
  Tensor u = rand({ids.size(0)}, opts(DType::F64), &gen);
  std::vector<int64_t> out;
  std::vector<double> v = ids.to_vector();
  for (int64_t i = 0; i < ids.size(0); ++i)
    out.push_back(u.at({i}) < p ? empty_id() : static_cast<int64_t>(v[static_cast<size_t>(i)]));
  return from_vector(out, {ids.size(0)});
}

int64_t prompt_id(const std::string& text, const std::vector<std::string>& classes) {
  if (text.empty()) return static_cast<int64_t>(classes.size());
  for (size_t i = 0; i < classes.size(); ++i)
    if (classes[i] == text) return static_cast<int64_t>(i);
  std::string all;
  for (const auto& c : classes) all += (all.empty() ? "\"" : ", \"") + c + "\"";
  VGG_FAIL("unknown prompt \"", text, "\" (known: ", all, ", or \"\" for the empty prompt)");
}

}  // namespace vgg::flow
