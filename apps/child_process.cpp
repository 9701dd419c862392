#include "apps/child_process.hpp"

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstring>

extern char** environ;

namespace d3 {

namespace {

// Pipe ends must not be 0, 1 or 2: when the parent runs with a standard stream closed (CI runs
// with no stdin), pipe2() hands out that number, and dup2(fd, fd) in the child then keeps the
// close-on-exec flag, so the child would start without its stdin.
int above_standard_streams(int fd) {
  if (fd > 2) return fd;
  int moved = fcntl(fd, F_DUPFD_CLOEXEC, 3);
  close(fd);
  return moved;
}

}  // namespace

result<child_process> child_process::start(const std::vector<std::string>& argv) {
  if (argv.empty()) return status::error("child_process: empty command");
  int in_pipe[2], out_pipe[2];
  if (pipe2(in_pipe, O_CLOEXEC) != 0) return status::error(std::string("pipe: ") + std::strerror(errno));
  if (pipe2(out_pipe, O_CLOEXEC) != 0) {
    close(in_pipe[0]);
    close(in_pipe[1]);
    return status::error(std::string("pipe: ") + std::strerror(errno));
  }
  for (int* fd : {&in_pipe[0], &in_pipe[1], &out_pipe[0], &out_pipe[1]}) *fd = above_standard_streams(*fd);
  posix_spawn_file_actions_t actions;
  posix_spawn_file_actions_init(&actions);
  posix_spawn_file_actions_adddup2(&actions, in_pipe[0], STDIN_FILENO);
  posix_spawn_file_actions_adddup2(&actions, out_pipe[1], STDOUT_FILENO);
  std::vector<char*> args;
  for (const std::string& a : argv) args.push_back(const_cast<char*>(a.c_str()));
  args.push_back(nullptr);
  pid_t pid = -1;
  int rc = posix_spawnp(&pid, args[0], &actions, nullptr, args.data(), environ);
  posix_spawn_file_actions_destroy(&actions);
  close(in_pipe[0]);
  close(out_pipe[1]);
  if (rc != 0) {
    close(in_pipe[1]);
    close(out_pipe[0]);
    return status::error("cannot start '" + argv[0] + "': " + std::strerror(rc));
  }
  child_process child;
  child.pid_ = pid;
  child.to_child_ = in_pipe[1];
  child.from_child_ = out_pipe[0];
  child.name_ = argv[0];
  return child;
}

child_process::child_process(child_process&& other) noexcept
    : pid_(other.pid_), to_child_(other.to_child_), from_child_(other.from_child_),
      pending_(std::move(other.pending_)), name_(std::move(other.name_)) {
  other.pid_ = -1;
  other.to_child_ = other.from_child_ = -1;
}

child_process::~child_process() {
  if (to_child_ >= 0) close(to_child_);
  if (from_child_ >= 0) close(from_child_);
  if (pid_ <= 0) return;
  // Closing stdin asks the child to leave; give it a moment, then insist.
  for (int waited = 0; waited < 100; ++waited) {
    if (waitpid(pid_, nullptr, WNOHANG) == pid_) return;
    usleep(20000);
  }
  kill(pid_, SIGKILL);
  waitpid(pid_, nullptr, 0);
}

status child_process::write_line(const std::string& line) {
  std::string data = line + "\n";
  size_t sent = 0;
  while (sent < data.size()) {
    ssize_t n = write(to_child_, data.data() + sent, data.size() - sent);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return status::error("writing to '" + name_ + "': " + std::strerror(errno));
    sent += size_t(n);
  }
  return status::ok();
}

result<std::string> child_process::read_line(int timeout_ms) {
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::milliseconds(timeout_ms);
  for (;;) {
    size_t newline = pending_.find('\n');
    if (newline != std::string::npos) {
      std::string line = pending_.substr(0, newline);
      pending_.erase(0, newline + 1);
      return line;
    }
    int left = int(std::chrono::duration_cast<std::chrono::milliseconds>(deadline - std::chrono::steady_clock::now()).count());
    if (left <= 0) return status::error("'" + name_ + "' did not answer within " + std::to_string(timeout_ms) + " ms");
    pollfd p{from_child_, POLLIN, 0};
    int ready = poll(&p, 1, left);
    if (ready < 0 && errno == EINTR) continue;
    if (ready <= 0) continue;
    char buffer[4096];
    ssize_t n = read(from_child_, buffer, sizeof buffer);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return status::error("'" + name_ + "' exited or closed its output");
    pending_.append(buffer, size_t(n));
  }
}

}  // namespace d3
