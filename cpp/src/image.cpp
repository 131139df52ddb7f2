// 2D: one encoder run (or the embedding an EmbeddingStore kept), then the boxes in chunks on the dynamic-batch
// decoder: one after another with every thread, or (many chunks, several streams) spread over the lanes.
#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <string>

#include "embedding_cache.hpp"
#include "engine_impl.hpp"
#include "repmedsam/errors.hpp"

namespace repmedsam {
namespace {

std::string box_text(const double* b, int k) {
  std::string s = "[";
  for (int j = 0; j < k; ++j) {
    char buf[32];
    std::snprintf(buf, sizeof buf, "%g", b[j]);
    s += (j ? ", " : "") + std::string(buf);
  }
  return s + "]";
}

void check_boxes_2d(const double* boxes, int n, int h, int w) {
  for (int i = 0; i < n; ++i) {
    const double* b = boxes + 4 * i;
    const std::string where = "boxes[" + std::to_string(i) + "] = " + box_text(b, 4) + ": ";
    for (int j = 0; j < 4; ++j)
      if (!std::isfinite(b[j])) throw InvalidInput(where + "not finite.");
    if (b[2] < b[0] || b[3] < b[1]) throw InvalidInput(where + "max < min. Boxes are [x_min, y_min, x_max, y_max].");
    if (b[0] < 0 || b[1] < 0 || b[2] > w || b[3] > h)
      throw InvalidInput(where + "outside the " + std::to_string(h) + "x" + std::to_string(w) + " image.");
  }
}

template <class L>
void segment(Segmenter::Impl& s, const ImageView& im, const double* boxes, int n, L* labels, Trace* trace,
             EmbeddingStore* store, Progress* progress) {
  const size_t pixels = static_cast<size_t>(im.h) * im.w;
  std::memset(labels, 0, pixels * sizeof(L));
  detail::StageClock clock;
  auto encode = [&] {
    detail::EncoderRequest& encoder = s.image_encoder();
    clock.time(detail::StageClock::kPreprocess, [&] {
      preprocess_image(im.data, im.h, im.w, im.channels, encoder.input(), s.lanes.front().scratch);
    });
    return clock.time(detail::StageClock::kEncoder, [&] { return encoder.run(); });
  };
  detail::EmbeddingCache* cache = store ? &store->impl().cache : nullptr;
  const int encoded_before = cache ? cache->computed() : 0;
  const auto embedding = cache ? cache->get(0, encode) : encode();
  const Upsampler up(resized_extent(im.h, im.w), im.h, im.w);

  std::vector<Box> model_boxes(static_cast<size_t>(n));
  for (int i = 0; i < n; ++i) model_boxes[i] = scale_box(boxes + 4 * i, im.h, im.w);

  // At most decoder_batch boxes per call: the split depends on n alone, never on the thread count. A few
  // calls run one after another with every thread; many are spread over the lanes' streams (two 1-thread
  // decoders out-run one 2-thread decoder by ~20% here), which is worth compiling the lanes' networks for
  // (~0.6 s, once per Segmenter) only past some dozens of boxes.
  constexpr int kLaneChunks = 4;
  const int batch = s.options.decoder_batch;
  const int chunks = (n + batch - 1) / batch;
  const bool on_lanes = s.streams > 1 && chunks >= kLaneChunks;
  std::atomic<int> next{0};
  std::atomic<bool> stop{false};
  constexpr int kLocks = 64;
  std::mutex row_locks[kLocks];
  const int workers = on_lanes ? std::min<int>(static_cast<int>(s.lanes.size()), chunks) : 1;
  if (on_lanes) s.prepare_lanes(true);
  detail::run_workers(workers, [&](int lane_index) {
    detail::DecoderRequest& decoder = on_lanes ? s.lane_decoder_2d(lane_index) : s.image_decoder();
    for (int c; !stop && (c = next++) < chunks;) {
      detail::check_cancelled(progress);
      const int begin = c * batch, k = std::min(n - begin, batch);
      auto run = [&] {
        clock.time(detail::StageClock::kDecoder, [&] { decoder.run(embedding->data(), &model_boxes[begin], k); });
      };
      if (on_lanes) clock.in_slot(*s.slots, run);
      else run();  // alone on the CPU
      if (progress) progress->add_steps(k);
      clock.time(detail::StageClock::kPostprocess, [&] {
        for (int j = 0; j < k; ++j)
          detail::paint_max(up, decoder.logits(j), static_cast<L>(begin + j + 1), labels, row_locks, kLocks);
      });
    }
  }, [&] { stop = true; });

  if (trace) {
    trace->decoder_boxes.assign(static_cast<size_t>(n), {});
    for (int i = 0; i < n; ++i) trace->decoder_boxes[i] = {model_boxes[i]};
    trace->encoder_runs = cache ? cache->computed() - encoded_before : 1;
    trace->decoder_calls = chunks;
    clock.report(*trace);
  }
}

}  // namespace

void Segmenter::Impl::run_2d(const ImageView& im, const double* boxes, int n, LabelsView labels, Trace* trace,
                             EmbeddingStore* store, Progress* progress) {
  if (!im.data || !boxes || !labels.data) throw InvalidInput("image, boxes and labels must not be null.");
  if (im.h < 1 || im.w < 1) throw InvalidInput("the image must be at least 1x1 pixels.");
  if (im.channels != 1 && im.channels != 3)
    throw InvalidInput("the image must be grey (H, W) or RGB (H, W, 3), got " + std::to_string(im.channels) + " channels.");
  detail::check_label_count(n, labels.wide);
  check_boxes_2d(boxes, n, im.h, im.w);
  if (store) store->impl().bind({0, im.h, im.w, im.channels});
  detail::check_cancelled(progress);
  if (labels.wide)
    segment(*this, im, boxes, n, static_cast<uint16_t*>(labels.data), trace, store, progress);
  else
    segment(*this, im, boxes, n, static_cast<uint8_t*>(labels.data), trace, store, progress);
}

}  // namespace repmedsam
