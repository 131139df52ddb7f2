// Pre- and postprocessing of the reference pipeline (ARCHITECTURE.md §2), bit-exact with the published
// script: OpenCV's INTER_AREA resize of uint8 images (re-implemented here, OpenCV is not linked), min-max
// normalisation, padding, box scaling, the next-slice prompt of the 3D walk, and torch's half-pixel
// bilinear upsampling of the mask logits. Pure C++; no OpenVINO.
#pragma once
#include <array>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <vector>

namespace repmedsam {

constexpr int kImageSize = 256;  // the model's square input side
constexpr int kBoxMargin = 3;    // pixels added around a neighbour slice's mask (reference get_bbox256)

// Height and width of an image after the longest-side-256 resize, before padding.
struct Extent {
  int h = 0;
  int w = 0;
};

// Model-space box [x0, y0, x1, y1] (integers, as the reference truncates them).
using Box = std::array<int, 4>;

// new side = int(side * (256.0 / max(h, w)) + 0.5), computed in double like the reference. The reference
// fails when a side rounds to 0 (an image more than 512 times wider than high); we keep 1 there.
Extent resized_extent(int h, int w);

// cv2.resize(src, (dw, dh), interpolation=cv2.INTER_AREA) for uint8 images with `cn` interleaved channels
// (row-major, rows of sw*cn bytes), reproduced to the bit: the area-averaging path when both scale
// factors are >= 1 (with OpenCV's integer-factor fast path), OpenCV's bilinear variant otherwise.
void resize_area_u8(const uint8_t* src, int sh, int sw, int cn, uint8_t* dst, int dh, int dw);

// One image or slice (uint8, h x w x cn, cn = 1 grey or 3 RGB) -> the encoder input: resized, min-max
// normalised over all channels, zero-padded to 256x256, float32 CHW with 3 channels (grey replicated),
// written to `out` (3*256*256 floats). `scratch` is reused between calls. Returns the resized extent.
Extent preprocess_image(const uint8_t* image, int h, int w, int cn, float* out, std::vector<uint8_t>& scratch);

// Pixel box [x0, y0, x1, y1] of an h x w image -> model space: int(v * (256.0 / max(h, w))) per coordinate.
Box scale_box(const double* xyxy, int h, int w);

// The 3D walk's prompt from the object's mask on the previous slice: `mask` (h x w, the object's label
// value where it is set, 0 elsewhere) is resized like an image; if anything is non-zero, the bounding box
// of the non-zero pixels grown by 3 and clipped to [0, 256] is written to `box` and true returned.
bool box_from_mask(const uint8_t* mask, int h, int w, Box& box, std::vector<uint8_t>& scratch);

// A rectangle of pixels [y0, y1) x [x0, x1); empty when y0 >= y1 or x0 >= x1.
struct Rect {
  int y0 = 0, x0 = 0, y1 = 0, x1 = 0;
  bool empty() const { return y0 >= y1 || x0 >= x1; }
};

// Sampling tables for torch.nn.functional.interpolate(mode="bilinear", align_corners=False) from the
// cropped logits (extent) to the original size (h x w), in float32 like torch. torch's CPU kernels are
// compiled with FMA contraction (its AVX2/AVX-512 builds), so the source index and each `t0*w0 + t1*w1`
// are fused multiply-adds here too: this matches torch bit for bit when upscaling, and to within one
// float32 rounding otherwise (a mask differs only where |logit| < 1e-5).
struct Upsampler {
  Upsampler(Extent extent, int h, int w);
  Extent extent;
  int h, w;
  std::vector<int> y0, y1, x0, x1;
  std::vector<float> wy0, wy1, wx0, wx1;

  // Bilinear value at output pixel (y, x) of 256x256 logits.
  float value(const float* logits, int y, int x) const {
    const float* r0 = logits + static_cast<size_t>(y0[y]) * kImageSize;
    const float* r1 = logits + static_cast<size_t>(y1[y]) * kImageSize;
    const float top = std::fma(r0[x0[x]], wx0[x], r0[x1[x]] * wx1[x]);
    const float bottom = std::fma(r1[x0[x]], wx0[x], r1[x1[x]] * wx1[x]);
    return std::fma(top, wy0[y], bottom * wy1[y]);
  }

  // The output pixels that can be > 0: those with a positive logit among their four samples. Outside this
  // rectangle every output is <= 0 (a convex combination of non-positive values), so callers skip it.
  Rect candidates(const float* logits) const;

  // Calls fn(y, x) for every output pixel whose upsampled logit is > 0 (the mask), row by row.
  template <class Fn>
  Rect for_each_mask_pixel(const float* logits, Fn&& fn) const {
    const Rect r = candidates(logits);
    for (int y = r.y0; y < r.y1; ++y)
      for (int x = r.x0; x < r.x1; ++x)
        if (value(logits, y, x) > 0.0f) fn(y, x);
    return r;
  }
};

}  // namespace repmedsam
