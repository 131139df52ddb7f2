// Segmenter::time_networks: the networks' own speed on this CPU (one inference with every thread), the floor
// that `bench --profile` holds each case's time against. Inputs are fixed patterns: the time of these
// networks does not depend on the pixel values.
#include <algorithm>
#include <chrono>
#include <vector>

#include "engine_impl.hpp"
#include "repmedsam/errors.hpp"

namespace repmedsam {
namespace {

template <class Fn>
double median_seconds(int repeats, Fn&& fn) {
  fn();  // warm-up: first inferences allocate and tune
  std::vector<double> t;
  for (int i = 0; i < repeats; ++i) {
    const auto t0 = std::chrono::steady_clock::now();
    fn();
    t.push_back(std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count());
  }
  std::nth_element(t.begin(), t.begin() + t.size() / 2, t.end());
  return t[t.size() / 2];
}

}  // namespace

std::map<std::string, double> Segmenter::time_networks(int repeats) {
  if (repeats < 1) throw InvalidInput("repeats must be at least 1, got " + std::to_string(repeats) + ".");
  std::lock_guard<std::mutex> lock(impl_->call_mutex);
  Impl& s = *impl_;
  std::map<std::string, double> out;
  detail::EncoderRequest& encoder = s.image_encoder();
  float* input = encoder.input();
  for (size_t i = 0; i < 3u * kImageSize * kImageSize; ++i) input[i] = static_cast<float>(i % 251) / 250.f;
  out["encoder"] = median_seconds(repeats, [&] { encoder.run(); });
  const auto embedding = encoder.run();

  const int batch = s.options.decoder_batch;
  std::vector<Box> boxes(static_cast<size_t>(batch));
  for (int i = 0; i < batch; ++i) boxes[i] = {40 + 4 * i, 50 + 2 * i, 180 + 3 * i, 200 - i};
  auto time_decoder = [&](detail::DecoderRequest& decoder, const std::string& name) {
    out[name] = median_seconds(repeats, [&] { decoder.run(embedding->data(), boxes.data(), 1); });
    out[name + "_batched"] =
        median_seconds(repeats, [&] { decoder.run(embedding->data(), boxes.data(), batch); }) / batch;
  };
  time_decoder(s.image_decoder(), "decoder_2d");
  if (s.decoder_settings.inference_precision == s.image_decoder_settings.inference_precision) {
    out["decoder_3d"] = out["decoder_2d"];
    out["decoder_3d_batched"] = out["decoder_2d_batched"];
  } else {
    time_decoder(s.whole_decoder_3d(), "decoder_3d");
  }
  return out;
}

}  // namespace repmedsam
