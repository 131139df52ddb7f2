// Precision names, the CPU's native bf16 units, and "auto": the model folder's measured choice for this CPU
// class when its encoder.xml records one (auto_amx, auto_avx512_bf16, auto_other: the fastest precision whose
// every eval source scored within 0.01 DSC/NSD of f32, benchmarks/model_card_eval.py --mark-auto), else
// bf16 where native, else a recommended int8 encoder, else f32.
#include "precision.hpp"

#include <algorithm>

#if defined(__x86_64__) || defined(__i386__)
#include <cpuid.h>
#endif

#include "model_dir.hpp"
#include "ov_guard.hpp"
#include "repmedsam/errors.hpp"

namespace repmedsam {

Precision parse_precision(const std::string& name) {
  if (name == "auto") return Precision::Auto;
  if (name == "f32") return Precision::F32;
  if (name == "bf16") return Precision::BF16;
  if (name == "bf16-encoder") return Precision::BF16Encoder;
  if (name == "int8") return Precision::Int8;
  throw InvalidInput("precision '" + name + "' is not one of: auto, f32, bf16, bf16-encoder, int8.");
}

std::string to_string(Precision p) {
  switch (p) {
    case Precision::Auto: return "auto";
    case Precision::F32: return "f32";
    case Precision::BF16: return "bf16";
    case Precision::BF16Encoder: return "bf16-encoder";
    case Precision::Int8: return "int8";
  }
  return "?";
}

// AMX (Xeon since Sapphire Rapids: 2-2.5x f32 here) or AVX512-BF16 (AMD Zen 4 and later, Cooper Lake: 1.9x
// f32 for both encoders on a 2-vCPU EPYC). Elsewhere OpenVINO emulates bf16, ~5x slower than f32.
std::string native_bf16_units() {
#if defined(__x86_64__) || defined(__i386__)
  unsigned a = 0, b = 0, c = 0, d = 0;
  if (!__get_cpuid_count(7, 0, &a, &b, &c, &d)) return "";
  if ((d & (1u << 22)) && (d & (1u << 24))) return "AMX";  // AMX-BF16, AMX-TILE
  const bool avx512f = b & (1u << 16);
  if (avx512f && a >= 1 && __get_cpuid_count(7, 1, &a, &b, &c, &d) && (a & (1u << 5))) return "AVX512-BF16";
#endif
  return "";
}

namespace {

bool cpu_supports(ov::Core& core, const std::string& capability) {
  const auto caps = detail::guarded("cannot query the CPU's capabilities from OpenVINO",
                                    [&] { return core.get_property("CPU", ov::device::capabilities); });
  return std::find(caps.begin(), caps.end(), capability) != caps.end();
}

bool uses_bf16(Precision p) { return p == Precision::BF16 || p == Precision::BF16Encoder; }

// The model folder's recorded choice for this CPU class, if it holds one that can run here.
bool measured_choice(ov::Core& core, const std::string& dir, const std::string& units, AutoPrecision& out) {
  const std::string cpu_class = units == "AMX" ? "amx" : units == "AVX512-BF16" ? "avx512_bf16" : "other";
  const std::string mark = detail::encoder_mark(dir, "auto_" + cpu_class);
  if (mark.empty()) return false;
  Precision p;
  try {
    p = parse_precision(mark);
  } catch (const InvalidInput&) {
    throw ModelError(dir + "/encoder.xml: auto_" + cpu_class + " = '" + mark + "' is not a precision; mark the "
                     "folder again with benchmarks/model_card_eval.py --mark-auto.");
  }
  if (p == Precision::Auto || (uses_bf16(p) && (units.empty() || !cpu_supports(core, "BF16"))) ||
      (p == Precision::Int8 && !detail::has_int8_encoder(dir)))
    return false;  // a mark that cannot run here (a copied folder, a missing file): the rules below decide
  const std::string basis = detail::encoder_mark(dir, "auto_basis");
  out = {p, "measured for this model on " + (units.empty() ? std::string("CPUs without native bf16") : units + " CPUs") +
                ": the fastest precision within its accuracy rule" + (basis.empty() ? "" : " (" + basis + ")")};
  return true;
}

// "" as dir: no model folder to look into.
AutoPrecision choose_auto(ov::Core& core, const std::string& dir) {
  const std::string units = native_bf16_units();
  AutoPrecision measured;
  if (!dir.empty() && measured_choice(core, dir, units, measured)) return measured;
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

}  // namespace

AutoPrecision auto_precision(const std::string& model_dir) {
  ov::Core core;
  return choose_auto(core, model_dir);
}

namespace detail {

Precision resolve_precision(ov::Core& core, Precision requested, const std::string& dir) {
  if (uses_bf16(requested) && !cpu_supports(core, "BF16"))
    throw InvalidInput("precision '" + to_string(requested) + "' needs a CPU with bfloat16 support (AVX512-BF16 or "
                       "AMX), which this CPU lacks; use precision 'auto' or 'f32'.");
  return requested == Precision::Auto ? choose_auto(core, dir).precision : requested;
}

}  // namespace detail
}  // namespace repmedsam
