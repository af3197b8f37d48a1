#!/usr/bin/env bash
# How release binaries are built (packaging and benchmarks source this).
#
# build_release [CARGO-FLAGS] -- BIN...: the named binaries with `cargo build --release`,
# then pullguard-verifier, always, linked statically (glibc static-pie): containerd execs
# it on every pull, and a static binary skips the dynamic loader (about 0.3 ms of a
# ~1.6 ms verdict on the 2-core bench machine, bench/results/latest.md). The verifier
# looks up no users and no hosts, so nothing in it needs glibc's NSS. Built last: a
# later plain `cargo build --release` of it would link it dynamically again.
build_release() {
  local flags=()
  while [ $# -gt 0 ] && [ "$1" != -- ]; do flags+=("$1"); shift; done
  [ "${1:-}" = -- ] && shift
  local bins=()
  for b in "$@"; do
    [ "$b" = pullguard-verifier ] || bins+=(--bin "$b")
  done
  if [ ${#bins[@]} -gt 0 ]; then
    cargo build --release --locked "${flags[@]}" "${bins[@]}"
  fi
  cargo rustc --release --locked "${flags[@]}" -p verifier --bin pullguard-verifier \
    -- -C target-feature=+crt-static
}
