// Test hooks for the C++ pre- and postprocessing, so Python tests can compare them with cv2 and torch.
#include <limits>

#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include "repmedsam/errors.hpp"
#include "repmedsam/preprocess.hpp"

namespace py = pybind11;
using namespace repmedsam;

namespace {

using U8Array = py::array_t<uint8_t, py::array::c_style | py::array::forcecast>;
using F32Array = py::array_t<float, py::array::c_style | py::array::forcecast>;

// (H, W) or (H, W, C) uint8 -> (h, w, cn)
void image_dims(const py::buffer_info& info, int& h, int& w, int& cn) {
  if (info.ndim != 2 && info.ndim != 3) throw InvalidInput("image must have shape (H, W) or (H, W, C)");
  for (const auto side : info.shape)  // int sizes below: a side of 2^31 or more would wrap
    if (side > std::numeric_limits<int>::max()) throw InvalidInput("image sides must be below 2^31");
  h = static_cast<int>(info.shape[0]);
  w = static_cast<int>(info.shape[1]);
  cn = info.ndim == 3 ? static_cast<int>(info.shape[2]) : 1;
  if (h < 1 || w < 1 || cn < 1 || cn > 4) throw InvalidInput("image must be non-empty with 1 to 4 channels");
}

py::array_t<uint8_t> resize_area(U8Array image, int height, int width) {
  const py::buffer_info info = image.request();
  int h, w, cn;
  image_dims(info, h, w, cn);
  if (height < 1 || width < 1) throw InvalidInput("height and width must be at least 1");
  std::vector<py::ssize_t> shape = {height, width};
  if (info.ndim == 3) shape.push_back(cn);
  py::array_t<uint8_t> out(shape);
  {
    py::gil_scoped_release release;
    resize_area_u8(static_cast<const uint8_t*>(info.ptr), h, w, cn, out.mutable_data(), height, width);
  }
  return out;
}

py::tuple preprocess(U8Array image) {
  const py::buffer_info info = image.request();
  int h, w, cn;
  image_dims(info, h, w, cn);
  if (cn != 1 && cn != 3) throw InvalidInput("image must be grey (H, W) or RGB (H, W, 3)");
  py::array_t<float> out({3, kImageSize, kImageSize});
  Extent e;
  {
    py::gil_scoped_release release;
    std::vector<uint8_t> scratch;
    e = preprocess_image(static_cast<const uint8_t*>(info.ptr), h, w, cn, out.mutable_data(), scratch);
  }
  return py::make_tuple(out, py::make_tuple(e.h, e.w));
}

// 256x256 logits -> (H, W) float32 bilinear values (for comparing with torch) and the > 0 mask.
py::tuple upsample(F32Array logits, int new_h, int new_w, int h, int w) {
  const py::buffer_info info = logits.request();
  if (info.ndim != 2 || info.shape[0] != kImageSize || info.shape[1] != kImageSize)
    throw InvalidInput("logits must have shape (256, 256)");
  if (new_h < 1 || new_w < 1 || new_h > kImageSize || new_w > kImageSize || h < 1 || w < 1)
    throw InvalidInput("extent must lie in [1, 256] and the output size be at least 1x1");
  py::array_t<float> values({h, w});
  py::array_t<bool> mask({h, w});
  {
    py::gil_scoped_release release;
    const Upsampler up({new_h, new_w}, h, w);
    const float* src = static_cast<const float*>(info.ptr);
    float* v = values.mutable_data();
    bool* m = mask.mutable_data();
    for (int y = 0; y < h; ++y)
      for (int x = 0; x < w; ++x) v[static_cast<size_t>(y) * w + x] = up.value(src, y, x);
    std::fill(m, m + static_cast<size_t>(h) * w, false);
    up.for_each_mask_pixel(src, [&](int y, int x) { m[static_cast<size_t>(y) * w + x] = true; });
  }
  return py::make_tuple(values, mask);
}

py::object mask_box(U8Array mask) {
  const py::buffer_info info = mask.request();
  if (info.ndim != 2 || info.shape[0] < 1 || info.shape[1] < 1 || info.shape[0] > std::numeric_limits<int>::max() ||
      info.shape[1] > std::numeric_limits<int>::max())
    throw InvalidInput("mask must be (H, W) uint8 with sides below 2^31");
  Box box;
  std::vector<uint8_t> scratch;
  if (!box_from_mask(static_cast<const uint8_t*>(info.ptr), static_cast<int>(info.shape[0]),
                     static_cast<int>(info.shape[1]), box, scratch))
    return py::none();
  return py::cast(box);
}

}  // namespace

void register_preprocess(py::module_& m) {
  m.def("resize_area", &resize_area, py::arg("image"), py::arg("height"), py::arg("width"),
        "cv2.resize(image, (width, height), interpolation=cv2.INTER_AREA) for uint8 (H, W[, C]) images.");
  m.def("preprocess", &preprocess, py::arg("image"),
        "uint8 (H, W) or (H, W, 3) -> (float32 (3, 256, 256) encoder input, (new_h, new_w)).");
  m.def("upsample", &upsample, py::arg("logits"), py::arg("new_h"), py::arg("new_w"), py::arg("height"),
        py::arg("width"),
        "float32 (256, 256) logits -> (float32 (H, W) bilinear values, bool (H, W) mask = value > 0).");
  m.def("resized_extent", [](int h, int w) {
    if (h < 1 || w < 1) throw InvalidInput("height and width must be at least 1");
    const Extent e = resized_extent(h, w);
    return py::make_tuple(e.h, e.w);
  }, py::arg("height"), py::arg("width"), "(new_h, new_w) of the longest-side-256 resize.");
  m.def("scale_box", [](std::array<double, 4> box, int h, int w) { return scale_box(box.data(), h, w); },
        py::arg("box"), py::arg("height"), py::arg("width"),
        "Pixel box [x0, y0, x1, y1] of an (height, width) image -> model-space box (ints).");
  m.def("mask_box", &mask_box, py::arg("mask"),
        "The 3D walk's next prompt from a uint8 (H, W) label slice, or None when its resize is empty.");
}
