// Facts about the OpenVINO this library was built against and runs on.
#pragma once
#include <string>
#include <vector>

#include "repmedsam/options.hpp"

namespace repmedsam {

// "2026.4.1-..." as reported by the linked OpenVINO runtime.
std::string openvino_version();
// Devices OpenVINO can see on this machine, e.g. {"CPU"}.
std::vector<std::string> available_devices();

// The CPU's native bf16 units: "AMX", "AVX512-BF16", or "" (bf16 would be emulated, ~5x slower than f32).
// The one probe: the runtime's "auto" and training's bf16 autocast both ask it.
std::string native_bf16_units();

// What precision "auto" picks on this CPU for the model folder `model_dir` ("" = none), and why, e.g.
// {F32, "no native bf16 (AMX or AVX512-BF16) on this CPU, and the model folder has no int8 encoder
// (export --int8 adds one)"}.
// Throws ModelError when the folder's encoder_int8.xml cannot be read.
struct AutoPrecision {
  Precision precision;
  std::string reason;
};
AutoPrecision auto_precision(const std::string& model_dir);

}  // namespace repmedsam
