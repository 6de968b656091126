#!/usr/bin/env bash
# ssh-masters-exit.sh DIR -- ask every OpenSSH ControlMaster whose socket is in
# DIR to exit (ssh -O exit), so the next Ansible run starts cold.  Used by
# scripts/bench.sh --compare before each timed Ansible run and at the end.
set -uo pipefail
shopt -s nullglob
dir=${1:?usage: ssh-masters-exit.sh DIR}
for sock in "$dir"/*; do
    [[ -S $sock ]] || continue
    ssh -o ControlPath="$sock" -O exit bench-host >/dev/null 2>&1 || rm -f "$sock"
done
exit 0
