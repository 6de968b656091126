#!/usr/bin/env bash
# Fuzz every parser of untrusted text (fuzz/fuzz_targets: inventory, ssh_config, known_hosts,
# facts, daemon_views, clock_readings, guestfish) for SECONDS each (default 15), with cargo-fuzz
# (libFuzzer) on a nightly toolchain, both installed here when missing.
#
#   scripts/fuzz.sh [SECONDS] [TARGET...]
#
# Fails on the first crash, panic, timeout or memory blow-up, leaving the input in
# fuzz/artifacts/TARGET/ (reproduce: cargo +nightly fuzz run TARGET fuzz/artifacts/TARGET/FILE).
# The seeds (fuzz/seeds) are never written: what the fuzzer learns goes to a scratch corpus.
set -euo pipefail
cd "$(dirname "$0")/.."
seconds=${1:-15}
shift || true
[[ $seconds =~ ^[0-9]+$ ]] || { echo "usage: scripts/fuzz.sh [SECONDS] [TARGET...]" >&2; exit 2; }

# libFuzzer is C++, built by libfuzzer-sys.
if ! command -v c++ >/dev/null; then
    [ "$(id -u)" = 0 ] || { echo "fuzz: need root to install g++ (libFuzzer)" >&2; exit 1; }
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends g++ >/dev/null
fi
rustup toolchain list | grep -q '^nightly' || rustup toolchain install nightly --profile minimal
command -v cargo-fuzz >/dev/null || cargo install cargo-fuzz --locked

# Built once and reused between runs.
target_dir=${CLOCKPROV_FUZZ_TARGET:-/var/tmp/clockprov-test-cache/fuzz-target}
mkdir -p "$target_dir"
scratch=$(mktemp -d)
trap 'rm -rf "$scratch"' EXIT

targets=("$@")
if ((${#targets[@]} == 0)); then
    mapfile -t targets < <(cd fuzz && cargo +nightly fuzz list)
fi
cd fuzz
# A debug build without a sanitizer: safe Rust needs no ASan to show its failures (panics, overflow,
# memory blow-ups, hangs), and a sanitized release build of every dependency takes tens of minutes
# on a 2-core machine against a few here.
build=(--dev --sanitizer none --target-dir "$target_dir")
echo "fuzz: building the targets (nightly, debug, coverage only; cached in $target_dir)" >&2
cargo +nightly fuzz build "${build[@]}"
for t in "${targets[@]}"; do
    mkdir -p "$scratch/$t" "artifacts/$t"
    echo "fuzz: $t for ${seconds}s" >&2
    # -timeout: one input taking a second is a hang for parsers of a few KiB; -rss_limit_mb: a
    # parser blowing memory up (YAML aliases) is a failure, not a slow machine.
    cargo +nightly fuzz run "${build[@]}" "$t" "$scratch/$t" "seeds/$t" -- \
        -max_total_time="$seconds" -timeout=2 -rss_limit_mb=1024 -max_len=4096 \
        -print_final_stats=1 -artifact_prefix="artifacts/$t/" 2>"$scratch/$t.log" || {
        tail -n 40 "$scratch/$t.log" >&2
        echo "fuzz: $t FAILED (a crashing input is left in fuzz/artifacts/$t/)" >&2
        exit 1
    }
    grep -E '^Done' "$scratch/$t.log" | sed "s/^/fuzz: $t: /" >&2 || true
done
echo "fuzz: ${#targets[@]} targets, ${seconds}s each, no crash" >&2
