// repmedsam::Segmenter: Rep-MedSAM box-prompted segmentation of 2D images and 3D volumes on the CPU.
//
//   repmedsam::Options opts;                      // precision auto, all cores
//   repmedsam::Segmenter seg("models/rep_medsam", opts);
//   std::vector<uint8_t> labels(h * w);
//   seg.segment_2d({image, h, w, 3}, boxes_xyxy, n, {labels.data(), false});
//   seg.segment_3d({volume, d, h, w}, boxes_xyzxyz, n, {labels3d.data(), false});
//
//   // Interactive use: one image (or volume) segmented again and again; its slices are encoded once.
//   repmedsam::EmbeddingStore store(64);
//   repmedsam::Progress progress;                 // another thread may read steps() or call cancel()
//   seg.segment_3d({volume, d, h, w}, box, 1, {labels3d.data(), false}, nullptr, &store, &progress);
//
// The model folder holds encoder.xml/.bin and decoder.xml/.bin (optionally encoder_int8.xml/.bin) with
// rt_info "model_info" metadata; it is validated and compiled once. Calls on one Segmenter serialise (one
// runs at a time, using all the threads it was given); they may come from any thread. The reference
// semantics reproduced here are those of ARCHITECTURE.md §2.
#pragma once
#include <array>
#include <atomic>
#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "repmedsam/options.hpp"

namespace repmedsam {

// uint8 image, row-major h x w x channels (channels 1 = grey, 3 = RGB).
struct ImageView {
  const uint8_t* data;
  int h, w, channels;
};

// uint8 volume, row-major d x h x w (slices along the first axis).
struct VolumeView {
  const uint8_t* data;
  int d, h, w;
};

// Label output, same pixel layout as the input without channels; uint8 or (wide) uint16. Overwritten.
struct LabelsView {
  void* data;
  bool wide;
};

// What a call did, for tests and benchmarks.
struct Trace {
  // Per object (row of boxes): every model-space box [x0, y0, x1, y1] handed to the decoder, in the
  // reference's call order (3D: the upward walk from the middle slice, then the downward walk).
  std::vector<std::vector<std::array<int, 4>>> decoder_boxes;
  int encoder_runs = 0;    // slices (or images) encoded, re-encodes after eviction included
  int decoder_calls = 0;   // decoder inferences (boxes of one slice are batched, 2D and 3D)
  // Where the time went, in seconds summed over the worker threads (stages of different threads overlap,
  // so the sum can exceed wall_seconds): image resize + normalisation, encoder inference, the 3D walk's
  // next-slice prompt, decoder inference, upsampling + painting the masks, and waiting (for a slice another
  // thread is encoding, or for a free inference stream; an idle thread with nothing to do is not counted).
  double preprocess_seconds = 0, encoder_seconds = 0, prompt_seconds = 0, decoder_seconds = 0,
         postprocess_seconds = 0, wait_seconds = 0, wall_seconds = 0;
};

// Slice embeddings of one image or volume kept between calls (interactive use): the first call that needs a
// slice encodes it, later calls on that slice only run the decoder. Owned copies, at most `max_slices` of them
// (4 MiB each; the least recently used is dropped and encoded again when needed, with the same result).
// A store belongs to the image of its first call: a call with another size or kind throws InvalidInput; the
// caller must not change the pixels. Safe to share between threads.
class EmbeddingStore {
 public:
  explicit EmbeddingStore(int max_slices);
  ~EmbeddingStore();
  EmbeddingStore(const EmbeddingStore&) = delete;
  EmbeddingStore& operator=(const EmbeddingStore&) = delete;
  int encoded() const;  // slices encoded so far, by all calls, re-encodes after eviction included

  struct Impl;
  Impl& impl() { return *impl_; }

 private:
  std::unique_ptr<Impl> impl_;
};

// Progress of one call, for other threads: steps() counts decoder runs done (2D: boxes; 3D: slices of all
// walks); cancel() makes the call stop before its next step and throw Cancelled (its labels are then
// incomplete). A Progress cancelled before its call starts stops it at once.
class Progress {
 public:
  void cancel() { cancelled_ = true; }
  bool cancelled() const { return cancelled_; }
  int steps() const { return steps_; }
  void add_steps(int k) { steps_ += k; }

 private:
  std::atomic<bool> cancelled_{false};
  std::atomic<int> steps_{0};
};

class Segmenter {
 public:
  // Opens and validates model_dir, compiles encoder and decoder for the CPU. Throws ModelError (folder
  // unusable) or InvalidInput (bad options, e.g. bf16 on a CPU without bf16 support).
  Segmenter(const std::string& model_dir, const Options& options);
  ~Segmenter();
  Segmenter(const Segmenter&) = delete;
  Segmenter& operator=(const Segmenter&) = delete;

  // boxes: n x 4 [x_min, y_min, x_max, y_max] pixel coordinates of the image (x to the right, y down),
  // 0 <= min <= max <= w (or h). Label i+1 marks box i's mask; later boxes overwrite earlier ones.
  // store and progress are optional (see EmbeddingStore and Progress).
  void segment_2d(const ImageView& image, const double* boxes, int n, LabelsView labels, Trace* trace = nullptr,
                  EmbeddingStore* store = nullptr, Progress* progress = nullptr);

  // boxes: n x 6 [x_min, y_min, z_min, x_max, y_max, z_max], x/y in pixels of a slice as above, z slice
  // indices with 0 <= z_min <= z_max < d (z_max inclusive, integral).
  void segment_3d(const VolumeView& volume, const double* boxes, int n, LabelsView labels, Trace* trace = nullptr,
                  EmbeddingStore* store = nullptr, Progress* progress = nullptr);

  // Facts for users and logs: model_dir, precision (resolved), threads, streams, and the model's rt_info.
  std::map<std::string, std::string> describe() const;

  // Median seconds of one inference with every thread on one stream (the floor a case is measured against):
  // "encoder" (one image), and per box "decoder_3d" / "decoder_2d" at one box a call and
  // "decoder_3d_batched" / "decoder_2d_batched" at decoder_batch boxes a call (the 3D and 2D decoders differ
  // only at bf16-2d). Runs each `repeats` times after a warm-up (repeats >= 1, else InvalidInput).
  std::map<std::string, double> time_networks(int repeats);

  struct Impl;

 private:
  std::unique_ptr<Impl> impl_;
};

}  // namespace repmedsam
