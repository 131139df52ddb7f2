// The private extension `repmedsam_ov._core`; each area registers its own bindings. C++ errors become
// repmedsam_ov.InputError (a ValueError), repmedsam_ov.ModelError and repmedsam_ov.Cancelled.
#include <pybind11/pybind11.h>

#include "repmedsam/errors.hpp"

namespace py = pybind11;

void register_info(py::module_& m);
void register_preprocess(py::module_& m);
void register_segmenter(py::module_& m);

namespace {

// The package's own exception class, or `fallback` if the package cannot be imported (a bare _core).
void raise_as(const char* name, PyObject* fallback, const char* message) {
  PyObject* type = fallback;
  py::object cls;
  try {
    cls = py::module_::import("repmedsam_ov.errors").attr(name);
    type = cls.ptr();
  } catch (const py::error_already_set&) {
  }
  PyErr_SetString(type, message);
}

}  // namespace

PYBIND11_MODULE(_core, m) {
  m.doc() = "repmedsam-ov C++ runtime (OpenVINO)";
  m.attr("__version__") = REPMEDSAM_VERSION;
  py::register_exception_translator([](std::exception_ptr p) {
    try {
      if (p) std::rethrow_exception(p);
    } catch (const repmedsam::InvalidInput& e) {
      raise_as("InputError", PyExc_ValueError, e.what());
    } catch (const repmedsam::ModelError& e) {
      raise_as("ModelError", PyExc_RuntimeError, e.what());
    } catch (const repmedsam::Cancelled& e) {
      raise_as("Cancelled", PyExc_RuntimeError, e.what());
    }
  });
  register_info(m);
  register_preprocess(m);
  register_segmenter(m);
}
