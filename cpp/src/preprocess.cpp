// The reference pipeline's image arithmetic, reproduced to the bit (see preprocess.hpp).
//
// The resize follows OpenCV's cv::resize for CV_8U with INTER_AREA (imgproc/src/resize.cpp): every
// rounding step, table and fixed-point shift below mirrors what OpenCV computes, including the parts that
// its SIMD and scalar paths share. This file must be compiled without floating-point contraction (no FMA),
// as OpenCV's baseline build is; CMakeLists.txt sets -ffp-contract=off for it.
#include "repmedsam/preprocess.hpp"

#include <algorithm>
#include <cfloat>
#include <cmath>
#include <cstring>
#include <limits>

namespace repmedsam {
namespace {

// OpenCV's cvRound / saturate_cast: round half to even (the SSE conversion in the default mode).
inline int round_even(double v) { return static_cast<int>(std::lrint(v)); }
inline int round_even(float v) { return static_cast<int>(std::lrintf(v)); }
inline uint8_t saturate_u8(float v) { return static_cast<uint8_t>(std::clamp(round_even(v), 0, 255)); }
inline int16_t saturate_s16(float v) {
  return static_cast<int16_t>(std::clamp(round_even(v), -32768, 32767));
}

constexpr int kCoefBits = 11;  // INTER_RESIZE_COEF_BITS
constexpr int kCoefScale = 1 << kCoefBits;

// Integer downscale factors (OpenCV resizeAreaFast_): block means; 2x2 has its own rounding.
void resize_area_fast(const uint8_t* src, int sw, int cn, uint8_t* dst, int dh, int dw, int fx, int fy) {
  const size_t sstep = static_cast<size_t>(sw) * cn;
  const size_t dstep = static_cast<size_t>(dw) * cn;
  if (fx == 2 && fy == 2 && (cn == 1 || cn == 3)) {  // OpenCV's fast_mode: (sum + 2) >> 2
    for (int dy = 0; dy < dh; ++dy) {
      const uint8_t* s0 = src + static_cast<size_t>(2 * dy) * sstep;
      const uint8_t* s1 = s0 + sstep;
      uint8_t* d = dst + static_cast<size_t>(dy) * dstep;
      for (int dx = 0; dx < dw; ++dx)
        for (int c = 0; c < cn; ++c) {
          const size_t i = static_cast<size_t>(2 * dx) * cn + c;
          d[dx * cn + c] = static_cast<uint8_t>((s0[i] + s0[i + cn] + s1[i] + s1[i + cn] + 2) >> 2);
        }
    }
    return;
  }
  const float scale = 1.f / static_cast<float>(fx * fy);
  for (int dy = 0; dy < dh; ++dy) {
    uint8_t* d = dst + static_cast<size_t>(dy) * dstep;
    for (int dx = 0; dx < dw; ++dx)
      for (int c = 0; c < cn; ++c) {
        int sum = 0;
        for (int ky = 0; ky < fy; ++ky) {
          const uint8_t* s = src + static_cast<size_t>(dy * fy + ky) * sstep + static_cast<size_t>(dx * fx) * cn + c;
          for (int kx = 0; kx < fx; ++kx) sum += s[kx * cn];
        }
        d[dx * cn + c] = saturate_u8(static_cast<float>(sum) * scale);
      }
  }
}

struct AreaTap {
  int si, di;
  float alpha;
};

// OpenCV computeResizeAreaTab: which source cells (and what fraction) make up each destination cell.
std::vector<AreaTap> area_taps(int ssize, int dsize, int cn, double scale) {
  std::vector<AreaTap> tab;
  tab.reserve(static_cast<size_t>(ssize) * 2);
  for (int dx = 0; dx < dsize; ++dx) {
    const double fsx1 = dx * scale;
    const double fsx2 = fsx1 + scale;
    const double cell = std::min(scale, ssize - fsx1);
    int sx1 = static_cast<int>(std::ceil(fsx1)), sx2 = static_cast<int>(std::floor(fsx2));
    sx2 = std::min(sx2, ssize - 1);
    sx1 = std::min(sx1, sx2);
    if (sx1 - fsx1 > 1e-3) tab.push_back({(sx1 - 1) * cn, dx * cn, static_cast<float>((sx1 - fsx1) / cell)});
    for (int sx = sx1; sx < sx2; ++sx) tab.push_back({sx * cn, dx * cn, static_cast<float>(1.0 / cell)});
    if (fsx2 - sx2 > 1e-3)
      tab.push_back({sx2 * cn, dx * cn, static_cast<float>(std::min(std::min(fsx2 - sx2, 1.), cell) / cell)});
  }
  return tab;
}

// Non-integer downscale (OpenCV ResizeArea_Invoker): float weights, accumulated in OpenCV's order.
void resize_area_generic(const uint8_t* src, int sh, int sw, int cn, uint8_t* dst, int dh, int dw,
                         double scale_x, double scale_y) {
  const std::vector<AreaTap> xtab = area_taps(sw, dw, cn, scale_x);
  const std::vector<AreaTap> ytab = area_taps(sh, dh, 1, scale_y);
  const size_t width = static_cast<size_t>(dw) * cn;
  const size_t sstep = static_cast<size_t>(sw) * cn;
  std::vector<float> buf(width), sum(width, 0.f);
  int prev_dy = ytab.empty() ? 0 : ytab[0].di;
  auto store = [&](int dy) {
    uint8_t* d = dst + static_cast<size_t>(dy) * width;
    for (size_t i = 0; i < width; ++i) d[i] = saturate_u8(sum[i]);
  };
  for (const AreaTap& ty : ytab) {
    const uint8_t* s = src + static_cast<size_t>(ty.si) * sstep;
    std::fill(buf.begin(), buf.end(), 0.f);
    for (const AreaTap& tx : xtab)
      for (int c = 0; c < cn; ++c) buf[tx.di + c] += static_cast<float>(s[tx.si + c]) * tx.alpha;
    const float beta = ty.alpha;
    if (ty.di != prev_dy) {
      store(prev_dy);
      for (size_t i = 0; i < width; ++i) sum[i] = beta * buf[i];
      prev_dy = ty.di;
    } else {
      for (size_t i = 0; i < width; ++i) sum[i] += beta * buf[i];
    }
  }
  store(prev_dy);
}

// Upscaling along at least one axis: OpenCV's INTER_AREA falls back to a bilinear variant ("area_mode"
// coefficients) evaluated in 11-bit fixed point, with the vertical pass's >>4, >>16, +2 >>2 arithmetic.
void resize_area_linear(const uint8_t* src, int sh, int sw, int cn, uint8_t* dst, int dh, int dw,
                        double scale_x, double scale_y, double inv_scale_x, double inv_scale_y) {
  std::vector<int> xofs(dw);
  std::vector<int16_t> alpha(static_cast<size_t>(dw) * 2);
  int xmax = dw;
  for (int dx = 0; dx < dw; ++dx) {
    int sx = static_cast<int>(std::floor(dx * scale_x));
    float fx = static_cast<float>((dx + 1) - (sx + 1) * inv_scale_x);
    fx = fx <= 0 ? 0.f : fx - static_cast<float>(static_cast<int>(std::floor(fx)));
    if (sx < 0) fx = 0, sx = 0;
    if (sx + 1 >= sw) {
      xmax = std::min(xmax, dx);
      if (sx >= sw - 1) fx = 0, sx = sw - 1;
    }
    xofs[dx] = sx;
    alpha[2 * dx] = saturate_s16((1.f - fx) * kCoefScale);
    alpha[2 * dx + 1] = saturate_s16(fx * kCoefScale);
  }
  const size_t width = static_cast<size_t>(dw) * cn;
  const size_t sstep = static_cast<size_t>(sw) * cn;
  auto hresize = [&](int sy, std::vector<int>& row) {
    const uint8_t* s = src + static_cast<size_t>(sy) * sstep;
    for (int dx = 0; dx < dw; ++dx) {
      const uint8_t* p = s + static_cast<size_t>(xofs[dx]) * cn;
      for (int c = 0; c < cn; ++c)
        row[dx * cn + c] = dx < xmax ? p[c] * alpha[2 * dx] + p[c + cn] * alpha[2 * dx + 1] : p[c] * kCoefScale;
    }
  };
  std::vector<int> rows[2] = {std::vector<int>(width), std::vector<int>(width)};
  int have[2] = {-1, -1};  // which source row each buffer holds
  for (int dy = 0; dy < dh; ++dy) {
    const int sy = static_cast<int>(std::floor(dy * scale_y));
    float fy = static_cast<float>((dy + 1) - (sy + 1) * inv_scale_y);
    fy = fy <= 0 ? 0.f : fy - static_cast<float>(static_cast<int>(std::floor(fy)));
    const int b0 = saturate_s16((1.f - fy) * kCoefScale), b1 = saturate_s16(fy * kCoefScale);
    const int want[2] = {std::clamp(sy, 0, sh - 1), std::clamp(sy + 1, 0, sh - 1)};
    for (int k = 0; k < 2; ++k) {
      if (have[k] == want[k]) continue;
      if (have[1 - k] == want[k] && k == 0) {  // slide the window down by one row
        std::swap(rows[0], rows[1]);
        std::swap(have[0], have[1]);
        continue;
      }
      hresize(want[k], rows[k]);
      have[k] = want[k];
    }
    const int* r0 = rows[0].data();
    const int* r1 = rows[1].data();
    uint8_t* d = dst + static_cast<size_t>(dy) * width;
    for (size_t i = 0; i < width; ++i)
      d[i] = static_cast<uint8_t>((((b0 * (r0[i] >> 4)) >> 16) + ((b1 * (r1[i] >> 4)) >> 16) + 2) >> 2);
  }
}

}  // namespace

Extent resized_extent(int h, int w) {
  const double scale = kImageSize * 1.0 / std::max(h, w);
  Extent e;
  e.h = std::max(1, static_cast<int>(h * scale + 0.5));
  e.w = std::max(1, static_cast<int>(w * scale + 0.5));
  return e;
}

void resize_area_u8(const uint8_t* src, int sh, int sw, int cn, uint8_t* dst, int dh, int dw) {
  if (sh == dh && sw == dw) {  // cv::resize copies when the size does not change
    std::memcpy(dst, src, static_cast<size_t>(sh) * sw * cn);
    return;
  }
  const double inv_scale_x = static_cast<double>(dw) / sw, inv_scale_y = static_cast<double>(dh) / sh;
  const double scale_x = 1. / inv_scale_x, scale_y = 1. / inv_scale_y;
  if (scale_x >= 1 && scale_y >= 1) {
    const int ix = round_even(scale_x), iy = round_even(scale_y);
    if (std::abs(scale_x - ix) < DBL_EPSILON && std::abs(scale_y - iy) < DBL_EPSILON)
      resize_area_fast(src, sw, cn, dst, dh, dw, ix, iy);
    else
      resize_area_generic(src, sh, sw, cn, dst, dh, dw, scale_x, scale_y);
    return;
  }
  resize_area_linear(src, sh, sw, cn, dst, dh, dw, scale_x, scale_y, inv_scale_x, inv_scale_y);
}

Extent preprocess_image(const uint8_t* image, int h, int w, int cn, float* out, std::vector<uint8_t>& scratch) {
  const Extent e = resized_extent(h, w);
  const size_t n = static_cast<size_t>(e.h) * e.w;
  // A grey image is resized once: OpenCV treats each channel identically, so replicating afterwards
  // gives the same bytes as resizing the replicated 3-channel image.
  scratch.resize(n * cn);
  resize_area_u8(image, h, w, cn, scratch.data(), e.h, e.w);
  const auto [lo_it, hi_it] = std::minmax_element(scratch.begin(), scratch.end());
  const int lo = *lo_it, hi = *hi_it;
  // (x - min) / max(max - min, 1e-8) in double, stored as float32, as numpy then torch do.
  float lut[256];
  const double range = std::max(static_cast<double>(hi - lo), 1e-8);
  for (int v = 0; v < 256; ++v) lut[v] = static_cast<float>(v >= lo ? (v - lo) / range : 0.0);
  const size_t plane = static_cast<size_t>(kImageSize) * kImageSize;
  std::fill(out, out + 3 * plane, 0.f);
  for (int c = 0; c < 3; ++c) {
    const int sc = cn == 1 ? 0 : c;
    float* p = out + c * plane;
    for (int y = 0; y < e.h; ++y) {
      const uint8_t* s = scratch.data() + static_cast<size_t>(y) * e.w * cn + sc;
      float* d = p + static_cast<size_t>(y) * kImageSize;
      for (int x = 0; x < e.w; ++x) d[x] = lut[s[static_cast<size_t>(x) * cn]];
    }
  }
  return e;
}

Box scale_box(const double* xyxy, int h, int w) {
  const double ratio = kImageSize / static_cast<double>(std::max(h, w));  // the reference's `256 / max(H, W)`
  Box b;
  for (int i = 0; i < 4; ++i) b[i] = static_cast<int>(xyxy[i] * ratio);  // int(): truncation
  return b;
}

bool box_from_mask(const uint8_t* mask, int h, int w, Box& box, std::vector<uint8_t>& scratch) {
  const Extent e = resized_extent(h, w);
  scratch.resize(static_cast<size_t>(e.h) * e.w);
  resize_area_u8(mask, h, w, 1, scratch.data(), e.h, e.w);
  int y0 = e.h, y1 = -1, x0 = e.w, x1 = -1;
  for (int y = 0; y < e.h; ++y) {
    const uint8_t* row = scratch.data() + static_cast<size_t>(y) * e.w;
    int first = -1, last = -1;
    for (int x = 0; x < e.w; ++x)
      if (row[x]) {
        if (first < 0) first = x;
        last = x;
      }
    if (first < 0) continue;
    y0 = std::min(y0, y), y1 = y;
    x0 = std::min(x0, first), x1 = std::max(x1, last);
  }
  if (y1 < 0) return false;
  // The reference pads to 256x256 first, so the clip is to the padded size.
  box = {std::max(0, x0 - kBoxMargin), std::max(0, y0 - kBoxMargin), std::min(kImageSize, x1 + kBoxMargin),
         std::min(kImageSize, y1 + kBoxMargin)};
  return true;
}

Upsampler::Upsampler(Extent e, int out_h, int out_w) : extent(e), h(out_h), w(out_w) {
  // torch's compute_source_index_and_lambda in float32 (opmath of float).
  auto axis = [](int in, int out, std::vector<int>& i0, std::vector<int>& i1, std::vector<float>& l0,
                 std::vector<float>& l1) {
    i0.resize(out), i1.resize(out), l0.resize(out), l1.resize(out);
    const float scale = static_cast<float>(in) / static_cast<float>(out);
    for (int i = 0; i < out; ++i) {
      if (in == out) {
        i0[i] = i1[i] = i, l0[i] = 1.f, l1[i] = 0.f;
        continue;
      }
      float src = std::fma(scale, static_cast<float>(i) + 0.5f, -0.5f);
      if (src < 0.f) src = 0.f;
      const int idx = std::min(static_cast<int>(std::floor(src)), in - 1);
      const float lambda = std::min(std::max(src - static_cast<float>(idx), 0.f), 1.f);
      i0[i] = idx;
      i1[i] = idx + (idx < in - 1 ? 1 : 0);
      l1[i] = lambda;
      l0[i] = 1.f - lambda;
    }
  };
  axis(e.h, out_h, y0, y1, wy0, wy1);
  axis(e.w, out_w, x0, x1, wx0, wx1);
}

Rect Upsampler::candidates(const float* logits) const {
  int ry0 = extent.h, ry1 = -1, rx0 = extent.w, rx1 = -1;  // positive logits inside the crop
  for (int y = 0; y < extent.h; ++y) {
    const float* row = logits + static_cast<size_t>(y) * kImageSize;
    bool any = false;
    for (int x = 0; x < extent.w; ++x)
      if (row[x] > 0.f) {
        any = true;
        rx0 = std::min(rx0, x), rx1 = std::max(rx1, x);
      }
    if (any) ry0 = std::min(ry0, y), ry1 = y;
  }
  Rect r;
  if (ry1 < 0) return r;
  // Sample indices grow with the output index, so the outputs touching [r0, r1] form one range.
  auto range = [](const std::vector<int>& i0, const std::vector<int>& i1, int lo, int hi, int& a, int& b) {
    const int n = static_cast<int>(i0.size());
    a = 0;
    while (a < n && i1[a] < lo) ++a;
    b = a;
    while (b < n && i0[b] <= hi) ++b;
  };
  range(y0, y1, ry0, ry1, r.y0, r.y1);
  range(x0, x1, rx0, rx1, r.x0, r.x1);
  return r;
}

}  // namespace repmedsam
