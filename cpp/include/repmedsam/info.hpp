// Facts about the OpenVINO this library was built against and runs on.
#pragma once
#include <string>
#include <vector>

namespace repmedsam {

// "2026.4.1-..." as reported by the linked OpenVINO runtime.
std::string openvino_version();
// Devices OpenVINO can see on this machine, e.g. {"CPU"}.
std::vector<std::string> available_devices();

}  // namespace repmedsam
