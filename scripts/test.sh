#!/usr/bin/env bash
# The test suite: unit tests, snapshot tests and integration tests against real sshd test hosts.
# Needs root (test hosts live in private mount namespaces on 127.0.1.x).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
# Every remote script, in the shell its `# shellcheck shell=` line names (a host's /bin/sh may be dash).
find src -name '*.sh' -exec shellcheck {} +
# The VM lab's packages and images (cached), once, before tests use them side by side.
bash tests/lab/lab.sh deps
bash tests/lab/lab.sh build
cargo test --locked "$@"
# What users see, from the binary they install: the message snapshots again on a release build
# (minijinja, for one, kept less in its errors without debug assertions until render.rs said
# otherwise). Only on a whole run: `scripts/test.sh ARGS` runs just what ARGS pick.
if [ $# -eq 0 ]; then
    cargo test --locked --release --test it messages::
fi
