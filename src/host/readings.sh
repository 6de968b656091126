# shellcheck shell=bash
# check's one round trip per host (parsed by src/host/readings.rs; record format in
# src/host/records.rs): a time daemon's own state, then the clock, both read-only.
#
# The daemon: the unit's state first, and the daemon is asked only while it is active, because
# asking activates it (`timedatectl show-timesync` talks to timesyncd over D-Bus, which starts the
# unit). `timedatectl show` asks systemd-timedated, a bus-activated helper that exits on its own;
# the time daemon's unit is never started. timesyncd that did not answer `show-timesync` is not
# asked again for `timesync-status` (the same properties of the same service).
#
# The clock: bash's `$EPOCHREALTIME`, no process started per reading. After `@@end` each line on
# fd 3 (the channel's stdin, kept by RemoteScript::text_keeping_stdin) is a request number,
# answered with `NUMBER TIME`, until the controller closes the channel.
#
# Arguments: UNIT DAEMON (chrony | timesyncd)
LC_ALL=C
export LC_ALL

{
    # `exec`: the substitution's subshell becomes systemctl (bash would fork it again).
    state=$(exec systemctl is-active "$1" 2>/dev/null)
    printf '@@unit %s\n' "$state"
    if [ "$state" = active ]; then
        case $2 in
        timesyncd)
            echo @@show-timesync
            answered=
            timedatectl show-timesync --all 2>&1 && answered=1
            echo @@show
            timedatectl show 2>&1
            if [ -n "$answered" ]; then
                echo @@timesync-status
                timedatectl timesync-status 2>&1
            fi
            ;;
        chrony)
            echo @@tracking
            chronyc -n tracking 2>&1
            # NTS: whether each source authenticates (chrony 4.0+; 3.x prints an error, skipped).
            echo @@authdata
            chronyc -c -N authdata 2>&1
            ;;
        esac
    fi
    echo @@end
} 3<&-
while IFS= read -r n <&3; do
    printf '%s %s\n' "$n" "$EPOCHREALTIME"
done
