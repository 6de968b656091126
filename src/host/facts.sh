# shellcheck shell=sh
# Facts of a host (parsed by src/host/facts.rs; record format in src/host/records.rs).
#
# One round trip, and at most four processes besides this shell (which is the login process):
# dpkg-query (rpm on the RHEL family), systemctl, stat and head, one each for all packages,
# units and paths. Where perl is (every Debian and Ubuntu host: perl-base is Essential), one
# perl process (facts.pl) does the work of dpkg-query, stat and head: two processes in all
# (three when an interrupted dpkg left its update journal: dpkg-query then reads the packages).
# Everything else is a builtin: no pipe, no command substitution, no subshell.
#
# Arguments: MAX HELD PERL NPKG PACKAGE... NUNIT UNIT... NDIR (DIR SUFFIX)... PATH...
#   PERL: the text of facts.pl.
#   DIR SUFFIX: a drop-in directory; its files DIR/*SUFFIX are read as managed paths are.
#   MAX: the largest managed file to read, in bytes; a bigger one is read only up to MAX bytes
#   (its size tells the controller to refuse it, without waiting for all of it).
#   HELD: the controller's random marker for this read (see the end).
LC_ALL=C
export LC_ALL

max=$1
held=$2
pl=$3
shift 3
perl=
if command -v perl >/dev/null 2>&1; then perl=perl; fi
# The packages facts.pl reports (set by `packages`), if it does.
npkg=0
pkgs=

# with_first N FUNCTION ARG...: FUNCTION with the first N ARGs (a function has its own "$@").
# POSIX sh has no `local`: its variables start with an underscore.
with_first() {
    _n=$1
    _fn=$2
    shift 2
    _i=0
    for _a do
        shift
        if [ "$_i" -lt "$_n" ]; then set -- "$@" "$_a"; fi
        _i=$((_i + 1))
    done
    "$_fn" "$@"
}
packages() {
    [ $# -gt 0 ] || return 0
    if command -v dpkg-query >/dev/null 2>&1; then
        # dpkg's status file is the whole truth unless an interrupted dpkg left its update
        # journal (which dpkg-query would read too): then facts.pl reads it, as one with the
        # files. The names are plain words (src/host/facts.rs checks them).
        if [ -n "$perl" ] && [ -f /var/lib/dpkg/status ] && ! dpkg_journal; then
            npkg=$#
            pkgs=$*
            return 0
        fi
        # shellcheck disable=SC2016 # ${Package} is dpkg-query's field syntax, not the shell's
        # ${Conffiles}: ` PATH MD5` lines (the md5 of the file the package shipped), or none.
        dpkg-query -W -f='@@pkg ${Package} ${db:Status-Abbrev} ${Version}\n${Conffiles}\n' "$@" 2>/dev/null
    else
        # The RHEL family: `-a` with names lists only the installed ones (plain `-q` prints
        # "package X is not installed" on stdout), as installed (`ii`) in dpkg's words.
        rpm -qa --qf '@@pkg %{NAME} ii %{VERSION}-%{RELEASE}\n' "$@" 2>/dev/null
    fi
}
dpkg_journal() {
    for _j in /var/lib/dpkg/updates/[0-9]*; do
        if [ -e "$_j" ]; then return 0; fi
    done
    return 1
}
units() {
    echo @@units
    # One block per unit, in the order asked, blocks separated by a blank line.
    [ $# -eq 0 ] || systemctl show -p UnitFileState -p ActiveState "$@" 2>/dev/null
}

f=/etc/os-release
[ -r "$f" ] || f=/usr/lib/os-release
if [ -r "$f" ]; then
    while IFS= read -r l || [ -n "$l" ]; do printf '@@osl %s\n' "$l"; done <"$f"
fi

count=$1
shift
with_first "$count" packages "$@"
shift "$count"
count=$1
shift
with_first "$count" units "$@"
shift "$count"

# Restarts an interrupted apply left to do (the marker is written before a file is replaced).
for f in /run/clockprov/restart-pending.*; do
    if [ -e "$f" ]; then printf '@@pending %s\n' "${f#/run/clockprov/restart-pending.}"; fi
done

# The drop-ins: each directory's files, by the shell's own glob (no process), after the paths.
count=$1
shift
while [ "$count" -gt 0 ]; do
    d=$1
    s=$2
    shift 2
    for f in "$d"/*"$s"; do
        if [ -e "$f" ] || [ -L "$f" ]; then set -- "$@" "$f"; fi
    done
    count=$((count - 1))
done

# What is left are the managed paths. stat does not follow links: a link is reported as one.
for p do
    shift
    if [ -e "$p" ] || [ -L "$p" ]; then
        set -- "$@" "$p"
    else
        printf '@@absent %s\n' "$p"
    fi
done
r=0
if [ -n "$perl" ]; then
    # No pathname expansion of $pkgs (plain words, split on spaces only).
    set -f
    # shellcheck disable=SC2086 # $pkgs: one word per package
    perl -e "$pl" -- "$max" "$npkg" $pkgs "$@"
    r=$?
    set +f
else
    [ $# -eq 0 ] || stat -c '@@stat %f %s %a %U %G %n' -- "$@"
    # The regular files' contents, back to back, in the order stat listed them: the
    # controller splits them by the sizes stat printed.
    for p do
        shift
        if [ -f "$p" ] && [ ! -L "$p" ]; then set -- "$@" "$p"; fi
    done
    echo @@files
    if [ $# -gt 0 ]; then
        head -q -c "$max" -- "$@"
        r=$?
    fi
fi
printf '\n@@read %s\n@@end\n' "$r"

# The shell is kept for apply's transaction (src/ssh/sudo.rs, run_script_keeping_shell): the
# facts end with the controller's marker; then `@@next` on fd 3 (the channel's stdin) means a
# script follows there, run by `sh -s` in this process's place: no second channel or login
# shell. End of input (plan; apply with nothing to change) just ends it.
printf '@@held %s\n' "$held"
if IFS= read -r next <&3 && [ "$next" = @@next ]; then
    exec /bin/sh -s <&3 3<&-
fi
