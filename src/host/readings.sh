# shellcheck shell=bash
# check's one round trip per host (parsed by src/host/readings.rs; record format in
# src/host/records.rs): the host's os-release, the time daemons' own state, then the clock, all
# read-only.
#
# os-release: which daemon a client left to its OS's default runs, and chrony's unit name there,
# depend on the system; the controller decides from these lines (the one place that rule lives,
# src/daemon.rs), so the script reports every daemon the host may run: the arguments are
# `DAEMON UNIT` pairs (chrony | timesyncd, and the unit's name on either family). Read by the
# shell itself.
#
# A daemon: the units' states first (one `systemctl is-active` for all), and a daemon is asked only
# while one of its units is active, because asking activates it (`timedatectl show-timesync`
# talks to timesyncd over D-Bus, which starts the unit). `timedatectl show` asks
# systemd-timedated, a bus-activated helper that exits on its own; the time daemon's unit is
# never started. timesyncd that did not answer `show-timesync` is not asked again for
# `timesync-status` (the same properties of the same service). A host with no system bus is not
# asked at all (below).
#
# The clock: bash's `$EPOCHREALTIME`, no process started per reading. After `@@end` each line on
# fd 3 (the channel's stdin, kept by RemoteScript::text_keeping_stdin) is a request number,
# answered with `NUMBER TIME`, until the controller closes the channel.
#
# Arguments: DAEMON UNIT [DAEMON UNIT]...
LC_ALL=C
export LC_ALL

{
    f=/etc/os-release
    [ -r "$f" ] || f=/usr/lib/os-release
    if [ -r "$f" ]; then
        while IFS= read -r l || [ -n "$l" ]; do printf '@@osl %s\n' "$l"; done <"$f"
    fi
    units=()
    for ((i = 2; i <= $#; i += 2)); do units+=("${!i}"); done
    # `exec`: the substitution's subshell becomes systemctl (bash would fork it again). One line
    # per unit, in order; none at all when systemctl is missing.
    states=$(exec systemctl is-active "${units[@]}" 2>/dev/null)
    mapfile -t states <<<"$states"
    active=" "
    i=0
    while [ $# -ge 2 ]; do
        printf '@@unit %s %s\n' "$2" "${states[i]}"
        [ "${states[i]}" = active ] && active="$active$1 "
        i=$((i + 1))
        shift 2
    done
    case $active in
    *" timesyncd "*)
        # timedatectl asks both services over the system bus and nothing else (sd-bus's address:
        # $DBUS_SYSTEM_BUS_ADDRESS, or this socket). On a host with no bus at that path (no
        # D-Bus installed) every call can only fail: none is started to learn that.
        sock=/run/dbus/system_bus_socket
        case ${DBUS_SYSTEM_BUS_ADDRESS-} in
        '') ;;
        # options, escapes or several addresses: timedatectl decides
        unix:path=*[,\;%]*) sock= ;;
        unix:path=*) sock=${DBUS_SYSTEM_BUS_ADDRESS#unix:path=} ;;
        *) sock= ;;
        esac
        echo @@show-timesync
        if [ -n "$sock" ] && [ ! -S "$sock" ]; then
            printf 'no system bus: %s is not a socket; timedatectl not run\n' "$sock"
        else
            answered=
            timedatectl show-timesync --all 2>&1 && answered=1
            echo @@show
            timedatectl show 2>&1
            if [ -n "$answered" ]; then
                echo @@timesync-status
                timedatectl timesync-status 2>&1
            fi
        fi
        ;;
    esac
    case $active in
    *" chrony "*)
        echo @@tracking
        chronyc -n tracking 2>&1
        # NTS: whether each source authenticates (chrony 4.0+; 3.x prints an error, skipped).
        echo @@authdata
        chronyc -c -N authdata 2>&1
        ;;
    esac
    echo @@end
} 3<&-
while IFS= read -r n <&3; do
    printf '%s %s\n' "$n" "$EPOCHREALTIME"
done
