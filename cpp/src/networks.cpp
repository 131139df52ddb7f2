#include "networks.hpp"

#include <algorithm>

#include "ov_guard.hpp"

namespace repmedsam::detail {

ov::CompiledModel compile(ov::Core& core, const std::shared_ptr<ov::Model>& model, const std::string& path,
                          bool use_path, const CompileSettings& s, const std::string& what) {
  ov::AnyMap props{ov::hint::inference_precision(s.inference_precision), ov::num_streams(s.streams)};
  if (s.threads > 0) props.emplace(ov::inference_num_threads(s.threads));
  return guarded(what + ": OpenVINO could not compile it for the CPU", [&] {
    return use_path ? core.compile_model(path, "CPU", props) : core.compile_model(model, "CPU", props);
  });
}

EncoderRequest::EncoderRequest(ov::CompiledModel& model) {
  guarded("cannot create an encoder infer request", [&] {
    request_ = model.create_infer_request();
    input_ = ov::Tensor(ov::element::f32, ov::Shape{1, 3, kImageSize, kImageSize});
    request_.set_tensor("image", input_);
  });
}

float* EncoderRequest::input() { return input_.data<float>(); }

std::shared_ptr<const Embedding> EncoderRequest::run() {
  return guarded("the image encoder failed", [&] {
    request_.infer();
    const ov::Tensor out = request_.get_tensor("embedding");
    if (out.get_size() != kEmbeddingSize)
      throw ModelError("the image encoder returned " + std::to_string(out.get_size()) + " values, expected 256x64x64.");
    const float* p = out.data<const float>();
    return std::make_shared<const Embedding>(p, p + kEmbeddingSize);  // the owned copy
  });
}

DecoderRequest::DecoderRequest(ov::CompiledModel& model) {
  guarded("cannot create a decoder infer request", [&] { request_ = model.create_infer_request(); });
}

void DecoderRequest::run(const float* embedding, const Box* boxes, int k) {
  guarded("the mask decoder failed", [&] {
    // The embedding is only read; wrapping it avoids copying 4 MiB per call.
    request_.set_tensor("embedding", ov::Tensor(ov::element::f32, ov::Shape{1, 256, 64, 64},
                                                const_cast<float*>(embedding)));
    ov::Tensor box_tensor(ov::element::f32, ov::Shape{static_cast<size_t>(k), 4});
    float* b = box_tensor.data<float>();
    for (int i = 0; i < k; ++i)
      for (int j = 0; j < 4; ++j) b[4 * i + j] = static_cast<float>(boxes[i][j]);
    request_.set_tensor("boxes", box_tensor);
    request_.infer();
    const ov::Tensor out = request_.get_tensor("low_res_logits");
    const size_t per_box = static_cast<size_t>(kImageSize) * kImageSize;
    if (out.get_size() != per_box * static_cast<size_t>(k))
      throw ModelError("the mask decoder returned " + std::to_string(out.get_size()) + " logits for " +
                       std::to_string(k) + " boxes, expected 256x256 each.");
    logits_ = out.data<const float>();
    count_ = k;
  });
}

const float* DecoderRequest::logits(int i) const {
  return logits_ + static_cast<size_t>(std::clamp(i, 0, count_ - 1)) * kImageSize * kImageSize;
}

}  // namespace repmedsam::detail
