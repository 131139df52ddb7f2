// Segmenter setup: options, model folder, compilation, worker lanes (the precision choice: precision.cpp).
#include <algorithm>
#include <atomic>
#include <exception>
#include <thread>

#include "engine_impl.hpp"
#include "model_dir.hpp"
#include "precision.hpp"
#include "ov_guard.hpp"
#include "repmedsam/errors.hpp"
#include "repmedsam/info.hpp"

namespace repmedsam {

namespace {

// One inference at a time with every thread on up to two cores, measured with the batched 3D sweeps on a
// quiet 2-vCPU AVX512-BF16 EPYC (benchmarks/README.md, issue 30): one 2-thread stream took 11.5 s for the
// AMOS CT case where two 1-thread streams took 14.3 s (BraTS 6.9 vs 7.7 s), since each network runs ~25%
// more efficiently on two threads than two copies on one each. (Beside another busy process two streams won
// by 10-25%: they take a larger share of the CPU.) Past two cores, two streams as before: not measured with
// this scheduler.
int auto_streams(int threads) {
  const int cores = threads > 0 ? threads : static_cast<int>(std::thread::hardware_concurrency());
  return cores > 2 ? 2 : 1;
}

}  // namespace

Segmenter::Segmenter(const std::string& model_dir, const Options& options) : impl_(std::make_unique<Impl>()) {
  Impl& s = *impl_;
  if (options.threads < 0) throw InvalidInput("threads must be positive (or 0 for all cores), got " +
                                              std::to_string(options.threads) + ".");
  if (options.streams < 0) throw InvalidInput("streams must be positive (or 0 for auto), got " +
                                              std::to_string(options.streams) + ".");
  if (options.threads > 0 && options.streams > options.threads)
    throw InvalidInput("streams (" + std::to_string(options.streams) + ") cannot exceed threads (" +
                       std::to_string(options.threads) + ").");
  if (options.max_cached_slices < 1)
    throw InvalidInput("max_cached_slices must be at least 1, got " + std::to_string(options.max_cached_slices) + ".");
  if (options.decoder_batch < 1)
    throw InvalidInput("decoder_batch must be at least 1, got " + std::to_string(options.decoder_batch) + ".");
  s.options = options;
  s.model_dir = model_dir;
  s.precision = detail::resolve_precision(s.core, options.precision, model_dir);
  if (!options.cache_dir.empty())
    detail::guarded(options.cache_dir + ": cannot be used as the OpenVINO model cache",
                    [&] { s.core.set_property(ov::cache_dir(options.cache_dir)); });

  s.folder = detail::open_model_folder(model_dir, s.precision == Precision::Int8);
  const detail::ModelFolder& folder = s.folder;
  s.streams = options.streams > 0 ? options.streams : auto_streams(options.threads);
  detail::CompileSettings& settings = s.settings;
  const Precision p = s.precision;
  const bool bf16_encoder = p == Precision::BF16 || p == Precision::BF16Encoder || p == Precision::BF16For2D;
  settings.inference_precision = bf16_encoder ? ov::element::bf16 : ov::element::f32;
  settings.threads = options.threads;
  settings.streams = s.streams;
  s.decoder_settings = settings;
  s.decoder_settings.inference_precision = p == Precision::BF16 ? ov::element::bf16 : ov::element::f32;
  s.image_decoder_settings = s.decoder_settings;
  if (p == Precision::BF16For2D) s.image_decoder_settings.inference_precision = ov::element::bf16;
  s.compile_from_path = !options.cache_dir.empty();
  s.lanes.resize(static_cast<size_t>(s.streams) + 1);
  s.slots = std::make_unique<detail::Slots>(s.streams);
  // What a 2D call needs, now: a model that cannot be compiled is reported here, not at a first call.
  s.image_encoder();
  s.image_decoder();
}

Segmenter::~Segmenter() = default;

ov::CompiledModel& Segmenter::Impl::compiled_model(bool is_encoder, detail::CompileSettings settings, int n) {
  settings.streams = n;
  const std::string key = std::string(is_encoder ? "encoder/" : "decoder/") + settings.inference_precision.get_type_name() +
                          "/" + std::to_string(n);
  auto it = compiled.find(key);
  if (it != compiled.end()) return it->second;
  const std::string& path = is_encoder ? folder.encoder_path : folder.decoder_path;
  return compiled[key] = detail::compile(core, is_encoder ? folder.encoder : folder.decoder, path, compile_from_path,
                                         settings, path);
}

detail::EncoderRequest& Segmenter::Impl::image_encoder() {
  if (!image_encoder_request)
    image_encoder_request = std::make_unique<detail::EncoderRequest>(compiled_model(true, settings, 1));
  return *image_encoder_request;
}

detail::DecoderRequest& Segmenter::Impl::image_decoder() {
  if (!image_decoder_request)
    image_decoder_request = std::make_unique<detail::DecoderRequest>(compiled_model(false, image_decoder_settings, 1));
  return *image_decoder_request;
}

detail::DecoderRequest& Segmenter::Impl::whole_decoder_3d() {
  if (decoder_settings.inference_precision == image_decoder_settings.inference_precision) return image_decoder();
  if (!whole_decoder_3d_request)
    whole_decoder_3d_request = std::make_unique<detail::DecoderRequest>(compiled_model(false, decoder_settings, 1));
  return *whole_decoder_3d_request;
}

void Segmenter::Impl::prepare_lanes(bool for_2d) {
  const bool own_2d = decoder_settings.inference_precision != image_decoder_settings.inference_precision;
  for (Lane& lane : lanes) {
    if (for_2d && own_2d) {
      if (!lane.decoder_2d)
        lane.decoder_2d = std::make_unique<detail::DecoderRequest>(compiled_model(false, image_decoder_settings, streams));
      continue;
    }
    if (!lane.decoder) lane.decoder = std::make_unique<detail::DecoderRequest>(compiled_model(false, decoder_settings, streams));
    if (!for_2d && !lane.encoder)
      lane.encoder = std::make_unique<detail::EncoderRequest>(compiled_model(true, settings, streams));
  }
}

detail::DecoderRequest& Segmenter::Impl::lane_decoder_2d(int lane) {
  Lane& l = lanes[static_cast<size_t>(lane)];
  return l.decoder_2d ? *l.decoder_2d : *l.decoder;
}

void Segmenter::segment_2d(const ImageView& image, const double* boxes, int n, LabelsView labels, Trace* trace,
                           EmbeddingStore* store, Progress* progress) {
  std::lock_guard<std::mutex> lock(impl_->call_mutex);
  impl_->run_2d(image, boxes, n, labels, trace, store, progress);
}

void Segmenter::segment_3d(const VolumeView& volume, const double* boxes, int n, LabelsView labels, Trace* trace,
                           EmbeddingStore* store, Progress* progress) {
  std::lock_guard<std::mutex> lock(impl_->call_mutex);
  impl_->run_3d(volume, boxes, n, labels, trace, store, progress);
}

std::map<std::string, std::string> Segmenter::describe() const {
  const Impl& s = *impl_;
  std::map<std::string, std::string> d;
  for (const auto& [k, v] : s.folder.info) d["model_" + k] = v;
  d["model_dir"] = s.model_dir;
  d["precision"] = to_string(s.precision);
  d["requested_precision"] = to_string(s.options.precision);
  d["threads"] = s.options.threads > 0 ? std::to_string(s.options.threads) : "auto";
  d["streams"] = std::to_string(s.streams);
  d["max_cached_slices"] = std::to_string(s.options.max_cached_slices);
  d["decoder_batch"] = std::to_string(s.options.decoder_batch);
  d["cache_dir"] = s.options.cache_dir;
  return d;
}

namespace detail {

void run_workers(int count, const std::function<void(int)>& fn, const std::function<void()>& on_error) {
  count = std::max(count, 1);
  std::exception_ptr first;
  std::mutex error_mutex;
  auto body = [&](int lane) {
    try {
      fn(lane);
    } catch (...) {
      {
        std::lock_guard<std::mutex> lock(error_mutex);
        if (!first) first = std::current_exception();
      }
      on_error();
    }
  };
  std::vector<std::thread> threads;
  threads.reserve(static_cast<size_t>(count) - 1);
  for (int lane = 1; lane < count; ++lane) threads.emplace_back(body, lane);
  body(0);
  for (auto& t : threads) t.join();
  if (first) std::rethrow_exception(first);
}

void StageClock::report(Trace& trace) const {
  auto seconds = [](int64_t nanos) { return static_cast<double>(nanos) * 1e-9; };
  trace.preprocess_seconds = seconds(nanos_[kPreprocess]);
  trace.encoder_seconds = seconds(nanos_[kEncoder]);
  trace.prompt_seconds = seconds(nanos_[kPrompt]);
  trace.decoder_seconds = seconds(nanos_[kDecoder]);
  trace.postprocess_seconds = seconds(nanos_[kPostprocess]);
  trace.wait_seconds = seconds(nanos_[kWait]);
  trace.wall_seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start_).count();
}

void check_cancelled(const Progress* progress) {
  if (progress && progress->cancelled()) throw Cancelled("the call was cancelled.");
}

void check_label_count(int n, bool wide) {
  if (n < 1) throw InvalidInput("boxes is empty: give at least one box.");
  if (n > 65535) throw InvalidInput("at most 65535 boxes fit the uint16 label map, got " + std::to_string(n) + ".");
  if (!wide && n > 255) throw InvalidInput("more than 255 boxes need a uint16 label map.");
}

}  // namespace detail
}  // namespace repmedsam
