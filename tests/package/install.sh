#!/usr/bin/env bash
# The release artefacts, installed as users would (run by .ci/run after the tests, as root):
#   - the .deb, installed with dpkg into a fresh Debian 12 root (chroot): `clockprov --version`,
#     its man page and completions where man, bash, zsh and fish look for them;
#   - the static binary inside an Ubuntu 20.04 root (chroot): `--version`, and a render.
# The roots are bootstrapped once with mmdebstrap and cached as tarballs under
# /var/tmp/clockprov-package-cache (like the VM lab's); each run unpacks fresh copies and removes
# them. Usage: tests/package/install.sh [STATIC DEB] (default: build them with scripts/package.sh);
# `--roots` only bootstraps the cached roots.
set -euo pipefail
cd "$(dirname "$0")/../.."
CACHE=${CLOCKPROV_PACKAGE_CACHE:-/var/tmp/clockprov-package-cache}
log() { printf 'package test: %s\n' "$*" >&2; }
die() { log "error: $*"; exit 1; }
((EUID == 0)) || die "must run as root (mmdebstrap, chroot)"

# This machine's Debian mirror, Ubuntu's archive and its pinned keyring (shared with the lab).
# shellcheck source=SCRIPTDIR/../lib/ubuntu-root.sh
. tests/lib/ubuntu-root.sh

work=$(mktemp -d /var/tmp/clockprov-package-test.XXXXXX)
trap 'rm -rf "$work"' EXIT
# apt checks signatures as _apt, which must read Ubuntu's keyring in here (mktemp made it 0700).
chmod 755 "$work"
mkdir -p "$CACHE"

# root_tar NAME: the cached minbase root NAME.tar, bootstrapped when missing.
root_tar() {
    local name=$1 tar=$CACHE/$1.tar
    if [[ ! -f $tar ]]; then
        log "bootstrapping $name (once; cached in $tar)"
        local args=(--mode=root --variant=minbase --format=tar
            --dpkgopt='path-exclude=/usr/share/doc/*' --dpkgopt='path-exclude=/usr/share/locale/*')
        case $name in
        debian-12)
            timeout 600 mmdebstrap "${args[@]}" --include=man-db bookworm "$tar.part" \
                "deb $(debian_mirror) bookworm main" </dev/null >"$work/$name.log" 2>&1 ||
                { cat "$work/$name.log" >&2; die "mmdebstrap $name failed"; }
            ;;
        ubuntu-20.04)
            ubuntu_keyring "$work"
            # focal's dash links its manual page into man1 when it diverts /bin/sh.
            # shellcheck disable=SC2016 # mmdebstrap's hook: "$1" is the root, when it runs
            timeout 600 mmdebstrap "${args[@]}" --dpkgopt='path-exclude=/usr/share/man/*' \
                --setup-hook='mkdir -p "$1/usr/share/man/man1"' \
                --keyring="$work/ubuntu-archive-keyring.gpg" \
                focal "$tar.part" "deb $(ubuntu_mirror) focal main" </dev/null >"$work/$name.log" 2>&1 ||
                { cat "$work/$name.log" >&2; die "mmdebstrap $name failed"; }
            ;;
        esac
        mv "$tar.part" "$tar"
    fi
    printf '%s' "$tar"
}

# unpack NAME: a fresh copy of the root, printed.
unpack() {
    local tar root=$work/$1
    tar=$(root_tar "$1")
    mkdir -p "$root"
    tar -C "$root" -xf "$tar"
    printf '%s' "$root"
}

expect() { # expect WHAT EXPECTED ACTUAL
    [[ $3 == *"$2"* ]] || die "$1: expected \"$2\", got: $3"
}

if [[ ${1:-} == --roots ]]; then # only bootstrap (and cache) the roots
    root_tar debian-12 >/dev/null
    root_tar ubuntu-20.04 >/dev/null
    exit 0
elif (($# == 2)); then
    static=$1 deb=$2
else
    mapfile -t built < <(scripts/package.sh)
    static=${built[0]} deb=${built[1]}
fi
[[ -f $static && -f $deb ]] || die "missing artefacts: $static $deb"

version=$(sed -n 's/^version = "\(.*\)"$/\1/p' Cargo.toml | head -n1)

# The .deb on Debian 12.
root=$(unpack debian-12)
cp "$deb" "$root/tmp/clockprov.deb"
chroot "$root" dpkg -i /tmp/clockprov.deb >"$work/dpkg.log" 2>&1 || { cat "$work/dpkg.log" >&2; die "dpkg -i failed"; }
expect "deb: clockprov --version" "clockprov $version" "$(chroot "$root" clockprov --version)"
for f in usr/share/man/man1/clockprov.1.gz usr/share/bash-completion/completions/clockprov \
    usr/share/zsh/vendor-completions/_clockprov usr/share/fish/vendor_completions.d/clockprov.fish; do
    [[ -s $root/$f ]] || die "deb: /$f is not installed"
done
expect "deb: man -w clockprov" "/usr/share/man/man1/clockprov.1.gz" "$(chroot "$root" man -w clockprov)"
expect "deb: the man page" "CLOCKPROV PLAN" "$(chroot "$root" env MANWIDTH=100 man clockprov 2>/dev/null)"
expect "deb: bash completion" "complete -F _clockprov" "$(cat "$root/usr/share/bash-completion/completions/clockprov")"
chroot "$root" dpkg -r clockprov >/dev/null
[[ ! -e $root/usr/bin/clockprov ]] || die "deb: dpkg -r left /usr/bin/clockprov"
log "deb: installed on Debian 12, --version, man page and completions in place, removed"

# The static binary on Ubuntu 20.04 (glibc 2.31, older than the build machine's).
root=$(unpack ubuntu-20.04)
install -m 755 "$static" "$root/usr/local/bin/clockprov"
expect "static: clockprov --version" "clockprov $version" "$(chroot "$root" clockprov --version)"
cat >"$root/tmp/inventory.yaml" <<'YAML'
ntp_servers:
  zcloud:
    address: 192.168.6.200
    local_stratum: 10
    allow: [192.168.6.0/24]
clients:
  data-1: { address: 192.168.6.204 }
YAML
expect "static: render" "NTP=192.168.6.200" "$(chroot "$root" clockprov render -i /tmp/inventory.yaml data-1 --os ubuntu:20.04)"
log "static: runs on Ubuntu 20.04 (--version, render)"
