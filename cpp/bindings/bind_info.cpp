#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include "repmedsam/info.hpp"

namespace py = pybind11;

void register_info(py::module_& m) {
  m.def("openvino_version", &repmedsam::openvino_version,
        "Build number of the OpenVINO runtime this extension is linked against.");
  m.def("available_devices", &repmedsam::available_devices,
        "OpenVINO devices visible on this machine, e.g. ['CPU'].");
  m.def("native_bf16_units", &repmedsam::native_bf16_units,
        "The CPU's native bf16 units: 'AMX', 'AVX512-BF16', or '' (bf16 would be emulated, far slower than f32).");
  m.def("auto_precision", [](const std::string& model_dir) {
          const auto choice = repmedsam::auto_precision(model_dir);
          return py::make_tuple(repmedsam::to_string(choice.precision), choice.reason);
        }, py::arg("model_dir") = "",
        "(precision, reason): what precision 'auto' picks on this CPU for a model folder ('' = none).");
}
