#!/usr/bin/env bash
# The seed's story on real VMs, in one command: a chrony server `zcloud` (192.168.6.200) and three
# systemd-timesyncd clients z-b-data-1..3 (192.168.6.204-206) booted under qemu on a private bridge
# inside a network namespace this script creates, the clients' clocks skewed +2 s, -5 s, +11 s.
# Then: check (skew detected), plan (the diffs), apply --yes --wait-sync, check again; and, as
# the seed ends, fix the VM template: bake a copy of the clients' image (libguestfs).
# Needs root; installs what it needs; caches VM images in /var/tmp/clockprov-lab-cache.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
tests/lab/lab.sh deps
cargo build --release --locked --quiet
bin=$PWD/target/release/clockprov

dir=$(mktemp -d /tmp/clockprov-story.XXXXXX)
cleanup() { tests/lab/lab.sh down "$dir" || true; rm -rf "$dir"; }
trap cleanup EXIT INT TERM

started=$SECONDS
tests/lab/lab.sh up "$dir" --skews "2 -5 11"
echo "lab ready in $((SECONDS - started)) s" >&2
inv=$dir/inventory.yaml
run() {
    printf '\n\033[1m$ %s\033[0m\n' "${*/#$bin/clockprov}" >&2
    set +e
    tests/lab/lab.sh exec "$dir" "$@"
    status=$?
    set -e
    echo "(exit $status)" >&2
}
run "$bin" check -i "$inv"
first=$status
run "$bin" plan -i "$inv"
run "$bin" apply -i "$inv" --yes --wait-sync 180s
applied=$status
run "$bin" check -i "$inv"
last=$status
for vm in z-b-data-1 z-b-data-2 z-b-data-3; do
    printf '%s: ' "$vm"
    tests/lab/lab.sh ssh "$dir" "$vm" timedatectl show-timesync --all | grep '^ServerName='
done
# The template the clients were cloned from: a qcow2 copy of the lab's client image.
qemu-img convert -O qcow2 "$(tests/lab/lab.sh image client)" "$dir/z-template.qcow2"
{ cat "$inv"; printf 'images:\n  z-template:\n    path: %s\n' "$dir/z-template.qcow2"; } >"$dir/with-images.yaml"
export LIBGUESTFS_BACKEND=direct LIBGUESTFS_BACKEND_SETTINGS=force_tcg # KVM hangs guests here
printf '\n\033[1m$ clockprov bake -i %s --yes --reset-machine-id\033[0m\n' "$dir/with-images.yaml" >&2
set +e
"$bin" bake -i "$dir/with-images.yaml" --yes --reset-machine-id
baked=$?
set -e
echo "story: check exit $first (2 = skew found), apply exit $applied, check exit $last (0 = healthy), bake exit $baked, $((SECONDS - started)) s in all" >&2
[ "$first" -eq 2 ] && [ "$applied" -eq 0 ] && [ "$last" -eq 0 ] && [ "$baked" -eq 0 ]
