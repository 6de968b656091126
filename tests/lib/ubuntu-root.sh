# shellcheck shell=bash
# Sourced by tests/lab/lab.sh and tests/package/install.sh, which bootstrap Ubuntu roots with
# mmdebstrap: this machine's Debian mirror, Ubuntu's archive on the same host (/ubuntu), and
# Ubuntu's archive keyring from that archive's own ubuntu-keyring package, pinned by its SHA-256.
# The caller defines `die MESSAGE`. The lines below the marker count in the lab's roots cache key
# (lab.sh roots_hash) as if written in its "distro bootstrap" section, where they were first:
# changing them rebuilds the lab's roots.
# >>> ubuntu root
UBUNTU_KEYRING_DEB=pool/main/u/ubuntu-keyring/ubuntu-keyring_2023.11.28.1build1_all.deb
UBUNTU_KEYRING_SHA256=c377ccf26964f4c206c05c0bc7adb708e031beb919bb9a0ff63af983d064cd66
# debian_mirror: the Debian mirror this machine uses (its debian.sources), without the suite.
debian_mirror() {
    local uri=""
    if [[ -f /etc/apt/sources.list.d/debian.sources ]]; then
        uri=$(awk '$1 == "URIs:" && $2 ~ /\/debian\/?$/ { print $2; exit }' /etc/apt/sources.list.d/debian.sources)
    fi
    uri=${uri:-http://deb.debian.org/debian}
    printf '%s' "${uri%/}"
}
ubuntu_mirror() { local d; d=$(debian_mirror); printf '%s/ubuntu' "${d%/debian}"; }

# ubuntu_keyring WORK: WORK/ubuntu-archive-keyring.gpg, from the archive's own keyring package.
ubuntu_keyring() {
    local work=$1 deb=$1/ubuntu-keyring.deb
    curl -fsS --retry 3 -o "$deb" "$(ubuntu_mirror)/$UBUNTU_KEYRING_DEB"
    printf '%s  %s\n' "$UBUNTU_KEYRING_SHA256" "$deb" | sha256sum -c --quiet - ||
        die "ubuntu-keyring: $UBUNTU_KEYRING_DEB does not have the pinned SHA-256"
    mkdir -p "$work/ubuntu-keyring"
    dpkg-deb -x "$deb" "$work/ubuntu-keyring"
    cp "$work/ubuntu-keyring/usr/share/keyrings/ubuntu-archive-keyring.gpg" "$work/ubuntu-archive-keyring.gpg"
}
