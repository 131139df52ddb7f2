// Segmenter::Impl, shared by segmenter.cpp (setup), image.cpp (2D) and volume.cpp (3D). Internal header.
#pragma once
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include <openvino/runtime/core.hpp>

#include "model_dir.hpp"
#include "networks.hpp"
#include "repmedsam/engine.hpp"

namespace repmedsam {

// A worker lane: one thread during a call, with its own infer requests and scratch memory. There is one
// lane more than OpenVINO streams, so a lane's pre- and postprocessing overlaps the others' inference;
// Impl::slots keeps the inferences in flight to the number of streams.
struct Lane {
  std::unique_ptr<detail::EncoderRequest> encoder;
  std::unique_ptr<detail::DecoderRequest> decoder;
  std::unique_ptr<detail::DecoderRequest> decoder_2d;  // only where 2D decodes at another precision (bf16-2d)
  std::vector<uint8_t> scratch, mask;
};

namespace detail {

// A counting semaphore: at most `count` holders at once. Encoder and decoder have a streams executor each,
// so without it a third lane's inference would queue inside OpenVINO (or crowd the cores) unseen.
class Slots {
 public:
  explicit Slots(int count) : free_(count) {}
  void acquire() {
    std::unique_lock<std::mutex> lock(mutex_);
    freed_.wait(lock, [&] { return free_ > 0; });
    --free_;
  }
  void release() {
    std::lock_guard<std::mutex> lock(mutex_);
    ++free_;
    freed_.notify_one();
  }

 private:
  std::mutex mutex_;
  std::condition_variable freed_;
  int free_;
};

}  // namespace detail

struct Segmenter::Impl {
  Options options;
  Precision precision = Precision::F32;  // resolved
  int streams = 1;
  std::string model_dir;
  ov::Core core;
  detail::ModelFolder folder;  // the validated IR: paths, read models, rt_info (destroyed before core)
  // the encoder's; the 3D decoder's and the 2D decoder's (their precision may differ from the encoder's)
  detail::CompileSettings settings, decoder_settings, image_decoder_settings;
  bool compile_from_path = false;
  // Networks are compiled on first use, each (network, precision, streams) once: start-up only pays for
  // what its calls need (compiling takes ~0.3 s a network). 2D encodes one image, and decodes a lone box in
  // one call: on a stream of a multi-stream compile that would leave threads idle, so 2D uses compiles for
  // one stream with every thread (the same ones as the lanes' where there is one stream). Declared before
  // the requests, so that they are destroyed first.
  std::map<std::string, ov::CompiledModel> compiled;
  ov::CompiledModel& compiled_model(bool encoder, detail::CompileSettings settings, int streams);
  std::vector<Lane> lanes;
  std::unique_ptr<detail::Slots> slots;  // one per stream: inferences in flight across both networks
  std::mutex call_mutex;  // calls serialise: each already uses every lane and thread

  std::unique_ptr<detail::EncoderRequest> image_encoder_request;
  std::unique_ptr<detail::DecoderRequest> image_decoder_request, whole_decoder_3d_request;
  detail::EncoderRequest& image_encoder();
  detail::DecoderRequest& image_decoder();
  detail::DecoderRequest& whole_decoder_3d();  // the 3D decoder on one stream: only to time it
  // Makes the lanes' requests (encoder and 3D decoder, or the 2D decoder) unless made; before lanes start.
  void prepare_lanes(bool for_2d);
  detail::DecoderRequest& lane_decoder_2d(int lane);  // a lane's request for 2D box chunks

  void run_2d(const ImageView& image, const double* boxes, int n, LabelsView labels, Trace* trace,
              EmbeddingStore* store, Progress* progress);
  void run_3d(const VolumeView& volume, const double* boxes, int n, LabelsView labels, Trace* trace,
              EmbeddingStore* store, Progress* progress);
};

namespace detail {

// Runs fn(lane) on `count` threads (the caller's included) and rethrows the first exception after all
// have stopped; on_error lets the others stop early (it must make their loops end).
void run_workers(int count, const std::function<void(int)>& fn, const std::function<void()>& on_error);

// Paints `label` where the upsampled logits are > 0, keeping the larger label where masks overlap: the
// reference paints in box order with later boxes winning, and labels grow with the box order, so taking
// the maximum gives the same image whatever order the masks arrive in.
template <class L>
void paint_max(const Upsampler& up, const float* logits, L label, L* out, std::mutex* row_locks, int lock_count) {
  const Rect r = up.candidates(logits);
  std::vector<uint8_t> row_mask(static_cast<size_t>(std::max(r.x1 - r.x0, 0)));
  for (int y = r.y0; y < r.y1; ++y) {
    bool any = false;
    for (int x = r.x0; x < r.x1; ++x) any |= (row_mask[x - r.x0] = up.value(logits, y, x) > 0.0f);
    if (!any) continue;
    L* row = out + static_cast<size_t>(y) * up.w;
    std::lock_guard<std::mutex> lock(row_locks[y % lock_count]);
    for (int x = r.x0; x < r.x1; ++x)
      if (row_mask[x - r.x0] && row[x] < label) row[x] = label;
  }
}

// Per-stage time summed over the lanes (atomic counters, so lanes may add at once), for Trace.
class StageClock {
 public:
  // kWait: a walk waiting for a slice another lane is encoding, or for a free inference slot.
  enum Stage { kPreprocess, kEncoder, kPrompt, kDecoder, kPostprocess, kWait, kStages };
  StageClock() : start_(std::chrono::steady_clock::now()) {}

  // Runs fn() and adds its duration to `stage`; returns what fn returns.
  template <class Fn>
  auto time(Stage stage, Fn&& fn) {
    using clock = std::chrono::steady_clock;
    struct Add {  // on every exit, exceptions included
      std::atomic<int64_t>& total;
      clock::time_point t0;
      ~Add() { total += std::chrono::duration_cast<std::chrono::nanoseconds>(clock::now() - t0).count(); }
    } add{nanos_[stage], clock::now()};
    return fn();
  }
  void add(Stage stage, std::chrono::nanoseconds d) { nanos_[stage] += d.count(); }
  // Runs fn() holding one of `slots`, the time spent waiting for it counted as kWait.
  template <class Fn>
  auto in_slot(Slots& slots, Fn&& fn) {
    time(kWait, [&] { slots.acquire(); });
    struct Release {
      Slots& s;
      ~Release() { s.release(); }
    } release{slots};
    return fn();
  }
  void report(Trace& trace) const;

 private:
  std::chrono::steady_clock::time_point start_;
  std::atomic<int64_t> nanos_[kStages] = {};
};

// Checks shared by 2D and 3D: sizes that fit the index arithmetic, at most 65535 boxes.
void check_label_count(int n, bool wide);

// Throws Cancelled when the caller's Progress (may be null) has been cancelled: checked before each step.
void check_cancelled(const Progress* progress);

}  // namespace detail
}  // namespace repmedsam
