// Options of a Segmenter: light values chosen once when the model is compiled.
#pragma once
#include <string>

namespace repmedsam {

// Inference precision. Auto picks what is fastest within the accuracy bound on this CPU: bf16 where the
// CPU computes bf16 natively (AMX or AVX512-BF16) and the model's encoder.xml is not marked
// bf16_accuracy_ok "false", otherwise int8 when the model folder has an encoder_int8.xml marked
// int8_accuracy_ok, otherwise f32.
// BF16Encoder: the image encoder in bf16, the mask decoder in f32 (3D walks feed each mask back as the next
// slice's box, so the decoder's rounding compounds there). BF16For2D: bf16 for 2D images, and 3D walks as
// BF16Encoder (bf16 encoder, f32 decoder).
enum class Precision { Auto, F32, BF16, BF16Encoder, BF16For2D, Int8 };

// "auto" | "f32" | "bf16" | "bf16-encoder" | "bf16-2d" | "int8" -> Precision; throws InvalidInput naming the
// accepted values.
Precision parse_precision(const std::string& name);
std::string to_string(Precision p);

struct Options {
  Precision precision = Precision::Auto;
  int threads = 0;  // inference threads in total; 0 = OpenVINO's default (all physical cores)
  // Parallel inferences (OpenVINO streams; the threads are split between them); 0 = auto: 1 up to 2 threads
  // (measured fastest there), else 2. A 2D image is always encoded by one stream with every thread.
  int streams = 0;
  std::string cache_dir;  // OpenVINO compiled-model cache, so a second process starts fast; "" = off
  // 3D: most slice embeddings kept at once (4 MiB each). Evicted slices are re-encoded when needed again,
  // which gives the same result. 256 (1 GiB) keeps a 300x512x512 volume with 6 objects under 2 GB RSS.
  int max_cached_slices = 256;
  // Most boxes per decoder call: 2D boxes, and 3D walk steps on the same slice. Memory grows with it (some
  // 25 MB per box in flight at f32); the time per box hardly drops beyond 8. Results do not depend on it.
  int decoder_batch = 8;
};

}  // namespace repmedsam
