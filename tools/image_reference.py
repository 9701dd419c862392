#!/usr/bin/python3
"""Reference values for tests/imaging_test.cpp from Pillow 9.4 and torchvision 0.14.

Run with Debian's interpreter (it has PIL, torch and torchvision):

    /usr/bin/python3 tools/image_reference.py > /tmp/imaging_reference.inc

It prints C++ constants that tests/imaging_test.cpp holds verbatim between its
"// ---- BEGIN generated" and "// ---- END generated" lines:
  * for each resize / transform case on a synthetic image (the formula of `synthetic`, restated in
    the test), the FNV-1a 64-bit hash of PIL's output bytes (HWC RGB) and their first 16 bytes;
  * small PNG files of every colour type and bit depth (written by a minimal encoder below, so
    libpng is not checked against itself) with the RGB bytes PIL's convert("RGB") decodes them to;
  * small JPEG files saved by PIL with the hash of PIL's decoding (both use libjpeg-turbo).

Before printing, it checks that torchvision's Resize(256) + CenterCrop(224) on a PIL image equals
this file's restatement of the rule (`transform_size`, `crop_origin`, PIL's resize, zero padding),
which is what imaging/transform.cpp implements. Any mismatch exits 1.
"""

import io
import struct
import sys
import warnings
import zlib

import PIL
from PIL import Image
import torchvision
import torchvision.transforms as T
import torchvision.transforms.functional as F


# ---------------------------------------------------------------- the synthetic image

def synthetic(height, width, seed):
    """HWC RGB bytes: gradients, a 7x5 checker and LCG noise; integer-only so C++ matches it."""
    out = bytearray(height * width * 3)
    s = seed & 0xFFFFFFFF
    i = 0
    for y in range(height):
        for x in range(width):
            checker = 48 if ((x // 7 + y // 5) & 1) else 0
            for c in range(3):
                s = (s * 1664525 + 1013904223) & 0xFFFFFFFF
                noise = (s >> 27) - 16
                if c == 0:
                    base = x * 255 // max(width - 1, 1)
                elif c == 1:
                    base = y * 255 // max(height - 1, 1)
                else:
                    base = (x + y) * 255 // max(width + height - 2, 1)
                out[i] = min(255, max(0, base * 3 // 4 + checker + noise))
                i += 1
    return bytes(out)


def synthetic_image(height, width, seed):
    return Image.frombytes("RGB", (width, height), synthetic(height, width, seed))


def fnv1a64(data):
    h = 0xCBF29CE484222325
    for b in data:
        h ^= b
        h = (h * 0x100000001B3) & 0xFFFFFFFFFFFFFFFF
    return h


# ---------------------------------------------------------------- the rule restated

def transform_size(height, width, size):
    """torchvision's Resize(size) output (height, width) for one int size."""
    width_is_short = width <= height
    short, long = (width, height) if width_is_short else (height, width)
    new_long = int(size * long / short)
    return (new_long, size) if width_is_short else (size, new_long)


def crop_origin(size, crop):
    """Where the crop starts along an axis; negative: zero padding before the image."""
    if crop > size:
        return -((crop - size) // 2)
    return int(round((size - crop) / 2.0))  # Python's round: half to even


def restated_crop(img, height, width):
    top, left = crop_origin(img.height, height), crop_origin(img.width, width)
    out = Image.new("RGB", (width, height), (0, 0, 0))
    out.paste(img.crop((max(left, 0), max(top, 0), min(img.width, left + width), min(img.height, top + height))),
              (max(-left, 0), max(-top, 0)))
    return out


def restated_transform(img, resize=256, crop=224):
    h, w = transform_size(img.height, img.width, resize)
    if (h, w) != (img.height, img.width):
        img = img.resize((w, h), Image.BILINEAR)
    return restated_crop(img, crop, crop)


def check_rule():
    """torchvision's own functions against the restatement; returns the number of checks."""
    checks = 0
    for h in range(1, 700, 7):
        for w in range(1, 700, 11):
            for size in (256, 224, 7):
                got = F._compute_resized_output_size((h, w), [size])
                assert list(transform_size(h, w, size)) == got, (h, w, size, got)
                checks += 1
    for (h, w, ch, cw) in [(20, 17, 9, 9), (20, 17, 10, 10), (21, 18, 10, 10), (23, 19, 4, 6),
                           (9, 8, 13, 11), (9, 8, 12, 12), (9, 30, 14, 3), (30, 9, 3, 14), (25, 25, 25, 25)]:
        img = synthetic_image(h, w, 7)
        want = F.center_crop(img, [ch, cw]).tobytes()
        assert restated_crop(img, ch, cw).tobytes() == want, (h, w, ch, cw)
        checks += 1
    pipeline = T.Compose([T.Resize(256), T.CenterCrop(224)])
    for (h, w) in TRANSFORM_CASES + [(333, 500), (224, 230), (100, 80), (256, 256)]:
        img = synthetic_image(h, w, 3)
        assert pipeline(img).tobytes() == restated_transform(img).tobytes(), (h, w)
        checks += 1
    return checks


# ---------------------------------------------------------------- cases

# (in height, in width, seed, out height, out width)
RESIZE_CASES = [
    (97, 131, 1, 40, 57),     # downscale ~2.4 x 2.3, non-uniform
    (13, 11, 2, 29, 23),      # upscale
    (50, 200, 4, 120, 60),    # height up, width down
    (64, 48, 5, 64, 20),      # horizontal pass only
    (64, 48, 6, 30, 48),      # vertical pass only
    (300, 400, 3, 256, 341),  # the resize inside the 300x400 transform
    (7, 1000, 8, 3, 333),     # strong downscale (wide filter)
]
# (in height, in width): Resize(256) + CenterCrop(224), seed 3
TRANSFORM_CASES = [(300, 400), (500, 333), (180, 120), (256, 256), (231, 229), (100, 80)]


def cpp_bytes(data, indent="    ", per_line=16):
    lines = []
    for i in range(0, len(data), per_line):
        lines.append(indent + ", ".join(f"0x{b:02x}" for b in data[i:i + per_line]) + ",")
    return "\n".join(lines)


def cpp_first16(data):
    return "{" + ", ".join(str(b) for b in data[:16]) + "}"


# ---------------------------------------------------------------- PNG files by hand

def png_chunk(kind, payload):
    return struct.pack(">I", len(payload)) + kind + payload + struct.pack(">I", zlib.crc32(kind + payload))


ADAM7 = [(0, 0, 8, 8), (4, 0, 8, 8), (0, 4, 4, 8), (2, 0, 4, 4), (0, 2, 2, 4), (1, 0, 2, 2), (0, 1, 1, 2)]
CHANNELS = {0: 1, 2: 3, 3: 1, 4: 2, 6: 4}


def pack_row(samples, depth):
    if depth == 16:
        return b"".join(struct.pack(">H", s) for s in samples)
    if depth == 8:
        return bytes(samples)
    per_byte = 8 // depth
    out = bytearray()
    for i in range(0, len(samples), per_byte):
        byte = 0
        group = samples[i:i + per_byte]
        for j, s in enumerate(group):
            byte |= s << (8 - depth * (j + 1))
        out.append(byte)
    return bytes(out)


def png_file(width, height, color_type, depth, pixels, palette=None, trns=None, interlace=False):
    """pixels[y][x]: a tuple of samples. Filter type 0 on every row."""
    n = CHANNELS[color_type]
    raw = bytearray()
    passes = ADAM7 if interlace else [(0, 0, 1, 1)]
    for (x0, y0, dx, dy) in passes:
        xs = list(range(x0, width, dx))
        for y in range(y0, height, dy):
            if not xs:
                continue
            samples = [s for x in xs for s in pixels[y][x]]
            assert all(len(pixels[y][x]) == n for x in xs)
            raw += b"\x00" + pack_row(samples, depth)
    data = b"\x89PNG\r\n\x1a\n"
    data += png_chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, depth, color_type, 0, 0, 1 if interlace else 0))
    if palette is not None:
        data += png_chunk(b"PLTE", b"".join(bytes(p) for p in palette))
    if trns is not None:
        data += png_chunk(b"tRNS", trns)
    data += png_chunk(b"IDAT", zlib.compress(bytes(raw), 9))
    data += png_chunk(b"IEND", b"")
    return data


def high_bytes_rgb(data, width, height):
    """The RGB high bytes of a 16-bit RGB/RGBA PNG written by png_file (decoded here with zlib)."""
    ihdr = data[16:29]
    color_type, interlace = ihdr[9], ihdr[12]
    n = CHANNELS[color_type]
    pos, raw = 33, b""
    while True:
        length, kind = struct.unpack(">I4s", data[pos:pos + 8])
        if kind == b"IDAT":
            raw += data[pos + 8:pos + 8 + length]
        if kind == b"IEND":
            break
        pos += 12 + length
    raw = zlib.decompress(raw)
    pixels = [[None] * width for _ in range(height)]
    passes = ADAM7 if interlace else [(0, 0, 1, 1)]
    at = 0
    for (x0, y0, dx, dy) in passes:
        xs = list(range(x0, width, dx))
        for y in range(y0, height, dy):
            if not xs:
                continue
            assert raw[at] == 0  # filter type 0
            row = raw[at + 1:at + 1 + len(xs) * n * 2]
            at += 1 + len(xs) * n * 2
            for i, x in enumerate(xs):
                pixels[y][x] = bytes(row[(i * n + c) * 2] for c in range(3))
    return b"".join(p for row in pixels for p in row)


def png_cases():
    """(name, file bytes, expected RGB bytes, where the expectation comes from)."""
    W, H = 7, 5

    def grid(f):
        return [[f(x, y) for x in range(W)] for y in range(H)]

    def pil_rgb(data):
        return Image.open(io.BytesIO(data)).convert("RGB").tobytes()

    cases = []

    def add(name, data, expected=None, source="PIL convert(\"RGB\")"):
        cases.append((name, data, pil_rgb(data) if expected is None else expected, source))

    add("gray1", png_file(W, H, 0, 1, grid(lambda x, y: ((x + y) % 2,))))
    add("gray4", png_file(W, H, 0, 4, grid(lambda x, y: ((x * 3 + y * 5) % 16,))))
    add("gray8_trns", png_file(W, H, 0, 8, grid(lambda x, y: ((x * 37 + y * 11) % 256,)), trns=struct.pack(">H", 37)))
    gray16 = grid(lambda x, y: ((x * 9001 + y * 3079) % 65536,))
    # PIL opens 16-bit gray as mode "I" and convert("RGB") clips values above 255; the decoder
    # (libpng's strip_16) keeps the high byte instead, the same as for 16-bit RGB (where PIL agrees).
    add("gray16", png_file(W, H, 0, 16, gray16),
        bytes(v for row in gray16 for (s,) in row for v in (s >> 8,) * 3), "the high byte (not PIL)")
    add("gray_alpha8", png_file(W, H, 4, 8, grid(lambda x, y: ((x * 40 + y) % 256, (y * 60 + x) % 256))))
    add("rgb16", png_file(W, H, 2, 16, grid(lambda x, y: ((x * 7919) % 65536, (y * 104729) % 65536, (x * y * 31337) % 65536))))
    add("rgba8", png_file(W, H, 6, 8, grid(lambda x, y: (x * 30, y * 50, (x ^ y) * 20, (x * y * 13) % 256))))
    palette = [((i * 67) % 256, (i * 131) % 256, (i * 29) % 256) for i in range(10)]
    add("palette4_trns", png_file(W, H, 3, 4, grid(lambda x, y: ((x + 2 * y) % 10,)), palette=palette,
                                  trns=bytes([0, 128, 255])))
    iw, ih = 9, 7
    add("rgb8_adam7", png_file(iw, ih, 2, 8, [[((x * 28) % 256, (y * 36) % 256, (x * y * 5) % 256) for x in range(iw)]
                                              for y in range(ih)], interlace=True))
    add("rgba16_adam7", png_file(iw, ih, 6, 16, [[((x * 5003) % 65536, (y * 6007) % 65536, 40000, (x * 7000) % 65536)
                                                 for x in range(iw)] for y in range(ih)], interlace=True))
    # For 16-bit colour PIL keeps the high byte of each sample, as libpng's strip_16 does.
    for (name, data, rgb, _) in cases:
        if name in ("rgb16", "rgba16_adam7"):
            img = Image.open(io.BytesIO(data))
            assert rgb == high_bytes_rgb(data, img.width, img.height), name
    return cases


def jpeg_cases():
    """(name, file bytes, PIL's decoding as RGB bytes, or None when the decoder must refuse it)."""
    cases = []
    img = synthetic_image(16, 24, 9)
    for name, kwargs, image in [
        ("jpeg_rgb420", dict(quality=90), img),
        ("jpeg_rgb444_progressive", dict(quality=85, subsampling=0, progressive=True), img),
        ("jpeg_gray", dict(quality=90), img.convert("L")),
    ]:
        buf = io.BytesIO()
        image.save(buf, "JPEG", **kwargs)
        data = buf.getvalue()
        cases.append((name, data, Image.open(io.BytesIO(data)).convert("RGB").tobytes()))
    buf = io.BytesIO()
    Image.new("CMYK", (8, 8), (10, 20, 30, 40)).save(buf, "JPEG", quality=90)
    cases.append(("jpeg_cmyk", buf.getvalue(), None))
    return cases


def main():
    # PIL warns that palette images with tRNS "should be converted to RGBA"; convert("RGB") is meant.
    warnings.filterwarnings("ignore", message="Palette images with Transparency")
    if PIL.__version__ != "9.4.0" or not torchvision.__version__.startswith("0.14"):
        print(f"expected Pillow 9.4.0 and torchvision 0.14, found {PIL.__version__} and {torchvision.__version__}",
              file=sys.stderr)
        return 1
    checks = check_rule()
    print(f"// {checks} checks of torchvision's Resize(256) + CenterCrop(224) against the restated rule passed.",
          file=sys.stderr)

    out = []
    out.append("// ---- BEGIN generated by: /usr/bin/python3 tools/image_reference.py (its stdout, pasted verbatim)")
    out.append(f"// (Pillow {PIL.__version__}, torchvision {torchvision.__version__})")
    out.append("struct resize_case {")
    out.append("  int in_h, in_w;")
    out.append("  uint32_t seed;")
    out.append("  int out_h, out_w;")
    out.append("  uint64_t input_fnv, output_fnv;  // FNV-1a 64 of the synthetic input and of PIL's output")
    out.append("  std::array<uint8_t, 16> first;    // PIL's first output bytes")
    out.append("};")
    out.append("// PIL's Image.resize((out_w, out_h), Image.BILINEAR) of synthetic(in_h, in_w, seed)")
    out.append("const resize_case resize_cases[] = {")
    for (h, w, seed, oh, ow) in RESIZE_CASES:
        data = synthetic(h, w, seed)
        res = Image.frombytes("RGB", (w, h), data).resize((ow, oh), Image.BILINEAR).tobytes()
        out.append(f"    {{{h}, {w}, {seed}, {oh}, {ow}, 0x{fnv1a64(data):016x}ull, 0x{fnv1a64(res):016x}ull, {cpp_first16(res)}}},")
    out.append("};")
    out.append("struct transform_case {")
    out.append("  int in_h, in_w;")
    out.append("  uint32_t seed;")
    out.append("  uint64_t output_fnv;")
    out.append("  std::array<uint8_t, 16> first;")
    out.append("};")
    out.append("// torchvision.transforms.Compose([Resize(256), CenterCrop(224)]) on the PIL image")
    out.append("const transform_case transform_cases[] = {")
    pipeline = T.Compose([T.Resize(256), T.CenterCrop(224)])
    for (h, w) in TRANSFORM_CASES:
        res = pipeline(synthetic_image(h, w, 3)).tobytes()
        assert len(res) == 224 * 224 * 3
        out.append(f"    {{{h}, {w}, 3, 0x{fnv1a64(res):016x}ull, {cpp_first16(res)}}},")
    out.append("};")

    out.append("struct embedded_file {")
    out.append("  const char* name;")
    out.append("  std::vector<uint8_t> bytes;")
    out.append("  std::vector<uint8_t> rgb;")
    out.append("  int width, height;")
    out.append("};")
    out.append("// Hand-encoded PNGs and the RGB bytes expected (source in the comment).")
    out.append("const std::vector<embedded_file>& png_files() {")
    out.append("  static const std::vector<embedded_file> files = {")
    for (name, data, rgb, source) in png_cases():
        img = Image.open(io.BytesIO(data))
        if name != "gray16":
            assert img.convert("RGB").tobytes() == rgb
        out.append(f"    // {name}: PIL mode {img.mode}; expected: {source}")
        out.append(f"    {{\"{name}\", {{\n{cpp_bytes(data, '        ')}\n      }}, {{\n{cpp_bytes(rgb, '        ')}\n      }}, {img.width}, {img.height}}},")
    out.append("  };")
    out.append("  return files;")
    out.append("}")
    out.append("struct jpeg_file {")
    out.append("  const char* name;")
    out.append("  std::vector<uint8_t> bytes;")
    out.append("  bool decodes;")
    out.append("  int width, height;")
    out.append("  uint64_t rgb_fnv;")
    out.append("  std::array<uint8_t, 16> first;")
    out.append("};")
    out.append("// JPEGs saved by PIL with the hash and first bytes of PIL's decoding as RGB (decodes false:")
    out.append("// the decoder must refuse the file).")
    out.append("const std::vector<jpeg_file>& jpeg_files() {")
    out.append("  static const std::vector<jpeg_file> files = {")
    for (name, data, rgb) in jpeg_cases():
        img = Image.open(io.BytesIO(data))
        out.append(f"    // {name}: PIL mode {img.mode}, {len(data)} bytes")
        fields = "false, 0, 0, 0, {}" if rgb is None else f"true, {img.width}, {img.height}, 0x{fnv1a64(rgb):016x}ull, {cpp_first16(rgb)}"
        out.append(f"    {{\"{name}\", {{\n{cpp_bytes(data, '        ')}\n      }}, {fields}}},")
    out.append("  };")
    out.append("  return files;")
    out.append("}")
    out.append("// ---- END generated")
    print("\n".join(out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
