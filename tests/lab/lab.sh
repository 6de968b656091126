#!/usr/bin/env bash
# lab.sh -- a VM lab of real Debian and Ubuntu machines for clockprov: the seed's cluster.
#
#   zcloud       192.168.6.200  Debian 12, chrony (stock Debian config: no allow line)
#   z-b-data-1   192.168.6.204  Debian 12, systemd-timesyncd (stock config), clock +2 s
#   z-b-data-2   192.168.6.205  Debian 12, systemd-timesyncd,                clock -5 s
#   z-b-data-3   192.168.6.206  Debian 12, systemd-timesyncd,                clock +11 s
#
# and, booted only when named (--only), clients of the other distributions, each with its
# default daemon: timesyncd, but chrony on Ubuntu 26.04 (as it installs):
#   ubuntu20 192.168.6.220 (20.04 focal), ubuntu22 .222 (22.04 jammy), ubuntu24 .224 (24.04
#   noble), ubuntu26 .226 (26.04 resolute, chrony), debian13 .213 (13 trixie).
# No VM reaches a package mirror (and none may).  The jammy image (ubuntu22) carries an offline apt
# repository instead, so that clockprov's package swap (timesyncd -> chrony) runs with the VM's
# real apt, dpkg and systemd, and the resolute image (ubuntu26) one with chrony's .deb, installed
# again by clockprov after a purge: /var/lib/clockprov-lab/repo holds chrony and what it needs that
# the image lacks (jammy: tzdata), downloaded at build time from the mirror the roots came from, with a
# Packages index; /etc/apt/sources.list names only `deb [trusted=yes] file:/var/lib/clockprov-lab/repo ./`
# and apt's lists hold only that repository, so `apt-get install` works at once and `apt-get
# update` reads the disk, never the network.  apt itself is installed too (Ubuntu's minbase has
# none; every real Ubuntu does).  Those images are cached apart (offline-HASH: see
# add_offline_repo), so changing their repository rebuilds only them, from the cached roots.
# `up --ceph`: z-b-data-1..3 run Ubuntu 20.04 with real Ceph monitors instead (the seed's stack).
#
# The VMs run under qemu (TCG: KVM hangs here) on a bridge inside a network
# namespace that `up` creates; the controller side is 192.168.6.1 on that
# bridge.  Those addresses exist only inside the namespace: run everything
# that talks to the VMs with `lab.sh exec DIR ...` (ip netns exec).
#
# Usage:
#   lab.sh deps                      apt-get install what the lab needs (idempotent)
#   lab.sh build                     build or refresh the cached images (Debian 12, then
#                                    the other distributions')
#   lab.sh up DIR [--skews "2 -5 11"] [--only zcloud,z-b-data-1] [--no-trim]
#                [--image VM=DISK]   boot the VMs (VM from DISK, raw or qcow2, instead
#                                    of its role's image: a baked golden image); write DIR/{netns,id_ed25519,
#                                    known_hosts,inventory.yaml,ssh_config,
#                                    skews.tsv,VM.pid,VM.console.log}
#                [--os VM=IMAGE]     VM boots a distribution image (focal, focal-ceph, jammy,
#                                    noble, resolute, trixie) instead of its own
#                [--skew VM=SECONDS] VM's clock skew (any VM; --skews: z-b-data-1..3)
#   lab.sh up DIR --ceph [...]       zcloud and z-b-data-1..3 on Ubuntu 20.04 (focal-ceph),
#                                    clocks in step (--skews "0 0 0"), three Ceph monitors
#                                    bootstrapped by hand, waited for until HEALTH_OK;
#                                    writes DIR/ceph-fsid
#   lab.sh ceph DIR ARGS...          run `ceph ARGS` on z-b-data-1 (e.g. health detail)
#   lab.sh skew DIR VM SECONDS       step VM's clock to SECONDS off this machine's (2 ms)
#   lab.sh up DIR --bastion [...]    the seed's real topology (issue 5): zcloud gets
#                                    a second NIC 10.0.6.200, the controller its own
#                                    netns (10.0.6.1, DIR/netns-controller) with no
#                                    route to the LAN; clients only through zcloud.
#                                    Also writes DIR/{inventory-bastion.yaml (huatai,
#                                    become: sudo, jump: zcloud),inventory-bastion-
#                                    root.yaml,ssh_config-bastion (ProxyJump),
#                                    inventory-bastion-sshconfig.yaml,become_password}
#   lab.sh image ROLE                print the cached image of ROLE (client|server, or a
#                                    distribution image: focal, ...), building it first
#   lab.sh rootfs ROLE DEST          extract a root tree (etc, usr/lib/systemd,
#                                    var/lib, os-release, the merged-/usr links)
#                                    from ROLE's (client|server) cached image
#   lab.sh down DIR                  stop the VMs recorded in DIR (by PID), delete
#                                    the netns and the run disks; keeps the logs
#   lab.sh exec DIR CMD...           run CMD inside the lab's network namespace (a
#                                    bastion lab: inside the controller's)
#   lab.sh sudo DIR MODE [VM...]     huatai's sudo on the VMs: password (as built),
#                                    nopasswd or denied (nosudo is never allowed)
#   lab.sh bastion-check DIR         prove the bastion topology with OpenSSH
#   lab.sh ssh DIR VM [CMD...]       ssh to VM (by name) from inside the namespace
#   lab.sh offset DIR VM...          print "VM offset_s uncertainty_s" (VM clock
#                                    minus this machine's), measured over ssh
#   lab.sh fixtures DIR OUTDIR       configure the lab by hand (as in the seed),
#                                    capture daemon outputs into OUTDIR
#
# --skews gives the clients' clock skews in seconds, in order (z-b-data-1..3);
# zcloud starts unskewed.  --only boots a subset (zcloud is always in the
# inventory: the clients' NTP server).  A VM's clock starts skewed from its
# boot on (qemu -rtc base=), but the RTC counts whole seconds, so the offset
# at boot is only within about 1 s of the requested one; `up` then steps each
# clock (clock_settime over ssh) to the requested offset within about 2 ms,
# unless --no-trim.  DIR/skews.tsv has both.  A VM whose kernel panics at boot
# is booted once more.
#
# Environment:
#   CLOCKPROV_LAB_CACHE    image cache (default /var/tmp/clockprov-lab-cache);
#                          keyed on a hash of this script's recipe section and
#                          files/, rebuilt only when those change (images-HASH;
#                          the other distributions' roots-HASH, distro-HASH, and
#                          offline-HASH for those with an offline repository)
#   CLOCKPROV_LAB_TIMEOUT  seconds `up` waits for every VM to answer ssh (300;
#                          4 VMs take 30-50 s on a quiet 2-core machine, up to
#                          about 280 s on one saturated by other work)
#   CLOCKPROV_LAB_MEM      MiB of memory per VM (512)
#   CLOCKPROV_LAB_ACCEL    qemu -accel value (tcg: on this project's machines
#                          kvm hangs the guest)
#
# stdout carries data only (offset, and whatever CMD prints); logs go to stderr.
set -euo pipefail
umask 022
shopt -s nullglob

PROG=${0##*/}
case ${BASH_SOURCE[0]} in */*) HERE=${BASH_SOURCE[0]%/*} ;; *) HERE=. ;; esac
HERE=$(cd "$HERE" && pwd -P)
SELF=$HERE/${BASH_SOURCE[0]##*/}
FILES=$HERE/files
# This machine's Debian mirror and Ubuntu's archive with its pinned keyring, shared with
# tests/package/install.sh (it counts in the roots' cache key: roots_hash).
UBUNTU_ROOT=$HERE/../lib/ubuntu-root.sh
# shellcheck source=SCRIPTDIR/../lib/ubuntu-root.sh
. "$UBUNTU_ROOT"
CACHE=${CLOCKPROV_LAB_CACHE:-/var/tmp/clockprov-lab-cache}
TIMEOUT=${CLOCKPROV_LAB_TIMEOUT:-300}
MEM=${CLOCKPROV_LAB_MEM:-512}
ACCEL=${CLOCKPROV_LAB_ACCEL:-tcg}
QEMU=qemu-system-x86_64

# ------------------------------------------------------------------ logging ---

log() {
    local t=$EPOCHREALTIME
    printf '%(%H:%M:%S)T.%s %s: %s\n' "${t%.*}" "${t:${#t}-6:3}" "$PROG" "$*" >&2
}
die() { log "error: $*"; exit 1; }
usage() {
    sed -n 's/^# \{0,1\}//; /^Usage:/,/^stdout carries/p' "$SELF" | sed '$d' >&2
    exit 2
}
# Seconds since the epoch, with microseconds, as a decimal string.
now() { printf '%s' "$EPOCHREALTIME"; }
# elapsed START -> "12.3"
elapsed() { awk -v a="$1" -v b="$EPOCHREALTIME" 'BEGIN { printf "%.1f", b - a }'; }

# >>> recipe: everything from here to "<<< recipe" (plus files/) keys the image cache.
SUITE=bookworm
# The lab's machines: name, role, address, MAC (the address's last byte in hex).
VMS=(zcloud z-b-data-1 z-b-data-2 z-b-data-3)
declare -A ROLE=([zcloud]=server [z-b-data-1]=client [z-b-data-2]=client [z-b-data-3]=client)
declare -A ADDR=([zcloud]=192.168.6.200 [z-b-data-1]=192.168.6.204 [z-b-data-2]=192.168.6.205 [z-b-data-3]=192.168.6.206)
declare -A MAC=([zcloud]=52:54:00:06:00:c8 [z-b-data-1]=52:54:00:06:00:cc [z-b-data-2]=52:54:00:06:00:cd [z-b-data-3]=52:54:00:06:00:ce)
CONTROLLER=192.168.6.1
PREFIX=24
BASE_PACKAGES=systemd-sysv,dbus,openssh-server,iproute2,udev,kmod,procps,sudo
declare -A DAEMON=([server]=chrony [client]=systemd-timesyncd)
IMAGE_SIZE=2G
# Units a lab VM does not need: they only slow the boot down or touch the disk.
MASK=(apt-daily.timer apt-daily-upgrade.timer dpkg-db-backup.timer e2scrub_all.timer
    e2scrub_reap.service fstrim.timer systemd-networkd-wait-online.service
    getty@tty1.service systemd-pstore.service systemd-logind.service
    dev-hugepages.mount dev-mqueue.mount sys-kernel-debug.mount sys-kernel-tracing.mount
    sys-fs-fuse-connections.mount sys-kernel-config.mount kmod-static-nodes.service
    modprobe@drm.service modprobe@dm_mod.service modprobe@fuse.service modprobe@loop.service
    modprobe@configfs.service modprobe@efi_pstore.service systemd-network-generator.service)
# systemd generators a lab VM does not need (each costs an exec at every boot).
MASK_GENERATORS=(systemd-cryptsetup-generator systemd-debug-generator systemd-gpt-auto-generator
    systemd-hibernate-resume-generator systemd-integritysetup-generator
    systemd-rc-local-generator systemd-run-generator systemd-system-update-generator
    systemd-sysv-generator systemd-veritysetup-generator)
# What the initrd loads (with their dependencies and soft dependencies).
INITRD_MODULES=(virtio_pci virtio_blk virtio_net virtio_rng ext4)
# Kernel module trees a virtio VM never loads (the rest of /lib/modules is copied).
MODULE_EXCLUDES=(kernel/sound kernel/drivers/gpu kernel/drivers/media kernel/drivers/infiniband
    kernel/drivers/net/wireless kernel/drivers/net/ethernet kernel/drivers/usb kernel/drivers/iio
    kernel/drivers/staging kernel/drivers/comedi kernel/drivers/isdn kernel/drivers/bluetooth
    kernel/drivers/mtd kernel/drivers/hwmon kernel/drivers/video kernel/drivers/target
    kernel/drivers/mmc kernel/drivers/scsi kernel/drivers/md kernel/drivers/platform
    kernel/drivers/net/can kernel/net/wireless kernel/net/mac80211 kernel/net/bluetooth)

# mmdebstrap's package sources: this machine's own Debian sources when it has them.
apt_sources() {
    if [[ -f /etc/apt/sources.list.d/debian.sources ]]; then
        printf '%s' /etc/apt/sources.list.d/debian.sources
    else
        printf '%s' "deb http://deb.debian.org/debian $SUITE main"
    fi
}

# bootstrap ROOT LOG PACKAGES [mmdebstrap options...]
bootstrap() {
    local root=$1 logfile=$2 packages=$3
    shift 3
    mmdebstrap --mode=root --variant=minbase --include="$packages" \
        --dpkgopt='path-exclude=/usr/share/doc/*' --dpkgopt='path-exclude=/usr/share/man/*' \
        --dpkgopt='path-exclude=/usr/share/locale/*' --dpkgopt='path-exclude=/usr/share/info/*' \
        "$@" "$SUITE" "$root" "$(apt_sources)" </dev/null >"$logfile" 2>&1
}

# build_kernel TREE LOG: Debian's kernel (its own initrd is not made: see make_initrd).
build_kernel() {
    bootstrap "$1" "$2" linux-image-amd64,busybox-static,cpio \
        --dpkgopt='path-exclude=/etc/kernel/postinst.d/initramfs-tools'
}

# make_initrd KERNEL_TREE OUT: a small initrd: static busybox, files/initrd/init,
# and the modules that find and mount a virtio ext4 root disk, in load order.
make_initrd() {
    local ktree=$1 out=$2 kver ird line path ko
    kver=$(kernel_version "$ktree")
    ird=$ktree/tmp/initrd
    rm -rf "$ird"
    mkdir -p "$ird"/{bin,dev,proc,sys,root,lib/modules}
    cp "$ktree/bin/busybox" "$ird/bin/busybox"
    install -m 755 "$FILES/initrd/init" "$ird/init"
    : >"$ird/modules"
    while read -r line; do
        [[ $line == insmod\ * ]] || continue
        path=${line#insmod }
        path=${path%% *}
        ko=${path##*/}
        grep -qxF "$ko" "$ird/modules" && continue
        cp "$ktree$path" "$ird/lib/modules/$ko"
        printf '%s\n' "$ko" >>"$ird/modules"
    done < <(chroot "$ktree" modprobe -S "$kver" --show-depends -a "${INITRD_MODULES[@]}")
    # Uncompressed: unpacking is the slow part under TCG, not reading.
    chroot "$ktree" sh -c 'cd /tmp/initrd && find . | LC_ALL=C sort | cpio --quiet -o -H newc -R 0:0' >"$out"
    rm -rf "$ird"
}

# customize ROOT KERNEL_TREE PUBKEY: make a bootstrapped tree a lab image.
customize() {
    local root=$1 ktree=$2 pubkey=$3 vm kver
    # Configuration shared by both images.
    tar -C "$FILES/common" -c . | tar -C "$root" -x --no-same-owner --no-overwrite-dir
    printf 'localhost\n' >"$root/etc/hostname" # the real name: systemd.hostname=
    : >"$root/etc/resolv.conf"                   # no DNS in the lab
    {
        printf '127.0.0.1\tlocalhost\n::1\t\tlocalhost ip6-localhost ip6-loopback\n'
        printf '%s\tcontroller\n' "$CONTROLLER"
        for vm in "${VMS[@]}"; do printf '%s\t%s\n' "${ADDR[$vm]}" "$vm"; done
    } >"$root/etc/hosts"
    for vm in "${VMS[@]}"; do
        printf '[Match]\nMACAddress=%s\n\n[Link]\nRequiredForOnline=no\n\n[Network]\nAddress=%s/%s\nLinkLocalAddressing=no\nIPv6AcceptRA=no\n' \
            "${MAC[$vm]}" "${ADDR[$vm]}" "$PREFIX" >"$root/etc/systemd/network/10-lab-$vm.network"
    done
    install -d -m 700 "$root/root/.ssh"
    install -m 600 "$pubkey" "$root/root/.ssh/authorized_keys"
    customize_logins "$root" "$pubkey"
    # A machine-id, so that no boot is a first boot (no preset-all); each VM
    # gets its own from the kernel command line (systemd.machine_id=).
    printf '%s\n' 6c61626d616368696e65000000000000 >"$root/etc/machine-id"
    chroot "$root" systemctl -q enable systemd-networkd.service
    chroot "$root" systemctl -q mask "${MASK[@]}"
    mkdir -p "$root/etc/systemd/system-generators"
    for vm in "${MASK_GENERATORS[@]}"; do
        ln -sfn /dev/null "$root/etc/systemd/system-generators/$vm"
    done
    # State that would differ between clones or move the clock at boot.
    rm -f "$root"/etc/ssh/ssh_host_* "$root/var/lib/systemd/random-seed"
    rm -rf "$root/var/lib/systemd/timesync" "$root/var/lib/chrony"/*.drift
    rm -rf "$root"/var/log/journal/* "$root"/var/cache/apt/*.bin "$root"/var/lib/apt/lists/*
    # The kernel's modules, less the trees a virtio VM never loads.
    kver=$(kernel_version "$ktree")
    mkdir -p "$root/usr/lib/modules"
    tar -C "$ktree/usr/lib/modules" -c "${MODULE_EXCLUDES[@]/#/--exclude=$kver/}" "$kver" |
        tar -C "$root/usr/lib/modules" -x
    chroot "$root" depmod -a "$kver"
}

kernel_version() {
    local d=("$1"/usr/lib/modules/*)
    ((${#d[@]} == 1)) || die "expected one kernel in $1, found ${#d[@]}"
    printf '%s' "${d[0]##*/}"
}

# make_disk ROOT IMG: a raw ext4 disk holding ROOT, made without mounting.
make_disk() {
    rm -f "$2"
    truncate -s "$IMAGE_SIZE" "$2"
    mkfs.ext4 -q -F -L lab-root -d "$1" "$2"
}
# --- bastion topology and login users (issue 5; `up --bastion`) ---
# zcloud's second NIC: the controller's only way in, in bastion mode.
WAN_ADDR=10.0.6.200
WAN_MAC=52:54:00:0a:06:c8
WAN_CONTROLLER=10.0.6.1
WAN_PREFIX=24
# Login users in both images, with the lab key: LOGIN_USER may sudo with its password (asked
# every time: timestamp_timeout=0); NOSUDO_USER is in no sudoers rule.  Both have LAB_PASSWORD.
LOGIN_USER=huatai
NOSUDO_USER=nosudo
LAB_PASSWORD=clockprov-lab-sudo
# A drop-in `lab.sh sudo DIR MODE` writes (read after LOGIN_USER's own rule, so it wins).
SUDO_MODE_DROPIN=/etc/sudoers.d/zz-lab-mode

# customize_logins ROOT PUBKEY: the login users, their sudo rule, zcloud's second NIC's network.
customize_logins() {
    local root=$1 pubkey=$2 user
    for user in "$LOGIN_USER" "$NOSUDO_USER"; do
        chroot "$root" useradd --create-home --user-group --shell /bin/bash "$user"
        printf '%s:%s\n' "$user" "$LAB_PASSWORD" | chroot "$root" chpasswd
        install -d -m 700 -o "$(stat -c %u "$root/home/$user")" -g "$(stat -c %g "$root/home/$user")" "$root/home/$user/.ssh"
        install -m 600 -o "$(stat -c %u "$root/home/$user")" -g "$(stat -c %g "$root/home/$user")" "$pubkey" "$root/home/$user/.ssh/authorized_keys"
    done
    printf '# clockprov lab: %s may run anything as root, with its password, asked every time.\nDefaults:%s timestamp_timeout=0\n%s ALL=(ALL:ALL) ALL\n' \
        "$LOGIN_USER" "$LOGIN_USER" "$LOGIN_USER" >"$root/etc/sudoers.d/lab-$LOGIN_USER"
    chmod 440 "$root/etc/sudoers.d/lab-$LOGIN_USER"
    chroot "$root" visudo -cq
    printf '[Match]\nMACAddress=%s\n\n[Link]\nRequiredForOnline=no\n\n[Network]\nAddress=%s/%s\nLinkLocalAddressing=no\nIPv6AcceptRA=no\n' \
        "$WAN_MAC" "$WAN_ADDR" "$WAN_PREFIX" >"$root/etc/systemd/network/10-lab-zcloud-wan.network"
}
# <<< recipe

# >>> distro bootstrap: from here to "<<< distro bootstrap" keys the bootstrapped roots of the
# other distributions (roots-HASH/NAME.tar in the cache: customizing them again is quick).
# Each is a client with its distribution's default daemon: systemd-timesyncd, but chrony on Ubuntu
# 25.10 and later (with the package's own configuration: the NTS pools in sources.d); Ubuntu
# comes from the same mirror host as Debian (/ubuntu),
# checked with the keyring from the ubuntu-keyring package in that archive's pool (pinned by its
# SHA-256).
DISTROS=(focal focal-ceph jammy noble resolute trixie)
declare -A DISTRO_SUITE=([focal]=focal [focal-ceph]=focal [jammy]=jammy [noble]=noble [resolute]=resolute [trixie]=trixie)
declare -A DISTRO_EXTRA=([focal-ceph]='ceph-mon,ceph-common')
declare -A DISTRO_DAEMON=([resolute]=chrony)
# @ubuntu-root: tests/lib/ubuntu-root.sh (sourced at the top) counts here in the cache key.

# bootstrap_distro NAME OUT LOG WORK: the distribution's minbase with the lab's packages (OUT:
# a directory, or a .tar).
bootstrap_distro() {
    local name=$1 root=$2 logfile=$3 work=$4 suite=${DISTRO_SUITE[$1]} packages
    packages=$BASE_PACKAGES,${DISTRO_DAEMON[$name]:-${DAEMON[client]}}${DISTRO_EXTRA[$name]:+,${DISTRO_EXTRA[$name]}}
    local args=(--mode=root --variant=minbase --include="$packages"
        --dpkgopt='path-exclude=/usr/share/doc/*' --dpkgopt='path-exclude=/usr/share/man/*'
        --dpkgopt='path-exclude=/usr/share/locale/*' --dpkgopt='path-exclude=/usr/share/info/*'
        # focal's dash links its manual page into man1 when it diverts /bin/sh: the directory
        # must exist even though the manual pages are left out.
        # shellcheck disable=SC2016 # mmdebstrap's hook: "$1" is the root, when it runs
        --setup-hook='mkdir -p "$1/usr/share/man/man1"')
    if [[ $suite == trixie ]]; then
        mmdebstrap "${args[@]}" "$suite" "$root" "deb $(debian_mirror) $suite main" </dev/null >"$logfile" 2>&1
    else
        local m
        m=$(ubuntu_mirror)
        mmdebstrap "${args[@]}" --keyring="$work/ubuntu-archive-keyring.gpg" --components=main,universe \
            "$suite" "$root" "deb $m $suite main universe" "deb $m $suite-updates main universe" \
            </dev/null >"$logfile" 2>&1
    fi
}

# <<< distro bootstrap

# >>> distro recipe: from here to "<<< distro recipe" (with the Debian 12 recipe and the distro
# bootstrap) keys the images of the other distributions (distro-HASH in the cache), made from the
# bootstrapped roots as the Debian 12 images are (customize) and booted with their kernel and
# initrd; their kernel modules are copied from the Debian 12 client image.
# Units a distribution VM does not need beyond MASK (Ceph's crash reporter polls in python).
DISTRO_MASK=(ceph-crash.service motd-news.timer update-notifier-download.timer
    update-notifier-motd.timer)

# customize_distro NAME ROOT MODULES_TREE PUBKEY: as the Debian 12 images, for every lab VM.
customize_distro() {
    local name=$1 root=$2 ktree=$3 pubkey=$4
    # Ubuntu's is a link to systemd-resolved's stub file: the lab has no DNS (customize).
    rm -f "$root/etc/resolv.conf"
    # A root whose /lib is not /usr/lib (no merged /usr): modules where kmod looks for them.
    if [[ ! -L $root/lib ]]; then
        mkdir -p "$root/usr/lib/modules"
        rmdir "$root/lib/modules" 2>/dev/null || true
        [[ -e $root/lib/modules ]] || ln -s ../usr/lib/modules "$root/lib/modules"
    fi
    # customize writes /etc/hosts and a .network file for each of VMS: here, all of them.
    local VMS=("${ALL_VMS[@]}")
    customize "$root" "$ktree" "$pubkey"
    local unit
    for unit in "${DISTRO_MASK[@]}"; do
        [[ ! -e $root/usr/lib/systemd/system/$unit && ! -e $root/lib/systemd/system/$unit ]] ||
            chroot "$root" systemctl -q mask "$unit"
    done
    # OpenSSH >= 9.8 (Debian 13, Ubuntu 26.04) penalizes a source whose connections end before
    # authenticating (PerSourcePenalties): the lab's boot probes (ssh-keyscan, ssh every second)
    # from the controller's one address got it refused for minutes ("timed out" to clockprov).
    case ${DISTRO_SUITE[$name]} in
        trixie | resolute) printf '# clockprov lab: see lab.sh customize_distro\nPerSourcePenalties no\n' \
            >"$root/etc/ssh/sshd_config.d/lab-penalties.conf" ;;
    esac
    # systemd < 246 ignores systemd.hostname= on the kernel command line: a unit reads it.
    if [[ ${DISTRO_SUITE[$name]} == focal ]]; then
        cat >"$root/etc/systemd/system/lab-hostname.service" <<'UNIT'
# clockprov lab: the host name from systemd.hostname= (systemd 245 ignores it).
[Unit]
DefaultDependencies=no
After=local-fs.target
Before=sysinit.target network-pre.target systemd-networkd.service

[Service]
Type=oneshot
ExecStart=/bin/sh -c 'for a in $$(cat /proc/cmdline); do case "$$a" in systemd.hostname=*) echo "$${a#*=}" >/proc/sys/kernel/hostname;; esac; done'

[Install]
WantedBy=sysinit.target
UNIT
        chroot "$root" systemctl -q enable lab-hostname.service
    fi
}
# The distribution VMs: their addresses are only in the distribution images (/etc/hosts, .network
# files), not in the Debian 12 ones.  Each boots its distribution's image; `up --only` picks them.
EXTRA_VMS=(ubuntu20 ubuntu22 ubuntu24 ubuntu26 debian13)
ALL_VMS=("${VMS[@]}" "${EXTRA_VMS[@]}")
ROLE+=([ubuntu20]=client [ubuntu22]=client [ubuntu24]=client [ubuntu26]=client [debian13]=client)
ADDR+=([ubuntu20]=192.168.6.220 [ubuntu22]=192.168.6.222 [ubuntu24]=192.168.6.224 [ubuntu26]=192.168.6.226 [debian13]=192.168.6.213)
MAC+=([ubuntu20]=52:54:00:06:00:dc [ubuntu22]=52:54:00:06:00:de [ubuntu24]=52:54:00:06:00:e0 [ubuntu26]=52:54:00:06:00:e2 [debian13]=52:54:00:06:00:d5)
declare -A DISTRO_OF=([ubuntu20]=focal [ubuntu22]=jammy [ubuntu24]=noble [ubuntu26]=resolute [debian13]=trixie)
# <<< distro recipe

# >>> offline repo: from here to "<<< offline repo" (with the distro recipe) keys the images
# that carry an offline apt repository (offline-HASH in the cache), so that changing it rebuilds
# only those images, from the cached roots.  A lab VM reaches no package mirror (and must not),
# so a distribution whose test installs a package gets the package, and what it depends on that
# the image lacks, in $OFFLINE_REPO (and apt itself, which Ubuntu's minbase leaves out): the .debs, downloaded at build time from the mirror the
# roots came from (apt resolves them against the root's own dpkg database), with a Packages
# index (dpkg-scanpackages).  The image's sources list names that repository only (trusted=yes:
# it is on the image's own disk) and apt's lists hold it only, so `apt-get install` and
# `apt-get update` in the VM read the disk and never try the network.
# jammy: clockprov's package swap (timesyncd -> chrony, the mixed fleet's ubuntu22). resolute:
# chrony installed again after a purge (the mixed fleet's ubuntu26), whose postinst creates
# Ubuntu's pools file during clockprov's apply; the image has chrony and its dependencies already,
# so only chrony's own .deb is downloaded (--reinstall: apt would download nothing otherwise).
declare -A DISTRO_OFFLINE=([jammy]=chrony [resolute]=chrony)
OFFLINE_REPO=/var/lib/clockprov-lab/repo

# add_offline_repo NAME ROOT WORK: $OFFLINE_REPO in ROOT with ${DISTRO_OFFLINE[NAME]} and the
# packages they need that ROOT lacks; ROOT's apt reads only it.  WORK holds Ubuntu's keyring.
add_offline_repo() {
    local name=$1 root=$2 work=$3 apt_opts
    # The host's apt on ROOT (its sources, its dpkg database, its cache): the download uses this
    # machine's network and resolver, which the root's own files do not describe.
    local keyring=$work/ubuntu-archive-keyring.gpg
    [[ ${DISTRO_SUITE[$name]} != trixie ]] || keyring=/usr/share/keyrings/debian-archive-keyring.gpg
    apt_opts=(-q -o Dir="$root" -o Dir::State::status="$root/var/lib/dpkg/status"
        -o Dir::Etc::Trusted="$keyring" -o Dir::Etc::TrustedParts=/nonexistent
        -o APT::Sandbox::User=root)
    apt-get "${apt_opts[@]}" update >&2
    # apt itself, which every real installation has but a minbase root may lack (Ubuntu's).
    if [[ ! -x $root/usr/bin/apt-get ]]; then
        apt-get "${apt_opts[@]}" install --download-only --yes apt >&2
        mkdir -p "$root/tmp/apt-debs"
        mv "$root"/var/cache/apt/archives/*.deb "$root/tmp/apt-debs/"
        # shellcheck disable=SC2016 # the chroot's shell expands it
        chroot "$root" sh -c 'dpkg -i /tmp/apt-debs/*.deb' >&2
        rm -rf "$root/tmp/apt-debs"
    fi
    # shellcheck disable=SC2086 # DISTRO_OFFLINE holds a list of package names
    apt-get "${apt_opts[@]}" install --download-only --reinstall --yes ${DISTRO_OFFLINE[$name]//,/ } >&2
    mkdir -p "$root$OFFLINE_REPO"
    mv "$root"/var/cache/apt/archives/*.deb "$root$OFFLINE_REPO/"
    (cd "$root$OFFLINE_REPO" && dpkg-scanpackages --multiversion . /dev/null >Packages 2>/dev/null)
    [[ -s $root$OFFLINE_REPO/Packages ]] || die "offline repo of $name: no packages downloaded"
    printf '# clockprov lab (lab.sh add_offline_repo): the VM reaches no mirror; this repository
# on its own disk holds what the lab installs.
deb [trusted=yes] file:%s ./
' \
        "$OFFLINE_REPO" >"$root/etc/apt/sources.list"
    rm -f "$root"/etc/apt/sources.list.d/*
    rm -rf "$root"/var/lib/apt/lists/* "$root"/var/cache/apt/*.bin
    # The lists the VM starts with: the offline repository's only.
    chroot "$root" apt-get -q update >&2
    rm -f "$root"/var/cache/apt/*.bin "$root"/var/cache/apt/archives/partial/*
}
# <<< offline repo

recipe_hash() {
    {
        sed -n '/^# >>> recipe/,/^# <<< recipe/p' "$SELF"
        (cd "$FILES" && find . -type f -print0 | LC_ALL=C sort -z | xargs -0 sha256sum)
        (cd "$FILES" && find . -type f -perm -u+x -print0 | LC_ALL=C sort -z | xargs -0 -r printf 'x %s\n')
    } | sha256sum | cut -c1-16
}
images_dir() { printf '%s/images-%s' "$CACHE" "$(recipe_hash)"; }

# --------------------------------------------------------------------- deps ---

cmd_deps() {
    ((EUID == 0)) || die "must run as root (apt-get, mmdebstrap, ip netns, tap devices)"
    # libguestfs-tools and a kernel under /boot (its appliance boots this machine's kernel):
    # for `clockprov bake` on disk images; systemctl for `systemctl --root` in its tests;
    # libvirt's daemon and virsh for bake's libvirt domains (tests/bake/libvirtd.sh starts a
    # private daemon; the packages start none); curl for Ubuntu's keyring package.
    local packages=(mmdebstrap qemu-system-x86 qemu-utils e2fsprogs iproute2 openssh-client
        util-linux coreutils tar libguestfs-tools linux-image-amd64 systemd
        libvirt-daemon libvirt-clients curl) missing=() p
    for p in "${packages[@]}"; do
        dpkg-query -W -f='${db:Status-Abbrev}' "$p" 2>/dev/null | grep -q '^ii' || missing+=("$p")
    done
    if ((${#missing[@]} == 0)); then
        return 0
    fi
    log "installing ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt-get -o DPkg::Lock::Timeout=300 update -qq
    local args=() version
    for p in "${missing[@]}"; do
        [[ $p == qemu-utils ]] || args+=("$p")
    done
    # qemu-utils must match qemu-system-x86 (a newer backported qemu-utils Breaks
    # Debian 12's qemu-system-common): pin it to qemu-system-x86's version.
    version=$(apt-cache policy qemu-system-x86 | awk '$1 == "Candidate:" { print $2 }')
    [[ -n $version && $version != '(none)' ]] || die "apt has no qemu-system-x86"
    if [[ $(dpkg-query -W -f='${Version}' qemu-utils 2>/dev/null || true) != "$version" ]]; then
        args+=("qemu-utils=$version")
    fi
    apt-get install -y -qq -o Dpkg::Use-Pty=0 -o DPkg::Lock::Timeout=300 --no-install-recommends --allow-downgrades "${args[@]}" >/dev/null
}

# -------------------------------------------------------------------- build ---

cmd_build() {
    cmd_deps
    build_images
    build_distros
}

# build_images: make $(images_dir) unless it is there; serialized by a lock.
build_images() {
    local dest
    dest=$(images_dir)
    [[ -f $dest/ready ]] && return 0
    mkdir -p "$CACHE"
    exec {lock}>"$CACHE/.lock"
    flock "$lock"
    if [[ -f $dest/ready ]]; then
        exec {lock}>&-
        return 0
    fi
    local t0 work t
    t0=$(now)
    log "building images into $dest (recipe changed or cache empty)"
    rm -rf "$CACHE"/build.* # an interrupted build's (the lock is ours)
    work=$(mktemp -d "$CACHE/build.XXXXXX")
    # shellcheck disable=SC2064 # expand now: the trap must remove this build's directory
    trap "rm -rf '$work'" EXIT
    ssh-keygen -q -t ed25519 -N '' -C clockprov-lab -f "$work/lab_ed25519"
    # The three bootstraps are mostly downloads and dpkg: run them side by side.
    local -A pid=()
    t=$(now)
    build_kernel "$work/kernel" "$work/kernel.log" & pid[kernel]=$!
    bootstrap "$work/server" "$work/server.log" "$BASE_PACKAGES,${DAEMON[server]}" & pid[server]=$!
    bootstrap "$work/client" "$work/client.log" "$BASE_PACKAGES,${DAEMON[client]}" & pid[client]=$!
    local part failed=0
    for part in kernel server client; do
        if ! wait "${pid[$part]}"; then
            log "mmdebstrap ($part) failed; its log:"
            tail -n 30 "$work/$part.log" >&2
            failed=1
        fi
    done
    ((failed == 0)) || die "bootstrap failed"
    log "bootstrapped kernel, server and client trees in $(elapsed "$t") s"
    local kver role
    kver=$(kernel_version "$work/kernel")
    cp "$work/kernel/boot/vmlinuz-$kver" "$work/vmlinuz"
    make_initrd "$work/kernel" "$work/initrd.img"
    for role in server client; do
        t=$(now)
        customize "$work/$role" "$work/kernel" "$work/lab_ed25519.pub"
        make_disk "$work/$role" "$work/$role.raw"
        chmod 444 "$work/$role.raw"
        log "$role image: $(du -sh --apparent-size "$work/$role" | cut -f1) of files, $(du -sh "$work/$role.raw" | cut -f1) on disk, in $(elapsed "$t") s"
    done
    {
        printf 'recipe %s\nbuilt %(%Y-%m-%dT%H:%M:%SZ)T\nkernel %s\n' "$(recipe_hash)" -1 "$kver"
        for role in server client; do
            printf '%s image:' "$role"
            # shellcheck disable=SC2016 # dpkg-query's own ${field} syntax
            chroot "$work/$role" dpkg-query -W -f=' ${Package} ${Version}' "${DAEMON[$role]}" systemd openssh-server
            printf '\n'
        done
    } >"$work/versions.txt"
    rm -rf "$work/kernel" "$work/server" "$work/client"
    rm -rf "$dest"
    mv "$work" "$dest"
    trap - EXIT
    touch "$dest/ready"
    # Older recipes' images are no longer wanted.
    local old
    for old in "$CACHE"/images-*; do
        [[ $old == "$dest" ]] || rm -rf "$old"
    done
    exec {lock}>&-
    log "images ready in $(elapsed "$t0") s: $(tr '\n' ' ' <"$dest/versions.txt")"
}


# The shared Ubuntu root helpers count where the section's `# @ubuntu-root:` line stands, as the
# lines they were there (moving them out kept the key, and the cached roots).
roots_hash() {
    local shared
    shared=$(sed '1,/^# >>> ubuntu root/d' "$UBUNTU_ROOT")
    { recipe_hash; sed -n '/^# >>> distro bootstrap/,/^# <<< distro bootstrap/p' "$SELF" |
        SHARED=$shared awk '/^# @ubuntu-root:/ { print ENVIRON["SHARED"]; next } { print }'; } |
        sha256sum | cut -c1-16
}
distro_hash() {
    { roots_hash; sed -n '/^# >>> distro recipe/,/^# <<< distro recipe/p' "$SELF"; } | sha256sum | cut -c1-16
}
distros_dir() { printf '%s/distro-%s' "$CACHE" "$(distro_hash)"; }
offline_hash() {
    { distro_hash; sed -n '/^# >>> offline repo/,/^# <<< offline repo/p' "$SELF"; } | sha256sum | cut -c1-16
}
offline_dir() { printf '%s/offline-%s' "$CACHE" "$(offline_hash)"; }
# distro_image NAME: the cached image of distribution NAME (an offline-repo one where it has one).
distro_image() {
    if [[ -n ${DISTRO_OFFLINE[$1]+x} ]]; then
        printf '%s/%s.raw' "$(offline_dir)" "$1"
    else
        printf '%s/%s.raw' "$(distros_dir)" "$1"
    fi
}
roots_dir() { printf '%s/roots-%s' "$CACHE" "$(roots_hash)"; }

# bootstrap_roots: $(roots_dir)/NAME.tar for every distribution that lacks one (side by side:
# mostly downloads and dpkg).  Called with the cache's lock held.
bootstrap_roots() {
    local roots name t failed=0 work
    roots=$(roots_dir)
    local -A pid=()
    mkdir -p "$roots"
    work=$(mktemp -d "$CACHE/rbuild.XXXXXX")
    chmod 755 "$work" # apt checks signatures as _apt, with the keyring in here
    t=$(now)
    for name in "${DISTROS[@]}"; do
        [[ ! -f $roots/$name.tar ]] || continue
        [[ -f $work/ubuntu-archive-keyring.gpg ]] || ubuntu_keyring "$work"
        bootstrap_distro "$name" "$work/$name.tar" "$work/$name.log" "$work" &
        pid[$name]=$!
    done
    ((${#pid[@]})) || { rm -rf "$work"; return 0; }
    log "bootstrapping ${!pid[*]} into $roots"
    for name in "${!pid[@]}"; do
        if wait "${pid[$name]}"; then
            mv "$work/$name.tar" "$roots/$name.tar"
        else
            log "mmdebstrap ($name) failed; its log:"
            tail -n 30 "$work/$name.log" >&2
            failed=1
        fi
    done
    rm -rf "$work"
    ((failed == 0)) || die "bootstrap failed"
    log "bootstrapped ${!pid[*]} in $(elapsed "$t") s"
    local old
    for old in "$CACHE"/roots-*; do
        [[ $old == "$roots" ]] || rm -rf "$old"
    done
}

# build_distros: the distribution images, and those with an offline repository.
build_distros() {
    build_distro_dir
    build_offline_images
}

# build_offline_images: make $(offline_dir) unless it is there: the images of DISTRO_OFFLINE,
# from their cached roots as build_distro_dir makes them, plus add_offline_repo.  Only older
# offline-* directories are removed (another recipe's distro-* may still be in use).
build_offline_images() {
    local dest images
    dest=$(offline_dir)
    images=$(images_dir)
    [[ -f $dest/ready ]] && return 0
    exec {lock}>"$CACHE/.lock"
    flock "$lock"
    if [[ -f $dest/ready ]]; then
        exec {lock}>&-
        return 0
    fi
    local t0 work t name
    t0=$(now)
    log "building the images with an offline repository (${!DISTRO_OFFLINE[*]}) into $dest"
    rm -rf "$CACHE"/obuild.*
    work=$(mktemp -d "$CACHE/obuild.XXXXXX")
    chmod 755 "$work" # apt checks signatures as _apt, with the keyring in here
    # shellcheck disable=SC2064 # expand now: the trap must remove this build's directory
    trap "rm -rf '$work'" EXIT
    ubuntu_keyring "$work"
    mkdir -p "$work/kmods/usr/lib"
    debugfs -R "rdump /usr/lib/modules $work/kmods/usr/lib" "$images/client.raw" 2>/dev/null
    for name in "${!DISTRO_OFFLINE[@]}"; do
        t=$(now)
        mkdir "$work/$name"
        tar -C "$work/$name" --numeric-owner --xattrs --xattrs-include='*' -xf "$(roots_dir)/$name.tar"
        customize_distro "$name" "$work/$name" "$work/kmods" "$images/lab_ed25519.pub"
        add_offline_repo "$name" "$work/$name" "$work" >"$work/$name.log" 2>&1 ||
            { tail -n 30 "$work/$name.log" >&2; die "offline repository of $name failed"; }
        make_disk "$work/$name" "$work/$name.raw"
        chmod 444 "$work/$name.raw"
        printf '%s image, %s: %s\n' "$name" "$OFFLINE_REPO" "$(cd "$work/$name$OFFLINE_REPO" && echo *.deb)" >>"$work/versions.txt"
        log "$name image with an offline repository in $(elapsed "$t") s"
        rm -rf "${work:?}/$name"
    done
    rm -rf "$work/kmods" "$work/ubuntu-keyring" "$work/ubuntu-keyring.deb" "$work/ubuntu-archive-keyring.gpg"
    rm -rf "$dest"
    mv "$work" "$dest"
    trap - EXIT
    touch "$dest/ready"
    local old
    for old in "$CACHE"/offline-*; do
        [[ $old == "$dest" ]] || rm -rf "$old"
    done
    exec {lock}>&-
    log "offline-repository images ready in $(elapsed "$t0") s:"
    sed 's/^/    /' "$dest/versions.txt" >&2
}

# build_distro_dir: make $(distros_dir) unless it is there (after the Debian 12 images, whose
# kernel, initrd, modules and lab key it uses); serialized by the same lock.
build_distro_dir() {
    local dest images
    build_images
    dest=$(distros_dir)
    images=$(images_dir)
    [[ -f $dest/ready ]] && return 0
    exec {lock}>"$CACHE/.lock"
    flock "$lock"
    if [[ -f $dest/ready ]]; then
        exec {lock}>&-
        return 0
    fi
    local t0 work t name kver
    t0=$(now)
    log "building distribution images (${DISTROS[*]}) into $dest"
    rm -rf "$CACHE"/dbuild.* "$CACHE"/rbuild.*
    bootstrap_roots
    work=$(mktemp -d "$CACHE/dbuild.XXXXXX")
    # shellcheck disable=SC2064 # expand now: the trap must remove this build's directory
    trap "rm -rf '$work'" EXIT
    mkdir -p "$work/kmods/usr/lib"
    debugfs -R "rdump /usr/lib/modules $work/kmods/usr/lib" "$images/client.raw" 2>/dev/null
    kver=$(kernel_version "$work/kmods")
    for name in "${DISTROS[@]}"; do
        t=$(now)
        mkdir "$work/$name"
        tar -C "$work/$name" --numeric-owner --xattrs --xattrs-include='*' -xf "$(roots_dir)/$name.tar"
        customize_distro "$name" "$work/$name" "$work/kmods" "$images/lab_ed25519.pub"
        make_disk "$work/$name" "$work/$name.raw"
        chmod 444 "$work/$name.raw"
        log "$name image: $(du -sh --apparent-size "$work/$name" | cut -f1) of files, $(du -sh "$work/$name.raw" | cut -f1) on disk, in $(elapsed "$t") s"
    done
    {
        printf 'distro recipe %s\nbuilt %(%Y-%m-%dT%H:%M:%SZ)T\nkernel %s (Debian 12)\n' "$(distro_hash)" -1 "$kver"
        for name in "${DISTROS[@]}"; do
            printf '%s image: %s' "$name" "$(sed -n 's/^PRETTY_NAME="\{0,1\}\([^"]*\)"\{0,1\}$/\1/p' "$work/$name/etc/os-release")"
            # shellcheck disable=SC2016 # dpkg-query's own ${field} syntax
            # (Ubuntu 26.04 has chrony instead of systemd-timesyncd: dpkg-query names what it has)
            chroot "$work/$name" dpkg-query -W -f=' ${Package} ${Version}' systemd systemd-timesyncd chrony openssh-server ${DISTRO_EXTRA[$name]:+ceph-mon} 2>/dev/null || true
            printf '\n'
        done
    } >"$work/versions.txt"
    for name in "${DISTROS[@]}"; do rm -rf "${work:?}/$name"; done
    rm -rf "$work/kmods"
    rm -rf "$dest"
    mv "$work" "$dest"
    trap - EXIT
    touch "$dest/ready"
    local old
    for old in "$CACHE"/distro-*; do
        [[ $old == "$dest" ]] || rm -rf "$old"
    done
    exec {lock}>&-
    log "distribution images ready in $(elapsed "$t0") s:"
    sed 's/^/    /' "$dest/versions.txt" >&2
}
# ----------------------------------------------------------------- lab dirs ---

# lab_dir DIR: the absolute path of DIR (which must exist).
lab_dir() {
    [[ -d $1 ]] || die "no such lab directory: $1"
    (cd "$1" && pwd -P)
}

# netns_of DIR: the namespace recorded in DIR, checked to be one of ours.
netns_of() {
    local ns
    [[ -s $1/netns ]] || die "$1/netns is missing: is the lab up?"
    ns=$(<"$1/netns")
    [[ $ns =~ ^cplab-[0-9a-z]+$ ]] || die "$1/netns does not name a lab namespace: $ns"
    printf '%s' "$ns"
}

vm_known() { [[ -n ${ADDR[$1]+x} ]]; }

# ssh_opts DIR [KNOWN_HOSTS]: the options for ssh to a lab VM, one a line.
ssh_opts() {
    local dir=$1 known_hosts=${2:-$1/known_hosts}
    printf '%s\n' -F /dev/null -i "$dir/id_ed25519" -o IdentitiesOnly=yes \
        -o UserKnownHostsFile="$known_hosts" -o GlobalKnownHostsFile=/dev/null \
        -o StrictHostKeyChecking=yes -o BatchMode=yes -o LogLevel=ERROR -o ConnectTimeout=20 \
        -o ServerAliveInterval=5 -o ServerAliveCountMax=6 -l root
}

# vm_ssh DIR NS VM CMD...: ssh from inside the namespace.
vm_ssh() {
    local dir=$1 ns=$2 vm=$3 opts
    shift 3
    mapfile -t opts < <(ssh_opts "$dir")
    ip netns exec "$ns" ssh "${opts[@]}" "${ADDR[$vm]}" -- "$@"
}

# qemu_pid DIR VM: the recorded PID of VM's qemu when that process is still it.
qemu_pid() {
    local dir=$1 vm=$2 pid cmdline
    [[ -s $dir/$vm.pid ]] || return 1
    pid=$(<"$dir/$vm.pid")
    [[ $pid =~ ^[0-9]+$ ]] || return 1
    cmdline=$(tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null) || return 1
    [[ $cmdline == "$QEMU "*"-pidfile $dir/$vm.pid "* ]] || return 1
    printf '%s' "$pid"
}

# ----------------------------------------------------------------------- up ---

cmd_up() {
    (($# >= 1)) || usage
    local dir=$1 skews="2 -5 11" only="" trim=1 bastion=0 ceph=0 kv skews_given=
    local -A disk_of=() os_of=() skew_of=()
    shift
    while (($#)); do
        case $1 in
            --skews) (($# >= 2)) || usage; skews=$2; skews_given=1; shift 2 ;;
            --skews=*) skews=${1#*=}; skews_given=1; shift ;;
            --only) (($# >= 2)) || usage; only=$2; shift 2 ;;
            --only=*) only=${1#*=}; shift ;;
            --no-trim) trim=0; shift ;;
            --bastion) bastion=1; shift ;;
            --ceph) ceph=1; [[ -n $only ]] || only=zcloud,z-b-data-1,z-b-data-2,z-b-data-3; shift ;;
            --os | --skew)
                (($# >= 2)) || usage
                kv=$2
                [[ $kv == *=* ]] || die "$1 wants VM=VALUE, got '$kv'"
                vm_known "${kv%%=*}" || die "$1: no VM named '${kv%%=*}'"
                if [[ $1 == --os ]]; then
                    [[ -n ${DISTRO_SUITE[${kv#*=}]+x} ]] || die "--os: no image '${kv#*=}' (have: ${DISTROS[*]})"
                    os_of[${kv%%=*}]=${kv#*=}
                else
                    [[ ${kv#*=} =~ ^[-+]?[0-9]{1,6}$ ]] || die "--skew: not a whole number of seconds: ${kv#*=}"
                    skew_of[${kv%%=*}]=${kv#*=}
                fi
                shift 2
                ;;
            --image)
                (($# >= 2)) || usage
                kv=$2
                shift 2
                [[ $kv == *=* ]] || die "--image wants VM=DISK, got '$kv'"
                vm_known "${kv%%=*}" || die "--image: no VM named '${kv%%=*}'"
                [[ -f ${kv#*=} ]] || die "--image: no such disk image: ${kv#*=}"
                disk_of[${kv%%=*}]=$(realpath -- "${kv#*=}")
                ;;
            *) usage ;;
        esac
    done
    ((EUID == 0)) || die "must run as root (ip netns, tap devices)"
    # A Ceph lab starts in step (the monitors are made healthy first); its test skews a clock.
    ((ceph == 0)) || [[ $skews_given ]] || skews="0 0 0"
    # Which VMs, with which skew.
    local -A skew=([zcloud]=0)
    local -a list s
    read -r -a s <<<"$skews"
    local clients=(z-b-data-1 z-b-data-2 z-b-data-3) i vm
    ((${#s[@]} == ${#clients[@]})) || die "--skews wants ${#clients[@]} numbers (z-b-data-1..3), got '$skews'"
    for i in "${!clients[@]}"; do
        [[ ${s[$i]} =~ ^([-+]?)([0-9]{1,6})$ ]] || die "--skews: not a whole number of seconds: ${s[$i]}"
        skew[${clients[$i]}]=$((10#${BASH_REMATCH[2]}))
        [[ ${BASH_REMATCH[1]} != - ]] || skew[${clients[$i]}]=$((-skew[${clients[$i]}]))
    done
    if [[ -n $only ]]; then
        IFS=, read -r -a list <<<"$only"
        for vm in "${list[@]}"; do vm_known "$vm" || die "--only: no VM named '$vm' (have: ${ALL_VMS[*]})"; done
    else
        list=("${VMS[@]}")
    fi
    if ((ceph)); then
        for vm in "${clients[@]}"; do
            [[ " ${list[*]} " == *" $vm "* ]] || die "--ceph needs $vm: the monitors are z-b-data-1..3"
            os_of[$vm]=focal-ceph
        done
    fi
    for vm in "${list[@]}"; do
        [[ -n ${os_of[$vm]:-} || -z ${DISTRO_OF[$vm]:-} ]] || os_of[$vm]=${DISTRO_OF[$vm]}
        [[ -z ${skew_of[$vm]:-} ]] || skew[$vm]=$((${skew_of[$vm]#+}))
        skew[$vm]=${skew[$vm]:-0}
    done
    if ((bastion)) && [[ " ${list[*]} " != *" zcloud "* ]]; then
        die "--bastion needs zcloud: it is the only way in"
    fi
    mkdir -p "$dir"
    dir=$(lab_dir "$dir")
    if [[ -s $dir/netns ]]; then
        die "$dir already holds a lab (netns $(<"$dir/netns")): run '$PROG down $dir' first"
    fi
    cmd_deps
    build_images
    local images t0
    images=$(images_dir)
    if ((${#os_of[@]})); then
        build_distros
        for vm in "${!os_of[@]}"; do
            [[ -n ${disk_of[$vm]:-} ]] || disk_of[$vm]=$(distro_image "${os_of[$vm]}")
        done
    fi
    t0=$(now)
    # From here on, a failure tears down what was started.
    UP_DIR=$dir
    trap 'up_failed' EXIT
    trap 'exit 130' INT TERM HUP
    local ns
    ns=cplab-$(printf '%x%04x' "$$" "$RANDOM")
    [[ ! -e /run/netns/$ns ]] || die "netns $ns exists already"
    printf '%s\n' "$ns" >"$dir/netns"
    rm -f "$dir"/*.pid "$dir"/*.console.log "$dir"/*.console.log.1 "$dir"/*.qcow2 "$dir/known_hosts" "$dir/inventory.yaml"
    bastion_clean "$dir"
    install -m 600 "$images/lab_ed25519" "$dir/id_ed25519"
    install -m 644 "$images/lab_ed25519.pub" "$dir/id_ed25519.pub"
    : >"$dir/known_hosts"
    ip netns add "$ns"
    ip -n "$ns" link set lo up
    ip -n "$ns" link add br0 type bridge stp_state 0 forward_delay 0
    ip -n "$ns" addr add "$CONTROLLER/$PREFIX" dev br0
    ip -n "$ns" link set br0 up
    for vm in "${list[@]}"; do
        ip -n "$ns" tuntap add dev "$(tap_of "$vm")" mode tap
        ip -n "$ns" link set "$(tap_of "$vm")" master br0 up
    done
    log "netns $ns: bridge br0 $CONTROLLER/$PREFIX, ${#list[@]} taps"
    if ((bastion)); then
        bastion_net_up "$dir" "$ns"
    fi
    for vm in "${list[@]}"; do
        start_vm "$dir" "$ns" "$images" "$vm" "${skew[$vm]}" "${disk_of[$vm]:-}"
    done
    local skews_kv=""
    for vm in "${list[@]}"; do skews_kv+="$vm=${skew[$vm]} "; done
    wait_ready "$dir" "$ns" "$t0" "$images" "$skews_kv" "${list[@]}"
    write_inventory "$dir" "$ns" "${list[@]}"
    write_ssh_config "$dir"
    if ((bastion)); then
        bastion_files "$dir" "${list[@]}"
        bastion_check "$dir"
    fi
    # How far off each VM's clock really is after its boot (the RTC has whole
    # seconds), then trimmed to exactly the requested offset.
    {
        printf 'vm\trequested_s\tat_boot_s\tmeasured_s\tuncertainty_s\n'
        local m
        for vm in "${list[@]}"; do
            if ((trim)); then
                m=$(measure_offset "$dir" "$ns" "$vm" "${skew[$vm]}")
            else
                m=$(measure_offset "$dir" "$ns" "$vm")
            fi
            printf '%s\t%s\t%s\n' "$vm" "${skew[$vm]}" "${m// /$'\t'}"
        done
    } >"$dir/skews.tsv"
    log "clock offsets from this machine's clock:"
    column -t <"$dir/skews.tsv" | sed 's/^/    /' >&2
    for vm in "${list[@]}"; do debug_time_daemons "$dir" "$ns" "$vm" & done
    wait
    ((ceph == 0)) || ceph_bootstrap "$dir" "$ns"
    trap - EXIT INT TERM HUP
    log "lab up in $(elapsed "$t0") s: $dir (netns $ns)"
}

# debug_time_daemons DIR NS VM: timesyncd logs at debug level from its next start on (every
# reply, each "spike", "jump" and "not synchronized" answer), so that a test whose client does
# not synchronize leaves its reasons in the journal (tests/support/lab.rs prints them). A runtime
# drop-in under /run: nothing on the VM's disk changes, and it is gone at the next boot.
debug_time_daemons() {
    local dir=$1 ns=$2 vm=$3
    # shellcheck disable=SC2016 # $d is the VM's shell's
    vm_ssh "$dir" "$ns" "$vm" 'd=/run/systemd/system/systemd-timesyncd.service.d
        mkdir -p "$d" && printf "[Service]\nEnvironment=SYSTEMD_LOG_LEVEL=debug\n" >"$d/clockprov-lab-debug.conf" &&
        systemctl daemon-reload' || die "$vm: could not set timesyncd's log level"
}

tap_of() { printf 'tap-%s' "$1"; }

# start_vm DIR NS IMAGES VM OFFSET [DISK]: boot VM on a fresh overlay of its role's
# image (or of DISK).
start_vm() {
    local dir=$1 ns=$2 images=$3 vm=$4 offset=$5 disk=${6:-} role frac base machine_id format
    role=${ROLE[$vm]}
    local extra=()
    mapfile -t extra < <(bastion_qemu_args "$dir" "$vm")
    machine_id=$(printf '%s' "$vm" | md5sum | cut -c1-32) # each VM its own, the same every run
    rm -f "$dir/$vm.qcow2" "$dir/$vm.pid"
    if [[ -z $disk ]]; then
        disk=$images/$role.raw
        format=raw
    else
        format=$(qemu-img info --output=json "$disk" | sed -n 's/^ *"format": "\([a-z0-9]*\)".*/\1/p' | head -n1)
        [[ $format == raw || $format == qcow2 ]] || die "$disk: unsupported format '$format'"
        role="$role, from $disk"
    fi
    qemu-img create -q -f qcow2 -b "$disk" -F "$format" "$dir/$vm.qcow2"
    : >"$dir/$vm.console.log"
    # qemu's RTC counts whole seconds from -rtc base; compute the base early in a
    # host second so that qemu reads the host clock in that same second.
    frac=${EPOCHREALTIME#*.}
    if ((10#$frac > 600000)); then
        sleep "0.$(printf '%06d' $((1000000 - 10#$frac + 20000)))"
    fi
    base=$(date -u -d "@$((${EPOCHREALTIME%.*} + offset))" +%Y-%m-%dT%H:%M:%S)
    ip netns exec "$ns" "$QEMU" \
        -name "$vm" -accel "$ACCEL" -machine pc -m "$MEM" -smp 1 -nodefaults -display none \
        -kernel "$images/vmlinuz" -initrd "$images/initrd.img" \
        -append "root=/dev/vda rw rootfstype=ext4 console=ttyS0 systemd.hostname=$vm systemd.machine_id=$machine_id quiet panic=-1 mitigations=off no_timer_check" \
        -drive "file=$dir/$vm.qcow2,if=virtio,format=qcow2,cache=unsafe,discard=unmap" \
        -netdev "tap,id=net0,ifname=$(tap_of "$vm"),script=no,downscript=no" \
        -device "virtio-net-pci,netdev=net0,mac=${MAC[$vm]},romfile=" \
        "${extra[@]}" \
        -device virtio-rng-pci \
        -rtc "base=$base,clock=host" \
        -serial "file:$dir/$vm.console.log" -monitor none -no-reboot \
        -pidfile "$dir/$vm.pid" -daemonize
    log "started $vm (${ADDR[$vm]}, $role, clock $(printf '%+d' "$offset") s): pid $(<"$dir/$vm.pid")"
}

# wait_ready DIR NS T0 IMAGES SKEWS VM...: until every VM answers ssh with the
# lab key (each VM polled by its own background loop); then DIR/known_hosts
# holds their host keys, in VM order.  Bounded by $TIMEOUT seconds.  SKEWS:
# "VM=SECONDS ..." (for a VM booted again).
wait_ready() {
    local dir=$1 ns=$2 t0=$3 images=$4 kv
    local -A skew=()
    for kv in $5; do skew[${kv%%=*}]=${kv#*=}; done
    shift 5
    local deadline=$((${EPOCHREALTIME%.*} + TIMEOUT)) vm failed=()
    local -A pid=()
    for vm in "$@"; do
        rm -f "$dir/.$vm.hostkey"
        wait_one "$dir" "$ns" "$t0" "$deadline" "$vm" "$images" "${skew[$vm]}" &
        pid[$vm]=$!
        WAITERS+=("$!")
    done
    for vm in "$@"; do
        wait "${pid[$vm]}" || failed+=("$vm")
    done
    : >"$dir/known_hosts"
    for vm in "$@"; do
        if [[ -f $dir/.$vm.hostkey ]]; then
            cat "$dir/.$vm.hostkey" >>"$dir/known_hosts"
            rm -f "$dir/.$vm.hostkey"
        fi
    done
    if ((${#failed[@]})); then
        FAILED_VMS+=("${failed[@]}")
        return 1
    fi
}

# wait_one DIR NS T0 DEADLINE VM IMAGES OFFSET: poll VM until it answers ssh; its
# host key (from ssh-keyscan inside the namespace) goes to DIR/.VM.hostkey.  A
# VM whose qemu exits (a kernel panic: -no-reboot) is booted once more, on a
# fresh disk; its first console log is kept as VM.console.log.1.
wait_one() {
    local dir=$1 ns=$2 t0=$3 deadline=$4 vm=$5 images=$6 offset=$7 key="" opts boots=1
    mapfile -t opts < <(ssh_opts "$dir" "$dir/.$vm.hostkey")
    while ((${EPOCHREALTIME%.*} < deadline)); do
        if ! qemu_pid "$dir" "$vm" >/dev/null; then
            log "$vm: qemu exited before the VM answered ssh; console: $(grep -a -m1 -i -E 'panic|error' "$dir/$vm.console.log" | tr -d '\r' || true)"
            ((boots < 2)) || return 1
            boots=$((boots + 1))
            mv -f "$dir/$vm.console.log" "$dir/$vm.console.log.1"
            start_vm "$dir" "$ns" "$images" "$vm" "$offset" || return 1
            continue
        fi
        if [[ -z $key ]]; then
            key=$(ip netns exec "$ns" ssh-keyscan -T 15 -t ed25519 "${ADDR[$vm]}" 2>/dev/null | grep -v '^#' || true)
            [[ -z $key ]] || printf '%s\n' "$key" >"$dir/.$vm.hostkey"
        fi
        if [[ -n $key ]] && ip netns exec "$ns" ssh "${opts[@]}" "${ADDR[$vm]}" true </dev/null 2>/dev/null; then
            log "$vm answers ssh after $(elapsed "$t0") s"
            return 0
        fi
        sleep 1
    done
    log "$vm: not answering ssh after $TIMEOUT s"
    return 1
}

FAILED_VMS=()
WAITERS=() # wait_one loops, stopped if up fails
UP_DIR=

up_failed() {
    local rc=$? vm
    trap - EXIT INT TERM HUP
    [[ -n $UP_DIR ]] || exit "$rc"
    log "up failed (exit $rc); console log tails:"
    ((${#FAILED_VMS[@]})) || FAILED_VMS=("${ALL_VMS[@]}")
    for vm in "${FAILED_VMS[@]}"; do
        if [[ -f $UP_DIR/$vm.console.log ]]; then
            printf -- '----- %s (%s)\n' "$vm" "$UP_DIR/$vm.console.log" >&2
            tail -n 40 "$UP_DIR/$vm.console.log" | tr -d '\r' >&2
        fi
    done
    if ((${#WAITERS[@]})); then
        kill "${WAITERS[@]}" 2>/dev/null || true
    fi
    teardown "$UP_DIR" || true
    exit $((rc ? rc : 1))
}

write_inventory() {
    local dir=$1 ns=$2 vm
    shift 2
    {
        printf '# The seed'"'"'s cluster as a clockprov VM lab (tests/lab/lab.sh up), netns %s.\n' "$ns"
        printf '# Run clockprov inside that namespace: tests/lab/lab.sh exec %s clockprov ...\n' "$dir"
        printf '# Booted: %s\n' "$*"
        printf 'ssh:\n  user: root\n  identity_file: id_ed25519\n  known_hosts: known_hosts\n  host_key_policy: strict\n\n'
        printf 'ntp_servers:\n  zcloud:\n    address: %s\n    upstream:\n      - pool: ntp.ubuntu.com       # unreachable from the lab\n' "${ADDR[zcloud]}"
        printf '    allow: [192.168.6.0/24]\n    local_stratum: 10\n'
        local clients=()
        for vm in "$@"; do [[ ${ROLE[$vm]} == client ]] && clients+=("$vm"); done
        if ((${#clients[@]})); then
            printf '\nclients:\n'
            for vm in "${clients[@]}"; do printf '  %s: { address: %s }\n' "$vm" "${ADDR[$vm]}"; done
        fi
    } >"$dir/inventory.yaml"
}

write_ssh_config() {
    local dir=$1 vm
    {
        printf '# OpenSSH client config for the lab (use inside its netns: ssh -F %s/ssh_config zcloud)\n' "$dir"
        for vm in "${ALL_VMS[@]}"; do
            printf 'Host %s\n  HostName %s\n' "$vm" "${ADDR[$vm]}"
        done
        printf 'Host *\n  User root\n  IdentityFile %s/id_ed25519\n  IdentitiesOnly yes\n' "$dir"
        printf '  UserKnownHostsFile %s/known_hosts\n  StrictHostKeyChecking yes\n  BatchMode yes\n' "$dir"
    } >"$dir/ssh_config"
}

# --------------------------------------------------------------- offsets ---

# measure_offset DIR NS VM [TARGET]: prints "AT_START OFFSET UNCERTAINTY" (in
# seconds: the VM's clock minus this machine's, first and last, and the last
# one's uncertainty).  With TARGET, steps the VM's clock in between until it is
# TARGET seconds off (to about 2 ms).  One ssh session: the VM answers each line
# with bash's $EPOCHREALTIME (no fork); the sample with the shortest round trip
# wins.  A step adds the correction to the VM's clock inside one process (perl:
# clock_gettime, then clock_settime), so the time perl takes to start is not lost.
measure_offset() {
    local try
    for try in 1 2 3; do
        if measure_offset_once "$@"; then
            return 0
        fi
        log "$3: offset probe failed (try $try of 3)"
        sleep 2
    done
    die "$3: cannot measure its clock offset"
}

# probe_sample IN OUT: round trips to the probe, 8 or (while the shortest is
# over 8 ms: a busy machine) up to 32; prints "OFFSET_US UNCERTAINTY_US" from
# the shortest.
probe_sample() {
    local in=$1 out=$2 i t0 t1 g rtt best=-1 off=0
    for ((i = 1; i <= 32; i++)); do
        t0=${EPOCHREALTIME/./}
        printf 'time\n' >&"$out" || return 1
        read -r -t 20 g <&"$in" || return 1
        t1=${EPOCHREALTIME/./}
        [[ $g =~ ^[0-9]+\.[0-9]{6}$ ]] || return 1
        rtt=$((t1 - t0))
        if ((best < 0 || rtt < best)); then
            best=$rtt
            off=$((10#${g/./} - (t0 + t1) / 2))
        fi
        ((i < 8 || best > 8000)) || break
    done
    printf '%d %d\n' "$off" $((best / 2))
}

# us_to_s MICROSECONDS: as seconds, "-1.000250".
us_to_s() {
    local us=$1 sign=""
    if ((us < 0)); then
        sign=-
        us=$((-us))
    fi
    printf '%s%d.%06d' "$sign" $((us / 1000000)) $((us % 1000000))
}

# What the VM runs for measure_offset: "time" -> its clock; "step US" -> add US
# microseconds to its clock (x86_64 syscalls 227/228: clock_settime/gettime),
# then its clock.
IFS= read -r -d '' PROBE_SCRIPT <<'EOF' || true
step() {
    perl -e 'use integer; my $d = shift; my $ts = pack("q2", 0, 0);
        syscall(228, 0, $ts) == 0 or die "clock_gettime: $!\n";
        my ($s, $n) = unpack("q2", $ts); my $t = $s * 1000000000 + $n + $d * 1000;
        syscall(227, 0, pack("q2", $t / 1000000000, $t % 1000000000)) == 0 or die "clock_settime: $!\n";' -- "$1"
}
echo ready
while read -r cmd us; do
    if [ "$cmd" = step ]; then step "$us"; fi
    echo "$EPOCHREALTIME"
done
EOF

measure_offset_once() {
    local dir=$1 ns=$2 vm=$3 target=${4:-} opts g in out first off unc round delta ok=1 pid
    mapfile -t opts < <(ssh_opts "$dir")
    coproc PROBE { exec ip netns exec "$ns" ssh "${opts[@]}" "${ADDR[$vm]}" -- "$PROBE_SCRIPT"; }
    # Copied at once: bash unsets PROBE and PROBE_PID when the coprocess ends (an ssh that fails).
    pid=${PROBE_PID:-} in=${PROBE[0]:-} out=${PROBE[1]:-}
    if [[ -z $pid || -z $in || -z $out ]]; then
        [[ -z $pid ]] || wait "$pid" 2>/dev/null || true
        return 1
    fi
    if read -r -t 30 g <&"$in" && [[ $g == ready ]] && first=$(probe_sample "$in" "$out"); then
        read -r off unc <<<"$first"
        if [[ -n $target ]]; then
            for round in 1 2 3 4 5 6; do
                delta=$((target * 1000000 - off)) # microseconds to add, unless within 2 ms
                ((delta <= -2000 || delta >= 2000)) || break
                if ! { printf 'step %s\n' "$delta" >&"$out" && read -r -t 20 g <&"$in" && g=$(probe_sample "$in" "$out"); }; then
                    ok=0
                    break
                fi
                read -r off unc <<<"$g"
                : "$round"
            done
            if ((ok && (target * 1000000 - off <= -2000 || target * 1000000 - off >= 2000))); then
                log "warning: $vm is $(us_to_s "$off") s off, not $target s (uncertainty $(us_to_s "$unc") s: a busy machine)"
            fi
        fi
    else
        ok=0
    fi
    kill "$pid" 2>/dev/null || true
    eval "exec $out>&- $in<&-"
    wait "$pid" 2>/dev/null || true
    ((ok)) || return 1
    printf '%s %s %s\n' "$(us_to_s "${first% *}")" "$(us_to_s "$off")" "$(us_to_s "$unc")"
}

cmd_offset() {
    (($# >= 2)) || usage
    local dir ns vm m
    dir=$(lab_dir "$1")
    shift
    ns=$(netns_of "$dir")
    for vm in "$@"; do
        vm_known "$vm" || die "no VM named '$vm'"
        m=$(measure_offset "$dir" "$ns" "$vm")
        printf '%s %s\n' "$vm" "${m#* }"
    done
}

# --------------------------------------------------------------------- down ---

# teardown DIR: stop the qemu processes recorded in DIR, delete the namespace.
teardown() {
    local dir=$1 vm pid ns="" i
    local -a pids=()
    for vm in "${ALL_VMS[@]}"; do
        if pid=$(qemu_pid "$dir" "$vm"); then
            kill -TERM "$pid" 2>/dev/null || true
            pids+=("$pid")
        fi
    done
    for pid in "${pids[@]}"; do
        for ((i = 0; i < 50; i++)); do
            [[ -d /proc/$pid ]] || break
            sleep 0.1
        done
        if [[ -d /proc/$pid ]]; then
            log "pid $pid did not stop on TERM: KILL"
            kill -KILL "$pid" 2>/dev/null || true
        fi
    done
    ((${#pids[@]} == 0)) || log "stopped ${#pids[@]} VM(s)"
    rm -f "$dir"/*.pid "$dir"/*.qcow2
    bastion_teardown "$dir"
    if [[ -s $dir/netns ]]; then
        ns=$(netns_of "$dir")
        if [[ -e /run/netns/$ns ]]; then
            for vm in "${ALL_VMS[@]}"; do
                ip -n "$ns" link del "$(tap_of "$vm")" 2>/dev/null || true
            done
            ip -n "$ns" link del br0 2>/dev/null || true
            ip netns delete "$ns"
            log "deleted netns $ns"
        fi
        rm -f "$dir/netns"
    fi
}

cmd_down() {
    (($# == 1)) || usage
    [[ -d $1 ]] || return 0
    teardown "$(lab_dir "$1")"
}

# --------------------------------------------------------------- exec, ssh ---

cmd_exec() {
    (($# >= 2)) || usage
    local dir ns
    dir=$(lab_dir "$1")
    shift
    if [[ -e $dir/netns-controller ]]; then
        ns=$(controller_netns_of "$dir") # bastion mode: the controller's own namespace
    else
        ns=$(netns_of "$dir")
    fi
    exec ip netns exec "$ns" "$@"
}

cmd_ssh() {
    (($# >= 2)) || usage
    local dir ns vm=$2 opts
    dir=$(lab_dir "$1")
    shift 2
    vm_known "$vm" || die "no VM named '$vm' (have: ${VMS[*]})"
    ns=$(netns_of "$dir")
    mapfile -t opts < <(ssh_opts "$dir")
    exec ip netns exec "$ns" ssh "${opts[@]}" "${ADDR[$vm]}" -- "$@"
}

# ----------------------------------------------------------------- fixtures ---

# capture DIR NS VM FILE CMD: CMD's stdout (and stderr, and exit status when not 0) into FILE.
capture() {
    local dir=$1 ns=$2 vm=$3 file=$4 rc=0
    shift 4
    vm_ssh "$dir" "$ns" "$vm" "$* 2>&1" </dev/null >"$file" || rc=$?
    if ((rc)); then
        printf '[exit status %d]\n' "$rc" >>"$file"
    fi
    log "captured ${file##*/} from $vm: $*"
}

cmd_fixtures() {
    (($# == 2)) || usage
    local dir ns out=$2 client=z-b-data-1 vm t
    dir=$(lab_dir "$1")
    ns=$(netns_of "$dir")
    mkdir -p "$out"
    out=$(cd "$out" && pwd -P)
    for vm in "${VMS[@]}"; do
        qemu_pid "$dir" "$vm" >/dev/null || die "fixtures needs the whole lab up: $vm is not running"
    done
    # Before any configuration.
    capture "$dir" "$ns" "$client" "$out/timesyncd-show-timesync.unsynced.txt" timedatectl show-timesync --all
    capture "$dir" "$ns" "$client" "$out/timedatectl-show.unsynced.txt" timedatectl show
    capture "$dir" "$ns" "$client" "$out/timesyncd-timesync-status.unsynced.txt" timedatectl timesync-status
    capture "$dir" "$ns" "$client" "$out/timedatectl-status.unsynced.txt" timedatectl status
    capture "$dir" "$ns" "$client" "$out/timesyncd.conf.stock.txt" cat /etc/systemd/timesyncd.conf
    capture "$dir" "$ns" zcloud "$out/chrony.conf.stock.txt" cat /etc/chrony/chrony.conf
    capture "$dir" "$ns" zcloud "$out/chrony-tracking.unconfigured.txt" chronyc -n tracking
    capture "$dir" "$ns" zcloud "$out/chrony-sources.unconfigured.txt" chronyc -n sources
    capture "$dir" "$ns" zcloud "$out/chrony-clients.unconfigured.txt" chronyc -n clients
    local -A before=()
    for vm in z-b-data-1 z-b-data-2 z-b-data-3; do
        t=$(measure_offset "$dir" "$ns" "$vm")
        before[$vm]=${t#* }
    done
    # The seed's fix, by hand: allow the LAN and serve it without upstream.
    vm_ssh "$dir" "$ns" zcloud "printf '\n# clockprov lab (by hand, as in the seed)\nallow 192.168.6.0/24\nlocal stratum 10\n' >>/etc/chrony/chrony.conf && systemctl restart chrony" </dev/null
    log "zcloud: chrony allows 192.168.6.0/24, local stratum 10, restarted"
    # One client after the other: point it at zcloud, restart, poll until synced.
    local -A synced=()
    local restarted deadline
    for vm in z-b-data-1 z-b-data-2 z-b-data-3; do
        restarted=$(now)
        vm_ssh "$dir" "$ns" "$vm" "sed -i 's/^#\{0,1\}NTP=.*/NTP=${ADDR[zcloud]}/' /etc/systemd/timesyncd.conf && systemctl restart systemd-timesyncd" </dev/null
        deadline=$((${EPOCHREALTIME%.*} + 300))
        until [[ $(vm_ssh "$dir" "$ns" "$vm" timedatectl show -p NTPSynchronized --value </dev/null) == yes ]]; do
            ((${EPOCHREALTIME%.*} < deadline)) || die "$vm: not synchronized 300 s after NTP=${ADDR[zcloud]}"
            sleep 0.5
        done
        synced[$vm]=$(elapsed "$restarted")
        log "$vm: NTP=${ADDR[zcloud]}, systemd-timesyncd restarted, synchronized after ${synced[$vm]} s"
    done
    sleep 5 # let timesyncd settle
    capture "$dir" "$ns" "$client" "$out/timesyncd-show-timesync.synced.txt" timedatectl show-timesync --all
    capture "$dir" "$ns" "$client" "$out/timedatectl-show.synced.txt" timedatectl show
    capture "$dir" "$ns" "$client" "$out/timesyncd-timesync-status.synced.txt" timedatectl timesync-status
    capture "$dir" "$ns" "$client" "$out/timedatectl-status.synced.txt" timedatectl status
    capture "$dir" "$ns" "$client" "$out/timesyncd-journal.synced.txt" journalctl -o short-monotonic --no-hostname -u systemd-timesyncd
    capture "$dir" "$ns" zcloud "$out/chrony-tracking.txt" chronyc -n tracking
    capture "$dir" "$ns" zcloud "$out/chrony-sources.txt" chronyc -n sources
    capture "$dir" "$ns" zcloud "$out/chrony-clients.txt" chronyc -n clients
    capture "$dir" "$ns" zcloud "$out/chrony-tracking.csv.txt" chronyc -c tracking
    capture "$dir" "$ns" zcloud "$out/chrony-sources.csv.txt" chronyc -c sources
    capture "$dir" "$ns" zcloud "$out/chrony-clients.csv.txt" chronyc -c clients
    capture "$dir" "$ns" zcloud "$out/chrony-journal.txt" journalctl -o short-monotonic --no-hostname -u chrony
    # From each client's own journal (monotonic clock: steps do not move it):
    # from "Starting systemd-timesyncd" (the restart) to its first sync.
    {
        printf '# Clients pointed at zcloud by hand (NTP=, restart).  sync_s: from the restart of\n'
        printf '# systemd-timesyncd to "Initial clock synchronization" (its journal, monotonic);\n'
        printf '# polled_s: from the ssh that restarted it until "timedatectl show" said\n'
        printf '# NTPSynchronized=yes (polled over ssh, each ssh about 1 s under TCG);\n'
        printf '# offsets (s) of the client from this machine before and after, with uncertainty.\n'
        printf 'vm\tsync_s\tpolled_s\toffset_before_s\tuncert_before_s\toffset_after_s\tuncert_after_s\n'
        local journal_sync
        for vm in z-b-data-1 z-b-data-2 z-b-data-3; do
            # shellcheck disable=SC2016 # awk's fields
            journal_sync=$(vm_ssh "$dir" "$ns" "$vm" journalctl -o short-monotonic --no-hostname -u systemd-timesyncd </dev/null |
                awk 'match($0, /[0-9]+\.[0-9]+/) { t = substr($0, RSTART, RLENGTH) }
                     /Starting systemd-timesyncd/ { start = t; synced = "" }
                     /Initial clock synchronization/ && synced == "" { synced = t - start }
                     END { if (synced == "") print "-"; else printf "%.3f\n", synced }')
            t=$(measure_offset "$dir" "$ns" "$vm")
            t=${t#* }
            printf '%s\t%s\t%s\t%s\t%s\n' "$vm" "$journal_sync" "${synced[$vm]}" "${before[$vm]// /$'\t'}" "${t// /$'\t'}"
        done
    } >"$out/sync-times.tsv"
    {
        printf 'Captured by tests/lab/lab.sh fixtures on %(%Y-%m-%d)T from the VM lab (Debian 12 VMs under qemu TCG):\n' -1
        printf '  zcloud      %s  chrony, stock /etc/chrony/chrony.conf (chrony.conf.stock.txt)\n' "${ADDR[zcloud]}"
        printf '  z-b-data-1  %s  systemd-timesyncd, stock /etc/systemd/timesyncd.conf (timesyncd.conf.stock.txt)\n' "${ADDR[z-b-data-1]}"
        printf 'Package versions:\n'
        sed 's/^/  /' "$(images_dir)/versions.txt"
        printf '\n*.unsynced.txt, *.unconfigured.txt: before any configuration (the seed'"'"'s problem:\n'
        printf 'timesyncd cannot reach its Debian pool servers; chrony has no allow line and no source).\n'
        printf 'Then by hand, as in the seed: on zcloud, "allow 192.168.6.0/24" and "local stratum 10"\n'
        printf 'appended to chrony.conf, chrony restarted; on the clients, NTP=%s in timesyncd.conf,\n' "${ADDR[zcloud]}"
        printf 'systemd-timesyncd restarted.  *.synced.txt and chrony-*.txt: after the clients synced.\n'
        printf 'Timesyncd outputs are from z-b-data-1; *.csv.txt are chronyc -c.  Errors and non-zero exit\n'
        printf 'statuses are kept in the files ("[exit status N]").  sync-times.tsv: how long the clients took.\n'
    } >"$out/SOURCE.txt"
    log "sync times and offsets:"
    grep -v '^#' "$out/sync-times.tsv" | column -t -s $'\t' | sed 's/^/    /' >&2
}

# --------------------------------------------------------------------- ceph ---
# `up DIR --ceph` (issue 13): z-b-data-1..3 boot the Ubuntu 20.04 image with Ceph's monitor
# (ceph-mon 15.2, focal-updates) and become a cluster of three monitors, bootstrapped by hand
# as Ceph's manual deployment does (ceph-authtool, monmaptool, ceph-mon --mkfs): no cephadm,
# no OSD, no mgr.  Time checks every 30 s (default 300), skew checks every 10 s (default 30),
# so that the seed's warning comes and goes within a test's patience.

CEPH_MONS=(z-b-data-1 z-b-data-2 z-b-data-3)

# ceph_conf FSID: /etc/ceph/ceph.conf of the lab's cluster.
ceph_conf() {
    local vm hosts=() members=()
    for vm in "${CEPH_MONS[@]}"; do
        members+=("$vm")
        hosts+=("[v2:${ADDR[$vm]}:3300,v1:${ADDR[$vm]}:6789]")
    done
    local IFS=,
    printf '# clockprov lab: three monitors, nothing else (tests/lab/lab.sh up --ceph)\n'
    printf '[global]\nfsid = %s\nmon_initial_members = %s\nmon_host = %s\n' "$1" "${members[*]}" "${hosts[*]}"
    printf 'auth_cluster_required = cephx\nauth_service_required = cephx\nauth_client_required = cephx\n'
    printf '# no other warning may hide the clock skew: no insecure global_id reclaim, and no mgr is fine\n'
    printf 'auth_allow_insecure_global_id_reclaim = false\nmon_mgr_mkfs_grace = 86400\n'
    printf '\n[mon]\nmon_timecheck_interval = 30\nmon_timecheck_skew_interval = 10\n'
}

# ceph_on DIR NS CMD...: `ceph CMD` on the first monitor (2-5 s under TCG), bounded.
ceph_on() {
    local dir=$1 ns=$2
    shift 2
    vm_ssh "$dir" "$ns" "${CEPH_MONS[0]}" timeout 60 ceph --connect-timeout 30 "$@" </dev/null
}

# ceph_bootstrap DIR NS: the monitors, in quorum, HEALTH_OK (the clocks were just trimmed).
ceph_bootstrap() {
    local dir=$1 ns=$2 first=${CEPH_MONS[0]} vm fsid t conf monmap=() pids=() pid bad=0 out
    t=$(now)
    fsid=$(</proc/sys/kernel/random/uuid)
    conf=$(ceph_conf "$fsid")
    for vm in "${CEPH_MONS[@]}"; do monmap+=(--addv "$vm" "[v2:${ADDR[$vm]}:3300,v1:${ADDR[$vm]}:6789]"); done
    # On the first monitor: the configuration, the keyrings (mon. with client.admin imported), the monmap.
    vm_ssh "$dir" "$ns" "$first" "set -e; exec >&2; install -d /etc/ceph; cat >/etc/ceph/ceph.conf
        ceph-authtool --create-keyring /etc/ceph/ceph.mon.keyring --gen-key -n mon. --cap mon 'allow *'
        ceph-authtool --create-keyring /etc/ceph/ceph.client.admin.keyring --gen-key -n client.admin \
            --cap mon 'allow *' --cap osd 'allow *' --cap mds 'allow *' --cap mgr 'allow *'
        ceph-authtool /etc/ceph/ceph.mon.keyring --import-keyring /etc/ceph/ceph.client.admin.keyring
        chmod 600 /etc/ceph/ceph.mon.keyring /etc/ceph/ceph.client.admin.keyring
        monmaptool --create --fsid $fsid ${monmap[*]@Q} /etc/ceph/monmap" <<<"$conf" ||
        die "ceph: bootstrap on $first failed"
    printf '%s\n' "$fsid" >"$dir/ceph-fsid"
    # The same /etc/ceph on the others.
    for vm in "${CEPH_MONS[@]:1}"; do
        vm_ssh "$dir" "$ns" "$first" tar -C /etc/ceph -c . </dev/null |
            vm_ssh "$dir" "$ns" "$vm" "install -d /etc/ceph && tar -C /etc/ceph -x --no-same-owner" ||
            die "ceph: copying /etc/ceph to $vm failed"
    done
    # Each monitor's store, then its unit.
    for vm in "${CEPH_MONS[@]}"; do
        vm_ssh "$dir" "$ns" "$vm" "set -e; exec >&2; ceph-mon --mkfs -i $vm --monmap /etc/ceph/monmap --keyring /etc/ceph/ceph.mon.keyring
            chown -R ceph:ceph /var/lib/ceph/mon; systemctl -q enable --now ceph-mon@$vm" </dev/null &
        pids+=("$!")
    done
    for pid in "${pids[@]}"; do wait "$pid" || bad=1; done
    ((bad == 0)) || die "ceph: ceph-mon --mkfs or its start failed"
    log "ceph: monitors ${CEPH_MONS[*]} created (fsid $fsid) in $(elapsed "$t") s; waiting for HEALTH_OK"
    local deadline=$((${EPOCHREALTIME%.*} + 240))
    until out=$(ceph_on "$dir" "$ns" health 2>&1) && [[ $out == HEALTH_OK* ]]; do
        if ((${EPOCHREALTIME%.*} >= deadline)); then
            log "ceph: no HEALTH_OK after 240 s: $(ceph_on "$dir" "$ns" health detail 2>&1 || true)"
            die "ceph: the monitors did not become healthy"
        fi
        sleep 3
    done
    log "ceph: 3 monitors in quorum, HEALTH_OK, $(elapsed "$t") s after the bootstrap began"
}

# lab.sh ceph DIR ARGS...: `ceph ARGS` on the first monitor, its stdout.
cmd_ceph() {
    (($# >= 1)) || usage
    local dir ns
    dir=$(lab_dir "$1")
    shift
    ns=$(netns_of "$dir")
    [[ -s $dir/ceph-fsid ]] || die "$dir holds no Ceph lab (up --ceph)"
    ceph_on "$dir" "$ns" "$@"
}

# lab.sh skew DIR VM SECONDS: step VM's clock to SECONDS from this machine's (to about 2 ms);
# prints "VM offset_s uncertainty_s" as measured after the step.
cmd_skew() {
    (($# == 3)) || usage
    local dir ns vm=$2 m
    dir=$(lab_dir "$1")
    ns=$(netns_of "$dir")
    vm_known "$vm" || die "no VM named '$vm'"
    [[ $3 =~ ^[-+]?[0-9]{1,6}$ ]] || die "skew: not a whole number of seconds: $3"
    m=$(measure_offset "$dir" "$ns" "$vm" "$((${3#+}))")
    log "$vm: clock stepped from $(cut -d' ' -f1 <<<"$m") s to $(cut -d' ' -f2 <<<"$m") s off this machine's"
    printf '%s %s\n' "$vm" "${m#* }"
}

# ------------------------------------------------------------------ bastion ---
# `up DIR --bastion` (issue 5): the seed's real topology.  zcloud gets a second NIC
# ($WAN_ADDR, a bridge br-wan in the lab's namespace) joined by a veth pair to a second
# namespace, the controller's ($WAN_CONTROLLER, DIR/netns-controller), which has no route to
# the LAN: the clients are reachable only through zcloud (which does not forward).  `exec`
# then runs in the controller's namespace.  The lab's own tooling (`ssh`, `offset`, `sudo`,
# boot checks) keeps using the LAN side as root: the hypervisor's console, not the controller.

# controller_netns_of DIR: the controller namespace recorded in DIR, checked to be one of ours.
controller_netns_of() {
    local cns
    [[ -s $1/netns-controller ]] || die "$1/netns-controller is missing: is a bastion lab up?"
    cns=$(<"$1/netns-controller")
    [[ $cns =~ ^cplab-[0-9a-z]+-ctl$ ]] || die "$1/netns-controller does not name a lab namespace: $cns"
    printf '%s' "$cns"
}

# bastion_clean DIR: a previous run's bastion files.
bastion_clean() {
    rm -f "$1"/inventory-bastion*.yaml "$1/ssh_config-bastion" "$1/become_password"
}

# bastion_net_up DIR NS: the controller's namespace and zcloud's second network.
bastion_net_up() {
    local dir=$1 ns=$2 cns=$2-ctl
    [[ ! -e /run/netns/$cns ]] || die "netns $cns exists already"
    printf '%s\n' "$cns" >"$dir/netns-controller" # first: a failure from here on deletes it
    ip netns add "$cns"
    ip -n "$cns" link set lo up
    ip -n "$ns" link add br-wan type bridge stp_state 0 forward_delay 0
    ip -n "$ns" link set br-wan up
    ip -n "$ns" link add wan0 type veth peer name eth0 netns "$cns"
    ip -n "$ns" link set wan0 master br-wan up
    ip -n "$ns" tuntap add dev tapw-zcloud mode tap
    ip -n "$ns" link set tapw-zcloud master br-wan up
    ip -n "$cns" addr add "$WAN_CONTROLLER/$WAN_PREFIX" dev eth0
    ip -n "$cns" link set eth0 up
    log "netns $cns (controller): eth0 $WAN_CONTROLLER/$WAN_PREFIX, bridged to zcloud's second NIC $WAN_ADDR; no route to the LAN"
}

# bastion_qemu_args DIR VM: qemu's arguments for VM's second NIC, one a line (none but for
# zcloud in a bastion lab).
bastion_qemu_args() {
    [[ $2 == zcloud && -e $1/netns-controller ]] || return 0
    printf '%s\n' -netdev "tap,id=net1,ifname=tapw-zcloud,script=no,downscript=no" \
        -device "virtio-net-pci,netdev=net1,mac=$WAN_MAC,romfile="
}

# bastion_teardown DIR: delete the controller's namespace (its veth end goes with it).
bastion_teardown() {
    local dir=$1 cns ns
    [[ -e $dir/netns-controller ]] || return 0
    cns=$(controller_netns_of "$dir")
    if [[ -s $dir/netns ]]; then
        ns=$(netns_of "$dir")
        if [[ -e /run/netns/$ns ]]; then
            ip -n "$ns" link del tapw-zcloud 2>/dev/null || true
            ip -n "$ns" link del wan0 2>/dev/null || true
            ip -n "$ns" link del br-wan 2>/dev/null || true
        fi
    fi
    if [[ -e /run/netns/$cns ]]; then
        ip netns delete "$cns"
        log "deleted netns $cns"
    fi
    rm -f "$dir/netns-controller"
}

# bastion_inventory DIR USER BECOME CLIENT...: an inventory reaching zcloud at its second NIC
# and the clients through zcloud (`jump:`), logging in as USER (with `become: sudo` when BECOME).
bastion_inventory() {
    local dir=$1 user=$2 become=$3 vm
    shift 3
    printf '# The bastion lab (tests/lab/lab.sh up --bastion): the controller reaches only zcloud,\n'
    printf '# at %s; the clients through it.  Run clockprov in the controller namespace:\n' "$WAN_ADDR"
    printf '#   tests/lab/lab.sh exec %s clockprov ...\n' "$dir"
    printf 'ssh:\n  user: %s\n' "$user"
    ((become == 0)) || printf '  become: sudo                   # password: %s/become_password\n' "$dir"
    printf '  identity_file: id_ed25519\n  known_hosts: known_hosts\n  host_key_policy: strict\n\n'
    printf 'ntp_servers:\n  zcloud:\n    address: %s\n' "${ADDR[zcloud]}"
    printf '    ssh: { host: %s }         # its second NIC: the only way in\n' "$WAN_ADDR"
    printf '    upstream:\n      - pool: ntp.ubuntu.com       # unreachable from the lab\n'
    printf '    allow: [192.168.6.0/24]\n    local_stratum: 10\n'
    (($#)) || return 0
    printf '\nclients:\n'
    for vm in "$@"; do printf '  %s: { address: %s, ssh: { jump: zcloud } }\n' "$vm" "${ADDR[$vm]}"; done
}

# bastion_files DIR VM...: known_hosts for zcloud's second address, the inventories, the
# OpenSSH config and the sudo password.
bastion_files() {
    local dir=$1 vm
    shift
    local clients=()
    for vm in "$@"; do [[ ${ROLE[$vm]} == client ]] && clients+=("$vm"); done
    # zcloud's host key, under its second address too.
    awk -v lan="${ADDR[zcloud]}" -v wan="$WAN_ADDR" '$1 == lan { $1 = wan; print }' "$dir/known_hosts" >"$dir/.wan.hostkey"
    [[ -s $dir/.wan.hostkey ]] || die "no host key of zcloud in $dir/known_hosts"
    cat "$dir/.wan.hostkey" >>"$dir/known_hosts"
    rm -f "$dir/.wan.hostkey"
    bastion_inventory "$dir" "$LOGIN_USER" 1 "${clients[@]}" >"$dir/inventory-bastion.yaml"
    bastion_inventory "$dir" root 0 "${clients[@]}" >"$dir/inventory-bastion-root.yaml"
    {
        printf '# OpenSSH client config for the bastion lab: zcloud at its second NIC, the clients through\n'
        printf '# it (ProxyJump).  Each Host names the machine and its LAN address (what clients and the\n'
        printf '# inventory call it).  In the controller namespace: ssh -F %s/ssh_config-bastion z-b-data-1\n' "$dir"
        printf 'Host zcloud %s\n  HostName %s\n' "${ADDR[zcloud]}" "$WAN_ADDR"
        for vm in "${clients[@]}"; do
            printf 'Host %s %s\n  HostName %s\n  ProxyJump zcloud\n' "$vm" "${ADDR[$vm]}" "${ADDR[$vm]}"
        done
        printf 'Host *\n  User %s\n  IdentityFile %s/id_ed25519\n' "$LOGIN_USER" "$dir"
        printf '  UserKnownHostsFile %s/known_hosts\n  StrictHostKeyChecking yes\n' "$dir"
    } >"$dir/ssh_config-bastion"
    {
        printf '# The bastion lab, every connection from the OpenSSH config (HostName, User, IdentityFile,\n'
        printf '# ProxyJump, UserKnownHostsFile, StrictHostKeyChecking): %s/ssh_config-bastion.\n' "$dir"
        printf '#   tests/lab/lab.sh exec %s clockprov ...\n' "$dir"
        printf 'ssh:\n  config_file: ssh_config-bastion\n  become: sudo                   # password: %s/become_password\n\n' "$dir"
        printf 'ntp_servers:\n  zcloud:\n    address: %s\n' "${ADDR[zcloud]}"
        printf '    upstream:\n      - pool: ntp.ubuntu.com       # unreachable from the lab\n'
        printf '    allow: [192.168.6.0/24]\n    local_stratum: 10\n'
        if ((${#clients[@]})); then
            printf '\nclients:\n'
            for vm in "${clients[@]}"; do printf '  %s: { address: %s }\n' "$vm" "${ADDR[$vm]}"; done
        fi
    } >"$dir/inventory-bastion-sshconfig.yaml"
    (umask 077 && printf '%s\n' "$LAB_PASSWORD" >"$dir/become_password")
    log "bastion: inventory-bastion.yaml ($LOGIN_USER, become: sudo, jump: zcloud), inventory-bastion-root.yaml, inventory-bastion-sshconfig.yaml + ssh_config-bastion (ProxyJump), become_password"
}

# bastion_ssh DIR ARGS...: OpenSSH from the controller namespace with the lab's bastion config.
bastion_ssh() {
    local dir=$1 cns
    shift
    cns=$(controller_netns_of "$dir")
    ip netns exec "$cns" ssh -F "$dir/ssh_config-bastion" -o BatchMode=yes -o IdentitiesOnly=yes \
        -o GlobalKnownHostsFile=/dev/null -o LogLevel=ERROR -o ConnectTimeout=20 "$@"
}

# bastion_check DIR: prove the topology from the controller namespace, with OpenSSH: no route to
# the LAN, zcloud answers at its second address, the clients only through it (ProxyJump), and
# sudo asks for the password / refuses nosudo.
bastion_check() {
    local dir=$1 cns vm out routes
    cns=$(controller_netns_of "$dir")
    routes=$(ip -n "$cns" route show)
    log "controller routes: ${routes//$'\n'/; }"
    if out=$(ip -n "$cns" route get "${ADDR[zcloud]}" 2>&1); then
        die "the controller namespace has a route to the LAN: $out"
    fi
    log "controller: ip route get ${ADDR[zcloud]}: ${out}"
    if out=$(ip netns exec "$cns" timeout 5 bash -c "exec 3<>/dev/tcp/${ADDR[zcloud]}/22" 2>&1); then
        die "the controller reaches ${ADDR[zcloud]}:22 directly"
    fi
    log "controller: connect ${ADDR[zcloud]}:22: ${out##*: }"
    out=$(bastion_ssh "$dir" zcloud "id -un; cat /proc/sys/net/ipv4/ip_forward; sudo -n true 2>&1 || true; printf '%s\n' '$LAB_PASSWORD' | sudo -S -p '' id -u" </dev/null) ||
        die "ssh $LOGIN_USER@$WAN_ADDR from the controller failed"
    [[ $out == "$LOGIN_USER"$'\n0\n'*'password is required'*$'\n0' ]] ||
        die "zcloud over its second NIC: expected '$LOGIN_USER', no forwarding, sudo asking for a password, uid 0; got: $out"
    log "controller -> zcloud ($WAN_ADDR) as $LOGIN_USER: ok; ip_forward 0; sudo -n: password required; sudo -S: uid 0"
    out=$(bastion_ssh "$dir" -l "$NOSUDO_USER" zcloud "printf '%s\n' '$LAB_PASSWORD' | sudo -S -p '' true 2>&1 || true" </dev/null) ||
        die "ssh $NOSUDO_USER@$WAN_ADDR from the controller failed"
    [[ $out == *'not in the sudoers file'* ]] || die "$NOSUDO_USER may sudo on zcloud: $out"
    log "controller -> zcloud as $NOSUDO_USER: sudo refused (${out//$'\n'/ })"
    for vm in "${ALL_VMS[@]}"; do
        if [[ ${ROLE[$vm]} != client ]] || ! qemu_pid "$dir" "$vm" >/dev/null; then
            continue
        fi
        # shellcheck disable=SC2016 # expanded by the VM's shell
        out=$(bastion_ssh "$dir" "$vm" 'id -un; echo ${SSH_CONNECTION%% *}' </dev/null) ||
            die "ssh -F ssh_config-bastion $vm (ProxyJump zcloud) failed"
        [[ $out == "$LOGIN_USER"$'\n'"${ADDR[zcloud]}" ]] || die "$vm through zcloud: expected '$LOGIN_USER' from ${ADDR[zcloud]}, got: $out"
        log "controller -> $vm through zcloud (ProxyJump): ok, connection from ${ADDR[zcloud]}"
    done
}

cmd_bastion_check() {
    (($# == 1)) || usage
    bastion_check "$(lab_dir "$1")"
}

# lab.sh sudo DIR MODE [VM...]: how LOGIN_USER's sudo behaves on the VMs (default: all running):
# password (as built: asks every time), nopasswd, denied (a rule refusing every command).
cmd_sudo() {
    (($# >= 2)) || usage
    local dir ns mode=$2 vm rule
    dir=$(lab_dir "$1")
    shift 2
    ns=$(netns_of "$dir")
    case $mode in
        password) rule="" ;;
        nopasswd) rule="$LOGIN_USER ALL=(ALL:ALL) NOPASSWD: ALL" ;;
        denied) rule="$LOGIN_USER ALL=(ALL:ALL) !ALL" ;;
        *) die "sudo: MODE is password, nopasswd or denied, not '$mode'" ;;
    esac
    local vms=("$@")
    if ((${#vms[@]} == 0)); then
        for vm in "${ALL_VMS[@]}"; do qemu_pid "$dir" "$vm" >/dev/null && vms+=("$vm"); done
    fi
    local command="rm -f $SUDO_MODE_DROPIN" pids=() bad=0 pid
    if [[ -n $rule ]]; then
        command="t=\$(mktemp /etc/sudoers.d/.lab.XXXXXX) && printf '%s\n' '$rule' >\"\$t\" && chmod 440 \"\$t\" && visudo -cqf \"\$t\" && mv \"\$t\" $SUDO_MODE_DROPIN"
    fi
    for vm in "${vms[@]}"; do
        vm_known "$vm" || die "no VM named '$vm'"
        vm_ssh "$dir" "$ns" "$vm" "$command" </dev/null &
        pids+=("$!")
    done
    for pid in "${pids[@]}"; do
        wait "$pid" || bad=1
    done
    ((bad == 0)) || die "sudo: could not set $mode on every one of ${vms[*]}"
    log "sudo for $LOGIN_USER on ${vms[*]}: $mode"
}

# --------------------------------------------------------------------- main ---

# ------------------------------------------------------------------- rootfs ---

# cmd_image ROLE: build the images if needed; print the path of ROLE's (read-only).
cmd_image() {
    (($# == 1)) || usage
    cmd_deps
    if [[ $1 == client || $1 == server ]]; then
        build_images >&2
        printf '%s/%s.raw\n' "$(images_dir)" "$1"
    else
        [[ -n ${DISTRO_SUITE[$1]+x} ]] || die "image: ROLE is client, server or one of ${DISTROS[*]}, not '$1'"
        build_distros >&2
        printf '%s\n' "$(distro_image "$1")"
    fi
}

# cmd_rootfs ROLE DEST: the parts of ROLE's image that `clockprov bake` reads and
# writes, as a plain directory tree: a real Debian root for directory-target tests.
# Read with debugfs from the ext4 image, so nothing is mounted.
cmd_rootfs() {
    (($# == 2)) || usage
    local role=$1 dest=$2 images img top target
    [[ $role == client || $role == server ]] || die "rootfs: ROLE is client or server, not '$role'"
    cmd_deps
    build_images
    images=$(images_dir)
    img=$images/$role.raw
    [[ ! -e $dest ]] || die "rootfs: $dest exists already"
    mkdir -p "$dest/usr/lib" "$dest/var/lib/dpkg"
    debugfs -R "rdump /etc $dest" "$img" 2>/dev/null
    debugfs -R "rdump /usr/lib/systemd $dest/usr/lib" "$img" 2>/dev/null
    debugfs -R "dump /usr/lib/os-release $dest/usr/lib/os-release" "$img" 2>/dev/null
    debugfs -R "dump /var/lib/dpkg/status $dest/var/lib/dpkg/status" "$img" 2>/dev/null
    mkdir -p "$dest/var/lib/systemd" "$dest/var/lib/chrony"
    # The merged-/usr links, as in the image (bin -> usr/bin, lib -> usr/lib, ...).
    for top in bin lib lib64 sbin; do
        target=$(debugfs -R "stat /$top" "$img" 2>/dev/null | sed -n 's/^Fast link dest: "\(.*\)"$/\1/p')
        [[ -z $target ]] || ln -s "$target" "$dest/$top"
    done
    [[ -s $dest/var/lib/dpkg/status && -e $dest/etc/os-release ]] || die "rootfs: extraction from $img failed"
    log "rootfs: $role image -> $dest"
}

main() {
    (($#)) || usage
    local cmd=$1
    shift
    case $cmd in
        deps) cmd_deps "$@" ;;
        build) cmd_build "$@" ;;
        up) cmd_up "$@" ;;
        down) cmd_down "$@" ;;
        exec) cmd_exec "$@" ;;
        ssh) cmd_ssh "$@" ;;
        offset) cmd_offset "$@" ;;
        fixtures) cmd_fixtures "$@" ;;
        rootfs) cmd_rootfs "$@" ;;
        image) cmd_image "$@" ;;
        sudo) cmd_sudo "$@" ;;
        bastion-check) cmd_bastion_check "$@" ;;
        ceph) cmd_ceph "$@" ;;
        skew) cmd_skew "$@" ;;
        -h | --help | help) usage ;;
        *) usage ;;
    esac
}

main "$@"
