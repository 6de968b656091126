#!/usr/bin/env bash
# Install what clockprov's tests and demo need on a fresh Debian/Ubuntu machine (as root).
# Idempotent: packages already present are left alone, and apt is only asked when one is missing.
# `setup.sh --package`: also what scripts/package.sh and tests/package/install.sh need.
set -euo pipefail

# sudo, openssl and passwd (usermod): the test hosts' non-root login with real sudo;
# shellcheck: the remote scripts under src/ are linted; strace: a test counts a host's processes;
# prometheus: promtool, which validates `check --format prometheus` (tests/it/check.rs)
packages=(openssh-server openssh-client util-linux mount coreutils findutils iproute2 ca-certificates sudo openssl passwd shellcheck strace prometheus)
# jq: the README's merge of --shard runs' JSON (tested in tests/it)
packages+=(jq)
package_mode=false
if [[ ${1:-} == --package ]]; then
    package_mode=true
    # musl-tools: ring compiles C for the musl target; file: the static check; mmdebstrap,
    # curl: the install test's Debian and Ubuntu roots.
    packages+=(musl-tools file mmdebstrap curl gzip)
fi
missing=()
for p in "${packages[@]}"; do
    dpkg-query -W -f='${db:Status-Abbrev}' "$p" 2>/dev/null | grep -q '^ii' || missing+=("$p")
done
if ((${#missing[@]})); then
    if [ "$(id -u)" != 0 ]; then
        echo "setup: need root to install: ${missing[*]}" >&2
        exit 1
    fi
    echo "setup: installing ${missing[*]}" >&2
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
# The package's postinst may start the machine's own sshd; the test hosts run their own.
command -v cargo >/dev/null || { echo "setup: cargo (Rust) is required" >&2; exit 1; }
if $package_mode; then
    rustup target list --installed | grep -qx x86_64-unknown-linux-musl ||
        rustup target add x86_64-unknown-linux-musl
    command -v cargo-deb >/dev/null || cargo install --locked cargo-deb
fi
