// Segmenter setup: options, precision choice, model folder, compilation, worker lanes.
#include <algorithm>
#include <atomic>
#include <exception>
#include <thread>

#if defined(__x86_64__) || defined(__i386__)
#include <cpuid.h>
#endif

#include "engine_impl.hpp"
#include "model_dir.hpp"
#include "ov_guard.hpp"
#include "repmedsam/errors.hpp"
#include "repmedsam/info.hpp"

namespace repmedsam {

Precision parse_precision(const std::string& name) {
  if (name == "auto") return Precision::Auto;
  if (name == "f32") return Precision::F32;
  if (name == "bf16") return Precision::BF16;
  if (name == "int8") return Precision::Int8;
  throw InvalidInput("precision '" + name + "' is not one of: auto, f32, bf16, int8.");
}

std::string to_string(Precision p) {
  switch (p) {
    case Precision::Auto: return "auto";
    case Precision::F32: return "f32";
    case Precision::BF16: return "bf16";
    case Precision::Int8: return "int8";
  }
  return "?";
}

namespace {

// Native bf16 units, where bf16 inference pays off: AMX (Xeon since Sapphire Rapids: 2-2.5x f32 here) or
// AVX512-BF16 (AMD Zen 4 and later, Cooper Lake: 1.9x f32 for both encoders on a 2-vCPU EPYC). Elsewhere
// OpenVINO emulates bf16, ~5x slower than f32. "" when there are none.
std::string cpu_native_bf16() {
#if defined(__x86_64__) || defined(__i386__)
  unsigned a = 0, b = 0, c = 0, d = 0;
  if (!__get_cpuid_count(7, 0, &a, &b, &c, &d)) return "";
  if ((d & (1u << 22)) && (d & (1u << 24))) return "AMX";  // AMX-BF16, AMX-TILE
  const bool avx512f = b & (1u << 16);
  if (avx512f && a >= 1 && __get_cpuid_count(7, 1, &a, &b, &c, &d) && (a & (1u << 5))) return "AVX512-BF16";
#endif
  return "";
}

bool cpu_supports(ov::Core& core, const std::string& capability) {
  const auto caps = detail::guarded("cannot query the CPU's capabilities from OpenVINO",
                                    [&] { return core.get_property("CPU", ov::device::capabilities); });
  return std::find(caps.begin(), caps.end(), capability) != caps.end();
}

// Two parallel inferences wherever there are two cores: walks of a 3D case (and 2D decoder chunks) keep
// both busy, and two single-threaded streams beat one two-threaded stream for these small networks
// (2-core AMX Xeon: CT case 61 s -> 44 s at f32, 31 s -> 16 s at bf16).
int auto_streams(int threads) {
  const int cores = threads > 0 ? threads : static_cast<int>(std::thread::hardware_concurrency());
  return cores >= 2 ? 2 : 1;
}

// "" as dir: no model folder to look into for an int8 encoder.
AutoPrecision choose_auto(ov::Core& core, const std::string& dir) {
  const std::string units = cpu_native_bf16();
  std::string no_bf16 = "no native bf16 (AMX or AVX512-BF16) on this CPU, ";
  if (!units.empty() && cpu_supports(core, "BF16")) {
    if (!detail::bf16_marked_inaccurate(dir))
      return {Precision::BF16, "this CPU computes bf16 natively (" + units + ")"};
    no_bf16 = "bf16 is native here (" + units + ") but the model folder marks it outside its accuracy bound, ";
  }
  if (dir.empty()) return {Precision::F32, no_bf16 + "and no model folder to look for an int8 encoder in"};
  if (!detail::has_int8_encoder(dir))
    return {Precision::F32, no_bf16 + "and the model folder has no int8 encoder (export --int8 adds one)"};
  if (detail::int8_encoder_recommended(dir))
    return {Precision::Int8, no_bf16 + "and the model folder's int8 encoder passed its accuracy bound at export"};
  return {Precision::F32, no_bf16 + "and the model folder's int8 encoder failed its accuracy bound at export"};
}

Precision resolve_precision(ov::Core& core, Precision requested, const std::string& dir) {
  if (requested == Precision::BF16 && !cpu_supports(core, "BF16"))
    throw InvalidInput("precision 'bf16' needs a CPU with bfloat16 support (AVX512-BF16 or AMX), which this "
                       "CPU lacks; use precision 'auto' or 'f32'.");
  return requested == Precision::Auto ? choose_auto(core, dir).precision : requested;
}

}  // namespace

AutoPrecision auto_precision(const std::string& model_dir) {
  ov::Core core;
  return choose_auto(core, model_dir);
}

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
  s.precision = resolve_precision(s.core, options.precision, model_dir);
  if (!options.cache_dir.empty())
    detail::guarded(options.cache_dir + ": cannot be used as the OpenVINO model cache",
                    [&] { s.core.set_property(ov::cache_dir(options.cache_dir)); });

  s.folder = detail::open_model_folder(model_dir, s.precision == Precision::Int8);
  const detail::ModelFolder& folder = s.folder;
  s.streams = options.streams > 0 ? options.streams : auto_streams(options.threads);
  detail::CompileSettings& settings = s.settings;
  settings.inference_precision = s.precision == Precision::BF16 ? ov::element::bf16 : ov::element::f32;
  settings.threads = options.threads;
  settings.streams = s.streams;
  s.compile_from_path = !options.cache_dir.empty();
  const bool from_path = s.compile_from_path;
  s.encoder = detail::compile(s.core, folder.encoder, folder.encoder_path, from_path, settings, folder.encoder_path);
  s.decoder = detail::compile(s.core, folder.decoder, folder.decoder_path, from_path, settings, folder.decoder_path);
  s.lanes.resize(static_cast<size_t>(s.streams) + 1);
  for (Lane& lane : s.lanes) {
    lane.encoder = std::make_unique<detail::EncoderRequest>(s.encoder);
    lane.decoder = std::make_unique<detail::DecoderRequest>(s.decoder);
  }
}

Segmenter::~Segmenter() = default;

namespace {

// The lane's request when there is one stream anyway, else a request on a one-stream compile made once.
template <class Request>
Request& whole_cpu(Segmenter::Impl& s, Request& lane_request, std::unique_ptr<Request>& request,
                   ov::CompiledModel& compiled, const std::shared_ptr<ov::Model>& model, const std::string& path) {
  if (s.streams == 1) return lane_request;
  if (!request) {
    detail::CompileSettings one = s.settings;
    one.streams = 1;
    compiled = detail::compile(s.core, model, path, s.compile_from_path, one, path);
    request = std::make_unique<Request>(compiled);
  }
  return *request;
}

}  // namespace

detail::EncoderRequest& Segmenter::Impl::image_encoder() {
  return whole_cpu(*this, *lanes.front().encoder, image_encoder_request, image_encoder_model, folder.encoder,
                   folder.encoder_path);
}

detail::DecoderRequest& Segmenter::Impl::image_decoder() {
  return whole_cpu(*this, *lanes.front().decoder, image_decoder_request, image_decoder_model, folder.decoder,
                   folder.decoder_path);
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
