// PNG through libpng and JPEG through libjpeg(-turbo), with their errors made into values.
//
// Both libraries report a fatal error by calling an error callback that must not return. The
// callbacks here copy the message into a plain struct and longjmp back to the setjmp of the one
// "core" function that drives the library. In C++ that is only defined when no object with a
// non-trivial destructor lives in the skipped frames or is created in the core after its setjmp
// (the jump would skip its destructor). So a core function holds only C data (library handles,
// raw pointers, integers); the pixel vector and strings belong to its caller, whose frame the
// jump never leaves, and the core reaches the vector through a pointer. Whatever the core changes
// after setjmp and reads after the jump sits in caller-owned structs (memory, not registers),
// because non-volatile locals changed between setjmp and longjmp are indeterminate afterwards.
// Vector calls inside a core never throw: capacity is reserved (in a noexcept helper) before rows
// are appended.
#include "imaging/image.hpp"

#include <cerrno>
#include <csetjmp>
#include <cstdio>
#include <cstring>
#include <memory>
#include <new>

#include <sys/stat.h>

// jpeglib.h needs FILE and size_t declared first.
#include <jpeglib.h>
#include <jerror.h>
#include <png.h>

namespace d3 {
namespace {

constexpr uint8_t png_signature[8] = {0x89, 'P', 'N', 'G', '\r', '\n', 0x1a, '\n'};
// A JPEG starts with SOI (FF D8) and the next marker's FF.
constexpr uint8_t jpeg_signature[3] = {0xFF, 0xD8, 0xFF};
// Files above this are refused before reading them whole (a 16384 x 16384 RGB PNG of noise is
// about 800 MB, so any image decoders accept fits).
constexpr long long max_file_bytes = 1LL << 30;
// A progressive JPEG may repeat scans without bound (each one a pass over every coefficient);
// real encoders write about 10.
constexpr int max_jpeg_scans = 1000;

bool dimensions_ok(long long width, long long height) {
  return width >= 1 && height >= 1 && width <= max_image_dimension && height <= max_image_dimension;
}

std::string dimensions_error(long long width, long long height) {
  return "image dimensions " + std::to_string(width) + "x" + std::to_string(height) +
         " (width x height) outside 1.." + std::to_string(max_image_dimension);
}

// Room for `bytes` pixels without touching them: rows are appended as they decode, so a truncated
// file with a large header costs address space, not memory. False when allocation fails.
bool reserve_pixels(std::vector<uint8_t>* pixels, size_t bytes) noexcept {
  try {
    pixels->clear();
    pixels->reserve(bytes);
    return true;
  } catch (const std::bad_alloc&) {
    return false;
  }
}

// Appends one zeroed row within the reserved capacity (never reallocates, never throws) and
// returns its start.
uint8_t* append_row(std::vector<uint8_t>* pixels, size_t row_bytes) noexcept {
  const size_t start = pixels->size();
  pixels->resize(start + row_bytes);
  return pixels->data() + start;
}

// ---------------------------------------------------------------- PNG

// libpng's I/O and error state for one image; plain data so that it survives a longjmp.
struct png_io {
  const uint8_t* data;  // reading: the encoded bytes
  size_t size;
  size_t offset;
  bool writing;       // errors are then the library's or the file's, not the data's
  char message[256];  // the first error; empty until one happens
};

[[noreturn]] void png_on_error(png_structp png, png_const_charp message) {
  auto* io = static_cast<png_io*>(png_get_error_ptr(png));
  if (io->message[0] != '\0') {
    // Set by png_read_bytes (truncation) already.
  } else if (io->writing) {
    std::snprintf(io->message, sizeof io->message, "libpng: %s", message);
  } else {
    std::snprintf(io->message, sizeof io->message, "corrupt or unsupported PNG data (libpng: %s)", message);
  }
  png_longjmp(png, 1);
}

// Warnings (bad CRCs of ancillary chunks, unknown chunks, ...) are dropped: libpng recovers.
void png_on_warning(png_structp, png_const_charp) {}

void png_read_bytes(png_structp png, png_bytep out, size_t count) {
  auto* io = static_cast<png_io*>(png_get_io_ptr(png));
  if (count > io->size - io->offset) {
    std::snprintf(io->message, sizeof io->message,
                  "truncated PNG data (the file ends at byte %zu; a %zu-byte read at offset %zu passes it)",
                  io->size, count, io->offset);
    png_error(png, io->message);
  }
  std::memcpy(out, io->data + io->offset, count);
  io->offset += count;
}

// Decodes io's bytes into 8-bit RGB rows appended to *pixels. False with io->message set on error.
bool png_decode_core(png_io* io, std::vector<uint8_t>* pixels, int* width, int* height) {
  png_structp png = png_create_read_struct(PNG_LIBPNG_VER_STRING, io, png_on_error, png_on_warning);
  if (!png) {
    std::snprintf(io->message, sizeof io->message, "libpng cannot start (out of memory?)");
    return false;
  }
  png_infop info = png_create_info_struct(png);
  if (!info) {
    png_destroy_read_struct(&png, nullptr, nullptr);
    std::snprintf(io->message, sizeof io->message, "libpng cannot start (out of memory?)");
    return false;
  }
  // png and info are not changed after this point, so they are valid after the jump.
  if (setjmp(png_jmpbuf(png))) {
    png_destroy_read_struct(&png, &info, nullptr);
    return false;
  }
  png_set_read_fn(png, io, png_read_bytes);
  // A second guard behind decode_png's header check: libpng refuses larger IHDRs itself.
  png_set_user_limits(png, max_image_dimension, max_image_dimension);
  png_read_info(png, info);

  png_uint_32 w = 0, h = 0;
  int depth = 0, color = 0, interlace = 0;
  png_get_IHDR(png, info, &w, &h, &depth, &color, &interlace, nullptr, nullptr);
  if (!dimensions_ok(w, h)) {
    std::snprintf(io->message, sizeof io->message, "%s", dimensions_error(w, h).c_str());
    png_destroy_read_struct(&png, &info, nullptr);
    return false;
  }
  // To 8-bit RGB as PIL's open + convert("RGB") does: palette entries looked up, 1/2/4-bit gray
  // scaled to 0..255, 16-bit samples cut to their high byte, gray replicated, alpha (a channel or
  // tRNS) dropped without compositing. Gamma, sBIT and colour profiles are ignored, as by PIL.
  if (color == PNG_COLOR_TYPE_PALETTE) png_set_palette_to_rgb(png);
  if (color == PNG_COLOR_TYPE_GRAY && depth < 8) png_set_expand_gray_1_2_4_to_8(png);
  if (depth == 16) png_set_strip_16(png);
  if ((color & PNG_COLOR_MASK_COLOR) == 0) png_set_gray_to_rgb(png);
  png_set_strip_alpha(png);
  const int passes = png_set_interlace_handling(png);
  png_read_update_info(png, info);

  const size_t row_bytes = png_get_rowbytes(png, info);
  if (png_get_channels(png, info) != 3 || png_get_bit_depth(png, info) != 8 || row_bytes != size_t(w) * 3) {
    std::snprintf(io->message, sizeof io->message,
                  "unsupported PNG layout (color type %d, bit depth %d: %d channels after conversion)", color,
                  depth, int(png_get_channels(png, info)));
    png_destroy_read_struct(&png, &info, nullptr);
    return false;
  }
  if (!reserve_pixels(pixels, row_bytes * h)) {
    std::snprintf(io->message, sizeof io->message, "out of memory for %ux%u pixels", unsigned(w), unsigned(h));
    png_destroy_read_struct(&png, &info, nullptr);
    return false;
  }
  if (passes == 1) {
    for (png_uint_32 y = 0; y < h; ++y) png_read_row(png, append_row(pixels, row_bytes), nullptr);
  } else {
    // Adam7: every pass fills some pixels of some rows, so the whole image exists (zeroed) from the
    // start; a truncated interlaced file costs its header's full size in memory.
    append_row(pixels, row_bytes * h);
    for (int pass = 0; pass < passes; ++pass)
      for (png_uint_32 y = 0; y < h; ++y) png_read_row(png, pixels->data() + y * row_bytes, nullptr);
  }
  // The chunks after the image data up to IEND (CRCs checked): a file cut anywhere is an error.
  png_read_end(png, nullptr);
  png_destroy_read_struct(&png, &info, nullptr);
  *width = int(w);
  *height = int(h);
  return true;
}

uint32_t big_endian_u32(const uint8_t* p) {
  return uint32_t(p[0]) << 24 | uint32_t(p[1]) << 16 | uint32_t(p[2]) << 8 | uint32_t(p[3]);
}

result<image_u8> decode_png(const uint8_t* bytes, size_t size, const std::string& what) {
  // The standard puts IHDR first: signature (8), length (4), "IHDR" (4), width (4), height (4).
  // Its dimensions are checked here, before libpng allocates anything for them.
  if (size < 24)
    return status::error(what + ": truncated PNG data (" + std::to_string(size) + " bytes; the header needs 24)");
  if (std::memcmp(bytes + 12, "IHDR", 4) != 0)
    return status::error(what + ": corrupt PNG data (the first chunk is not IHDR)");
  const uint32_t width = big_endian_u32(bytes + 16), height = big_endian_u32(bytes + 20);
  if (!dimensions_ok(width, height)) return status::error(what + ": " + dimensions_error(width, height));

  png_io io{};
  io.data = bytes;
  io.size = size;
  image_u8 image;
  if (!png_decode_core(&io, &image.pixels, &image.width, &image.height))
    return status::error(what + ": " + io.message);
  image.channels = 3;
  return image;
}

bool png_write_core(FILE* file, const image_u8* image, png_io* io) {
  io->writing = true;
  png_structp png = png_create_write_struct(PNG_LIBPNG_VER_STRING, io, png_on_error, png_on_warning);
  if (!png) {
    std::snprintf(io->message, sizeof io->message, "libpng cannot start (out of memory?)");
    return false;
  }
  png_infop info = png_create_info_struct(png);
  if (!info) {
    png_destroy_write_struct(&png, nullptr);
    std::snprintf(io->message, sizeof io->message, "libpng cannot start (out of memory?)");
    return false;
  }
  if (setjmp(png_jmpbuf(png))) {
    png_destroy_write_struct(&png, &info);
    return false;
  }
  png_init_io(png, file);
  const int color = image->channels == 1   ? PNG_COLOR_TYPE_GRAY
                    : image->channels == 3 ? PNG_COLOR_TYPE_RGB
                                           : PNG_COLOR_TYPE_RGB_ALPHA;
  png_set_IHDR(png, info, png_uint_32(image->width), png_uint_32(image->height), 8, color, PNG_INTERLACE_NONE,
               PNG_COMPRESSION_TYPE_DEFAULT, PNG_FILTER_TYPE_DEFAULT);
  png_write_info(png, info);
  const size_t row_bytes = size_t(image->width) * size_t(image->channels);
  for (int y = 0; y < image->height; ++y)
    png_write_row(png, const_cast<png_bytep>(image->pixels.data() + size_t(y) * row_bytes));
  png_write_end(png, nullptr);
  png_destroy_write_struct(&png, &info);
  return true;
}

// ---------------------------------------------------------------- JPEG

// libjpeg's state for one image; plain data so that it survives a longjmp. client_data of the
// codec struct points here.
struct jpeg_state {
  jpeg_decompress_struct decompress;
  jpeg_compress_struct compress;
  jpeg_error_mgr errors;
  jpeg_progress_mgr progress;
  jmp_buf jump;
  bool writing;  // errors are then the library's or the file's, not the data's
  char message[JMSG_LENGTH_MAX + 64];
};

[[noreturn]] void jpeg_on_error(j_common_ptr codec) {
  auto* state = static_cast<jpeg_state*>(codec->client_data);
  if (state->message[0] == '\0') {
    char text[JMSG_LENGTH_MAX];
    (*codec->err->format_message)(codec, text);
    if (state->writing)
      std::snprintf(state->message, sizeof state->message, "libjpeg: %s", text);
    else
      std::snprintf(state->message, sizeof state->message, "corrupt or unsupported JPEG data (libjpeg: %s)", text);
  }
  std::longjmp(state->jump, 1);
}

// Level < 0: a warning, after which libjpeg would carry on. Warnings about the entropy-coded data
// (the file ends, a segment ends early, a bad Huffman/arithmetic code, lost restart markers, a
// bad scan sequence) end the decoding with an error here: libjpeg would fill the rest of the image
// with gray, and a few hundred bytes whose header claims 16384 x 16384 would cost seconds and
// gigabytes. (PIL refuses a truncated JPEG but returns the gray-filled image for the others.)
// Warnings about metadata (JFIF version, Adobe transform code, ICC marker, stray bytes between
// markers) are ignored. Level >= 0: trace messages. Nothing is printed.
void jpeg_on_message(j_common_ptr codec, int level) {
  if (level >= 0) return;
  auto* state = static_cast<jpeg_state*>(codec->client_data);
  codec->err->num_warnings++;
  const int code = codec->err->msg_code;
  const bool fatal = code == JWRN_JPEG_EOF || code == JWRN_HIT_MARKER || code == JWRN_HUFF_BAD_CODE ||
                     code == JWRN_ARITH_BAD_CODE || code == JWRN_MUST_RESYNC || code == JWRN_NOT_SEQUENTIAL ||
                     code == JWRN_BOGUS_PROGRESSION;
  if (!fatal || state->message[0] != '\0') return;
  char text[JMSG_LENGTH_MAX];
  (*codec->err->format_message)(codec, text);
  // Most of these texts begin "Corrupt JPEG data: ", which the message says already.
  static const char prefix[] = "Corrupt JPEG data: ";
  const char* detail = std::strncmp(text, prefix, sizeof prefix - 1) == 0 ? text + sizeof prefix - 1 : text;
  std::snprintf(state->message, sizeof state->message, "%s JPEG data (libjpeg: %s)",
                code == JWRN_JPEG_EOF ? "truncated" : "corrupt", detail);
  std::longjmp(state->jump, 1);
}

void jpeg_silent(j_common_ptr) {}

void jpeg_on_progress(j_common_ptr codec) {
  auto* state = static_cast<jpeg_state*>(codec->client_data);
  if (!codec->is_decompressor) return;
  if (state->decompress.input_scan_number > max_jpeg_scans) {
    std::snprintf(state->message, sizeof state->message,
                  "corrupt or unsupported JPEG data (more than %d progressive scans)", max_jpeg_scans);
    std::longjmp(state->jump, 1);
  }
}

void jpeg_init_errors(jpeg_state* state) {
  state->errors.error_exit = jpeg_on_error;
  state->errors.emit_message = jpeg_on_message;
  state->errors.output_message = jpeg_silent;
}

// Decodes into 8-bit RGB rows appended to *pixels. False with state->message set on error.
// *state must be zeroed by the caller (so destroying a never-created codec is a no-op).
bool jpeg_decode_core(const uint8_t* bytes, size_t size, jpeg_state* state, std::vector<uint8_t>* pixels,
                      int* width, int* height) {
  j_decompress_ptr codec = &state->decompress;
  codec->err = jpeg_std_error(&state->errors);
  jpeg_init_errors(state);
  codec->client_data = state;
  if (setjmp(state->jump)) {
    jpeg_destroy_decompress(codec);
    return false;
  }
  jpeg_create_decompress(codec);  // keeps err and client_data
  state->progress.progress_monitor = jpeg_on_progress;
  codec->progress = &state->progress;
  jpeg_mem_src(codec, bytes, static_cast<unsigned long>(size));
  jpeg_read_header(codec, TRUE);
  if (!dimensions_ok(codec->image_width, codec->image_height)) {
    std::snprintf(state->message, sizeof state->message, "%s",
                  dimensions_error(codec->image_width, codec->image_height).c_str());
    jpeg_destroy_decompress(codec);
    return false;
  }
  // libjpeg's defaults otherwise (islow IDCT, fancy upsampling), as PIL decodes.
  switch (codec->jpeg_color_space) {
    case JCS_GRAYSCALE:
      codec->out_color_space = JCS_GRAYSCALE;  // replicated to R, G, B below
      break;
    case JCS_CMYK:
    case JCS_YCCK:
      std::snprintf(state->message, sizeof state->message, "CMYK JPEG not supported (convert it to RGB first)");
      jpeg_destroy_decompress(codec);
      return false;
    default:
      codec->out_color_space = JCS_RGB;
  }
  jpeg_start_decompress(codec);
  const size_t w = codec->output_width, h = codec->output_height;
  const int components = codec->output_components;
  if ((components != 1 && components != 3) || !dimensions_ok(w, h)) {
    std::snprintf(state->message, sizeof state->message, "unsupported JPEG data (%d components)", components);
    jpeg_destroy_decompress(codec);
    return false;
  }
  if (!reserve_pixels(pixels, w * h * 3)) {
    std::snprintf(state->message, sizeof state->message, "out of memory for %zux%zu pixels", w, h);
    jpeg_destroy_decompress(codec);
    return false;
  }
  while (codec->output_scanline < h) {
    JSAMPROW row = append_row(pixels, w * 3);
    // The memory source never suspends, so each call yields one row.
    if (jpeg_read_scanlines(codec, &row, 1) != 1) {
      std::snprintf(state->message, sizeof state->message, "corrupt JPEG data (libjpeg returned no row %u)",
                    codec->output_scanline);
      jpeg_destroy_decompress(codec);
      return false;
    }
    if (components == 1) {
      // Gray in row[0, w): widen in place from the right end, never overwriting unread samples.
      for (size_t x = w; x-- > 0;) row[3 * x] = row[3 * x + 1] = row[3 * x + 2] = row[x];
    }
  }
  jpeg_finish_decompress(codec);  // reads up to EOI: a file cut after the last row still fails
  jpeg_destroy_decompress(codec);
  *width = int(w);
  *height = int(h);
  return true;
}

result<image_u8> decode_jpeg(const uint8_t* bytes, size_t size, const std::string& what) {
  jpeg_state state{};
  image_u8 image;
  if (!jpeg_decode_core(bytes, size, &state, &image.pixels, &image.width, &image.height)) {
    return status::error(what + ": " + state.message);
  }
  image.channels = 3;
  return image;
}

bool jpeg_write_core(FILE* file, const image_u8* image, int quality, jpeg_state* state) {
  j_compress_ptr codec = &state->compress;
  state->writing = true;
  codec->err = jpeg_std_error(&state->errors);
  jpeg_init_errors(state);
  codec->client_data = state;
  if (setjmp(state->jump)) {
    jpeg_destroy_compress(codec);
    return false;
  }
  jpeg_create_compress(codec);
  jpeg_stdio_dest(codec, file);
  codec->image_width = JDIMENSION(image->width);
  codec->image_height = JDIMENSION(image->height);
  codec->input_components = image->channels;
  codec->in_color_space = image->channels == 1 ? JCS_GRAYSCALE : JCS_RGB;
  jpeg_set_defaults(codec);
  jpeg_set_quality(codec, quality, TRUE);
  jpeg_start_compress(codec, TRUE);
  const size_t row_bytes = size_t(image->width) * size_t(image->channels);
  while (codec->next_scanline < codec->image_height) {
    JSAMPROW row = const_cast<JSAMPROW>(image->pixels.data() + codec->next_scanline * row_bytes);
    jpeg_write_scanlines(codec, &row, 1);
  }
  jpeg_finish_compress(codec);
  jpeg_destroy_compress(codec);
  return true;
}

// ---------------------------------------------------------------- files

std::string hex_prefix(const uint8_t* bytes, size_t size) {
  static const char digits[] = "0123456789abcdef";
  std::string text;
  for (size_t i = 0; i < size && i < 8; ++i) {
    if (i) text += ' ';
    text += digits[bytes[i] >> 4];
    text += digits[bytes[i] & 15];
  }
  return text;
}

struct file_closer {
  void operator()(FILE* f) const { std::fclose(f); }
};

status check_writable(const std::string& path, const image_u8& image, const std::vector<int>& channels) {
  bool known = false;
  for (int c : channels) known = known || image.channels == c;
  if (!known)
    return status::error("cannot write '" + path + "': " + std::to_string(image.channels) + " channels unsupported");
  if (!dimensions_ok(image.width, image.height))
    return status::error("cannot write '" + path + "': " + dimensions_error(image.width, image.height));
  const size_t expected = size_t(image.height) * size_t(image.width) * size_t(image.channels);
  if (image.pixels.size() != expected)
    return status::error("cannot write '" + path + "': " + std::to_string(image.pixels.size()) + " pixel bytes for " +
                         std::to_string(image.width) + "x" + std::to_string(image.height) + "x" +
                         std::to_string(image.channels) + " (" + std::to_string(expected) + " expected)");
  return status::ok();
}

// Runs write(file, &message) on the file at path (created or truncated). A failed write removes
// what it left, but only a regular file: never a device or pipe named as the output.
template <class Write>
status write_file(const std::string& path, const char* format, Write write) {
  FILE* file = std::fopen(path.c_str(), "wb");
  if (!file) return status::error("cannot create '" + path + "': " + std::strerror(errno));
  struct stat info {};
  const bool regular = ::fstat(::fileno(file), &info) == 0 && S_ISREG(info.st_mode);
  std::string message;
  const bool written = write(file, &message);
  errno = 0;
  bool stored = std::fflush(file) == 0 && !std::ferror(file);
  int error = errno;
  if (std::fclose(file) != 0 && stored) {
    stored = false;
    error = errno;
  }
  if (written && stored) return status::ok();
  if (regular) std::remove(path.c_str());
  if (!written) return status::error("cannot write " + std::string(format) + " '" + path + "': " + message);
  return status::error("cannot write " + std::string(format) + " '" + path + "': " +
                       (error ? std::strerror(error) : "I/O error"));
}

}  // namespace

result<image_u8> decode_image(const uint8_t* bytes, size_t size, const std::string& what) {
  if (size == 0) return status::error(what + ": empty (0 bytes), not a PNG or JPEG image");
  if (size >= sizeof png_signature && std::memcmp(bytes, png_signature, sizeof png_signature) == 0)
    return decode_png(bytes, size, what);
  if (size >= sizeof jpeg_signature && std::memcmp(bytes, jpeg_signature, sizeof jpeg_signature) == 0)
    return decode_jpeg(bytes, size, what);
  return status::error(what + ": not a PNG or JPEG image (" + std::to_string(size) + " bytes beginning " +
                       hex_prefix(bytes, size) + ")");
}

result<image_u8> read_image_file(const std::string& path) {
  const std::string what = "image file '" + path + "'";
  std::unique_ptr<FILE, file_closer> file(std::fopen(path.c_str(), "rb"));
  if (!file) return status::error(what + ": cannot open: " + std::strerror(errno));
  std::vector<uint8_t> bytes;
  uint8_t chunk[1 << 16];
  for (;;) {
    const size_t got = std::fread(chunk, 1, sizeof chunk, file.get());
    if (got == 0) break;
    if (bytes.size() + got > size_t(max_file_bytes))
      return status::error(what + ": larger than " + std::to_string(max_file_bytes) + " bytes");
    bytes.insert(bytes.end(), chunk, chunk + got);
  }
  if (std::ferror(file.get())) return status::error(what + ": cannot read: " + std::strerror(errno));
  return decode_image(bytes.data(), bytes.size(), what);
}

status write_png(const std::string& path, const image_u8& image) {
  D3_RETURN_IF_ERROR(check_writable(path, image, {1, 3, 4}));
  return write_file(path, "PNG", [&](FILE* file, std::string* message) {
    png_io io{};
    const bool ok = png_write_core(file, &image, &io);
    if (!ok) *message = io.message;
    return ok;
  });
}

status write_jpeg(const std::string& path, const image_u8& image, int quality) {
  if (quality < 1 || quality > 100)
    return status::error("cannot write '" + path + "': JPEG quality " + std::to_string(quality) + " outside 1..100");
  D3_RETURN_IF_ERROR(check_writable(path, image, {1, 3}));
  return write_file(path, "JPEG", [&](FILE* file, std::string* message) {
    jpeg_state state{};
    const bool ok = jpeg_write_core(file, &image, quality, &state);
    if (!ok) *message = state.message;
    return ok;
  });
}

}  // namespace d3
