#!/usr/bin/env bash
# bench-bake.sh -- how long does `clockprov bake` take on the lab's 2 GiB client
# image, next to `virt-customize --write` of the same file on the same image?
#
# Usage: scripts/bench-bake.sh            (as root; builds the lab image if needed)
#
# Each timed run starts from a fresh sparse copy of the lab's raw client image
# (hyperfine --prepare), so every bake has the same work to do: write
# timesyncd.conf, empty /etc/machine-id.  Also timed: a
# `--dry-run` (read-only appliance, plan only) and a no-op bake of an image
# already baked.  Output: hyperfine's markdown table on stdout; progress on
# stderr.  BENCH_RUNS (default 5) runs per command.
set -euo pipefail
case ${BASH_SOURCE[0]} in */*) HERE=${BASH_SOURCE[0]%/*} ;; *) HERE=. ;; esac
ROOT=$(cd "$HERE/.." && pwd -P)
RUNS=${BENCH_RUNS:-5}
export LIBGUESTFS_BACKEND=direct LIBGUESTFS_BACKEND_SETTINGS=force_tcg

command -v hyperfine >/dev/null || apt-get install -y -qq --no-install-recommends hyperfine >/dev/null
image=$(bash "$ROOT/tests/lab/lab.sh" image client)
(cd "$ROOT" && cargo build --release --quiet)
bin=$ROOT/target/release/clockprov
work=$(mktemp -d /var/tmp/clockprov-bench-bake.XXXXXX)
trap 'rm -rf "$work"' EXIT
cat >"$work/inventory.yaml" <<'YAML'
ntp_servers:
  zcloud:
    address: 192.168.6.200
    upstream: [{pool: ntp.ubuntu.com}]
    allow: [192.168.6.0/24]
images:
  golden:
    path: golden.raw
YAML
# What virt-customize writes: one file, like bake (its content does not matter here).
printf '[Time]\nNTP=192.168.6.200\n' >"$work/timesyncd.conf"
cp --sparse=always "$image" "$work/baked.raw"
sed 's/golden.raw/baked.raw/' "$work/inventory.yaml" >"$work/baked.yaml"
"$bin" bake -i "$work/baked.yaml" --yes --reset-machine-id >/dev/null
fresh="cp --sparse=always $image $work/golden.raw"
cd "$work"
hyperfine --runs "$RUNS" --export-markdown "$work/table.md" --style basic \
    --prepare "$fresh" --prepare "$fresh" --prepare true --prepare "$fresh" \
    -n "clockprov bake --yes (fresh image)" \
    -n "clockprov bake --dry-run" \
    -n "clockprov bake --yes (already baked: no-op)" \
    -n "virt-customize --write (fresh image)" \
    "$bin bake -i $work/inventory.yaml --yes --reset-machine-id" \
    "$bin bake -i $work/inventory.yaml --dry-run" \
    "$bin bake -i $work/baked.yaml --yes" \
    "virt-customize -q --format raw -a $work/golden.raw --no-network --write '/etc/systemd/timesyncd.conf:$(tr '\n' ' ' <"$work/timesyncd.conf")'" >&2
cat "$work/table.md"
