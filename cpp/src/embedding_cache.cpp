#include "embedding_cache.hpp"

#include <algorithm>

namespace repmedsam::detail {

EmbeddingCache::EmbeddingCache(size_t capacity) : capacity_(std::max<size_t>(capacity, 1)) {}

std::shared_ptr<const Embedding> EmbeddingCache::get(int z, const Compute& compute) {
  std::unique_lock<std::mutex> lock(mutex_);
  for (;;) {
    auto it = slots_.find(z);
    if (it == slots_.end()) {
      slots_[z].busy = true;  // ours to compute
      break;
    }
    if (!it->second.busy) {
      it->second.used = ++clock_;
      return it->second.value;
    }
    changed_.wait(lock);
  }
  lock.unlock();
  std::shared_ptr<const Embedding> value;
  try {
    value = compute();
  } catch (...) {
    lock.lock();
    slots_.erase(z);
    changed_.notify_all();
    throw;
  }
  lock.lock();
  Slot& slot = slots_[z];
  slot.value = value;
  slot.busy = false;
  slot.used = ++clock_;
  ++computed_;
  evict_locked();
  changed_.notify_all();
  return value;  // the caller's reference keeps it alive even if it was evicted just now
}

void EmbeddingCache::evict_locked() {
  for (;;) {
    size_t ready = 0;
    auto oldest = slots_.end();
    for (auto it = slots_.begin(); it != slots_.end(); ++it) {
      if (it->second.busy) continue;
      ++ready;
      if (oldest == slots_.end() || it->second.used < oldest->second.used) oldest = it;
    }
    if (ready <= capacity_) return;
    slots_.erase(oldest);
  }
}

int EmbeddingCache::computed() const {
  std::lock_guard<std::mutex> lock(mutex_);
  return computed_;
}

}  // namespace repmedsam::detail
