// The private extension `repmedsam_ov._core`; each area registers its own bindings.
#include <pybind11/pybind11.h>

namespace py = pybind11;

void register_info(py::module_& m);

PYBIND11_MODULE(_core, m) {
  m.doc() = "repmedsam-ov C++ runtime (OpenVINO)";
  m.attr("__version__") = REPMEDSAM_VERSION;
  register_info(m);
}
