// 8-bit images in memory and their PNG/JPEG files: what an app reads before torchvision's
// ImageNet transform (imaging/transform.hpp). Decoding errors are values that name the file and
// what is wrong; bad bytes never crash, exit or print.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "base/status.hpp"

namespace d3 {

// Row-major HWC pixels: pixels[(y * width + x) * channels + c], pixels.size() == height * width *
// channels. Decoders always produce channels == 3 (R, G, B), as PIL's convert("RGB") does.
struct image_u8 {
  int height = 0;
  int width = 0;
  int channels = 3;
  std::vector<uint8_t> pixels;
};

// Decoders refuse a width or height of 0 or above this before allocating the pixels.
constexpr int max_image_dimension = 16384;

// The image in `bytes` as 8-bit RGB. The format is told by the magic bytes (never by a name):
// PNG (libpng: every bit depth and color type; palettes expanded, gray replicated to R, G and B,
// 16-bit samples cut to their high byte, alpha and tRNS ignored as PIL's convert("RGB") ignores
// them) or JPEG (libjpeg: YCbCr/RGB and grayscale, grayscale replicated; CMYK/YCCK refused).
// A truncated or corrupt file is an error, never a partial image: PIL also refuses a truncated
// JPEG, but it accepts a PNG cut after its image data and fills a JPEG's corrupt entropy-coded
// data with gray. `what` names the source in error messages, e.g. "image file 'cat.png'".
result<image_u8> decode_image(const uint8_t* bytes, size_t size, const std::string& what);

// decode_image on the whole file at `path`; errors begin "image file '<path>': ".
result<image_u8> read_image_file(const std::string& path);

// An 8-bit, non-interlaced PNG of `image` (channels 1: gray, 3: RGB, 4: RGBA).
status write_png(const std::string& path, const image_u8& image);

// A baseline JPEG of `image` (channels 1 or 3), quality 1..100, 4:2:0 chroma (libjpeg's default).
status write_jpeg(const std::string& path, const image_u8& image, int quality);

}  // namespace d3
