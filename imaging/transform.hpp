// torchvision's standard ImageNet preprocessing on 8-bit images, up to (not including) ToTensor
// and Normalize: transforms.Compose([Resize(256), CenterCrop(224)]) on a PIL RGB image, bit for
// bit with torchvision 0.14 and Pillow 9.4.
#pragma once

#include "imaging/image.hpp"

namespace d3 {

// PIL's Image.resize((out_width, out_height), Image.BILINEAR) (reducing_gap None, the whole image
// as box): a separable convolution with the triangle filter stretched by the scale when
// downscaling (antialiasing), weights in 22-bit fixed point, horizontal pass then vertical pass,
// each rounding to 8 bits. Any channel count (each channel alone). The same size returns a copy.
// An output size below 1, or an input whose pixels do not match its dimensions, gives a 0x0 image.
image_u8 resize_bilinear(const image_u8& in, int out_height, int out_width);

// torchvision's center_crop to height x width: offsets top = round((in.height - height) / 2) and
// left = round((in.width - width) / 2) with Python's round (half to even); where the crop is larger
// than the image, the image is first padded with zeros, (crop - size) / 2 (floored) before it and
// the rest after, so the output is always height x width. (0x0 for sizes below 1.)
image_u8 center_crop(const image_u8& in, int height, int width);

struct imagenet_transform {
  int resize = 256;  // the shorter side after resizing
  int crop = 224;    // the square taken from the centre
};

// Resize(t.resize) then CenterCrop(t.crop): the shorter side (the width when width <= height)
// becomes t.resize and the other int(t.resize * long / short) (a double quotient, truncated, as
// Python's int(a * b / c)); an image already of that size is not resampled. Then center_crop.
// Only the pixels the crop keeps are resampled, with the values the whole resize would give them,
// so extreme aspect ratios cost no more than square images. t.resize and t.crop must lie in
// 1..max_image_dimension (else 0x0).
image_u8 apply(const imagenet_transform& t, const image_u8& in);

}  // namespace d3
