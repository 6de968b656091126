# shellcheck shell=sh
# The host's os-release, for check: which daemon a client runs by default, and the name of
# chrony's unit, depend on the system (parsed by src/host/readings.rs; record format in
# src/host/records.rs). Read-only, builtins only.
f=/etc/os-release
[ -r "$f" ] || f=/usr/lib/os-release
if [ -r "$f" ]; then
    while IFS= read -r l || [ -n "$l" ]; do printf '@@osl %s\n' "$l"; done <"$f"
fi
echo @@end
