// The 3D work as a graph of batched decoder calls, and the board the lanes take work from. Internal header;
// pure C++ (no OpenVINO).
//
// Each object's walk (ARCHITECTURE.md §2) is its middle slice, then upward steps z_mid+1..z_max, and downward
// steps z_mid-1..z_min starting from the middle slice's mask. Steps of different objects on the same slice
// and in the same direction share one decoder call (up to `batch` boxes): one middle call per distinct z_mid,
// one upward call per slice going up, one downward call per slice going down. Which boxes share a call
// depends on the boxes alone, never on timing or thread count, so results are reproducible. A call can run
// once every one of its objects has finished its previous step; the upward and downward sweeps are then
// independent, so two lanes decode while others encode the slices coming next (prefetch).
#pragma once
#include <condition_variable>
#include <deque>
#include <mutex>
#include <vector>

namespace repmedsam::detail {

struct ObjectSpan {
  int z_min = 0, z_mid = 0, z_max = 0;
};

struct DecodeTask {
  int z = 0;
  int dir = 0;               // 0: middle slices (the box prompt), +1 upward, -1 downward
  std::vector<int> objects;  // rows of boxes, ascending
  std::vector<int> dependents;
  int pending = 0;           // prerequisite tasks not yet done
};

struct VolumePlan {
  std::vector<DecodeTask> tasks;
  std::vector<int> slice_order;  // each needed slice once, in the order the sweeps reach it (for prefetch)
};

// spans: one per object, z_min <= z_mid <= z_max < depth; batch >= 1.
VolumePlan plan_volume(const std::vector<ObjectSpan>& spans, int depth, int batch);

// Hands out work: a ready decoder call, else (within `window` slices ahead of the sweeps) a slice to encode
// before it is needed. Thread-safe.
class WorkBoard {
 public:
  struct Work {
    int task = -1;   // index into plan.tasks, or
    int slice = -1;  // a slice to encode ahead
  };
  WorkBoard(VolumePlan& plan, int depth, int window);

  // The next work, waiting while there is none yet; false once every task is done or after abort().
  bool next(Work& work);
  void done(int task);  // its dependents may become ready
  void abort();

 private:
  bool can_prefetch();  // advances past slices already taken
  VolumePlan& plan_;
  std::mutex mutex_;
  std::condition_variable changed_;
  std::deque<int> ready_;
  std::vector<char> taken_;  // per slice: encoded ahead or reached by a task
  size_t cursor_ = 0;        // into plan_.slice_order
  int ahead_ = 0;            // slices encoded ahead whose first task has not started
  int window_;
  size_t remaining_;
  bool aborted_ = false;
};

}  // namespace repmedsam::detail
