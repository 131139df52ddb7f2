// 3D: per object an upward walk from the middle slice and a downward walk below it (ARCHITECTURE.md §2),
// each step prompted by the object's own mask on the previous slice. The steps run as the batched decoder
// calls of volume_plan (steps on one slice in one sweep share a call) on the lanes concurrently, while a spare
// lane encodes the slices the sweeps reach next; slice embeddings come from a shared lazy cache (the call's
// own, or an EmbeddingStore's). Which boxes share a call is fixed by the boxes, and each walk's steps run in
// order, so the result does not depend on scheduling or thread count.
#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstring>
#include <memory>
#include <string>

#include "embedding_cache.hpp"
#include "engine_impl.hpp"
#include "repmedsam/errors.hpp"
#include "volume_plan.hpp"

namespace repmedsam {
namespace {

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

struct WalkState {
  Rect rect;                  // where the object's mask on the walk's previous slice may be non-zero
  std::vector<uint8_t> crop;  // that mask inside rect: the object's value where set (the reference's temp volume)
  std::vector<Box> boxes;     // decoder prompts, in order
};

struct Object {
  int z_min = 0, z_mid = 0, z_max = 0;
  Box mid_box{};
  WalkState up, down;  // the middle slice belongs to the upward walk
};

// Keeps the object's mask for one slice (value where logit > 0), replacing the previous one.
void render(const Upsampler& up, const float* logits, uint8_t value, WalkState& walk) {
  const Rect r = walk.rect = up.candidates(logits);
  const int rw = std::max(r.x1 - r.x0, 0);
  walk.crop.assign(static_cast<size_t>(rw) * std::max(r.y1 - r.y0, 0), 0);
  for (int y = r.y0; y < r.y1; ++y) {
    uint8_t* row = walk.crop.data() + static_cast<size_t>(y - r.y0) * rw;
    for (int x = r.x0; x < r.x1; ++x) row[x - r.x0] = up.value(logits, y, x) > 0.0f ? value : 0;
  }
}

// The next prompt from the walk's previous mask, if it has any pixel; `full` is h x w and zero, and left so.
bool prompt_from(const WalkState& walk, int h, int w, std::vector<uint8_t>& full, std::vector<uint8_t>& scratch,
                 Box& box) {
  const Rect& r = walk.rect;
  if (r.empty()) return false;
  const size_t rw = static_cast<size_t>(r.x1 - r.x0);
  for (int y = r.y0; y < r.y1; ++y)
    std::memcpy(full.data() + static_cast<size_t>(y) * w + r.x0, walk.crop.data() + (y - r.y0) * rw, rw);
  const bool found = box_from_mask(full.data(), h, w, box, scratch);
  for (int y = r.y0; y < r.y1; ++y) std::memset(full.data() + static_cast<size_t>(y) * w + r.x0, 0, rw);
  return found;
}

template <class L>
void paint_slice(const WalkState& walk, int w, L label, L* slice) {
  const Rect& r = walk.rect;
  const size_t rw = static_cast<size_t>(std::max(r.x1 - r.x0, 0));
  for (int y = r.y0; y < r.y1; ++y) {
    const uint8_t* m = walk.crop.data() + (y - r.y0) * rw;
    L* out = slice + static_cast<size_t>(y) * w;
    for (int x = r.x0; x < r.x1; ++x)
      if (m[x - r.x0] && out[x] < label) out[x] = label;  // max = the reference's "later objects overwrite"
  }
}

template <class L>
void segment(Segmenter::Impl& s, const VolumeView& v, const double* boxes, int n, L* labels, Trace* trace,
             EmbeddingStore* store, Progress* progress) {
  const size_t slice_size = static_cast<size_t>(v.h) * v.w;
  std::memset(labels, 0, slice_size * v.d * sizeof(L));
  const Upsampler up(resized_extent(v.h, v.w), v.h, v.w);

  std::vector<Object> objects(static_cast<size_t>(n));
  std::vector<detail::ObjectSpan> spans(static_cast<size_t>(n));
  for (int i = 0; i < n; ++i) {
    const double* b = boxes + 6 * i;
    const double mid_xyxy[4] = {b[0], b[1], b[3], b[4]};
    Object& o = objects[i];
    o.z_min = static_cast<int>(b[2]), o.z_max = static_cast<int>(b[5]);
    o.z_mid = static_cast<int>((b[5] - b[2]) / 2 + b[2]);  // int((z_max - z_min)/2 + z_min)
    o.mid_box = scale_box(mid_xyxy, v.h, v.w);
    spans[i] = {o.z_min, o.z_mid, o.z_max};
  }
  detail::VolumePlan plan = detail::plan_volume(spans, v.d, s.options.decoder_batch);

  detail::StageClock clock;
  detail::EmbeddingCache own_cache(static_cast<size_t>(store ? 1 : s.options.max_cached_slices));
  detail::EmbeddingCache& cache = store ? store->impl().cache : own_cache;
  const int encoded_before = cache.computed();
  std::unique_ptr<std::mutex[]> slice_locks(new std::mutex[static_cast<size_t>(v.d)]);
  const int workers = static_cast<int>(std::min(s.lanes.size(), plan.tasks.size() + plan.slice_order.size()));
  // Slices encoded ahead stay few, and leave the cache room for the slices in use.
  const int window = std::clamp(static_cast<int>(cache.capacity()) - workers - 1, 0, 2 * s.streams + 2);
  detail::WorkBoard board(plan, v.d, window);
  s.prepare_lanes(false);

  auto embedding_of = [&](int z, Lane& lane) {
    std::chrono::nanoseconds waited{0};
    auto embedding = cache.get(z, [&] {
      clock.time(detail::StageClock::kPreprocess, [&] {
        preprocess_image(v.data + slice_size * z, v.h, v.w, 1, lane.encoder->input(), lane.scratch);
      });
      return clock.in_slot(*s.slots, [&] {
        return clock.time(detail::StageClock::kEncoder, [&] { return lane.encoder->run(); });
      });
    }, &waited);
    clock.add(detail::StageClock::kWait, waited);
    return embedding;
  };

  detail::run_workers(workers, [&](int lane_index) {
    Lane& lane = s.lanes[lane_index];
    lane.mask.assign(slice_size, 0);
    std::vector<uint8_t> prompt_scratch;
    std::vector<Box> prompts;
    detail::WorkBoard::Work work;
    while (board.next(work)) {
      detail::check_cancelled(progress);
      if (work.task < 0) {
        embedding_of(work.slice, lane);
        continue;
      }
      const detail::DecodeTask& task = plan.tasks[work.task];
      const auto embedding = embedding_of(task.z, lane);
      prompts.clear();
      for (int i : task.objects) {
        Object& o = objects[i];
        WalkState& walk = task.dir < 0 ? o.down : o.up;
        Box box = o.mid_box;
        if (task.dir != 0) {
          Box from_mask;
          if (clock.time(detail::StageClock::kPrompt,
                         [&] { return prompt_from(walk, v.h, v.w, lane.mask, prompt_scratch, from_mask); }))
            box = from_mask;
        }
        walk.boxes.push_back(box);
        prompts.push_back(box);
      }
      const int k = static_cast<int>(prompts.size());
      clock.in_slot(*s.slots, [&] {
        clock.time(detail::StageClock::kDecoder, [&] { lane.decoder->run(embedding->data(), prompts.data(), k); });
      });
      clock.time(detail::StageClock::kPostprocess, [&] {
        for (int j = 0; j < k; ++j) {
          const int i = task.objects[j];
          Object& o = objects[i];
          WalkState& walk = task.dir < 0 ? o.down : o.up;
          render(up, lane.decoder->logits(j), static_cast<uint8_t>(std::min(i + 1, 255)), walk);
          if (task.dir == 0 && o.z_min < o.z_mid) o.down.rect = walk.rect, o.down.crop = walk.crop;
        }
        std::lock_guard<std::mutex> lock(slice_locks[task.z]);
        for (int i : task.objects) {
          const Object& o = objects[i];
          paint_slice(task.dir < 0 ? o.down : o.up, v.w, static_cast<L>(i + 1), labels + slice_size * task.z);
        }
      });
      for (int i : task.objects) {  // a finished walk's mask is no longer needed
        Object& o = objects[i];
        if (task.dir >= 0 && task.z == o.z_max) std::vector<uint8_t>().swap(o.up.crop);
        if (task.dir < 0 && task.z == o.z_min) std::vector<uint8_t>().swap(o.down.crop);
      }
      if (progress) progress->add_steps(k);
      board.done(work.task);
    }
  }, [&] { board.abort(); });

  if (trace) {
    trace->decoder_boxes.assign(static_cast<size_t>(n), {});
    for (int i = 0; i < n; ++i) {
      auto& out = trace->decoder_boxes[i];
      out = objects[i].up.boxes;
      out.insert(out.end(), objects[i].down.boxes.begin(), objects[i].down.boxes.end());
    }
    trace->encoder_runs = cache.computed() - encoded_before;
    trace->decoder_calls = static_cast<int>(plan.tasks.size());
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
