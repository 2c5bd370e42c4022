#!/usr/bin/env bash
# The project's test command: what the README says to run and what CI runs.
#
# Besides cargo's tests it needs a few things from Debian's packages (installed here when
# missing, as root): nginx for the auth_request test, chromium and chromium-driver for the
# browser tests, libnss3-tools (certutil) for the HTTPS browser tests, postgresql for the
# several-processes tests; Python's openapi-spec-validator (from PyPI, in a virtual
# environment under target/) for the OpenAPI tests. The crash test runs against a release
# build of the node. A short fuzz pass runs every fuzz target (FUZZ_SECONDS, default 5 s each;
# set FUZZ_SECONDS=0 to skip it). The JavaScript client's tests run with Node.js and npm
# (installed from Debian's packages when missing) against the release binaries.
set -euo pipefail
cd "$(dirname "$0")/.."

need_apt=()
[ -x /usr/sbin/nginx ] || need_apt+=(nginx-light)
[ -x /usr/bin/chromium ] || need_apt+=(chromium)
[ -x /usr/bin/chromedriver ] || need_apt+=(chromium-driver)
# certutil, to make Chromium trust the test CA in the HTTPS browser tests.
[ -x /usr/bin/certutil ] || need_apt+=(libnss3-tools)
ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || need_apt+=(postgresql)
if [ ${#need_apt[@]} -gt 0 ]; then
  if [ "$(id -u)" = 0 ]; then
    echo "installing ${need_apt[*]} from Debian's packages" >&2
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need_apt[@]}" >/dev/null
  else
    echo "warning: ${need_apt[*]} missing and not root; those tests will say so" >&2
  fi
fi
# The OpenAPI validators (openapi-spec-validator, openapi-schema-validator) and Schemathesis
# from PyPI, in a virtual environment under target/ so nothing is installed into the system's
# Python. tests/schemathesis.rs drives a live node with Schemathesis, every check on.
venv=target/openapi-venv
if [ ! -x "$venv/bin/python" ] || ! "$venv/bin/python" -c 'import openapi_spec_validator, openapi_schema_validator, schemathesis' 2>/dev/null; then
  mkdir -p target
  if ! python3 -m venv "$venv" 2>/dev/null && [ "$(id -u)" = 0 ]; then
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq python3-venv >/dev/null
    python3 -m venv "$venv"
  fi
  "$venv/bin/pip" install --quiet --disable-pip-version-check openapi-spec-validator openapi-schema-validator 'schemathesis>=4.32,<5'
fi
export GRANT_NODE_OPENAPI_PYTHON="$PWD/$venv/bin/python" GRANT_NODE_REQUIRE_OPENAPI=1

# axe-core from the npm registry, for the console's accessibility check in Chromium.
if [ ! -f target/axe/node_modules/axe-core/axe.min.js ]; then
  if ! command -v npm >/dev/null && [ "$(id -u)" = 0 ]; then
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq npm >/dev/null
  fi
  mkdir -p target/axe
  (cd target/axe && npm install --silent --no-audit --no-fund axe-core@4)
fi

[ -x /usr/sbin/nginx ] && export GRANT_NODE_REQUIRE_NGINX=1
[ -x /usr/bin/chromedriver ] && [ -x /usr/bin/certutil ] && export GRANT_NODE_REQUIRE_CHROMIUM=1

# One PostgreSQL cluster for the run (scripts/pg.sh: initdb in a temporary folder, as the
# unprivileged postgres user, on a loopback port), stopped however the run ends. Each test
# makes its own database in it; the test that crashes PostgreSQL starts a cluster of its own.
if ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1; then
  pg_dir=$(mktemp -d /tmp/gn-test-pg.XXXXXX)
  chmod 755 "$pg_dir"  # the postgres user must reach its folder inside
  trap 'bash scripts/pg.sh stop "$pg_dir/pg"; rm -rf "$pg_dir"' EXIT
  GRANT_NODE_PG_URL=$(bash scripts/pg.sh start "$pg_dir/pg")
  export GRANT_NODE_PG_URL GRANT_NODE_REQUIRE_POSTGRES=1
fi

cargo build --release -p grant-node -p registry-stub --bins
# The bench tool tests/scale.rs writes 100,000 names with (an unoptimised build signs slowly).
cargo build --release --example gen_registry
export GRANT_NODE_BIN="$PWD/target/release/grant-node" REGISTRY_STUB_BIN="$PWD/target/release/registry-stub"
export GEN_REGISTRY_BIN="$PWD/target/release/examples/gen_registry"
cargo test --workspace --all-targets
# The grant, API, controlled-account, crash, transparency and moving suites again, with every node on
# PostgreSQL (and a registry stub in place of the embedded registry, which PostgreSQL turns
# off); the witnesses' state then lives in PostgreSQL.
if [ -n "${GRANT_NODE_PG_URL:-}" ]; then
  GRANT_NODE_TEST_BACKEND=postgres cargo test --test grant --test api --test controlled --test crash --test transparency --test moving
fi
# Doc examples are part of the API contract; --all-targets leaves them out.
cargo test --workspace --doc

# The JavaScript/TypeScript client (clients/js): its types, its browser bundle, the golden
# vectors, and its interoperability with the release binaries and in headless Chromium.
(cd clients/js && npm ci --silent --no-audit --no-fund && GRANT_NODE_REQUIRE_INTEROP=1 npm test)

if [ "${FUZZ_SECONDS:-5}" != 0 ]; then
  FUZZ_SECONDS=${FUZZ_SECONDS:-5} bash scripts/fuzz.sh
fi
