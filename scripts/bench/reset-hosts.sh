#!/usr/bin/env bash
# reset-hosts.sh LIST -- put the benchmark's test hosts back as they started:
# hyperfine's --prepare before every timed `apply` on fresh hosts (so every
# run has a change on every host), and before `plan`.
#
# LIST has one line per host: "PID FILE SEED": the PID of the host's sshd
# listener, the managed file (e.g. /etc/chrony/chrony.conf) and a copy of
# that file as the host started (taken by scripts/bench.sh), or `-` for a file
# the host started without (a timesyncd client's zz-clockprov.conf drop-in):
# removed.  The host's own
# view of its files is /proc/PID/root (its mount namespace: the /etc overlay,
# its private /run), so the files are restored through the overlay, never by
# editing its upper directory behind its back.  Per host: the seed content
# written back, the backups apply left beside it (FILE.clockprov-*.bak) and
# any staging file removed, and apply's lock and restart markers in /run.
# Only builtins run per host (the removals are batched): 1,000 hosts take
# well under a second.
set -euo pipefail
shopt -s nullglob
list=${1:?usage: reset-hosts.sh LIST}
declare -A seeds=()
declare -a gone=()
while read -r pid file seed; do
    root=/proc/$pid/root
    [[ -d $root/etc ]] || { echo "reset-hosts: host $pid is gone" >&2; exit 1; }
    if [[ $seed == - ]]; then
        gone+=("$root$file" "$root$file".clockprov-*.bak "${root}${file%/*}"/.clockprov.*)
        [[ $root/run -ef /run ]] || gone+=("$root"/run/clockprov/* "$root"/run/lock/clockprov.lock)
        continue
    fi
    if [[ -z ${seeds[$seed]+set} ]]; then
        IFS= read -r -d '' content <"$seed" || true
        seeds[$seed]=$content
    fi
    gone+=("$root$file".clockprov-*.bak "${root}${file%/*}"/.clockprov.*)
    # only a host's own /run (test hosts without one share this machine's)
    [[ $root/run -ef /run ]] || gone+=("$root"/run/clockprov/* "$root"/run/lock/clockprov.lock)
    printf '%s' "${seeds[$seed]}" >"$root$file"
done <"$list"
if ((${#gone[@]})); then
    printf '%s\0' "${gone[@]}" | xargs -0 rm -f --
fi
