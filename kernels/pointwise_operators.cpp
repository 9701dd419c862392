#include "kernels/pointwise_operators.hpp"

#include <pthreadpool.h>

#include <cmath>
#include <string>

namespace d3 {

void layer_norm_rows(const float* x, float* y, size_t pixels, size_t channels, const float* gamma, const float* beta,
                     float epsilon) {
  for (size_t p = 0; p < pixels; ++p) {
    const float* row = x + p * channels;
    float* out = y + p * channels;
    // Two passes in double (mean, then the mean square deviation): PyTorch's decomposition
    // (ReduceMean, Sub, Pow, ReduceMean, Add, Sqrt, Div) within float rounding, independent of C.
    double sum = 0;
    for (size_t c = 0; c < channels; ++c) sum += row[c];
    const double mean = sum / double(channels);
    double squares = 0;
    for (size_t c = 0; c < channels; ++c) {
      const double d = double(row[c]) - mean;
      squares += d * d;
    }
    const double inv_std = 1.0 / std::sqrt(squares / double(channels) + double(epsilon));
    for (size_t c = 0; c < channels; ++c)
      out[c] = float((double(row[c]) - mean) * inv_std * double(gamma[c]) + double(beta[c]));
  }
}

void gelu_values(const float* x, float* y, size_t count) {
  // GELU(x) = x * (1 + erf(x / sqrt(2))) / 2, in the order torch exports it (Div, Erf, Add, Mul, Mul).
  for (size_t i = 0; i < count; ++i) {
    const float v = x[i];
    y[i] = (v * (std::erf(v / 1.41421353816986083984375f) + 1.0f)) * 0.5f;
  }
}

namespace {

// Runs fn over rows of a [pixels, channels] tensor, split into blocks on the pool's threads.
class pointwise_operator : public layer_operator {
 public:
  pointwise_operator(const layer& l, tensor_shape in) : name_(l.name), kind_(l.kind), shape_(in) {}

  status setup(const std::vector<const float*>& inputs, float* output, pthreadpool_t) override {
    x_ = inputs.at(0);
    y_ = output;
    return status::ok();
  }
  status run(pthreadpool_t pool) override {
    const size_t pixels = size_t(shape_.n) * shape_.h * shape_.w;
    // Blocks of pixels: enough work per task to amortise the dispatch, several per thread.
    const size_t block = std::max<size_t>(1, 4096 / size_t(shape_.c));
    pthreadpool_parallelize_1d_tile_1d(
        pool,
        [](void* self, size_t first, size_t count) {
          static_cast<pointwise_operator*>(self)->compute(first, count);
        },
        this, pixels, block, 0);
    return status::ok();
  }
  status reshape(const std::vector<tensor_shape>& inputs, const tensor_shape& output) override {
    if (inputs.size() != 1 || inputs[0] != output || inputs[0].c != shape_.c)
      return status::error(std::string(to_string(kind_)) + " layer '" + name_ + "': cannot reshape from " +
                           shape_.to_string() + " to input " + (inputs.empty() ? "none" : inputs[0].to_string()) +
                           " and output " + output.to_string() + " (same shape, " + std::to_string(shape_.c) +
                           " channels)");
    shape_ = output;
    return status::ok();
  }

 protected:
  virtual void compute(size_t first_pixel, size_t pixels) = 0;
  const float* x_ = nullptr;
  float* y_ = nullptr;
  std::string name_;
  layer_kind kind_;
  tensor_shape shape_;
};

class layer_norm_operator : public pointwise_operator {
 public:
  layer_norm_operator(const layer& l, tensor_shape in) : pointwise_operator(l, in), weights_(l.weights), epsilon_(l.epsilon) {}

 private:
  void compute(size_t first, size_t count) override {
    const size_t c = size_t(shape_.c);
    layer_norm_rows(x_ + first * c, y_ + first * c, count, c, weights_.data(), weights_.data() + c, epsilon_);
  }
  weight_blob weights_;
  float epsilon_;
};

class gelu_operator : public pointwise_operator {
 public:
  using pointwise_operator::pointwise_operator;

 private:
  void compute(size_t first, size_t count) override {
    const size_t c = size_t(shape_.c);
    gelu_values(x_ + first * c, y_ + first * c, count * c);
  }
};

status check_pointwise(const layer& l, const tensor_shape& input) {
  const std::string where = std::string(to_string(l.kind)) + " layer '" + l.name + "'";
  if (input != l.output_shape)
    return status::error(where + ": output shape " + l.output_shape.to_string() + " differs from its input " +
                         input.to_string());
  if (!l.act.is_identity()) return status::error(where + ": a fused clamp is not supported");
  return status::ok();
}

}  // namespace

result<std::unique_ptr<layer_operator>> create_layer_norm_operator(const layer& l, const tensor_shape& input) {
  D3_RETURN_IF_ERROR(check_pointwise(l, input));
  if (l.weights.size() != size_t(2) * size_t(input.c) || !l.bias.empty())
    return status::error("layer_norm layer '" + l.name + "': weights hold " + std::to_string(l.weights.size()) +
                         " floats, expected 2 x " + std::to_string(input.c) + " (gamma | beta)");
  if (!(l.epsilon >= 0)) return status::error("layer_norm layer '" + l.name + "': epsilon must be >= 0");
  return std::unique_ptr<layer_operator>(new layer_norm_operator(l, input));
}

result<std::unique_ptr<layer_operator>> create_gelu_operator(const layer& l, const tensor_shape& input) {
  D3_RETURN_IF_ERROR(check_pointwise(l, input));
  if (!l.weights.empty() || !l.bias.empty()) return status::error("gelu layer '" + l.name + "': takes no weights");
  return std::unique_ptr<layer_operator>(new gelu_operator(l, input));
}

}  // namespace d3
