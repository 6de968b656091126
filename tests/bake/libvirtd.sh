#!/usr/bin/env bash
# A private libvirtd for the bake tests: Debian's own daemon, with its configuration, sockets,
# state and logs under DIR, so that it shares nothing with a libvirt the machine may run.
#
#   libvirtd.sh up DIR     start it; print its URI (qemu+unix:///system?socket=DIR/sock/...)
#   libvirtd.sh down DIR   stop the qemu processes it started and the daemon, by PID
#
# libvirtd run as root always uses /etc/libvirt, /run/libvirt and /var/{lib,cache,log}/libvirt.
# It runs in its own mount namespace where /etc/libvirt is DIR/etc and /run and /var are overlays
# whose changes land in DIR; its sockets are in DIR/sock, outside the namespace, for virsh.
# qemu runs as root without cgroups, namespaces or a security driver (a test machine without
# systemd), logging to files (no virtlogd); domains get no network unless their XML asks for
# one.
set -euo pipefail

die() {
    echo "libvirtd.sh: $*" >&2
    exit 1
}

cmd_up() {
    local dir=$1 d
    [[ -d $dir ]] || die "$dir: no such directory"
    dir=$(cd "$dir" && pwd)
    [[ ! -e $dir/libvirtd.pid ]] || die "$dir: a libvirtd was started there already"
    command -v libvirtd >/dev/null || die "libvirtd is not installed (bash tests/lab/lab.sh deps)"
    for d in etc etc/qemu sock run.upper run.work var.upper var.work; do
        mkdir -p "$dir/$d"
    done
    cat >"$dir/etc/libvirtd.conf" <<EOF
unix_sock_dir = "$dir/sock"
unix_sock_rw_perms = "0700"
unix_sock_ro_perms = "0700"
auth_unix_rw = "none"
auth_unix_ro = "none"
log_outputs = "3:file:$dir/libvirtd.log"
EOF
    cat >"$dir/etc/qemu.conf" <<'EOF'
user = "root"
group = "root"
dynamic_ownership = 0
remember_owner = 0
security_driver = "none"
cgroup_controllers = [ ]
namespaces = [ ]
stdio_handler = "file"
EOF
    # Debian's libvirtd looks its qemu user up before it reads qemu.conf: give it one, in its
    # namespace's own /etc/passwd and /etc/group (the machine's get no new user).
    cp /etc/passwd "$dir/passwd"
    cp /etc/group "$dir/group"
    grep -q '^libvirt-qemu:' "$dir/passwd" ||
        echo 'libvirt-qemu:x:64055:64055:libvirt qemu (clockprov test):/nonexistent:/usr/sbin/nologin' >>"$dir/passwd"
    grep -q '^libvirt-qemu:' "$dir/group" || echo 'libvirt-qemu:x:64055:' >>"$dir/group"
    # The daemon becomes the process whose PID is recorded: unshare and bash exec into it.
    # shellcheck disable=SC2016 # the inner script expands its own $1
    setsid unshare --mount --propagation private -- bash -c '
        set -e
        dir=$1
        mount --bind "$dir/etc" /etc/libvirt
        mount --bind "$dir/passwd" /etc/passwd
        mount --bind "$dir/group" /etc/group
        mount -t overlay overlay -o "lowerdir=/run,upperdir=$dir/run.upper,workdir=$dir/run.work" /run
        mount -t overlay overlay -o "lowerdir=/var,upperdir=$dir/var.upper,workdir=$dir/var.work" /var
        exec libvirtd -f "$dir/etc/libvirtd.conf" -p /run/libvirtd.pid
    ' libvirtd "$dir" </dev/null >"$dir/libvirtd.out" 2>&1 &
    echo $! >"$dir/libvirtd.pid"
    local uri="qemu+unix:///system?socket=$dir/sock/libvirt-sock" i
    for ((i = 0; i < 300; i++)); do
        if [[ -S $dir/sock/libvirt-sock ]] && virsh -q -c "$uri" version >/dev/null 2>&1; then
            [[ $(cat "/proc/$(cat "$dir/libvirtd.pid")/comm") == libvirtd ]] ||
                die "the recorded PID is not libvirtd's"
            echo "$uri"
            return 0
        fi
        kill -0 "$(cat "$dir/libvirtd.pid")" 2>/dev/null || {
            cat "$dir/libvirtd.out" >&2
            die "libvirtd exited; see $dir/libvirtd.log"
        }
        sleep 0.1
    done
    cmd_down "$dir"
    die "libvirtd did not answer within 30 s"
}

cmd_down() {
    local dir=$1 pidfile pid i
    # The domains' qemu processes outlive libvirtd: stop each by the PID libvirt recorded.
    for pidfile in "$dir"/run.upper/libvirt/qemu/*.pid; do
        [[ -f $pidfile && $pidfile != */driver.pid ]] || continue
        pid=$(cat "$pidfile")
        if [[ $pid =~ ^[0-9]+$ ]]; then
            kill "$pid" 2>/dev/null || true
        fi
    done
    if [[ -f $dir/libvirtd.pid ]]; then
        pid=$(cat "$dir/libvirtd.pid")
        if kill "$pid" 2>/dev/null; then
            for ((i = 0; i < 100; i++)); do
                kill -0 "$pid" 2>/dev/null || break
                sleep 0.1
            done
            kill -9 "$pid" 2>/dev/null || true
        fi
        rm -f "$dir/libvirtd.pid"
    fi
}

case ${1:-} in
up) cmd_up "${2:?DIR}" ;;
down) cmd_down "${2:?DIR}" ;;
*) die "usage: libvirtd.sh up|down DIR" ;;
esac
