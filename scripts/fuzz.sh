#!/usr/bin/env bash
# Runs every fuzz target for FUZZ_SECONDS each (default 600; CI's smoke pass uses a few).
# cargo-fuzz needs nightly flags; this machine has one stable toolchain, so RUSTC_BOOTSTRAP
# lets it accept them. Installs cargo-fuzz from crates.io if it is missing.
set -euo pipefail
cd "$(dirname "$0")/.."
SECONDS_EACH=${FUZZ_SECONDS:-600}
TARGETS=${FUZZ_TARGETS:-"carte registry_op log_entry receipt grant_query strict_batch checkpoint_note tile_path proofs forwarded config"}
export RUSTC_BOOTSTRAP=1
if ! cargo fuzz --version >/dev/null 2>&1; then
  cargo install cargo-fuzz --locked
fi
# Build first, unfiltered, so a build failure fails the script loudly.
(cd fuzz && cargo fuzz build)
for t in $TARGETS; do
  echo "== fuzzing $t for ${SECONDS_EACH}s"
  mkdir -p "fuzz/corpus/$t"
  cargo fuzz run "$t" "fuzz/corpus/$t" -- -max_total_time="$SECONDS_EACH" -max_len=8192 2>&1 \
    | grep -E "^(#[0-9]+ +DONE|==[0-9]+==|SUMMARY|Done)" || true
  # cargo fuzz exits non-zero (and leaves fuzz/artifacts/$t) when it finds a crash.
  if ls "fuzz/artifacts/$t"/crash-* >/dev/null 2>&1; then
    echo "fuzz target $t found a crash: fuzz/artifacts/$t" >&2
    exit 1
  fi
done
