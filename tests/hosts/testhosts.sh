#!/usr/bin/env bash
# testhosts.sh -- throw-away SSH test hosts for clockprov's integration tests.
#
# A test host is a real OpenSSH sshd listening on ADDR:22 (ADDR in 127/8),
# running in a private mount namespace that gives it its own view of:
#   /etc                  overlay, upper = H/etc-upper (seeded chrony.conf,
#                         timesyncd.conf, os-release)
#   /usr                  overlay, upper = H/usr-upper (stand-ins for
#                         systemctl, apt-get and apt); chrony hosts get a real
#                         chronyd 4.3 (extracted from Debian's package) as an
#                         extra lower layer, and (Debian, Ubuntu) the seed's
#                         chrony.conf as /usr/share/chrony/chrony.conf, the
#                         copy the package keeps of the text it ships
#   /var/lib/dpkg/status  bind of H/dpkg-status (only the host's packages)
#   /var/lib/dpkg/updates bind of H/dpkg-updates (dpkg's update journal: empty,
#                         unless a test leaves an interrupted dpkg's there)
#   /root                 bind of H/root (only .ssh/authorized_keys)
#   /home                 bind of H/home (the --user's home, if any)
#   /var/lib/chrony       a fresh tmpfs, when this machine has that directory
#                         (apply removes chrony's NTS cookie dumps there)
#   /run                  a fresh tmpfs (its own /run/lock, /run/clockprov, sudo
#                         timestamps), seen from outside as /proc/PID/root/run
# where H = DIR/hosts/ADDR.  No systemd runs: systemctl is a recorded
# stand-in that logs to H/state/systemctl.log and keeps unit state in
# H/state/units/; apt-get logs to H/state/apt-get.log and edits
# H/dpkg-status.  Knobs: H/state/fail-start/<unit>, H/state/slow-start/<unit>
# (seconds to sleep before each start), H/state/slow-stop/<unit> (the same before each
# stop), H/state/fail-apt.
#
# Usage:
#   testhosts.sh [-v] up DIR [--os OS] [--packages PKGS] [--no-seed-files]
#                [--user NAME] [--hostname NAME] ADDR...
#       OS:   ubuntu-20.04 | debian-12 | rocky-9 (default debian-12)
#             rocky-9 presents the RHEL family's layout: /etc/chrony.conf,
#             chronyd.service, rpm and dnf stand-ins (logging to
#             H/state/dnf.log), no dpkg-query, apt-get or apt, and no
#             perl, as a minimal RHEL install has none (whiteouts)
#       PKGS: chrony | systemd-timesyncd | chrony,systemd-timesyncd | none
#             (default systemd-timesyncd; rocky-9: chrony or none)
#       --user NAME: also a non-root login NAME (uid 4242 or the next free
#             one, shell /bin/sh, home /home/NAME) that the client key opens;
#             no password (`*`) and no sudo rule: set those as root over ssh
#             (the host's /etc/shadow and /etc/sudoers.d are in its overlay)
#       --hostname NAME: the host runs in its own UTS namespace named NAME,
#             which its /etc/hosts does not list, and resolves host names
#             from files only (so no DNS query leaves the machine): sudo then
#             says "unable to resolve host NAME" as on a misconfigured host
#   testhosts.sh chronyd
#       prints the path of the chronyd the chrony hosts get (Debian's real
#       one, extracted into the cache once): tests check rendered files with
#       `chronyd -p -f FILE`
#   testhosts.sh [-v] down DIR [ADDR...]
#       kills the recorded sshd of every host (or of the given ones) and all
#       of its descendants, by PID.  Idempotent.
#
# Client key: DIR/id_ed25519; host keys: DIR/known_hosts.
# Environment: CLOCKPROV_TEST_CACHE (chronyd cache, default
# /var/tmp/clockprov-test-cache), CLOCKPROV_TESTHOSTS_TIMEOUT (seconds to wait
# for the hosts to listen; default 60 + hosts/50: a wait that ends as soon as they listen,
# generous because a loaded machine (load 50 seen) took over 20 s to start one).
# Nothing is printed on stdout unless -v is given.
set -euo pipefail
umask 022
shopt -s nullglob

PROG=${0##*/}
case ${BASH_SOURCE[0]} in */*) HERE=${BASH_SOURCE[0]%/*} ;; *) HERE=. ;; esac
HERE=$(cd "$HERE" && pwd -P)
SEED_ROOT=$HERE/seed
CACHE=${CLOCKPROV_TEST_CACHE:-/var/tmp/clockprov-test-cache}
VERBOSE=0
SSHD=/usr/sbin/sshd

declare -A VERSION=(
    [ubuntu-20.04/chrony]=3.5-6ubuntu6.2
    [ubuntu-20.04/systemd-timesyncd]=245.4-4ubuntu3.22
    [debian-12/chrony]=4.3-2+deb12u1
    [debian-12/systemd-timesyncd]=252.38-1~deb12u1
    [rocky-9/chrony]=4.5-3.el9
)
declare -A UNIT_OF=([chrony]=chrony.service [systemd-timesyncd]=systemd-timesyncd.service)

die() { printf '%s: error: %s\n' "$PROG" "$*" >&2; exit 1; }
warn() { printf '%s: warning: %s\n' "$PROG" "$*" >&2; }
say() { if ((VERBOSE)); then printf '%s\n' "$*"; fi; }
usage() {
    sed -n 's/^# \{0,1\}//; /^Usage:/,/^Client key/p' "${BASH_SOURCE[0]}" | sed '$d' >&2
    exit 2
}
now_ms() { local t=${EPOCHREALTIME/./}; printf '%s' $((t / 1000)); }

# ---------------------------------------------------------------- checks ---

check_prereqs() {
    ((EUID == 0)) || die "must run as root (it mounts overlays in private mount namespaces)"
    local missing=() c
    for c in unshare setsid mount flock mknod xargs ssh-keygen; do
        command -v "$c" >/dev/null 2>&1 || missing+=("$c")
    done
    [[ -x $SSHD ]] || missing+=("$SSHD")
    if ((${#missing[@]})); then
        die "missing: ${missing[*]} -- install with: apt-get install -y openssh-server openssh-client util-linux mount coreutils findutils"
    fi
    local fs found=0
    while read -r _ fs; do [[ $fs == overlay ]] && found=1; done </proc/filesystems
    ((found)) || die "the kernel has no overlayfs (try: modprobe overlay)"
}

# DIR must be a plain absolute path (it ends up in overlay mount options,
# sshd_config and sh-quoted stand-ins) outside the paths a host overlays.
check_dir() {
    local d=$1
    [[ $d =~ ^/[A-Za-z0-9._/+-]*$ ]] || die "DIR must be an absolute path of [A-Za-z0-9._/+-] characters: '$d'"
    case $d/ in
        /etc/* | /usr/* | /root/* | /var/lib/dpkg/* | /proc/* | /sys/* | /dev/*)
            die "DIR must not live under /etc, /usr, /root or /var/lib/dpkg (the hosts overlay those): $d" ;;
    esac
}

check_addr() {
    local a=$1 o
    [[ $a =~ ^127\.([0-9]{1,3})\.([0-9]{1,3})\.([0-9]{1,3})$ ]] || die "not a 127/8 loopback address: '$a'"
    for o in "${BASH_REMATCH[@]:1}"; do ((10#$o <= 255)) || die "bad address '$a'"; done
}

# hex form of ADDR:22 as in /proc/net/tcp (little-endian x86)
tcp_hex() {
    local IFS=.
    # shellcheck disable=SC2086
    set -- $1
    printf '%02X%02X%02X%02X:0016' "$4" "$3" "$2" "$1"
}

# prints the local addresses (hex) of listening IPv4 TCP sockets
listening_hex() {
    local _sl laddr _rem st _rest
    { read -r _; while read -r _sl laddr _rem st _rest; do [[ $st == 0A ]] && printf '%s\n' "$laddr"; done; } </proc/net/tcp
}

# ----------------------------------------------------------- processes -----

# is PID one of ours for host dir H?  Guards against killing a recycled PID.
# Before the exec of sshd (setsid, unshare, sh) H is one of the arguments;
# sshd then rewrites its argv into a title such as
# "sshd: /usr/sbin/sshd -D -e -f H/sshd_config [listener] ...".
pid_is_host() {
    local pid=$1 h=$2 a
    local -a argv=()
    [[ -r /proc/$pid/cmdline ]] || return 1
    mapfile -d '' argv 2>/dev/null <"/proc/$pid/cmdline" || return 1
    for a in "${argv[@]}"; do
        [[ $a == "$h" || " $a " == *" $h/sshd_config "* ]] && return 0
    done
    return 1
}

# alive = exists and is not a zombie
pid_alive() {
    local line rest
    read -r line 2>/dev/null <"/proc/$1/stat" || return 1
    rest=${line##*) }
    [[ ${rest%% *} != Z ]]
}

# fills the global CHILDREN map: ppid -> " pid pid ..."
declare -A CHILDREN
scan_children() {
    CHILDREN=()
    local f line rest pid ppid
    for f in /proc/[0-9]*/stat; do
        read -r line 2>/dev/null <"$f" || continue
        pid=${line%% *}
        rest=${line##*) }
        rest=${rest#* }
        ppid=${rest%% *}
        CHILDREN[$ppid]+=" $pid"
    done
}

# prints the given PIDs and all their descendants (uses CHILDREN)
with_descendants() {
    local -a queue=("$@")
    local -A seen=()
    local p c i=0
    while ((i < ${#queue[@]})); do
        p=${queue[i++]}
        [[ -n ${seen[$p]:-} ]] && continue
        seen[$p]=1
        printf '%s\n' "$p"
        for c in ${CHILDREN[$p]:-}; do queue+=("$c"); done
    done
}

# kill_hosts H... : TERM the recorded sshd of each host dir and its whole
# process tree, wait up to 5 s, then KILL what is left.
kill_hosts() {
    local -a roots=() victims=() left=()
    local h pid p deadline
    for h in "$@"; do
        [[ -f $h/pid ]] || continue
        read -r pid <"$h/pid" || continue
        [[ $pid =~ ^[0-9]+$ ]] || continue
        pid_is_host "$pid" "$h" && roots+=("$pid")
    done
    ((${#roots[@]})) || return 0
    scan_children
    # processes that escaped the tree (setsid/nohup daemons started over
    # ssh) still live in the host's mount namespace: add those too, but never
    # this script's own namespace (a host caught before its unshare)
    local -A ns_pids=() ns_of=()
    local f ino own_ns init_ns
    local -a extra=()
    while read -r f ino; do
        f=${f#/proc/}
        f=${f%%/*}
        ns_of[$f]=$ino
        ns_pids[$ino]+=" $f"
    done < <(stat -L -c '%n %i' /proc/[0-9]*/ns/mnt 2>/dev/null || true)
    own_ns=${ns_of[$$]:-}
    init_ns=${ns_of[1]:-$own_ns}
    [[ -n $own_ns ]] || die "cannot read the mount namespace of this script (/proc/$$/ns/mnt)"
    for pid in "${roots[@]}"; do
        ino=${ns_of[$pid]:-}
        [[ -n $ino && $ino != "$own_ns" && $ino != "$init_ns" ]] || continue
        # shellcheck disable=SC2206
        extra+=(${ns_pids[$ino]:-})
    done
    mapfile -t victims < <(with_descendants "${roots[@]}" "${extra[@]}")
    kill -TERM "${victims[@]}" 2>/dev/null || true
    deadline=$(($(now_ms) + 5000))
    while :; do
        left=()
        for p in "${victims[@]}"; do pid_alive "$p" && left+=("$p"); done
        ((${#left[@]})) || break
        if (($(now_ms) > deadline)); then
            # something ignored TERM: KILL it and whatever it spawned since
            scan_children
            mapfile -t left < <(with_descendants "${left[@]}")
            kill -KILL "${left[@]}" 2>/dev/null || true
            deadline=$(($(now_ms) + 2000))
            while :; do
                victims=()
                for p in "${left[@]}"; do pid_alive "$p" && victims+=("$p"); done
                ((${#victims[@]})) || break
                (($(now_ms) > deadline)) && die "could not kill PIDs: ${victims[*]}"
                sleep 0.05
            done
            break
        fi
        sleep 0.02
    done
    say "killed ${#roots[@]} host(s), ${#victims[@]} process(es)"
}

# ------------------------------------------------------------- chronyd -----

# sets CHRONY_LAYER to a directory holding sbin/chronyd (a lower layer for
# the /usr overlay), downloading and extracting Debian's chrony once into
# $CACHE.  Never installs chrony on this machine.
CHRONY_LAYER=
ensure_chronyd() {
    local layer=$CACHE/chrony-layer
    if [[ ! -x $layer/sbin/chronyd ]]; then
        mkdir -p "$CACHE"
        local rc=0
        set +e # errexit stays in force inside the subshell (not a condition)
        (
            set -e
            flock 8
            [[ -x $layer/sbin/chronyd ]] && exit 0
            if ! command -v apt-get >/dev/null || ! command -v dpkg-deb >/dev/null; then
                die "need apt-get and dpkg-deb to fetch chronyd"
            fi
            tmp=$(mktemp -d "$CACHE/tmp.XXXXXX")
            trap 'rm -rf "$tmp"' EXIT
            chmod 755 "$tmp" # lets apt's _apt user write the .deb
            if ! (cd "$tmp" && apt-get download -qq chrony) >"$tmp/apt.log" 2>&1; then
                apt-get update -qq >>"$tmp/apt.log" 2>&1 || true
                (cd "$tmp" && apt-get download -qq chrony) >>"$tmp/apt.log" 2>&1 || {
                    cat "$tmp/apt.log" >&2
                    die "apt-get download chrony failed"
                }
            fi
            debs=("$tmp"/chrony_*.deb)
            ((${#debs[@]} == 1)) || die "apt-get download chrony left no .deb in $tmp"
            dpkg-deb -x "${debs[0]}" "$tmp/x"
            mkdir -p "$tmp/layer/sbin"
            cp "$tmp/x/usr/sbin/chronyd" "$tmp/layer/sbin/chronyd"
            "$tmp/layer/sbin/chronyd" -v >/dev/null 2>&1 ||
                die "extracted chronyd does not run here (missing libraries? ldd $tmp/layer/sbin/chronyd)"
            cp "${debs[0]}" "$CACHE/"
            mv "$tmp/layer" "$layer"
        ) 8>"$CACHE/.lock"
        rc=$?
        set -e
        ((rc == 0)) || return 1
    fi
    CHRONY_LAYER=$layer
}

# ------------------------------------------------------- shared files ------

# dpkg status stanza minus the Package and Status lines
stanza_body() {
    local os=$1 pkg=$2 ver=${VERSION[$1/$2]:-}
    local maint size prio
    case $pkg in
        chrony)
            case $os in
                ubuntu-*) maint="Ubuntu Developers <ubuntu-devel-discuss@lists.ubuntu.com>" size=599 ;;
                *) maint="Vincent Blut <vincent.debian@free.fr>" size=639 ;;
            esac
            printf 'Priority: optional\nSection: net\nInstalled-Size: %s\nMaintainer: %s\nArchitecture: amd64\nVersion: %s\nProvides: time-daemon\nConflicts: time-daemon\nDescription: Versatile implementation of the Network Time Protocol\n' \
                "$size" "$maint" "$ver"
            ;;
        systemd-timesyncd)
            case $os in
                ubuntu-*) maint="Ubuntu Developers <ubuntu-devel-discuss@lists.ubuntu.com>" size=113 prio=optional ;;
                *) maint="Debian systemd Maintainers <pkg-systemd-maintainers@lists.alioth.debian.org>" size=147 prio=standard ;;
            esac
            printf 'Priority: %s\nSection: admin\nInstalled-Size: %s\nMaintainer: %s\nArchitecture: amd64\nVersion: %s\nProvides: time-daemon\nConflicts: time-daemon\nDescription: minimalistic service to synchronize local time with NTP servers\n' \
                "$prio" "$size" "$maint" "$ver"
            # dpkg's md5 of the conffile as shipped (the seed is the vendor's file): what tells
            # clockprov's migration which text to give back.
            if [[ -e $SEED_ROOT/$os/timesyncd.conf ]]; then
                printf 'Conffiles:\n /etc/systemd/timesyncd.conf %s\n' \
                    "$(md5sum <"$SEED_ROOT/$os/timesyncd.conf" | cut -d' ' -f1)"
            fi
            ;;
    esac
}

# write FILE atomically from stdin
atomic_write() {
    local tmp
    tmp=$(mktemp "$1.XXXXXX")
    cat >"$tmp"
    chmod 644 "$tmp"
    mv -f "$tmp" "$1"
}

# DIR/flavours/OS: seed files + dpkg stanzas; DIR/lib: stand-in bodies.
write_shared() {
    local dir=$1 os=$2 fl=$1/flavours/$2 p
    mkdir -p "$fl/stanza" "$dir/lib" "$dir/hosts"
    for p in chrony.conf timesyncd.conf os-release redhat; do
        [[ -e $SEED_ROOT/$os/$p ]] || continue # redhat: the RHEL family's layout
        atomic_write "$fl/$p" <"$SEED_ROOT/$os/$p"
    done
    for p in chrony systemd-timesyncd; do
        stanza_body "$os" "$p" | atomic_write "$fl/stanza/$p"
    done
    systemctl_lib | atomic_write "$dir/lib/systemctl.sh"
    apt_get_lib | atomic_write "$dir/lib/apt-get.sh"
    apt_lib | atomic_write "$dir/lib/apt.sh"
    rpm_lib | atomic_write "$dir/lib/rpm.sh"
}

# Body of the systemctl stand-in (POSIX sh, sourced by a per-host wrapper
# that sets H).
systemctl_lib() {
    cat <<'EOF'
# shellcheck shell=sh
# clockprov test host: recorded stand-in for systemctl (no systemd runs here).
# Unit state: $H/state/units/<unit>.enabled (enabled|disabled),
# <unit>.active (active|inactive|failed), <unit>.masked; a unit exists iff
# its .enabled or .masked file does.  Knobs: $H/state/fail-start/<unit>,
# $H/state/slow-start/<unit> (seconds to sleep before starting), $H/state/slow-stop/<unit>
# (before stopping).
S=$H/state
printf '%s\n' "$*" >>"$S/systemctl.log"

norm() { # sets NU to the normalised unit name
    NU=$1
    case $NU in
    *.service) NU=${NU%.service} ;;
    *.*) return ;;
    esac
    case $NU in chronyd) NU=chrony ;; esac
    NU=$NU.service
}
exists() { [ -e "$S/units/$1.enabled" ] || [ -e "$S/units/$1.masked" ]; }
get_enabled() {
    if [ -e "$S/units/$1.masked" ]; then st=masked
    elif [ -e "$S/units/$1.enabled" ]; then read -r st <"$S/units/$1.enabled"
    else st=not-found; fi
}
get_active() {
    st=inactive
    if [ -e "$S/units/$1.active" ]; then read -r st <"$S/units/$1.active"; fi
}
set_enabled() { printf '%s\n' "$2" >"$S/units/$1.enabled"; }
set_active() { printf '%s\n' "$2" >"$S/units/$1.active"; }
do_start() {
    if [ -e "$S/slow-start/$1" ]; then read -r secs <"$S/slow-start/$1"; sleep "$secs"; fi
    if [ -e "$S/fail-start/$1" ]; then
        set_active "$1" failed
        printf 'Job for %s failed because the control process exited with error code.\nSee "systemctl status %s" and "journalctl -xeu %s" for details.\n' "$1" "$1" "$1" >&2
        return 1
    fi
    set_active "$1" active
}
say() { [ "$quiet" = 1 ] || printf '%s\n' "$1"; }
need_units() { [ -n "$units" ] || { echo "Too few arguments." >&2; exit 1; }; }

quiet=0 now=0 verb='' units='' props='' want_prop=0
for a do
    if [ "$want_prop" = 1 ]; then props="$props $a"; want_prop=0; continue; fi
    case $a in
    -p | --property) want_prop=1 ;;
    --property=*) props="$props ${a#--property=}" ;;
    -q | --quiet) quiet=1 ;;
    --now) now=1 ;;
    --no-block | --no-pager | --no-legend | --no-ask-password | --system | --full | -l | --force | -f | --plain | --lines=*) ;;
    -*)
        printf "systemctl: unrecognized option '%s' (clockprov test stand-in)\n" "$a" >&2
        exit 1
        ;;
    *)
        if [ -z "$verb" ]; then verb=$a; else norm "$a"; units="$units $NU"; fi
        ;;
    esac
done

rc=0
case $verb in
daemon-reload | daemon-reexec) ;;
is-enabled)
    need_units
    rc=1
    for u in $units; do
        if exists "$u"; then
            get_enabled "$u"; say "$st"
            [ "$st" = enabled ] && rc=0
        else
            printf 'Failed to get unit file state for %s: No such file or directory\n' "$u" >&2
        fi
    done
    ;;
show)
    # `systemctl show -p UnitFileState -p ActiveState UNIT...`: KEY=VALUE lines, as systemd
    # prints them, one block per unit, blocks separated by a blank line.
    need_units
    sep=''
    for u in $units; do
        printf '%s' "$sep"
        sep='
'
        for p in ${props:-Id UnitFileState ActiveState}; do
            case $p in
            Id) printf 'Id=%s\n' "$u" ;;
            UnitFileState) if exists "$u"; then get_enabled "$u"; else st=''; fi; printf 'UnitFileState=%s\n' "$st" ;;
            ActiveState) get_active "$u"; printf 'ActiveState=%s\n' "$st" ;;
            *) printf '%s=\n' "$p" ;;
            esac
        done
    done
    ;;
is-active)
    need_units
    rc=3
    for u in $units; do
        get_active "$u"; say "$st"
        [ "$st" = active ] && rc=0
    done
    ;;
is-failed)
    need_units
    rc=1
    for u in $units; do
        get_active "$u"; say "$st"
        [ "$st" = failed ] && rc=0
    done
    ;;
start | restart | reload-or-restart | try-restart | try-reload-or-restart | condrestart)
    need_units
    for u in $units; do
        if ! exists "$u"; then
            printf 'Failed to %s %s: Unit %s not found.\n' "$verb" "$u" "$u" >&2; rc=5; continue
        fi
        get_enabled "$u"
        if [ "$st" = masked ]; then
            printf 'Failed to %s %s: Unit %s is masked.\n' "$verb" "$u" "$u" >&2; rc=1; continue
        fi
        case $verb in try-* | condrestart) get_active "$u"; [ "$st" = active ] || continue ;; esac
        do_start "$u" || rc=1
    done
    ;;
stop)
    need_units
    for u in $units; do
        if [ -e "$S/slow-stop/$u" ]; then read -r secs <"$S/slow-stop/$u"; sleep "$secs"; fi
        if exists "$u"; then set_active "$u" inactive
        else printf 'Failed to stop %s: Unit %s not loaded.\n' "$u" "$u" >&2; rc=5; fi
    done
    ;;
enable | disable)
    need_units
    for u in $units; do
        if ! exists "$u"; then
            printf 'Failed to %s unit: Unit file %s does not exist.\n' "$verb" "$u" >&2; rc=1; continue
        fi
        get_enabled "$u"
        if [ "$st" = masked ] && [ "$verb" = enable ]; then
            printf 'Failed to enable unit: Unit file /etc/systemd/system/%s is masked.\n' "$u" >&2; rc=1; continue
        fi
        [ "$st" = masked ] || set_enabled "$u" "${verb}d"
        if [ "$now" = 1 ]; then
            if [ "$verb" = enable ]; then do_start "$u" || rc=1; else set_active "$u" inactive; fi
        fi
    done
    ;;
mask)
    need_units
    for u in $units; do
        : >"$S/units/$u.masked"
        [ "$now" = 1 ] && set_active "$u" inactive
    done
    ;;
unmask)
    need_units
    for u in $units; do rm -f "$S/units/$u.masked"; done
    ;;
reset-failed)
    [ -n "$units" ] || for f in "$S"/units/*.active; do
        [ -e "$f" ] || continue
        u=${f##*/}; units="$units ${u%.active}"
    done
    for u in $units; do
        get_active "$u"
        [ "$st" = failed ] && set_active "$u" inactive
    done
    ;;
status)
    need_units
    for u in $units; do
        if ! exists "$u"; then
            printf 'Unit %s could not be found.\n' "$u" >&2; rc=4; continue
        fi
        get_enabled "$u"; en=$st
        get_active "$u"
        printf '* %s\n     Loaded: loaded (/lib/systemd/system/%s; %s)\n     Active: %s\n' "$u" "$u" "$en" "$st"
        [ "$st" = active ] || { [ "$rc" = 0 ] && rc=3; }
    done
    ;;
list-unit-files)
    n=0 out=''
    for u in $units; do
        exists "$u" || continue
        get_enabled "$u"
        out="$out$(printf '%-40s %s\n' "$u" "$st")
"
        n=$((n + 1))
    done
    if [ "$quiet" = 0 ]; then
        printf '%-40s %s\n' "UNIT FILE" STATE
        printf '%s' "$out"
        printf '\n%s unit files listed.\n' "$n"
    fi
    [ "$n" -gt 0 ] || rc=1
    ;;
'') echo "systemctl (clockprov test stand-in): no command given" >&2; rc=1 ;;
*) printf "systemctl (clockprov test stand-in): unsupported command '%s'\n" "$verb" >&2; rc=1 ;;
esac
exit "$rc"
EOF
}

# Body of the apt-get stand-in (POSIX sh, sourced by a per-host wrapper that
# sets H, FL (flavour dir with seeds and stanzas) and CHRONY_LAYER).
apt_get_lib() {
    cat <<'EOF'
# shellcheck shell=sh
# clockprov test host: stand-in for apt-get.  Knows chrony and
# systemd-timesyncd (which conflict: both provide time-daemon); any other
# package is accepted and ignored.  Knobs: $H/state/fail-apt; $H/state/postinst-pools:
# installing chrony creates /etc/chrony/sources.d/ubuntu-ntp-pools.sources with
# that text, as Ubuntu 25.10+'s chrony.postinst does through ucf: only when ucf
# does not know the file yet ($H/state/ucf-pools, forgotten at purge), so a file
# the admin deleted or renamed is not recreated by a reinstall.
S=$H/state
POOLS=/etc/chrony/sources.d/ubuntu-ntp-pools.sources
printf '%s\n' "$*" >>"$S/${PKGLOG:-apt-get.log}" # dnf.log when it stands in for dnf
if [ -e "$S/fail-apt" ]; then
    echo "E: Unable to fetch some archives, maybe run apt-get update or try with --fix-missing? (clockprov test host: fail-apt knob)" >&2
    exit 100
fi

unit_of() { case $1 in chrony) echo chrony.service ;; *) echo "$1.service" ;; esac; }
conffile_of() {
    case $1 in
    chrony) if [ -e "$FL/redhat" ]; then echo /etc/chrony.conf; else echo /etc/chrony/chrony.conf; fi ;;
    *) echo /etc/systemd/timesyncd.conf ;;
    esac
}
seed_of() { case $1 in chrony) echo "$FL/chrony.conf" ;; *) echo "$FL/timesyncd.conf" ;; esac; }
pkg_status() { st=; if [ -e "$S/pkgs/$1" ]; then read -r st <"$S/pkgs/$1"; fi; }
pkg_version() {
    ver=
    while read -r k v; do [ "$k" = Version: ] && ver=$v; done <"$FL/stanza/$1"
}
write_status() {
    {
        for p in chrony systemd-timesyncd; do
            pkg_status "$p"
            [ -n "$st" ] || continue
            printf 'Package: %s\nStatus: %s\n' "$p" "$st"
            cat "$FL/stanza/$p"
            echo
        done
    } >"$H/dpkg-status" # in place: the file is bind-mounted
}
remove_pkg() { # pkg purge(0|1)
    u=$(unit_of "$1")
    rm -f "$S/units/$u.enabled" "$S/units/$u.active" "$S/units/$u.masked"
    [ "$1" = chrony ] && rm -f /usr/sbin/chronyd /usr/share/chrony/chrony.conf
    if [ "$2" = 1 ]; then
        rm -f "$S/pkgs/$1" "$(conffile_of "$1")"
        if [ "$1" = chrony ] && [ -e "$S/ucf-pools" ]; then
            rm -f "$POOLS" "$S/ucf-pools"
        fi
        echo "Purging configuration files for $1 ..."
    else
        echo "deinstall ok config-files" >"$S/pkgs/$1"
        echo "Removing $1 ..."
    fi
}
install_pkg() {
    cf=$(conffile_of "$1")
    if [ ! -e "$cf" ]; then
        mkdir -p "${cf%/*}"
        cp "$(seed_of "$1")" "$cf"
    fi
    if [ "$1" = chrony ] && [ -n "$CHRONY_LAYER" ] && [ ! -e /usr/sbin/chronyd ]; then
        cp "$CHRONY_LAYER/sbin/chronyd" /usr/sbin/chronyd
    fi
    if [ "$1" = chrony ] && [ ! -e "$FL/redhat" ]; then
        # the package's own copy of the text it ships (ucf's pristine copy)
        mkdir -p /usr/share/chrony
        cp "$FL/chrony.conf" /usr/share/chrony/chrony.conf
    fi
    if [ "$1" = chrony ] && [ -e "$S/postinst-pools" ] && [ ! -e "$S/ucf-pools" ]; then
        : >"$S/ucf-pools"
        if [ ! -e "$POOLS" ]; then
            mkdir -p "${POOLS%/*}"
            cp "$S/postinst-pools" "$POOLS"
        fi
    fi
    echo "install ok installed" >"$S/pkgs/$1"
    u=$(unit_of "$1")
    echo enabled >"$S/units/$u.enabled"
    echo active >"$S/units/$u.active"
    pkg_version "$1"
    echo "Setting up $1 ($ver) ..."
}

verb='' pkgs='' skip=0 purge=0
for a do
    if [ "$skip" = 1 ]; then skip=0; continue; fi
    case $a in
    -o | -c | -t | --option | --config-file | --target-release | --default-release) skip=1 ;;
    --purge) purge=1 ;;
    -*) ;;
    *) if [ -z "$verb" ]; then verb=$a; else pkgs="$pkgs $a"; fi ;;
    esac
done

case $verb in
update | upgrade | dist-upgrade | full-upgrade | autoremove | autoclean | clean | check) exit 0 ;;
install | reinstall)
    for p in $pkgs; do
        p=${p%%=*}; p=${p%%/*}; p=${p%%:*}
        case $p in
        chrony) other=systemd-timesyncd ;;
        systemd-timesyncd) other=chrony ;;
        *) echo "$p is already the newest version."; continue ;;
        esac
        pkg_status "$p"
        if [ "$st" = "install ok installed" ] && [ "$verb" = install ]; then
            pkg_version "$p"
            echo "$p is already the newest version ($ver)."
            continue
        fi
        pkg_status "$other"
        [ "$st" = "install ok installed" ] && remove_pkg "$other" 0
        install_pkg "$p"
    done
    write_status
    ;;
remove | purge)
    [ "$verb" = purge ] && purge=1
    for p in $pkgs; do
        p=${p%%=*}; p=${p%%/*}; p=${p%%:*}
        case $p in chrony | systemd-timesyncd) ;; *) echo "Package '$p' is not installed, so not removed"; continue ;; esac
        pkg_status "$p"
        if [ "$st" = "install ok installed" ] || { [ -n "$st" ] && [ "$purge" = 1 ]; }; then
            remove_pkg "$p" "$purge"
        else
            echo "Package '$p' is not installed, so not removed"
        fi
    done
    write_status
    ;;
'') echo "E: No command given (clockprov test stand-in)" >&2; exit 100 ;;
*) echo "E: Invalid operation $verb (clockprov test stand-in)" >&2; exit 100 ;;
esac
exit 0
EOF
}

# Body of the rpm stand-in of a RHEL-layout host: `rpm -qa [--qf FMT] NAME...`
# lists the installed packages among NAMEs (FMT knows %{NAME}, %{VERSION},
# %{RELEASE} and \n), as the real rpm does; anything else is refused.
rpm_lib() {
    cat <<'EOF'
# shellcheck shell=sh
S=$H/state
printf '%s\n' "rpm $*" >>"$S/dnf.log"
fmt='%{NAME}-%{VERSION}-%{RELEASE}\n' all=0 names=''
while [ $# -gt 0 ]; do
    case $1 in
    -qa) all=1 ;;
    --qf | --queryformat) fmt=$2; shift ;;
    -*) echo "rpm: clockprov test stand-in: unknown option $1" >&2; exit 1 ;;
    *) names="$names $1" ;;
    esac
    shift
done
[ "$all" = 1 ] || { echo "rpm: clockprov test stand-in knows only -qa" >&2; exit 1; }
for p in $names; do
    st=
    if [ -e "$S/pkgs/$p" ]; then read -r st <"$S/pkgs/$p"; fi
    [ "$st" = "install ok installed" ] || continue
    ver=
    while read -r k v; do [ "$k" = Version: ] && ver=$v; done <"$FL/stanza/$p"
    out=$(printf '%s' "$fmt" | sed -e "s/%{NAME}/$p/g" -e "s/%{VERSION}/${ver%%-*}/g" -e "s/%{RELEASE}/${ver#*-}/g")
    printf '%b' "$out"
done
exit 0
EOF
}

apt_lib() {
    cat <<'EOF'
# shellcheck shell=sh
# clockprov test host: apt is not for scripts; refuse instead of touching
# the machine that runs the test hosts.
printf '%s\n' "apt $*" >>"$H/state/apt-get.log"
echo "E: clockprov test host: use apt-get, not apt (apt has no stable CLI)" >&2
exit 100
EOF
}

# ------------------------------------------------------------------- up ----

# runs in the new mount namespace as: sh -c "$MOUNT_SCRIPT" name H USR_LOWER
# shellcheck disable=SC2016
MOUNT_SCRIPT='set -e
h=$1
mount -t overlay clockprov-etc -o "lowerdir=/etc,upperdir=$h/etc-upper,workdir=$h/etc-work" /etc
mount -t overlay clockprov-usr -o "lowerdir=$2,upperdir=$h/usr-upper,workdir=$h/usr-work" /usr
mount --bind "$h/dpkg-status" /var/lib/dpkg/status
mount --bind "$h/dpkg-updates" /var/lib/dpkg/updates
mount --bind "$h/root" /root
mount --bind "$h/home" /home
mount -t tmpfs -o mode=755 clockprov-run /run
# chrony state (apply drops NTS cookie dumps there): per host, never this machine itself
if [ -d /var/lib/chrony ]; then mount -t tmpfs -o mode=755 clockprov-chrony /var/lib/chrony; fi
mkdir -p /run/sshd /run/lock
chmod 1777 /run/lock
ln -s /dev/shm /run/shm
if [ -n "$3" ]; then hostname "$3"; fi
exec /usr/sbin/sshd -D -e -f "$h/sshd_config"'

# xargs over NUL-separated stdin, quietly failing the script if it fails
xargs0() { xargs -0 -r "$@"; }

cmd_up() {
    local dir='' os=debian-12 packages=systemd-timesyncd seed=1 user='' hostname=''
    local -a addrs=()
    while (($#)); do
        case $1 in
            --os) os=${2:?--os needs a value}; shift 2 ;;
            --os=*) os=${1#*=}; shift ;;
            --packages) packages=${2:?--packages needs a value}; shift 2 ;;
            --packages=*) packages=${1#*=}; shift ;;
            --no-seed-files) seed=0; shift ;;
            --user) user=${2:?--user needs a value}; shift 2 ;;
            --user=*) user=${1#*=}; shift ;;
            --hostname) hostname=${2:?--hostname needs a value}; shift 2 ;;
            --hostname=*) hostname=${1#*=}; shift ;;
            -h | --help) usage ;;
            -*) die "up: unknown option '$1'" ;;
            *) if [[ -z $dir ]]; then dir=$1; else addrs+=("$1"); fi; shift ;;
        esac
    done
    [[ -n $dir ]] || usage
    ((${#addrs[@]})) || die "up: no addresses given"
    [[ -d $SEED_ROOT/$os && -n ${VERSION[$os/chrony]:-} ]] || die "unknown --os '$os' (have: ubuntu-20.04 debian-12 rocky-9)"
    local redhat=0
    [[ -e $SEED_ROOT/$os/redhat ]] && redhat=1
    local -a pkgs=()
    case $packages in
        none | '') ;;
        chrony | systemd-timesyncd) pkgs=("$packages") ;;
        chrony,systemd-timesyncd | systemd-timesyncd,chrony) pkgs=(chrony systemd-timesyncd) ;;
        *) die "unknown --packages '$packages' (chrony, systemd-timesyncd, chrony,systemd-timesyncd or none)" ;;
    esac
    [[ -z $user || $user =~ ^[a-z_][a-z0-9_-]{0,30}$ ]] || die "bad --user '$user'"
    [[ -z $user || $user != root ]] || die "--user root: root logs in anyway"
    [[ -z $hostname || $hostname =~ ^[a-z0-9][a-z0-9-]{0,62}$ ]] || die "bad --hostname '$hostname'"
    if [[ -n $hostname ]] && getent -s files hosts "$hostname" >/dev/null; then
        die "--hostname $hostname is in this machine's /etc/hosts, so it would resolve"
    fi
    local uid=''
    if [[ -n $user ]]; then
        getent passwd "$user" >/dev/null && die "--user $user exists on this machine already"
        uid=4242
        while getent passwd "$uid" >/dev/null || getent group "$uid" >/dev/null; do uid=$((uid + 1)); done
    fi
    local chrony_group=_chrony chrony_gid=4300
    ((redhat)) && chrony_group=chrony
    while getent group "$chrony_gid" >/dev/null || [[ $chrony_gid == "$uid" ]]; do chrony_gid=$((chrony_gid + 1)); done
    local add_chrony_group=1
    getent group "$chrony_group" >/dev/null && add_chrony_group=0
    local has_chrony=0 p
    for p in "${pkgs[@]}"; do [[ $p == chrony ]] && has_chrony=1; done
    if ((redhat)); then
        for p in "${pkgs[@]}"; do [[ $p == chrony ]] || die "--os $os has no $p (the RHEL family's repositories have no systemd-timesyncd)"; done
    fi

    check_prereqs
    [[ $dir == /* ]] || dir=$PWD/$dir
    check_dir "$dir"
    check_dir "$CACHE"
    mkdir -p "$dir"
    dir=$(cd "$dir" && pwd -P)
    check_dir "$dir"
    local t0 a h
    t0=$(now_ms)

    # addresses: valid, unique, not already served
    local -A seen=() listening=()
    for a in "${addrs[@]}"; do
        check_addr "$a"
        [[ -z ${seen[$a]:-} ]] || die "address given twice: $a"
        seen[$a]=1
    done
    while read -r p; do listening[$p]=1; done < <(listening_hex)
    local -a stale=()
    for a in "${addrs[@]}"; do
        h=$dir/hosts/$a
        if [[ -f $h/pid ]]; then
            read -r p <"$h/pid" || p=
            if [[ $p =~ ^[0-9]+$ ]] && pid_is_host "$p" "$h" && pid_alive "$p"; then
                die "host $a is already up in $dir (pid $p)"
            fi
        fi
        [[ -z ${listening[$(tcp_hex "$a")]:-} ]] || die "$a:22 is already in use by another process"
        [[ -e $h ]] && stale+=("$h")
    done
    if ((${#stale[@]})); then printf '%s\0' "${stale[@]}" | xargs0 rm -rf; fi

    if ! ensure_chronyd; then
        ((has_chrony)) && die "cannot provide chronyd for chrony hosts"
        warn "no chronyd available: 'apt-get install chrony' on a test host will not provide /usr/sbin/chronyd"
    fi
    mkdir -p /run/sshd
    chmod 755 /run/sshd

    # shared, per-DIR files and the client key, under DIR's lock
    (
        flock 9
        write_shared "$dir" "$os"
        if [[ ! -f $dir/id_ed25519 ]]; then
            rm -f "$dir/id_ed25519.pub"
            ssh-keygen -q -t ed25519 -N '' -C clockprov-test-client -f "$dir/id_ed25519" </dev/null >/dev/null
        fi
    ) 9>"$dir/.lock"
    local client_pub fl=$dir/flavours/$os
    client_pub=$(<"$dir/id_ed25519.pub")

    # directories, then host keys in parallel while bash writes the rest
    local -a dirs=() private=() keys=() wrappers=() whiteouts=()
    for a in "${addrs[@]}"; do
        h=$dir/hosts/$a
        dirs+=("$h/etc-upper" "$h/etc-work" "$h/usr-upper/bin" "$h/usr-work"
            "$h/state/units" "$h/state/fail-start" "$h/state/slow-start" "$h/state/slow-stop"
            "$h/state/pkgs")
        ((seed && !redhat)) && dirs+=("$h/etc-upper/chrony" "$h/etc-upper/systemd")
        private+=("$h/root" "$h/root/.ssh")
        dirs+=("$h/home" "$h/dpkg-updates")
        keys+=("$h/ssh_host_ed25519_key")
    done
    printf '%s\0' "${dirs[@]}" | xargs0 mkdir -p
    printf '%s\0' "${private[@]}" | xargs0 mkdir -p -m 700
    local jobs keygen_pid
    jobs=$(($(nproc) * 2))
    printf '%s\0' "${keys[@]}" |
        xargs0 -n 1 -P "$jobs" ssh-keygen -q -t ed25519 -N '' -C '' -f >/dev/null &
    keygen_pid=$!

    local seed_chrony seed_timesyncd seed_os status_text="" unit
    seed_chrony=$(<"$fl/chrony.conf")
    seed_timesyncd=''
    ((redhat)) || seed_timesyncd=$(<"$fl/timesyncd.conf")
    seed_os=$(<"$fl/os-release")
    for p in "${pkgs[@]}"; do
        status_text+="Package: $p"$'\n'"Status: install ok installed"$'\n'"$(<"$fl/stanza/$p")"$'\n\n'
    done
    local wrapper_head
    for a in "${addrs[@]}"; do
        h=$dir/hosts/$a
        printf '%s\n' \
            "# clockprov test host $a (generated by testhosts.sh)" \
            "ListenAddress $a:22" \
            "HostKey $h/ssh_host_ed25519_key" \
            "PidFile none" \
            "PermitRootLogin prohibit-password" \
            "PubkeyAuthentication yes" \
            "PasswordAuthentication no" \
            "KbdInteractiveAuthentication no" \
            "UsePAM no" \
            "UseDNS no" \
            "AuthorizedKeysFile .ssh/authorized_keys" \
            "MaxStartups 200:30:400" \
            "LogLevel ERROR" \
            "Subsystem sftp internal-sftp" >"$h/sshd_config"
        printf '%s\n' "$client_pub" >"$h/root/.ssh/authorized_keys"
        printf '%s\n' "$seed_os" >"$h/etc-upper/os-release"
        if ((seed && redhat)); then
            printf '%s\n' "$seed_chrony" >"$h/etc-upper/chrony.conf"
        elif ((seed)); then
            printf '%s\n' "$seed_chrony" >"$h/etc-upper/chrony/chrony.conf"
            printf '%s\n' "$seed_timesyncd" >"$h/etc-upper/systemd/timesyncd.conf"
        else
            # hide this machine's own copies (systemd-timesyncd is installed here)
            for p in chrony/chrony.conf chrony.conf systemd/timesyncd.conf; do
                [[ -e /etc/$p ]] && whiteouts+=("$h/etc-upper/$p")
            done
        fi
        # Debian's and Ubuntu's chrony package keeps the text it ships (ucf's pristine copy):
        # clockprov gives a chrony.conf it wrote whole that text back
        if ((has_chrony && !redhat)); then
            mkdir -p "$h/usr-upper/share/chrony"
            cp "$fl/chrony.conf" "$h/usr-upper/share/chrony/chrony.conf"
        fi
        printf '%s' "$status_text" >"$h/dpkg-status"
        for p in "${pkgs[@]}"; do
            printf 'install ok installed\n' >"$h/state/pkgs/$p"
            unit=${UNIT_OF[$p]}
            printf 'enabled\n' >"$h/state/units/$unit.enabled"
            printf 'active\n' >"$h/state/units/$unit.active"
        done
        : >"$h/state/systemctl.log"
        : >"$h/state/apt-get.log"
        if [[ -n $user ]]; then
            # the machine's accounts plus the login, in the host's own /etc
            cp -p /etc/passwd /etc/group /etc/shadow "$h/etc-upper/"
            printf '%s:x:%s:%s:clockprov test login:/home/%s:/bin/sh\n' "$user" "$uid" "$uid" "$user" >>"$h/etc-upper/passwd"
            printf '%s:x:%s:\n' "$user" "$uid" >>"$h/etc-upper/group"
            # `*`: no password yet, but not locked (sshd refuses every method to a locked account)
            printf '%s:*:20000:0:99999:7:::\n' "$user" >>"$h/etc-upper/shadow"
            mkdir -p -m 700 "$h/home/$user/.ssh"
            printf '%s\n' "$client_pub" >"$h/home/$user/.ssh/authorized_keys"
            chown -R "$uid:$uid" "$h/home/$user"
        fi
        # chrony's system group, as its package adds it (NTS keys are root:GROUP 0640)
        if ((add_chrony_group)); then
            [[ -e $h/etc-upper/group ]] || cp -p /etc/group "$h/etc-upper/"
            printf '%s:x:%s:\n' "$chrony_group" "$chrony_gid" >>"$h/etc-upper/group"
        fi
        if [[ -n $hostname ]]; then
            sed 's/^hosts:.*/hosts: files/' /etc/nsswitch.conf >"$h/etc-upper/nsswitch.conf"
        fi
        printf 'os=%s\npackages=%s\nseed_files=%s\nuser=%s\nhostname=%s\n' "$os" "$packages" "$seed" "$user" "$hostname" >"$h/flavour"
        wrapper_head="#!/bin/sh
# clockprov test host $a: stand-in, see $dir/lib/
H='$h' FL='$fl' CHRONY_LAYER='$CHRONY_LAYER'"
        printf '%s\n. %s\n' "$wrapper_head" "'$dir/lib/systemctl.sh'" >"$h/usr-upper/bin/systemctl"
        wrappers+=("$h/usr-upper/bin/systemctl")
        if ((redhat)); then
            : >"$h/state/dnf.log"
            # dnf is the apt-get stand-in under another name (it parses `install -y -q P`)
            printf '%s\nPKGLOG=dnf.log\n. %s\n' "$wrapper_head" "'$dir/lib/apt-get.sh'" >"$h/usr-upper/bin/dnf"
            printf '%s\n. %s\n' "$wrapper_head" "'$dir/lib/rpm.sh'" >"$h/usr-upper/bin/rpm"
            wrappers+=("$h/usr-upper/bin/dnf" "$h/usr-upper/bin/rpm")
            # no Debian tools, and no perl (a minimal RHEL install has none: the facts
            # script then takes its other way, stat and head): whiteouts hide this machine's own
            for p in dpkg-query dpkg apt-get apt perl; do
                [[ -e /usr/bin/$p ]] && whiteouts+=("$h/usr-upper/bin/$p")
            done
        else
            printf '%s\n. %s\n' "$wrapper_head" "'$dir/lib/apt-get.sh'" >"$h/usr-upper/bin/apt-get"
            printf '%s\n. %s\n' "$wrapper_head" "'$dir/lib/apt.sh'" >"$h/usr-upper/bin/apt"
            wrappers+=("$h/usr-upper/bin/apt-get" "$h/usr-upper/bin/apt")
        fi
    done
    printf '%s\0' "${wrappers[@]}" | xargs0 chmod 755
    for p in "${whiteouts[@]}"; do
        mkdir -p "${p%/*}"
        mknod "$p" c 0 0
    done
    wait "$keygen_pid" || die "ssh-keygen failed for some host keys"
    local t1
    t1=$(now_ms)

    # start: the PID of the background job is the sshd (setsid and unshare
    # exec without forking; sh execs sshd)
    local lower=/usr
    ((has_chrony)) && lower=$CHRONY_LAYER:/usr
    local -a started=()
    for a in "${addrs[@]}"; do
        h=$dir/hosts/$a
        setsid unshare --mount --uts --propagation private \
            sh -c "$MOUNT_SCRIPT" clockprov-testhost "$h" "$lower" "$hostname" \
            </dev/null >"$h/log" 2>&1 &
        printf '%s\n' "$!" >"$h/pid"
        started+=("$h")
    done
    local t2
    t2=$(now_ms)

    # host keys -> DIR/known_hosts (replacing stale lines for these addresses)
    local kt kb
    local -a lines=()
    for a in "${addrs[@]}"; do
        read -r kt kb _ <"$dir/hosts/$a/ssh_host_ed25519_key.pub"
        lines+=("$a $kt $kb")
    done
    (
        flock 9
        kh=$dir/known_hosts
        {
            if [[ -f $kh ]]; then
                while read -r l; do
                    [[ -n ${seen[${l%% *}]:-} ]] || printf '%s\n' "$l"
                done <"$kh"
            fi
            printf '%s\n' "${lines[@]}"
        } | atomic_write "$kh"
    ) 9>"$dir/.lock"

    # wait until every host listens on ADDR:22
    local timeout=${CLOCKPROV_TESTHOSTS_TIMEOUT:-$((60 + ${#addrs[@]} / 50))}
    local deadline=$(($(now_ms) + timeout * 1000)) round=0
    local -A pending=()
    for a in "${addrs[@]}"; do pending[$(tcp_hex "$a")]=$a; done
    local -a failed=()
    while ((${#pending[@]})); do
        while read -r p; do
            [[ -n ${pending[$p]:-} ]] && unset "pending[$p]"
        done < <(listening_hex)
        ((${#pending[@]})) || break
        if ((++round % 5 == 0)); then
            for p in "${!pending[@]}"; do
                h=$dir/hosts/${pending[$p]}
                read -r kt <"$h/pid"
                pid_alive "$kt" || failed+=("${pending[$p]} (sshd exited)")
            done
        fi
        if (($(now_ms) > deadline)); then
            for p in "${!pending[@]}"; do failed+=("${pending[$p]} (not listening after ${timeout}s)"); done
        fi
        ((${#failed[@]})) && break
        sleep 0.05
    done
    if ((${#failed[@]})); then
        printf '%s: error: %d test host(s) failed to start in %s:\n' "$PROG" "${#failed[@]}" "$dir" >&2
        local n=0
        for p in "${failed[@]}"; do
            printf '  %s\n' "$p" >&2
            if ((n++ < 5)); then
                printf '  --- %s/hosts/%s/log:\n' "$dir" "${p%% *}" >&2
                sed 's/^/    /' "$dir/hosts/${p%% *}/log" | head -n 40 >&2 || true
            fi
        done
        kill_hosts "${started[@]}"
        exit 1
    fi
    local t3
    t3=$(now_ms)
    say "up: ${#addrs[@]} host(s) $os [${packages}] in $dir: prepared $((t1 - t0)) ms, spawned $((t2 - t1)) ms, listening $((t3 - t2)) ms, total $((t3 - t0)) ms"
}

# ----------------------------------------------------------------- down ----

cmd_down() {
    local dir='' a
    local -a addrs=() hosts=()
    while (($#)); do
        case $1 in
            -h | --help) usage ;;
            -*) die "down: unknown option '$1'" ;;
            *) if [[ -z $dir ]]; then dir=$1; else addrs+=("$1"); fi; shift ;;
        esac
    done
    [[ -n $dir ]] || usage
    [[ -d $dir/hosts ]] || return 0
    dir=$(cd "$dir" && pwd -P)
    if ((${#addrs[@]})); then
        for a in "${addrs[@]}"; do hosts+=("$dir/hosts/$a"); done
    else
        hosts=("$dir"/hosts/*)
    fi
    ((${#hosts[@]})) || return 0
    kill_hosts "${hosts[@]}"
}

# ----------------------------------------------------------------- main ----

main() {
    local -a args=()
    local a
    for a in "$@"; do
        if [[ $a == -v ]]; then VERBOSE=1; else args+=("$a"); fi
    done
    set -- "${args[@]}"
    (($#)) || usage
    local cmd=$1
    shift
    case $cmd in
        up) cmd_up "$@" ;;
        down) ((EUID == 0)) || die "must run as root"; cmd_down "$@" ;;
        chronyd) ensure_chronyd || die "cannot provide chronyd"; printf '%s\n' "$CHRONY_LAYER/sbin/chronyd" ;;
        -h | --help | help) usage ;;
        *) die "unknown command '$cmd' (up, down, chronyd)" ;;
    esac
}

# (sourcing the file only defines the functions)
if [[ ${BASH_SOURCE[0]} == "$0" ]]; then main "$@"; fi
