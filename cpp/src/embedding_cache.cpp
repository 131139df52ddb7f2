#include "embedding_cache.hpp"

#include <algorithm>
#include <string>

#include "repmedsam/errors.hpp"

namespace repmedsam::detail {

EmbeddingCache::EmbeddingCache(size_t capacity) : capacity_(std::max<size_t>(capacity, 1)) {}

std::shared_ptr<const Embedding> EmbeddingCache::get(int z, const Compute& compute, std::chrono::nanoseconds* waited) {
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
    const auto t0 = std::chrono::steady_clock::now();
    changed_.wait(lock);
    if (waited) *waited += std::chrono::steady_clock::now() - t0;
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

namespace repmedsam {

namespace {

std::string shape_text(const std::array<int, 4>& s) {
  const std::string hw = std::to_string(s[1]) + "x" + std::to_string(s[2]);
  if (s[0] == 0) return "a " + hw + " image with " + std::to_string(s[3]) + " channel" + (s[3] == 1 ? "" : "s");
  return "a " + std::to_string(s[0]) + "x" + hw + " volume";
}

}  // namespace

EmbeddingStore::EmbeddingStore(int max_slices) {
  if (max_slices < 1) throw InvalidInput("max_slices must be at least 1, got " + std::to_string(max_slices) + ".");
  impl_ = std::make_unique<Impl>(max_slices);
}

EmbeddingStore::~EmbeddingStore() = default;

int EmbeddingStore::encoded() const { return impl_->cache.computed(); }

void EmbeddingStore::Impl::bind(const std::array<int, 4>& s) {
  std::lock_guard<std::mutex> lock(mutex);
  if (!bound) {
    shape = s;
    bound = true;
  } else if (shape != s) {
    throw InvalidInput("this embedding store holds slices of " + shape_text(shape) + ", not of " + shape_text(s) +
                       "; use one store per image.");
  }
}

}  // namespace repmedsam
