#!/usr/bin/env bash
# The test suite: unit tests, snapshot tests and integration tests against real sshd test hosts.
# Needs root (test hosts live in private mount namespaces on 127.0.1.x).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
cargo test --locked "$@"
