// 3D: per object an upward walk from the middle slice and a downward walk below it (ARCHITECTURE.md §2),
// each step prompted by the object's own mask on the previous slice. Steps of all walks run on the lanes
// concurrently; slice embeddings come from a shared lazy cache (the call's own, or an EmbeddingStore's).
// Every decoder call has one box and each walk's steps run in order, so the result does not depend on
// scheduling or thread count.
#include <algorithm>
#include <atomic>
#include <cmath>
#include <condition_variable>
#include <cstring>
#include <deque>
#include <memory>
#include <string>

#include "embedding_cache.hpp"
#include "engine_impl.hpp"
#include "repmedsam/errors.hpp"

namespace repmedsam {
namespace {

struct Walk {
  int object = 0;  // row of boxes; its label is object + 1
  int dir = 1;     // +1 upward from z_mid, -1 downward from z_mid - 1
  int z = 0;       // the next slice to segment
  int z_last = 0;
  Box mid_box{};
  std::vector<uint8_t> mask;  // the object's mask on the walk's previous slice (reference: its temp volume)
  Rect rect;                  // where `mask` may be non-zero
  std::vector<Box> boxes;     // decoder prompts, in order
  Walk* then = nullptr;       // the downward walk this upward walk releases after its first slice
};

// Hands out one step (one slice of one walk) at a time, round-robin over the open walks, so walks move
// through the volume side by side: the slices they need at any moment are few, and a small embedding
// cache is enough even for volumes with more slices than it holds. Walks are opened in object order, at
// most kMaxOpen upward walks at once (each open walk holds one slice-sized mask).
class StepQueue {
 public:
  explicit StepQueue(std::vector<Walk*> upward, int walks) : unopened_(upward.begin(), upward.end()), unfinished_(walks) {}

  // A walk to advance by one slice, or nullptr once all are done (or the call is being abandoned).
  Walk* pop() {
    std::unique_lock<std::mutex> lock(mutex_);
    changed_.wait(lock, [&] { return aborted_ || unfinished_ == 0 || !ready_.empty() || can_open(); });
    if (aborted_) return nullptr;
    if (can_open()) {
      ++open_up_;
      Walk* w = unopened_.front();
      unopened_.pop_front();
      return w;
    }
    if (ready_.empty()) return nullptr;
    Walk* w = ready_.front();
    ready_.pop_front();
    return w;
  }
  void push(Walk* w) {  // after a step, or a downward walk just released
    std::lock_guard<std::mutex> lock(mutex_);
    ready_.push_back(w);
    changed_.notify_all();
  }
  void finished(const Walk& w) {
    std::lock_guard<std::mutex> lock(mutex_);
    --unfinished_;
    if (w.dir > 0) --open_up_;
    changed_.notify_all();
  }
  void abort() {
    std::lock_guard<std::mutex> lock(mutex_);
    aborted_ = true;
    changed_.notify_all();
  }

 private:
  static constexpr int kMaxOpen = 64;
  bool can_open() const { return !unopened_.empty() && open_up_ < kMaxOpen; }
  std::mutex mutex_;
  std::condition_variable changed_;
  std::deque<Walk*> unopened_, ready_;
  int open_up_ = 0;
  int unfinished_;
  bool aborted_ = false;
};

void check_boxes_3d(const double* boxes, int n, int d, int h, int w) {
  for (int i = 0; i < n; ++i) {
    const double* b = boxes + 6 * i;
    std::string where = "boxes[" + std::to_string(i) + "]: ";
    for (int j = 0; j < 6; ++j)
      if (!std::isfinite(b[j])) throw InvalidInput(where + "not finite.");
    if (b[3] < b[0] || b[4] < b[1] || b[5] < b[2])
      throw InvalidInput(where + "max < min. Boxes are [x_min, y_min, z_min, x_max, y_max, z_max].");
    if (b[0] < 0 || b[1] < 0 || b[3] > w || b[4] > h)
      throw InvalidInput(where + "x/y outside the " + std::to_string(h) + "x" + std::to_string(w) + " slices.");
    if (b[2] != std::floor(b[2]) || b[5] != std::floor(b[5]))
      throw InvalidInput(where + "z_min and z_max must be whole slice indices.");
    if (b[2] < 0 || b[5] > d - 1)
      throw InvalidInput(where + "z outside the volume (expected 0 <= z <= " + std::to_string(d - 1) + ").");
  }
}

// Writes the object's mask for one slice into `mask` (value where logit > 0), clearing the previous one.
void render(const Upsampler& up, const float* logits, uint8_t value, std::vector<uint8_t>& mask, Rect& rect) {
  for (int y = rect.y0; y < rect.y1; ++y)
    std::memset(mask.data() + static_cast<size_t>(y) * up.w + rect.x0, 0, static_cast<size_t>(rect.x1 - rect.x0));
  rect = up.candidates(logits);
  for (int y = rect.y0; y < rect.y1; ++y) {
    uint8_t* row = mask.data() + static_cast<size_t>(y) * up.w;
    for (int x = rect.x0; x < rect.x1; ++x) row[x] = up.value(logits, y, x) > 0.0f ? value : 0;
  }
}

template <class L>
void paint_slice(const std::vector<uint8_t>& mask, const Rect& rect, int w, L label, L* slice) {
  for (int y = rect.y0; y < rect.y1; ++y) {
    const uint8_t* m = mask.data() + static_cast<size_t>(y) * w;
    L* out = slice + static_cast<size_t>(y) * w;
    for (int x = rect.x0; x < rect.x1; ++x)
      if (m[x] && out[x] < label) out[x] = label;  // max = the reference's "later objects overwrite"
  }
}

template <class L>
void segment(Segmenter::Impl& s, const VolumeView& v, const double* boxes, int n, L* labels, Trace* trace,
             EmbeddingStore* store, Progress* progress) {
  const size_t slice_size = static_cast<size_t>(v.h) * v.w;
  std::memset(labels, 0, slice_size * v.d * sizeof(L));
  const Upsampler up(resized_extent(v.h, v.w), v.h, v.w);

  std::vector<Walk> walks(static_cast<size_t>(2 * n));
  std::vector<Walk*> upward;
  int walk_count = 0;
  for (int i = 0; i < n; ++i) {
    const double* b = boxes + 6 * i;
    const int z_min = static_cast<int>(b[2]), z_max = static_cast<int>(b[5]);
    const int z_mid = static_cast<int>((b[5] - b[2]) / 2 + b[2]);  // int((z_max - z_min)/2 + z_min)
    const double mid_xyxy[4] = {b[0], b[1], b[3], b[4]};
    Walk& up_walk = walks[2 * i];
    Walk& down_walk = walks[2 * i + 1];
    up_walk.object = down_walk.object = i;
    up_walk.mid_box = down_walk.mid_box = scale_box(mid_xyxy, v.h, v.w);
    up_walk.dir = 1, up_walk.z = z_mid, up_walk.z_last = std::min(z_max, v.d - 1);
    down_walk.dir = -1, down_walk.z = z_mid - 1, down_walk.z_last = z_min;
    upward.push_back(&up_walk);
    ++walk_count;
    if (down_walk.z >= z_min) {
      up_walk.then = &down_walk;
      ++walk_count;
    }
  }
  StepQueue queue(upward, walk_count);

  detail::StageClock clock;
  detail::EmbeddingCache own_cache(static_cast<size_t>(store ? 1 : s.options.max_cached_slices));
  detail::EmbeddingCache& cache = store ? store->impl().cache : own_cache;
  const int encoded_before = cache.computed();
  std::unique_ptr<std::mutex[]> slice_locks(new std::mutex[static_cast<size_t>(v.d)]);
  std::atomic<int> decoder_calls{0};
  const int workers = std::min<int>(static_cast<int>(s.lanes.size()), walk_count);

  detail::run_workers(workers, [&](int lane_index) {
    Lane& lane = s.lanes[lane_index];
    std::vector<uint8_t> prompt_scratch;
    while (Walk* walk = queue.pop()) {
      detail::check_cancelled(progress);
      const int z = walk->z;
      const L label = static_cast<L>(walk->object + 1);
      const uint8_t value = static_cast<uint8_t>(std::min(walk->object + 1, 255));  // the temp volume is uint8
      if (walk->mask.empty()) walk->mask.assign(slice_size, 0);
      const auto embedding = cache.get(z, [&] {
        clock.time(detail::StageClock::kPreprocess, [&] {
          preprocess_image(v.data + slice_size * z, v.h, v.w, 1, lane.encoder->input(), lane.scratch);
        });
        return clock.time(detail::StageClock::kEncoder, [&] { return lane.encoder->run(); });
      });
      Box box = walk->mid_box;
      const bool middle = walk->dir > 0 && walk->boxes.empty();
      if (!middle && !walk->rect.empty()) {
        Box from_mask;
        if (clock.time(detail::StageClock::kPrompt,
                       [&] { return box_from_mask(walk->mask.data(), v.h, v.w, from_mask, prompt_scratch); }))
          box = from_mask;
      }
      walk->boxes.push_back(box);
      clock.time(detail::StageClock::kDecoder, [&] { lane.decoder->run(embedding->data(), &box, 1); });
      ++decoder_calls;
      if (progress) progress->add_steps(1);
      clock.time(detail::StageClock::kPostprocess, [&] {
        render(up, lane.decoder->logits(0), value, walk->mask, walk->rect);
        std::lock_guard<std::mutex> lock(slice_locks[z]);
        paint_slice(walk->mask, walk->rect, v.w, label, labels + slice_size * z);
      });
      if (middle && walk->then) {  // the downward walk starts from this slice's mask
        walk->then->mask = walk->mask;
        walk->then->rect = walk->rect;
        queue.push(walk->then);
      }
      if (z == walk->z_last) {
        std::vector<uint8_t>().swap(walk->mask);
        queue.finished(*walk);
      } else {
        walk->z += walk->dir;
        queue.push(walk);
      }
    }
  }, [&] { queue.abort(); });

  if (trace) {
    trace->decoder_boxes.assign(static_cast<size_t>(n), {});
    for (int i = 0; i < n; ++i) {
      auto& out = trace->decoder_boxes[i];
      out = walks[2 * i].boxes;
      out.insert(out.end(), walks[2 * i + 1].boxes.begin(), walks[2 * i + 1].boxes.end());
    }
    trace->encoder_runs = cache.computed() - encoded_before;
    trace->decoder_calls = decoder_calls;
    clock.report(*trace);
  }
}

}  // namespace

void Segmenter::Impl::run_3d(const VolumeView& v, const double* boxes, int n, LabelsView labels, Trace* trace,
                             EmbeddingStore* store, Progress* progress) {
  if (!v.data || !boxes || !labels.data) throw InvalidInput("volume, boxes and labels must not be null.");
  if (v.d < 1 || v.h < 1 || v.w < 1) throw InvalidInput("the volume must be at least 1x1x1 voxels.");
  detail::check_label_count(n, labels.wide);
  check_boxes_3d(boxes, n, v.d, v.h, v.w);
  if (store) store->impl().bind({v.d, v.h, v.w, 1});
  detail::check_cancelled(progress);
  if (labels.wide)
    segment(*this, v, boxes, n, static_cast<uint16_t*>(labels.data), trace, store, progress);
  else
    segment(*this, v, boxes, n, static_cast<uint8_t*>(labels.data), trace, store, progress);
}

}  // namespace repmedsam
