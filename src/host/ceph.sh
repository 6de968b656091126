# shellcheck shell=sh
# Ceph's own view of its monitors' clocks, for check --ceph (parsed by src/host/ceph.rs; record
# format in src/host/records.rs). Read-only: three `ceph` queries to the monitors, each with its
# exit status; runs as root (the admin keyring is root's).
LC_ALL=C
export LC_ALL

if ! command -v ceph >/dev/null 2>&1; then
    echo @@no-ceph
    echo @@end
    exit 0
fi
for query in time-sync-status health-detail quorum_status; do
    case $query in
    health-detail) set -- health detail ;;
    *) set -- "$query" ;;
    esac
    out=$(timeout 60 ceph --connect-timeout 30 "$@" --format json 2>&1)
    status=$?
    printf '@@%s %s\n' "$query" "$status"
    printf '%s\n' "$out"
done
echo @@end
