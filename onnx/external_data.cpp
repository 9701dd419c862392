#include "onnx/external_data.hpp"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

namespace d3 {
namespace onnx_detail {

struct external_data::mapping {
  const uint8_t* bytes = nullptr;
  size_t size = 0;
  ~mapping() {
    if (bytes && size) munmap(const_cast<uint8_t*>(bytes), size);
  }
};

external_data::external_data(std::string model_path) : from_memory_(model_path.empty()) {
  const size_t slash = model_path.find_last_of('/');
  directory_ = slash == std::string::npos ? "." : model_path.substr(0, slash);
  if (directory_.empty()) directory_ = "/";
}

external_data::~external_data() = default;

result<const external_data::mapping*> external_data::map(const std::string& location) {
  auto it = files_.find(location);
  if (it != files_.end()) return it->second.get();
  const std::string path = directory_ + "/" + location;
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return status::error("external data file '" + path + "': cannot open: " + std::strerror(errno));
  struct stat st{};
  if (::fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
    ::close(fd);
    return status::error("external data file '" + path + "' is not a regular file");
  }
  auto m = std::make_unique<mapping>();
  m->size = size_t(st.st_size);
  if (m->size > 0) {
    void* p = ::mmap(nullptr, m->size, PROT_READ, MAP_PRIVATE, fd, 0);
    if (p == MAP_FAILED) {
      const int e = errno;
      ::close(fd);
      return status::error("external data file '" + path + "': cannot map: " + std::strerror(e));
    }
    m->bytes = static_cast<const uint8_t*>(p);
  }
  ::close(fd);
  return (files_[location] = std::move(m)).get();
}

namespace {

// A non-negative decimal integer, or -1.
long long parse_size(const std::string& text) {
  if (text.empty() || text.size() > 18) return -1;
  long long v = 0;
  for (char ch : text) {
    if (ch < '0' || ch > '9') return -1;
    v = v * 10 + (ch - '0');
  }
  return v;
}

}  // namespace

status external_data::load_into(onnx::TensorProto& t) {
  if (from_memory_)
    return status::error("stores its data in an external file, which a model read from memory cannot name");
  std::string location;
  long long offset = 0, length = -1;
  for (const auto& entry : t.external_data()) {
    const std::string& key = entry.key();
    if (key == "location") {
      location = entry.value();
    } else if (key == "offset" || key == "length") {
      const long long v = parse_size(entry.value());
      if (v < 0) return status::error("has external data " + key + " '" + entry.value() + "', not a byte count");
      (key == "offset" ? offset : length) = v;
    } else if (key != "checksum") {
      return status::error("has an unknown external data key '" + key + "'");
    }
  }
  if (location.empty()) return status::error("stores its data externally but names no location");
  // The data files sit beside the model: nothing absolute, nothing above its directory.
  if (location[0] == '/' || location == ".." || location.rfind("../", 0) == 0 ||
      location.find("/../") != std::string::npos || (location.size() >= 3 && location.compare(location.size() - 3, 3, "/..") == 0))
    return status::error("names external data location '" + location + "' outside the model's directory");
  auto m = map(location);
  if (!m) return m.error();
  const size_t size = (*m)->size;
  if (size_t(offset) > size || (length >= 0 && size_t(length) > size - size_t(offset)))
    return status::error("reads bytes [" + std::to_string(offset) + ", " +
                         (length >= 0 ? std::to_string(offset + length) : std::string("end")) +
                         ") of external data file '" + location + "', which holds " + std::to_string(size));
  const size_t count = length >= 0 ? size_t(length) : size - size_t(offset);
  t.set_raw_data(std::string(reinterpret_cast<const char*>((*m)->bytes) + offset, count));
  t.clear_external_data();
  t.set_data_location(onnx::TensorProto::DEFAULT);
  return status::ok();
}

}  // namespace onnx_detail
}  // namespace d3
