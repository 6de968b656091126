#!/usr/bin/env bash
# The seed's story on real VMs, in one command, from Ceph's warning to its HEALTH_OK: a chrony
# server `zcloud` (192.168.6.200) and three Ubuntu 20.04 VMs z-b-data-1..3 (192.168.6.204-206)
# running systemd-timesyncd and real Ceph monitors (ceph-mon 15.2), booted under qemu on a private
# bridge inside a network namespace this script creates. z-b-data-2's clock is stepped 4 s off:
# Ceph warns `clock skew detected on mon.z-b-data-2`. Then: check (skew found), plan, apply --yes
# --wait-sync, check again, Ceph's HEALTH_OK; and, as the seed ends, the VM template: bake a copy
# of the Ubuntu 20.04 image as `z-ubuntu20`, and boot a clone of it, clock 7 s off, that
# synchronizes to zcloud with nothing applied to it.
# Needs root; installs what it needs; caches VM images in /var/tmp/clockprov-lab-cache.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
tests/lab/lab.sh deps
cargo build --release --locked --quiet
bin=$PWD/target/release/clockprov
lab=tests/lab/lab.sh

dir=$(mktemp -d /tmp/clockprov-story.XXXXXX)
clone=$dir/clone
cleanup() { $lab down "$clone" || true; $lab down "$dir" || true; rm -rf "$dir"; }
trap cleanup EXIT INT TERM

say() { printf '\n\033[1m%s\033[0m\n' "$*" >&2; }
run() {
    printf '\n\033[1m$ %s\033[0m\n' "${*/#$bin/clockprov}" >&2
    set +e
    $lab exec "$dir" "$@"
    status=$?
    set -e
    echo "(exit $status)" >&2
}
# ceph_until DIR PATTERN SECONDS: poll `ceph health detail` until it matches; print it.
ceph_until() {
    local deadline=$((SECONDS + $3)) out
    while :; do
        out=$($lab ceph "$1" health detail 2>&1 || true)
        # shellcheck disable=SC2053 # $2 is a glob pattern
        if [[ $out == $2 ]]; then
            printf '%s\n' "$out"
            return 0
        fi
        ((SECONDS < deadline)) || { printf '%s\n(not "%s" after %s s)\n' "$out" "$2" "$3"; return 1; }
        sleep 5
    done
}

started=$SECONDS
$lab up "$dir" --ceph
echo "lab ready (Ceph HEALTH_OK) in $((SECONDS - started)) s" >&2
inv=$dir/inventory.yaml

say "# z-b-data-2's clock steps 4 s ahead (as the seed's VMs drifted); Ceph notices:"
$lab skew "$dir" z-b-data-2 4 >/dev/null
t=$SECONDS
printf '$ ceph health detail\n' >&2
warned=0
ceph_until "$dir" '*MON_CLOCK_SKEW*clock skew detected on mon.z-b-data-2*' 120 || warned=1
echo "(Ceph warned $((SECONDS - t)) s after the step)" >&2

run "$bin" check -i "$inv"
first=$status
run "$bin" plan -i "$inv"
run "$bin" apply -i "$inv" --yes --wait-sync 240s
applied=$status
t=$SECONDS
run "$bin" check -i "$inv"
last=$status
for vm in z-b-data-1 z-b-data-2 z-b-data-3; do
    printf '%s: ' "$vm"
    $lab ssh "$dir" "$vm" timedatectl show-timesync --all | grep '^ServerName='
done
printf '\n$ ceph health detail\n' >&2
healthy=0
ceph_until "$dir" 'HEALTH_OK*' 150 || healthy=1
echo "(Ceph HEALTH_OK $((SECONDS - t)) s after the apply)" >&2
$lab down "$dir" >/dev/null 2>&1

# The template the VMs were cloned from: a qcow2 copy of the lab's Ubuntu 20.04 image.
say "# The template z-ubuntu20 (a copy of the lab's Ubuntu 20.04 image): bake it, boot a clone"
qemu-img convert -O qcow2 "$($lab image focal)" "$dir/z-ubuntu20.qcow2"
{ cat "$inv"; printf 'images:\n  z-ubuntu20:\n    path: %s\n' "$dir/z-ubuntu20.qcow2"; } >"$dir/with-images.yaml"
export LIBGUESTFS_BACKEND=direct LIBGUESTFS_BACKEND_SETTINGS=force_tcg # KVM hangs guests here
printf '\n\033[1m$ clockprov bake -i %s --yes --reset-machine-id\033[0m\n' "$dir/with-images.yaml" >&2
set +e
"$bin" bake -i "$dir/with-images.yaml" --yes --reset-machine-id
baked=$?
set -e
# A clone of the baked template as z-b-data-3, its clock 7 s off, next to zcloud: only zcloud is
# applied; the clone follows it from its first boot.
mkdir -p "$clone"
$lab up "$clone" --only zcloud,z-b-data-3 --skews "0 0 7" --image "z-b-data-3=$dir/z-ubuntu20.qcow2"
clone_inv=$clone/inventory.yaml
$lab exec "$clone" "$bin" apply -i "$clone_inv" --yes --limit zcloud >/dev/null
t=$SECONDS
cloned=1
while ((SECONDS - t < 240)); do
    if $lab exec "$clone" "$bin" check -i "$clone_inv" >/dev/null 2>&1; then
        cloned=0
        break
    fi
    sleep 5
done
printf '\n\033[1m$ clockprov check -i %s   # the clone, %s s after zcloud was applied\033[0m\n' "$clone_inv" "$((SECONDS - t))" >&2
$lab exec "$clone" "$bin" check -i "$clone_inv" || true
printf 'z-b-data-3 (clone): ' >&2
$lab ssh "$clone" z-b-data-3 timedatectl show-timesync --all | grep '^ServerName='

echo "story: Ceph warned ($warned = yes), check exit $first (2 = skew found), apply exit $applied, check exit $last (0 = healthy), Ceph HEALTH_OK ($healthy = yes), bake exit $baked, clone synchronized ($cloned = yes), $((SECONDS - started)) s in all" >&2
[ "$warned" -eq 0 ] && [ "$first" -eq 2 ] && [ "$applied" -eq 0 ] && [ "$last" -eq 0 ] &&
    [ "$healthy" -eq 0 ] && [ "$baked" -eq 0 ] && [ "$cloned" -eq 0 ]
