// repmedsam_bench: times one case without Python and prints one JSON line.
//
//   repmedsam_bench MODEL_DIR IMGS.npy BOXES.npy [--gold SEGS.npy] [--precision auto|f32|bf16|int8]
//                   [--threads N] [--streams N] [--cache SLICES] [--repeat N]
//
// IMGS/BOXES/SEGS are the arrays of a challenge npz (unzip it to get them). With --gold, the line also
// holds the lowest per-label Dice against those labels. The first run is a warm-up and is not timed when
// --repeat > 1; the median of the others is reported.
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <exception>
#include <string>
#include <vector>

#include <sys/resource.h>

#include "npy.hpp"
#include "repmedsam/engine.hpp"

using namespace repmedsam;

namespace {

double min_dice(const std::vector<uint8_t>& a, const bench::Npy& gold, int labels) {
  double lowest = 1.0;
  for (int l = 1; l <= labels; ++l) {
    size_t both = 0, na = 0, nb = 0;
    for (size_t i = 0; i < a.size(); ++i) {
      const bool x = a[i] == l, y = static_cast<uint8_t>(gold.data[i]) == l;
      na += x, nb += y, both += x && y;
    }
    if (na + nb) lowest = std::min(lowest, 2.0 * both / static_cast<double>(na + nb));
  }
  return lowest;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 4) {
    std::fprintf(stderr, "usage: %s MODEL_DIR IMGS.npy BOXES.npy [--gold SEGS.npy] [--precision P] "
                         "[--threads N] [--streams N] [--cache N] [--repeat N]\n", argv[0]);
    return 2;
  }
  try {
    Options opt;
    std::string gold_path;
    int repeat = 1;
    for (int i = 4; i + 1 < argc; i += 2) {
      const std::string k = argv[i], v = argv[i + 1];
      if (k == "--gold") gold_path = v;
      else if (k == "--precision") opt.precision = parse_precision(v);
      else if (k == "--threads") opt.threads = std::stoi(v);
      else if (k == "--streams") opt.streams = std::stoi(v);
      else if (k == "--cache") opt.max_cached_slices = std::stoi(v);
      else if (k == "--repeat") repeat = std::max(1, std::stoi(v));
      else throw std::runtime_error("unknown option " + k);
    }
    const auto t0 = std::chrono::steady_clock::now();
    Segmenter seg(argv[1], opt);
    const double compile_s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    const bench::Npy imgs = bench::read_npy(argv[2]);
    const bench::Npy boxes_npy = bench::read_npy(argv[3]);
    const std::vector<double> boxes = bench::as_doubles(boxes_npy);
    const int n = static_cast<int>(boxes_npy.shape.at(0));
    const bool is_3d = boxes_npy.shape.at(1) == 6;
    const size_t pixels = is_3d ? imgs.count() : static_cast<size_t>(imgs.shape[0] * imgs.shape[1]);
    std::vector<uint8_t> labels(pixels);
    Trace trace;
    std::vector<double> times;
    for (int r = 0; r < repeat + (repeat > 1); ++r) {
      const auto start = std::chrono::steady_clock::now();
      const auto* data = reinterpret_cast<const uint8_t*>(imgs.data.data());
      if (is_3d)
        seg.segment_3d({data, (int)imgs.shape[0], (int)imgs.shape[1], (int)imgs.shape[2]}, boxes.data(), n,
                       {labels.data(), false}, &trace);
      else
        seg.segment_2d({data, (int)imgs.shape[0], (int)imgs.shape[1], imgs.shape.size() == 3 ? 3 : 1}, boxes.data(),
                       n, {labels.data(), false}, &trace);
      const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
      if (repeat == 1 || r > 0) times.push_back(s);
    }
    std::sort(times.begin(), times.end());
    const auto info = seg.describe();
    std::printf("{\"case\": \"%s\", \"precision\": \"%s\", \"threads\": \"%s\", \"streams\": \"%s\", "
                "\"compile_s\": %.3f, \"median_s\": %.3f, \"runs\": %zu, \"encoder_runs\": %d, \"decoder_calls\": %d",
                argv[2], info.at("precision").c_str(), info.at("threads").c_str(), info.at("streams").c_str(),
                compile_s, times[times.size() / 2], times.size(), trace.encoder_runs, trace.decoder_calls);
    rusage usage{};
    getrusage(RUSAGE_SELF, &usage);
    std::printf(", \"peak_rss_mb\": %.0f", usage.ru_maxrss / 1024.0);
    if (!gold_path.empty()) std::printf(", \"min_dice\": %.6f", min_dice(labels, bench::read_npy(gold_path), n));
    std::printf(", \"trace\": [");
    bool first = true;
    for (const auto& object : trace.decoder_boxes)
      for (const auto& b : object) {
        std::printf("%s[%d, %d, %d, %d]", first ? "" : ", ", b[0], b[1], b[2], b[3]);
        first = false;
      }
    std::printf("]}\n");
    return 0;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "repmedsam_bench: %s\n", e.what());
    return 1;
  }
}
