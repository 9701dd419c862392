#!/usr/bin/env bash
# Sourced by the install scripts: apt_install PACKAGE... installs the Debian packages that are
# missing, printing one line per step; apt's and dpkg's own output goes to a log file, quoted only
# when a step fails.
apt_install() {
  local missing=() p
  for p in "$@"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
  done
  [ ${#missing[@]} -eq 0 ] && return 0
  local sudo_cmd=() log
  [ "$(id -u)" -eq 0 ] || sudo_cmd=(sudo)
  log="$(mktemp -t d3-apt.XXXXXX.log)"
  echo "install: updating the package lists"
  if ! "${sudo_cmd[@]}" apt-get update -qq >"$log" 2>&1; then
    echo "install: apt-get update failed:" >&2; tail -n 20 "$log" >&2; return 1
  fi
  echo "install: ${#missing[@]} package(s): ${missing[*]}"
  if ! DEBIAN_FRONTEND=noninteractive "${sudo_cmd[@]}" apt-get install -y -qq --no-install-recommends \
      "${missing[@]}" >>"$log" 2>&1; then
    echo "install: apt-get install failed:" >&2; tail -n 30 "$log" >&2; return 1
  fi
  echo "install: done (log: $log)"
}
