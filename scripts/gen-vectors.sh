#!/usr/bin/env bash
# Regenerates the golden vectors in data/vectors/ from fixed seeds. Commit the result only when
# a wire-format change is intended; the tests compare the file with the code byte for byte.
set -euo pipefail
cd "$(dirname "$0")/.."
GRANT_NODE_BLESS=1 cargo test --test carte_vectors -- vectors_file_is_what_the_code_generates
cargo test --test carte_vectors
git diff --stat -- data/vectors/ || true
