#include "repmedsam/info.hpp"

#include <openvino/openvino.hpp>

namespace repmedsam {

std::string openvino_version() {
  const ov::Version v = ov::get_openvino_version();
  return v.buildNumber;
}

std::vector<std::string> available_devices() {
  ov::Core core;
  return core.get_available_devices();
}

}  // namespace repmedsam
