// The two networks as the engine uses them: compiling with the chosen precision and threading, and one
// infer request each per worker lane. Internal header.
#pragma once
#include <memory>
#include <string>
#include <vector>

#include <openvino/runtime/compiled_model.hpp>
#include <openvino/runtime/core.hpp>
#include <openvino/runtime/infer_request.hpp>

#include "repmedsam/preprocess.hpp"

namespace repmedsam::detail {

constexpr size_t kEmbeddingSize = 256 * 64 * 64;
using Embedding = std::vector<float>;

struct CompileSettings {
  ov::element::Type inference_precision;
  int threads = 0;  // 0 = plugin default
  int streams = 1;
};

// Compiles from the IR path when an OpenVINO cache is configured (a cache hit then skips reading the model),
// otherwise from the model already read and validated.
ov::CompiledModel compile(ov::Core& core, const std::shared_ptr<ov::Model>& model, const std::string& path,
                          bool use_path, const CompileSettings& settings, const std::string& what);

class EncoderRequest {
 public:
  explicit EncoderRequest(ov::CompiledModel& model);
  float* input();  // 3 x 256 x 256, filled by preprocess_image
  // Runs the encoder on input() and returns an owned copy of the embedding: OpenVINO reuses its output
  // buffer on the next inference, so a cached pointer into it would be silently overwritten.
  std::shared_ptr<const Embedding> run();

 private:
  ov::InferRequest request_;
  ov::Tensor input_;
};

class DecoderRequest {
 public:
  explicit DecoderRequest(ov::CompiledModel& model);
  // Decodes k model-space boxes against one embedding; the logits stay valid until the next run.
  void run(const float* embedding, const Box* boxes, int k);
  const float* logits(int i) const;  // 256 x 256 for box i of the last run

 private:
  ov::InferRequest request_;
  const float* logits_ = nullptr;
  int count_ = 0;
};

}  // namespace repmedsam::detail
