// Errors as values across module borders: a `status` is OK or carries one message that names
// what is wrong; `result<T>` holds either a T or such a message. No exceptions cross modules.
#pragma once

#include <cassert>
#include <string>
#include <utility>
#include <variant>

namespace d3 {

class status {
 public:
  status() = default;
  static status ok() { return status(); }
  static status error(std::string message) {
    status s;
    s.failed_ = true;
    s.message_ = std::move(message);
    return s;
  }
  bool is_ok() const { return !failed_; }
  explicit operator bool() const { return !failed_; }
  const std::string& message() const { return message_; }

 private:
  bool failed_ = false;
  std::string message_;
};

template <class T>
class result {
 public:
  result(T value) : state_(std::move(value)) {}
  result(status error) : state_(std::move(error)) { assert(!std::get<status>(state_).is_ok()); }

  bool is_ok() const { return state_.index() == 0; }
  explicit operator bool() const { return is_ok(); }
  T& value() & { return std::get<T>(state_); }
  T&& value() && { return std::get<T>(std::move(state_)); }
  const T& value() const& { return std::get<T>(state_); }
  T* operator->() { return &std::get<T>(state_); }
  const T* operator->() const { return &std::get<T>(state_); }
  T& operator*() & { return value(); }
  T&& operator*() && { return std::move(*this).value(); }
  // The error; an OK status (empty message) when the result holds a value.
  const status& error() const {
    static const status none;
    return is_ok() ? none : std::get<status>(state_);
  }
  const std::string& message() const { return error().message(); }

 private:
  std::variant<T, status> state_;
};

}  // namespace d3

// Returns the error of a status-returning expression from the enclosing function.
#define D3_RETURN_IF_ERROR(expr)            \
  do {                                      \
    ::d3::status d3_status_ = (expr);       \
    if (!d3_status_.is_ok()) return d3_status_; \
  } while (0)

// Declares or assigns `lhs` from the value of a result-returning expression, or returns its error
// from the enclosing function:  D3_ASSIGN_OR_RETURN(stage_graph sg, build_stage_graph(g, plan));
#define D3_ASSIGN_OR_RETURN(lhs, expr) D3_ASSIGN_OR_RETURN_IMPL(D3_STATUS_CONCAT(d3_result_, __LINE__), lhs, expr)
#define D3_ASSIGN_OR_RETURN_IMPL(tmp, lhs, expr) \
  auto tmp = (expr);                             \
  if (!tmp.is_ok()) return tmp.error();          \
  lhs = std::move(tmp).value()
#define D3_STATUS_CONCAT(a, b) D3_STATUS_CONCAT_INNER(a, b)
#define D3_STATUS_CONCAT_INNER(a, b) a##b
