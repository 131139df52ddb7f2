// repmedsam_ov._core.Segmenter: arrays in, label arrays out; the GIL is released while C++ works.
// The Python wrapper (repmedsam_ov.segmenter) validates and converts inputs first; the checks here keep
// direct callers safe too.
#include <limits>

#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include "repmedsam/engine.hpp"
#include "repmedsam/errors.hpp"

namespace py = pybind11;
using namespace repmedsam;

namespace {

// The C++ views hold int sizes: a side of 2^31 or more would wrap (a (2^32 + 3, 1) image was segmented as
// 3 rows, the rest of its label map left unwritten), so it is refused here, before any cast.
void check_sides(const py::array& a, const char* name) {
  for (py::ssize_t i = 0; i < a.ndim(); ++i)
    if (a.shape(i) > std::numeric_limits<int>::max())
      throw InvalidInput(std::string(name) + " has a side of " + std::to_string(a.shape(i)) +
                         " pixels; sides must be below 2^31.");
}

py::array_t<uint8_t> image_array(const py::array& a, const char* name) {
  if (!py::isinstance<py::array_t<uint8_t>>(a) || a.dtype().kind() != 'u' || a.itemsize() != 1)
    throw InvalidInput(std::string(name) + " must have dtype uint8, got " + std::string(py::str(a.dtype())) + ".");
  if (!(a.flags() & py::array::c_style)) throw InvalidInput(std::string(name) + " must be C-contiguous.");
  check_sides(a, name);
  return py::reinterpret_borrow<py::array_t<uint8_t>>(a);
}

py::array_t<double> box_array(const py::array& a, int columns) {
  if (a.ndim() != 2 || a.shape(1) != columns)
    throw InvalidInput("boxes must have shape (N, " + std::to_string(columns) + ").");
  const char kind = a.dtype().kind();
  if (kind != 'i' && kind != 'u' && kind != 'f')  // forcecast would fail (strings, objects) or drop data (complex)
    throw InvalidInput("boxes must hold integer or float pixel coordinates, got dtype " +
                       std::string(py::str(a.dtype())) + ".");
  if (a.shape(0) > 65535)
    throw InvalidInput("at most 65535 boxes fit the uint16 label map, got " + std::to_string(a.shape(0)) + ".");
  return py::array_t<double, py::array::c_style | py::array::forcecast>::ensure(a);
}

py::dict trace_dict(const Trace& t) {
  py::list boxes;
  for (const auto& object : t.decoder_boxes) {
    py::list calls;
    for (const auto& b : object) calls.append(py::make_tuple(b[0], b[1], b[2], b[3]));
    boxes.append(calls);
  }
  py::dict d;
  d["decoder_boxes"] = boxes;
  d["encoder_runs"] = t.encoder_runs;
  d["decoder_calls"] = t.decoder_calls;
  py::dict seconds;
  seconds["preprocess"] = t.preprocess_seconds;
  seconds["encoder"] = t.encoder_seconds;
  seconds["prompt"] = t.prompt_seconds;
  seconds["decoder"] = t.decoder_seconds;
  seconds["postprocess"] = t.postprocess_seconds;
  seconds["wait"] = t.wait_seconds;
  seconds["wall"] = t.wall_seconds;
  d["seconds"] = seconds;
  return d;
}

py::array new_labels(const std::vector<py::ssize_t>& shape, bool wide) {
  if (wide) return py::array_t<uint16_t>(shape);
  return py::array_t<uint8_t>(shape);
}

py::tuple segment_2d(Segmenter& self, const py::array& image_in, const py::array& boxes_in, EmbeddingStore* store,
                     Progress* progress) {
  const auto image = image_array(image_in, "image");
  if (image.ndim() != 2 && !(image.ndim() == 3 && image.shape(2) == 3))
    throw InvalidInput("image must have shape (H, W) or (H, W, 3).");
  const auto boxes = box_array(boxes_in, 4);
  const int n = static_cast<int>(boxes.shape(0));
  const ImageView view{image.data(), static_cast<int>(image.shape(0)), static_cast<int>(image.shape(1)),
                       image.ndim() == 3 ? 3 : 1};
  py::array labels = new_labels({image.shape(0), image.shape(1)}, n > 255);
  Trace trace;
  {
    py::gil_scoped_release release;
    self.segment_2d(view, boxes.data(), n, {labels.mutable_data(), n > 255}, &trace, store, progress);
  }
  return py::make_tuple(labels, trace_dict(trace));
}

py::tuple segment_3d(Segmenter& self, const py::array& volume_in, const py::array& boxes_in, EmbeddingStore* store,
                     Progress* progress) {
  const auto volume = image_array(volume_in, "volume");
  if (volume.ndim() != 3) throw InvalidInput("volume must have shape (D, H, W).");
  const auto boxes = box_array(boxes_in, 6);
  const int n = static_cast<int>(boxes.shape(0));
  const VolumeView view{volume.data(), static_cast<int>(volume.shape(0)), static_cast<int>(volume.shape(1)),
                        static_cast<int>(volume.shape(2))};
  py::array labels = new_labels({volume.shape(0), volume.shape(1), volume.shape(2)}, n > 255);
  Trace trace;
  {
    py::gil_scoped_release release;
    self.segment_3d(view, boxes.data(), n, {labels.mutable_data(), n > 255}, &trace, store, progress);
  }
  return py::make_tuple(labels, trace_dict(trace));
}

}  // namespace

void register_segmenter(py::module_& m) {
  py::class_<EmbeddingStore>(m, "EmbeddingStore",
                             "Slice embeddings of one image or volume kept between segment calls (owned copies).")
      .def(py::init<int>(), py::arg("max_slices"))
      .def_property_readonly("encoded", &EmbeddingStore::encoded, "Slices encoded so far, by all calls.");
  py::class_<Progress>(m, "Progress", "Progress of one segment call, readable and cancellable from other threads.")
      .def(py::init<>())
      .def("cancel", &Progress::cancel, "Stop the call before its next decoder step (it raises Cancelled).")
      .def_property_readonly("cancelled", &Progress::cancelled)
      .def_property_readonly("steps", &Progress::steps, "Decoder steps done: 2D boxes, or 3D slices of all walks.");

  py::class_<Segmenter>(m, "Segmenter", "Compiled Rep-MedSAM encoder and decoder (see repmedsam_ov.Segmenter).")
      .def(py::init([](const std::string& model_dir, const std::string& precision, int threads, int streams,
                       const std::string& cache_dir, int max_cached_slices, int decoder_batch) {
             Options o;
             o.precision = parse_precision(precision);
             o.threads = threads;
             o.streams = streams;
             o.cache_dir = cache_dir;
             o.max_cached_slices = max_cached_slices;
             o.decoder_batch = decoder_batch;
             py::gil_scoped_release release;  // compiling takes seconds
             return std::make_unique<Segmenter>(model_dir, o);
           }),
           py::arg("model_dir"), py::arg("precision") = "auto", py::arg("threads") = 0, py::arg("streams") = 0,
           py::arg("cache_dir") = "", py::arg("max_cached_slices") = 256, py::arg("decoder_batch") = 8)
      .def("segment_2d", &segment_2d, py::arg("image"), py::arg("boxes"), py::arg("store") = nullptr,
           py::arg("progress") = nullptr,
           "uint8 (H, W[, 3]) C-contiguous image, float64 (N, 4) boxes -> (labels (H, W), trace dict).")
      .def("segment_3d", &segment_3d, py::arg("volume"), py::arg("boxes"), py::arg("store") = nullptr,
           py::arg("progress") = nullptr,
           "uint8 (D, H, W) C-contiguous volume, float64 (N, 6) boxes -> (labels (D, H, W), trace dict).")
      .def("describe", &Segmenter::describe, "Model folder, resolved precision, threading and model metadata.")
      .def("time_networks", &Segmenter::time_networks, py::arg("repeats") = 5,
           py::call_guard<py::gil_scoped_release>(),
           "Median seconds of one inference with every thread: encoder, decoder per box (one and batched).");
}
