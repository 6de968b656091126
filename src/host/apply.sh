# shellcheck shell=sh
# One host's apply as one transaction (src/host/apply.rs builds the arguments and reads the
# @@ records this prints). Arguments, set by the line before this text:
#   LOCK_WAIT KEEP UNIT ENABLE ACTION ACTIVE_BEFORE PACKAGE CHECK STAMP
#   then per file: PATH KIND EXPECT MODE OWNER GROUP CONTENT
#   then the sentinel @@args.
# KIND is write|meta|none|off|offnew (none: unchanged, only its old backups pruned; off: a vendor
# source switched off, PATH renamed to PATH.clockprov-off, CONTENT being what that name holds
# as planned: `absent` or its sha256, kept as a backup when replaced; offnew: the same for a
# vendor source PACKAGE's install is to create, PATH absent when planned: switched off right
# after the install if it is a regular file then, else `@@notcreated PATH` and nothing done);
# EXPECT is `absent` or the sha256 of the file as planned; ACTION is
# restart|start|none; CHECK is `chronyd` or empty; STAMP, the UTC time in the backups' names, is
# the controller's (no `date` process here).
#
# Everything is inside one function called on the last line: a script cut short in transit is a
# syntax error or an unknown command, never half a transaction. Order: lock, drift check (fail
# closed), package (then which `offnew` vendor sources it created), stage every file beside its
# target, backups (hard links), the marker /run/clockprov/restart-pending.UNIT, renames, enable,
# restart, verify, remove the marker, prune old backups. A failed enable/restart restores the
# files named in the marker (which keeps the oldest backup of an earlier interrupted run) and
# undoes the enable.

clockprov_apply() {
    umask 022
    LC_ALL=C
    export LC_ALL
    for a do last=$a; done
    if [ $# -lt 10 ] || [ "$last" != @@args ]; then
        echo '@@badargs'
        return 2
    fi
    wait_s=$1 keep=$2 unit=$3 enable=$4 action=$5 active_before=$6 package=$7 check=$8 ts=$9
    shift 9
    lock=/run/lock/clockprov.lock
    mdir=/run/clockprov
    marker=$mdir/restart-pending.$unit
    temps=''
    off=.clockprov-off
    nts_trust=''
    nl='
'
    trap 'cleanup; exit 129' HUP
    trap 'cleanup; exit 130' INT
    trap 'cleanup; exit 141' PIPE
    trap 'cleanup; exit 143' TERM

    if ! { [ -d "${lock%/*}" ] && [ -d "$mdir" ]; } && ! mkdir -p "${lock%/*}" "$mdir" ||
        ! exec 9>>"$lock"; then
        printf '@@locked %s cannot-open\n' "$lock"
        return 7
    fi
    if ! flock -w "$wait_s" 9; then
        printf '@@locked %s\n' "$lock"
        return 7
    fi

    each drift_one "$@" || return 6
    echo '@@nodrift'

    if [ -n "$package" ]; then
        if ! out=$(install_package "$package" 2>&1); then
            printf '@@fail install %s\n' "$package"
            printf '%s\n' "$out" >&2
            return 4
        fi
        printf '@@installed %s\n' "$package"
    fi
    i=0
    each created_one "$@"

    i=0
    each stage_one "$@" || { cleanup; return 4; }
    i=0
    each backup_one "$@" || { cleanup; return 4; }
    i=0
    each mark_one "$@" || { cleanup; return 4; }
    i=0
    each install_one "$@" || { roll_back "install"; return 5; }
    temps=''

    enabled=0
    if [ "$enable" = 1 ]; then
        if ! out=$(systemctl enable "$unit" 2>&1 9>&-); then
            said "$out"
            printf '@@fail enable %s\n' "$unit"
            roll_back enable
            return 5
        fi
        enabled=1
        printf '@@enabled %s\n' "$unit"
    fi

    # A marker left by an interrupted run means the unit may still run the previous files, and
    # perhaps the previous NTS trust (see mark_trust).
    if [ -f "$marker" ]; then
        action=restart
        while read -r mb mp; do
            [ "$mb" != '!nts-trust' ] || nts_trust=1
        done <"$marker"
    fi
    [ "$action" = none ] && { done_ok "$@"; return 0; }
    if [ "$action" = restart ] && [ -n "$nts_trust" ]; then
        # chronyd saves its NTS cookies in ntsdumpdir at exit and uses them at the next start,
        # without a new NTS-KE: a changed certificate or CA would not be checked for weeks.
        systemctl stop "$unit" >/dev/null 2>&1 9>&-
        rm -f /var/lib/chrony/*.nts
        out=$(systemctl start "$unit" 2>&1 9>&-)
    else
        out=$(systemctl "$action" "$unit" 2>&1 9>&-)
    fi
    rc=$?
    unit_state
    if [ "$rc" != 0 ] || [ "$state" != active ]; then
        said "$out"
        status=$(systemctl status --no-pager --lines=5 "$unit" 2>&1 9>&-)
        printf '%s\n' "$status" | while IFS= read -r l; do printf '@@status %s\n' "$l"; done
        printf '@@fail %s %s %s\n' "$action" "$state" "$unit"
        roll_back "$action"
        return 5
    fi
    rm -f "$marker"
    printf '@@%sed %s\n' "$action" "$unit"
    done_ok "$@"
}

# each FUNCTION ARGS...: FUNCTION PATH KIND EXPECT MODE OWNER GROUP CONTENT for every file;
# stops at the first failure. `i` counts the files (1, 2, ...) for per-file variables.
each() {
    f=$1
    shift
    while [ $# -ge 7 ]; do
        i=$((i + 1))
        "$f" "$1" "$2" "$3" "$4" "$5" "$6" "$7" || return 1
        shift 7
    done
}

cleanup() {
    printf '%s\n' "$temps" | while IFS= read -r t; do
        [ -z "$t" ] || rm -f "$t"
    done
}

# said TEXT: a command's output, one record per line.
said() {
    printf '%s\n' "$1" | while IFS= read -r l; do
        [ -z "$l" ] || printf '@@said %s\n' "$l"
    done
}

# The file must be exactly as the plan read it: fail closed when that cannot be shown. A vendor
# source to switch off, and the name it gets, both.
drift_one() {
    case $2 in
    none) return 0 ;;
    off | offnew) drift_path "$1" "$3" && drift_path "$1$off" "$7" ;;
    *) drift_path "$1" "$3" ;;
    esac
}

# drift_path PATH EXPECT: PATH is EXPECT (`absent` or its sha256).
drift_path() {
    if [ -L "$1" ]; then
        printf '@@drift %s symlink\n' "$1"
        return 1
    elif [ -f "$1" ]; then
        if ! cur=$(sha256sum <"$1"); then
            printf '@@checkfail %s\n' "$1"
            return 1
        fi
        cur=${cur%% *}
        if [ ${#cur} != 64 ]; then
            printf '@@checkfail %s\n' "$1"
            return 1
        fi
    elif [ -e "$1" ]; then
        cur=notfile
    else
        cur=absent
    fi
    if [ "$cur" != "$2" ]; then
        printf '@@drift %s %s\n' "$1" "$cur"
        return 1
    fi
}

# A vendor source the package install was to create: from here on kind `off` if it did (a
# regular file now: what ucf installed, no sha256 to compare), else nothing to do.
created_one() {
    [ "$2" = offnew ] || return 0
    if [ -f "$1" ] && [ ! -L "$1" ]; then
        eval "kind_$i=off"
    else
        eval "kind_$i=none"
        printf '@@notcreated %s\n' "$1"
    fi
}

# kind_now KIND: the kind the file has after the package install (`offnew` resolved), in `k`.
kind_now() {
    k=$1
    [ "$k" != offnew ] || eval "k=\${kind_$i:-none}"
}

install_package() {
    if ! command -v apt-get >/dev/null 2>&1; then
        # The RHEL family (no timesyncd there: the package is chrony, which conflicts with none).
        dnf install -y -q "$1" </dev/null 9>&-
        return
    fi
    DEBIAN_FRONTEND=noninteractive
    export DEBIAN_FRONTEND
    set -- "$1" -y -q -o Dpkg::Options::=--force-confdef -o Dpkg::Options::=--force-confold
    p=$1
    shift
    apt-get install "$@" "$p" </dev/null 9>&- ||
        { apt-get update -q </dev/null 9>&- && apt-get install "$@" "$p" </dev/null 9>&-; }
}

# The new content beside its target (same file system, so the rename is atomic), synced,
# checked. Temporary names are recorded before the file exists, so a trap never misses one;
# leftovers of a run killed outright (SIGKILL) are removed here, under the lock.
stage_one() {
    [ "$2" = write ] || return 0
    d=${1%/*}
    [ -n "$d" ] || d=/
    if [ ! -d "$d" ] && ! mkdir -p "$d"; then
        printf '@@fail mkdir %s\n' "$d"
        return 1
    fi
    for old in "$d"/.clockprov.*; do
        # Not this run's own: two files in one directory (an NTS certificate and key).
        case $old in "$d/.clockprov.$$."*) continue ;; esac
        [ ! -e "$old" ] || rm -f "$old"
    done
    t=$d/.clockprov.$$.$i
    temps=$temps$t$nl
    eval "tmp_$i=\$t"
    # noclobber (O_EXCL): never write through a file or link someone put there since.
    set -C
    printf '%s' "$7" >"$t"
    rc=$?
    set +C
    if [ "$rc" != 0 ] || ! owned "$t" "$5" "$6" "$4" || ! sync "$t"; then
        printf '@@fail stage %s\n' "$1"
        return 1
    fi
    # NTS certificates and keys (*.crt, *.key) are not configuration: only the rest is checked.
    if [ "$check" = chronyd ] && [ "${1%.crt}" = "$1" ] && [ "${1%.key}" = "$1" ] &&
        ! out=$(chronyd -p -f "$t" 2>&1 >/dev/null 9>&-); then
        printf '@@invalid %s\n' "$1"
        printf '%s\n' "$out" >&2
        return 1
    fi
}

# owned FILE OWNER GROUP MODE: FILE, just created by this shell, gets OWNER:GROUP and MODE.
# Each is a process, so each is skipped when the new file has it already: created under umask
# 022 it is 644; it belongs to root:root when this shell runs as root, i.e. as the owner and
# group of / (root:root on any Linux).
owned() {
    if [ "$2:$3" != root:root ] || ! [ -O "$1" ] || ! [ -G "$1" ] || ! [ -O / ] || ! [ -G / ]; then
        chown "$2:$3" "$1" || return 1
    fi
    [ "$4" = 644 ] || chmod "$4" "$1"
}

# A hard link to the current file: the backup costs no copy and is the very file that ran. A
# vendor source switched off: the switched-off file of an earlier run, which its rename replaces.
backup_one() {
    eval "bak_$i=-"
    kind_now "$2"
    case $k in
    write) set -- "$1" ;;
    off) set -- "$1$off" ;;
    *) return 0 ;;
    esac
    [ -e "$1" ] || return 0
    b=$1.clockprov-$ts.bak
    n=1
    while [ -e "$b" ]; do
        b=$1.clockprov-$ts-$n.bak
        n=$((n + 1))
    done
    if ! ln "$1" "$b"; then
        printf '@@fail backup %s\n' "$1"
        return 1
    fi
    eval "bak_$i=\$b"
    printf '@@backup %s\n' "$b"
}

# The marker lists `BACKUP PATH` (BACKUP `-`: the file did not exist) for every file to restore
# if the unit does not come back; an earlier interrupted run's entry for a file (its older
# backup: the file that last ran) is kept, unless a rollback cut short already moved that
# backup back. A vendor source switched off: `+PATH.clockprov-off PATH` (moved back to its name
# if that name is free), and that new name's backup if the rename replaces one.
mark_one() {
    eval "b=\$bak_$i"
    kind_now "$2"
    case $k in
    write)
        mark_entry "$b" "$1" || return 1
        case $1 in *.crt) mark_trust ;; esac
        ;;
    off)
        mark_entry "+$1$off" "$1" || return 1
        [ "$b" = - ] || mark_entry "$b" "$1$off"
        ;;
    esac
}

# mark_entry BACKUP PATH: the marker's entry for PATH. With no marker yet (the usual case) it is
# created whole by one write of the shell's, no process: noclobber makes the create exclusive,
# and a run killed between the create and the write leaves an empty marker, which owes only a
# restart (nothing was replaced yet: a marker is written before the first rename). Adding to an
# existing marker rewrites it through a temporary file and `mv`, so it is never half-written.
mark_entry() {
    if [ ! -e "$marker" ]; then
        set -C
        printf '%s %s\n' "$1" "$2" >"$marker"
        rc=$?
        set +C
        [ "$rc" = 0 ] && return 0
        printf '@@fail marker %s\n' "$marker"
        return 1
    fi
    if [ -f "$marker" ]; then
        while read -r mb mp; do
            if [ "$mp" = "$2" ] && { [ "$mb" = - ] || [ -e "$mb" ]; }; then
                return 0
            fi
        done <"$marker"
    fi
    mt=$mdir/.restart-pending.$unit.$$
    temps=$temps$mt$nl
    if ! {
        if [ -f "$marker" ]; then
            while read -r mb mp; do
                [ "$mp" = "$2" ] || printf '%s %s\n' "$mb" "$mp"
            done <"$marker"
        fi
        printf '%s %s\n' "$1" "$2"
    } >"$mt" || ! mv -f "$mt" "$marker"; then
        printf '@@fail marker %s\n' "$marker"
        return 1
    fi
}

# The marker records that an NTS certificate or CA changes (a `!nts-trust` line): a restart a
# later run owes for it then drops chrony's saved NTS cookies too, as this run would have.
mark_trust() {
    if [ -f "$marker" ]; then
        while read -r mb mp; do
            [ "$mb" != '!nts-trust' ] || return 0
        done <"$marker"
    fi
    mt=$mdir/.restart-pending.$unit.$$
    temps=$temps$mt$nl
    if ! {
        if [ -f "$marker" ]; then
            while IFS= read -r l; do printf '%s\n' "$l"; done <"$marker"
        fi
        echo '!nts-trust'
    } >"$mt" || ! mv -f "$mt" "$marker"; then
        printf '@@fail marker %s\n' "$marker"
        return 1
    fi
}

install_one() {
    kind_now "$2"
    case $k in
    meta)
        if ! chown "$5:$6" "$1" || ! chmod "$4" "$1"; then
            printf '@@fail chmod %s\n' "$1"
            return 1
        fi
        printf '@@meta %s\n' "$1"
        ;;
    write)
        eval "t=\$tmp_$i"
        if ! mv -f "$t" "$1"; then
            printf '@@fail rename %s\n' "$1"
            return 1
        fi
        d=${1%/*}
        sync "${d:-/}" 2>/dev/null
        case $1 in *.crt) nts_trust=1 ;; esac
        printf '@@written %s\n' "$1"
        ;;
    off)
        if ! mv -f "$1" "$1$off"; then
            printf '@@fail rename %s\n' "$1"
            return 1
        fi
        d=${1%/*}
        sync "${d:-/}" 2>/dev/null
        printf '@@switchedoff %s %s\n' "$1" "$1$off"
        ;;
    esac
}

# systemctl is-active, waiting out a unit that is still on its way.
unit_state() {
    n=0
    while :; do
        state=$(systemctl is-active "$unit" 2>/dev/null 9>&-)
        case $state in
        activating | reloading | deactivating) ;;
        *) return 0 ;;
        esac
        n=$((n + 1))
        [ "$n" -lt 20 ] || return 0
        sleep 0.5
    done
}

# Put back every file the marker names, undo our enable, bring the unit back as it was, and say
# what now runs. The marker goes last: a run killed in here leaves it for the next one.
roll_back() {
    kept=''
    if [ -f "$marker" ]; then
        # First the vendor sources switched off, back under their names. A name that is taken
        # (the rename never happened, or the package brought the file back) keeps its file, and
        # the switched-off one stays too, its backup entry skipped: neither content is lost.
        while read -r mb mp; do
            case $mb in +*) mb=${mb#+} ;; *) continue ;; esac
            if [ -e "$mp" ]; then
                [ ! -e "$mb" ] || kept=$kept$mb$nl
            elif [ -e "$mb" ]; then
                mv -f "$mb" "$mp" && printf '@@restored %s %s\n' "$mp" "$mb"
            fi
        done <"$marker"
        while read -r mb mp; do
            case $mb in +* | '!'*) continue ;; esac
            case $nl$kept in *"$nl$mp$nl"*) continue ;; esac
            if [ "$mb" = - ]; then
                rm -f "$mp" && printf '@@removed %s\n' "$mp"
            elif [ -e "$mb" ]; then
                mv -f "$mb" "$mp" && printf '@@restored %s %s\n' "$mp" "$mb"
            else
                # Already moved back by a rollback that was cut short.
                printf '@@restored %s %s\n' "$mp" "$mb"
            fi
        done <"$marker"
    fi
    cleanup
    if [ "$enabled" = 1 ] && systemctl disable "$unit" >/dev/null 2>&1 9>&-; then
        printf '@@disabled %s\n' "$unit"
    fi
    if [ "$active_before" = 1 ]; then
        systemctl restart "$unit" >/dev/null 2>&1 9>&-
        unit_state
        printf '@@now %s %s\n' "$unit" "$state"
    else
        systemctl stop "$unit" >/dev/null 2>&1 9>&-
        printf '@@now %s stopped\n' "$unit"
    fi
    rm -f "$marker"
    echo '@@end'
}

# Keep the newest KEEP backups of each managed file (names sort by time), those of runs that
# were cut short included. A vendor source switched off: the backups of its new name.
prune_one() {
    kind_now "$2"
    [ "$k" != off ] || set -- "$1$off"
    n=0
    for b in "$1".clockprov-*.bak; do
        [ ! -e "$b" ] || n=$((n + 1))
    done
    for b in "$1".clockprov-*.bak; do
        [ "$n" -gt "$keep" ] || break
        [ -e "$b" ] || continue
        rm -f "$b" && printf '@@pruned %s\n' "$b"
        n=$((n - 1))
    done
}

done_ok() {
    i=0
    each prune_one "$@"
    echo '@@end'
}

clockprov_apply "$@"
