#include "volume_plan.hpp"

#include <algorithm>

namespace repmedsam::detail {

VolumePlan plan_volume(const std::vector<ObjectSpan>& spans, int depth, int batch) {
  const int n = static_cast<int>(spans.size());
  // Objects per slice and direction, in object order (total size: the decoder steps of the case).
  std::vector<std::vector<int>> mid_at(depth), up_at(depth), down_at(depth);
  for (int i = 0; i < n; ++i) {
    const ObjectSpan& s = spans[i];
    mid_at[s.z_mid].push_back(i);
    for (int z = s.z_mid + 1; z <= s.z_max; ++z) up_at[z].push_back(i);
    for (int z = s.z_mid - 1; z >= s.z_min; --z) down_at[z].push_back(i);
  }
  VolumePlan plan;
  std::vector<int> mid_task(n, -1);
  // Adds the calls of one slice and direction; `previous` maps each object to the task of its previous step
  // (null for middle slices) and is moved on to the new tasks.
  auto add = [&](int z, int dir, const std::vector<int>& objects, std::vector<int>* previous) {
    for (size_t first = 0; first < objects.size(); first += static_cast<size_t>(batch)) {
      const int id = static_cast<int>(plan.tasks.size());
      DecodeTask task;
      task.z = z, task.dir = dir;
      task.objects.assign(objects.begin() + first,
                          objects.begin() + std::min(objects.size(), first + static_cast<size_t>(batch)));
      std::vector<int> deps;
      for (int i : task.objects) {
        if (previous) deps.push_back((*previous)[i]), (*previous)[i] = id;
        else mid_task[i] = id;
      }
      std::sort(deps.begin(), deps.end());
      deps.erase(std::unique(deps.begin(), deps.end()), deps.end());
      task.pending = static_cast<int>(deps.size());
      plan.tasks.push_back(std::move(task));
      for (int d : deps) plan.tasks[d].dependents.push_back(id);
    }
  };
  for (int z = 0; z < depth; ++z)
    if (!mid_at[z].empty()) add(z, 0, mid_at[z], nullptr);
  std::vector<int> up_prev = mid_task, down_prev = mid_task;
  std::vector<int> up_slices, down_slices;
  for (int z = 0; z < depth; ++z)
    if (!up_at[z].empty()) add(z, 1, up_at[z], &up_prev), up_slices.push_back(z);
  for (int z = depth - 1; z >= 0; --z)
    if (!down_at[z].empty()) add(z, -1, down_at[z], &down_prev), down_slices.push_back(z);

  // Prefetch order: middle slices first (everything starts there), then the two sweeps side by side.
  std::vector<char> listed(depth, 0);
  auto list = [&](int z) {
    if (!listed[z]) listed[z] = 1, plan.slice_order.push_back(z);
  };
  for (int z = 0; z < depth; ++z)
    if (!mid_at[z].empty()) list(z);
  for (size_t k = 0; k < std::max(up_slices.size(), down_slices.size()); ++k) {
    if (k < up_slices.size()) list(up_slices[k]);
    if (k < down_slices.size()) list(down_slices[k]);
  }
  return plan;
}

WorkBoard::WorkBoard(VolumePlan& plan, int depth, int window)
    : plan_(plan), taken_(static_cast<size_t>(depth), 0), window_(window), remaining_(plan.tasks.size()) {
  for (size_t i = 0; i < plan.tasks.size(); ++i)
    if (plan.tasks[i].pending == 0) ready_.push_back(static_cast<int>(i));
}

bool WorkBoard::can_prefetch() {
  while (cursor_ < plan_.slice_order.size() && taken_[plan_.slice_order[cursor_]]) ++cursor_;
  return cursor_ < plan_.slice_order.size() && ahead_ < window_;
}

bool WorkBoard::next(Work& work) {
  std::unique_lock<std::mutex> lock(mutex_);
  changed_.wait(lock, [&] { return aborted_ || remaining_ == 0 || !ready_.empty() || can_prefetch(); });
  if (aborted_ || remaining_ == 0) return false;
  work = Work{};
  if (!ready_.empty()) {  // decoding comes first: the sweeps are the critical path
    work.task = ready_.front();
    ready_.pop_front();
    char& state = taken_[plan_.tasks[work.task].z];
    if (state == 1) --ahead_, changed_.notify_all();  // room to encode another slice ahead
    state = 2;
    return true;
  }
  work.slice = plan_.slice_order[cursor_];
  taken_[work.slice] = 1;
  ++ahead_;
  return true;
}

void WorkBoard::done(int task) {
  std::lock_guard<std::mutex> lock(mutex_);
  for (int d : plan_.tasks[task].dependents)
    if (--plan_.tasks[d].pending == 0) ready_.push_back(d);
  --remaining_;
  changed_.notify_all();
}

void WorkBoard::abort() {
  std::lock_guard<std::mutex> lock(mutex_);
  aborted_ = true;
  changed_.notify_all();
}

}  // namespace repmedsam::detail
