#!/usr/bin/env bash
# Benchmarks: pullprobe side by side with Debian's prometheus-blackbox-exporter, on loopback,
# against one TLS fake registry (examples/bench_registry.rs). See docs/performance.md.
#
#   bash bench/run.sh           # the full run (about 5 minutes on 2 cores)
#   bash bench/run.sh --quick   # a short smoke run: fewer probes, short criterion runs
#
# Prints a markdown table (pullprobe, blackbox_exporter, ratio) to paste into
# docs/performance.md; raw figures go to $CARGO_TARGET_DIR/bench-results.json.
# Not part of the test command. Needs: cargo, python3, apt (for blackbox_exporter).
set -euo pipefail
cd "$(dirname "$0")/.."

quick=()
criterion=(--noplot)
if [ "${1:-}" = "--quick" ]; then
  quick=(--quick)
  criterion=(--noplot --warm-up-time 0.5 --measurement-time 1)
elif [ $# -gt 0 ]; then
  echo "usage: bash bench/run.sh [--quick]" >&2
  exit 2
fi

say() { printf '\n==> %s\n' "$*" >&2; }

if ! command -v prometheus-blackbox-exporter >/dev/null 2>&1; then
  say "installing prometheus-blackbox-exporter"
  SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends \
    prometheus-blackbox-exporter >/dev/null
fi
# Debian's package may start its own instance where an init system runs; ours has its own port.
command -v systemctl >/dev/null 2>&1 && systemctl stop prometheus-blackbox-exporter >/dev/null 2>&1 || true

target_dir="${CARGO_TARGET_DIR:-target}"

say "building release binaries"
cargo build --release --locked --bin pullprobe --example bench_registry

say "criterion: parsing and /metrics rendering"
cargo bench --locked --bench parsing --bench metrics -- "${criterion[@]}" >&2

say "whole-process comparison (loopback only)"
echo >&2
python3 bench/whole_process.py "${quick[@]}" \
  --pullprobe "$target_dir/release/pullprobe" \
  --registry "$target_dir/release/examples/bench_registry" \
  --blackbox "$(command -v prometheus-blackbox-exporter)" \
  --target-dir "$target_dir" \
  --json "$target_dir/bench-results.json"
