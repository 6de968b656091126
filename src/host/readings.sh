# shellcheck shell=sh
# A time daemon's own state, for check (parsed by src/host/readings.rs; record format in
# src/host/records.rs). Read-only: the unit's state first, and the daemon is asked only while it
# is active, because asking activates it (`timedatectl show-timesync` talks to timesyncd over
# D-Bus, which starts the unit). `timedatectl show` asks systemd-timedated, a bus-activated
# helper that exits on its own; the time daemon's unit is never started.
#
# Arguments: UNIT DAEMON (chrony | timesyncd)
LC_ALL=C
export LC_ALL

state=$(systemctl is-active "$1" 2>/dev/null)
printf '@@unit %s\n' "$state"
if [ "$state" = active ]; then
    case $2 in
    timesyncd)
        echo @@show-timesync
        timedatectl show-timesync --all 2>&1
        echo @@show
        timedatectl show 2>&1
        echo @@timesync-status
        timedatectl timesync-status 2>&1
        ;;
    chrony)
        echo @@tracking
        chronyc -n tracking 2>&1
        ;;
    esac
fi
echo @@end
