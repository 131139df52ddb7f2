#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include "repmedsam/info.hpp"

namespace py = pybind11;

void register_info(py::module_& m) {
  m.def("openvino_version", &repmedsam::openvino_version,
        "Build number of the OpenVINO runtime this extension is linked against.");
  m.def("available_devices", &repmedsam::available_devices,
        "OpenVINO devices visible on this machine, e.g. ['CPU'].");
}
