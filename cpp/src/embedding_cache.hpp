// Slice embeddings of one 3D case, computed lazily, at most once while cached, shared between walks and
// threads. Values are owned copies (never OpenVINO output buffers). Beyond `capacity` finished entries
// the least recently used one is dropped; a later request encodes it again, with the same result.
// EmbeddingStore (engine.hpp) keeps one between calls. Internal header.
#pragma once
#include <array>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <unordered_map>

#include "networks.hpp"
#include "repmedsam/engine.hpp"

namespace repmedsam::detail {

class EmbeddingCache {
 public:
  using Compute = std::function<std::shared_ptr<const Embedding>()>;
  explicit EmbeddingCache(size_t capacity);

  // The embedding of slice z: cached, or computed by this thread with `compute`, or (when another thread
  // is computing it) awaited, the time spent so added to *waited (if given). If a computation throws,
  // waiters retry it themselves.
  std::shared_ptr<const Embedding> get(int z, const Compute& compute, std::chrono::nanoseconds* waited = nullptr);

  int computed() const;  // encoder runs so far, re-encodes after eviction included
  size_t capacity() const { return capacity_; }

 private:
  struct Slot {
    std::shared_ptr<const Embedding> value;
    bool busy = false;
    uint64_t used = 0;
  };
  void evict_locked();

  size_t capacity_;
  mutable std::mutex mutex_;
  std::condition_variable changed_;
  std::unordered_map<int, Slot> slots_;
  uint64_t clock_ = 0;
  int computed_ = 0;
};

}  // namespace repmedsam::detail

namespace repmedsam {

struct EmbeddingStore::Impl {
  explicit Impl(int max_slices) : cache(static_cast<size_t>(max_slices)) {}
  // Ties the store to the shape of its first image ({d, h, w, channels}, d = 0 for a 2D image); throws
  // InvalidInput for any other, so embeddings of one image are never decoded against another.
  void bind(const std::array<int, 4>& shape);

  detail::EmbeddingCache cache;  // keyed by slice (0 for a 2D image)
  std::mutex mutex;
  std::array<int, 4> shape{};
  bool bound = false;
};

}  // namespace repmedsam
