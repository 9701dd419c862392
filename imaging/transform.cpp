// Resize, center crop and the ImageNet transform, restating Pillow 9.4's resampling
// (libImaging/Resample.c: precompute_coeffs, normalize_coeffs_8bpc, ImagingResampleHorizontal_8bpc
// / Vertical_8bpc, ImagingResampleInner) and torchvision 0.14's size and crop rules.
//
// Bit-exactness rests on doing PIL's double arithmetic in PIL's order, so this file is compiled
// with -ffp-contract=off (imaging/CMakeLists.txt): a fused multiply-add would round differently.
//
// Every output pixel of a resize depends only on its own row's and column's taps, and every value
// of the intermediate (horizontally resampled) image only on its own column's taps and one input
// row. So any window of the output can be computed alone with the same values as the whole:
// apply() resamples only the pixels the crop keeps (a 1 x 16384 image resizes to 256 x 4194304,
// 3 GB, of which 224 x 224 survive).
#include "imaging/transform.hpp"

#include <algorithm>
#include <cmath>

namespace d3 {
namespace {

// Weights in fixed point with 22 fractional bits: 8 bits for the result and 2 of headroom (for
// filters with negative lobes) below the sign bit of a 32-bit accumulator.
constexpr int precision_bits = 32 - 8 - 2;

bool well_formed(const image_u8& image) {
  return image.height >= 1 && image.width >= 1 && image.channels >= 1 &&
         image.pixels.size() == size_t(image.height) * size_t(image.width) * size_t(image.channels);
}

image_u8 empty_like(const image_u8& image) { return image_u8{0, 0, image.channels, {}}; }

image_u8 zeros(int height, int width, int channels) {
  return image_u8{height, width, channels, std::vector<uint8_t>(size_t(height) * size_t(width) * size_t(channels), 0)};
}

// A half-open range of output indices along one axis.
struct span {
  int begin, end;
  int size() const { return end - begin; }
};

// The taps of output indices [begin, end) of one axis: index begin + i reads input indices
// first[i] .. first[i] + count[i] - 1 with weights[i * ksize + j] (j < count[i]). first and
// first + count never decrease with i.
struct taps {
  int ksize = 0;
  std::vector<int> first, count;
  std::vector<int32_t> weights;
};

// The triangle filter (support 1).
double triangle(double x) {
  if (x < 0.0) x = -x;
  return x < 1.0 ? 1.0 - x : 0.0;
}

// PIL's precompute_coeffs for the box (0, in_size) followed by normalize_coeffs_8bpc, for the
// output indices in `range` of an axis of out_size.
taps bilinear_taps(int in_size, int out_size, span range) {
  // PIL divides the float box width, exact for these sizes, by out_size in double.
  const double scale = double(in_size) / out_size;
  // Downscaling widens the filter by the scale (antialiasing); upscaling keeps it at 1.
  const double filter_scale = scale < 1.0 ? 1.0 : scale;
  const double support = 1.0 * filter_scale;
  const double inverse = 1.0 / filter_scale;
  taps t;
  t.ksize = int(std::ceil(support)) * 2 + 1;
  t.first.resize(size_t(range.size()));
  t.count.resize(size_t(range.size()));
  t.weights.assign(size_t(range.size()) * size_t(t.ksize), 0);
  std::vector<double> k(size_t(t.ksize));
  for (int i = 0; i < range.size(); ++i) {
    const double center = (range.begin + i + 0.5) * scale;
    // Truncation toward zero (the C cast) of center -/+ support + 0.5, then clamped to the input.
    int lo = int(center - support + 0.5);
    if (lo < 0) lo = 0;
    int hi = int(center + support + 0.5);
    if (hi > in_size) hi = in_size;
    const int n = hi - lo;
    double sum = 0.0;
    for (int j = 0; j < n; ++j) {
      // Same operation order as PIL: ((j + lo) - center + 0.5) * inverse.
      const double w = triangle((double(j + lo) - center + 0.5) * inverse);
      k[size_t(j)] = w;
      sum += w;
    }
    for (int j = 0; j < n; ++j) {
      double w = k[size_t(j)];
      if (sum != 0.0) w /= sum;
      // Round half away from zero to 22-bit fixed point.
      t.weights[size_t(i) * size_t(t.ksize) + size_t(j)] =
          w < 0 ? int32_t(-0.5 + w * (1 << precision_bits)) : int32_t(0.5 + w * (1 << precision_bits));
    }
    t.first[size_t(i)] = lo;
    t.count[size_t(i)] = n;
  }
  return t;
}

// The accumulator starts at one half (1 << 21) so the shift rounds; PIL clips through a table
// that maps (acc >> 22) below 0 to 0 and above 255 to 255.
inline uint8_t clip8(int32_t acc) {
  if (acc < 0) return 0;
  const int32_t v = acc >> precision_bits;
  return uint8_t(v > 255 ? 255 : v);
}

// Input rows `rows` of `in`, each resampled to the columns t describes.
image_u8 horizontal_pass(const image_u8& in, const taps& t, span rows) {
  const size_t c_n = size_t(in.channels);
  image_u8 out = zeros(rows.size(), int(t.first.size()), in.channels);
  for (int y = 0; y < out.height; ++y) {
    const uint8_t* src = in.pixels.data() + size_t(rows.begin + y) * size_t(in.width) * c_n;
    uint8_t* dst = out.pixels.data() + size_t(y) * size_t(out.width) * c_n;
    for (int x = 0; x < out.width; ++x) {
      const int32_t* w = t.weights.data() + size_t(x) * size_t(t.ksize);
      const uint8_t* s = src + size_t(t.first[size_t(x)]) * c_n;
      for (size_t c = 0; c < c_n; ++c) {
        int32_t acc = 1 << (precision_bits - 1);
        for (int j = 0; j < t.count[size_t(x)]; ++j) acc += int32_t(s[size_t(j) * c_n + c]) * w[j];
        dst[size_t(x) * c_n + c] = clip8(acc);
      }
    }
  }
  return out;
}

// The rows t describes, each mixing rows t.first[y] - row_offset .. (+ t.count[y] - 1) of `in`.
image_u8 vertical_pass(const image_u8& in, const taps& t, int row_offset) {
  const size_t row_len = size_t(in.width) * size_t(in.channels);
  image_u8 out = zeros(int(t.first.size()), in.width, in.channels);
  for (int y = 0; y < out.height; ++y) {
    const int32_t* w = t.weights.data() + size_t(y) * size_t(t.ksize);
    const uint8_t* src = in.pixels.data() + size_t(t.first[size_t(y)] - row_offset) * row_len;
    uint8_t* dst = out.pixels.data() + size_t(y) * row_len;
    for (size_t i = 0; i < row_len; ++i) {
      int32_t acc = 1 << (precision_bits - 1);
      for (int j = 0; j < t.count[size_t(y)]; ++j) acc += int32_t(src[size_t(j) * row_len + i]) * w[j];
      dst[i] = clip8(acc);
    }
  }
  return out;
}

// Rows `rows` and columns `cols` of `in`.
image_u8 window_of(const image_u8& in, span rows, span cols) {
  const size_t c_n = size_t(in.channels);
  image_u8 out = zeros(rows.size(), cols.size(), in.channels);
  for (int y = 0; y < rows.size(); ++y) {
    const uint8_t* src = in.pixels.data() + (size_t(rows.begin + y) * size_t(in.width) + size_t(cols.begin)) * c_n;
    std::copy(src, src + size_t(cols.size()) * c_n, out.pixels.data() + size_t(y) * size_t(cols.size()) * c_n);
  }
  return out;
}

// Rows `rows` and columns `cols` of resize_bilinear(in, out_height, out_width), computed alone.
// ImagingResampleInner's two passes: horizontal (skipped when the width stays), on the input rows
// the vertical taps read (its ybox), then vertical (skipped when the height stays).
image_u8 resize_window(const image_u8& in, int out_height, int out_width, span rows, span cols) {
  const bool need_horizontal = out_width != in.width;
  const bool need_vertical = out_height != in.height;
  taps vertical;
  span input_rows = rows;  // without a vertical pass, output row y is input row y
  if (need_vertical) {
    vertical = bilinear_taps(in.height, out_height, rows);
    input_rows = {vertical.first.front(), vertical.first.back() + vertical.count.back()};
  }
  const image_u8 wide = need_horizontal ? horizontal_pass(in, bilinear_taps(in.width, out_width, cols), input_rows)
                                        : window_of(in, input_rows, cols);
  return need_vertical ? vertical_pass(wide, vertical, input_rows.begin) : wide;
}

// Python's round(x / 2.0) for an integer x >= 0: halves go to the even neighbour.
int half_rounded_to_even(int x) {
  const int floor_half = x / 2;
  if (x % 2 == 0 || floor_half % 2 == 0) return floor_half;
  return floor_half + 1;
}

// Where a crop of `crop` starts in an axis of `size` (negative: zero padding before the image).
int crop_origin(int size, int crop) {
  if (crop > size) return -((crop - size) / 2);  // padded to exactly `crop`, then offset 0
  return half_rounded_to_even(size - crop);
}

// The part of an axis of `size` that a crop of `crop` starting at `origin` keeps.
span kept(int size, int crop, int origin) { return {std::max(0, origin), std::min(size, origin + crop)}; }

// `part` into a zeroed height x width image at (top, left).
image_u8 padded(const image_u8& part, int height, int width, int top, int left) {
  image_u8 out = zeros(height, width, part.channels);
  const size_t c_n = size_t(part.channels);
  for (int y = 0; y < part.height; ++y) {
    const uint8_t* src = part.pixels.data() + size_t(y) * size_t(part.width) * c_n;
    std::copy(src, src + size_t(part.width) * c_n,
              out.pixels.data() + (size_t(top + y) * size_t(width) + size_t(left)) * c_n);
  }
  return out;
}

}  // namespace

image_u8 resize_bilinear(const image_u8& in, int out_height, int out_width) {
  if (!well_formed(in) || out_height < 1 || out_width < 1) return empty_like(in);
  // PIL's Image.resize returns a copy when nothing changes.
  if (out_height == in.height && out_width == in.width) return in;
  return resize_window(in, out_height, out_width, {0, out_height}, {0, out_width});
}

image_u8 center_crop(const image_u8& in, int height, int width) {
  if (!well_formed(in) || height < 1 || width < 1) return empty_like(in);
  const int top = crop_origin(in.height, height), left = crop_origin(in.width, width);
  const span rows = kept(in.height, height, top), cols = kept(in.width, width, left);
  return padded(window_of(in, rows, cols), height, width, rows.begin - top, cols.begin - left);
}

image_u8 apply(const imagenet_transform& t, const image_u8& in) {
  if (!well_formed(in) || t.resize < 1 || t.resize > max_image_dimension || t.crop < 1 ||
      t.crop > max_image_dimension)
    return empty_like(in);
  // torchvision's _compute_resized_output_size for one int size: the width is the short side when
  // width <= height. The long side is int(size * long / short): an exact integer product divided
  // in double (Python's true division of ints this small) and truncated; at most 16384^2.
  const bool width_is_short = in.width <= in.height;
  const int short_side = width_is_short ? in.width : in.height;
  const int long_side = width_is_short ? in.height : in.width;
  const int new_short = t.resize;
  const int new_long = int(double(int64_t(t.resize) * long_side) / double(short_side));
  const int new_width = width_is_short ? new_short : new_long;
  const int new_height = width_is_short ? new_long : new_short;
  // torchvision skips the resize when the size is already right (PIL would copy anyway).
  if (new_height == in.height && new_width == in.width) return center_crop(in, t.crop, t.crop);
  // center_crop(resize_bilinear(in, new_height, new_width), crop, crop), resampling only the
  // pixels the crop keeps.
  const int top = crop_origin(new_height, t.crop), left = crop_origin(new_width, t.crop);
  const span rows = kept(new_height, t.crop, top), cols = kept(new_width, t.crop, left);
  return padded(resize_window(in, new_height, new_width, rows, cols), t.crop, t.crop, rows.begin - top,
                cols.begin - left);
}

}  // namespace d3
