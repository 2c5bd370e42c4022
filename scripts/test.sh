#!/usr/bin/env bash
# The project's test command: what the README says to run and what CI runs.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo test --workspace --all-targets
# Doc examples are part of the API contract; --all-targets leaves them out.
cargo test --workspace --doc
