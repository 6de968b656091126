#!/usr/bin/env bash
# The whole flow in one command, on sshd test hosts on this machine's loopback addresses:
# a zcloud chrony server (chrony not yet installed) and three Ubuntu 20.04 timesyncd clients,
# then `clockprov plan`, `clockprov apply --yes` and `clockprov plan` again.
# Needs root (each test host runs in its own mount namespace with a private /etc).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
cargo build --release --locked --quiet
bin=target/release/clockprov

dir=$(mktemp -d /tmp/clockprov-demo.XXXXXX)
cleanup() { tests/hosts/testhosts.sh down "$dir" || true; rm -rf "$dir"; }
trap cleanup EXIT INT TERM

server=127.0.1.200
clients=(127.0.1.204 127.0.1.205 127.0.1.206)
echo "== starting sshd test hosts: zcloud=$server, z-b-data-1..3=${clients[*]}" >&2
tests/hosts/testhosts.sh up "$dir" --os debian-12 --packages systemd-timesyncd --no-seed-files "$server"
tests/hosts/testhosts.sh up "$dir" --os ubuntu-20.04 --packages systemd-timesyncd "${clients[@]}"

cat >"$dir/inventory.yaml" <<YAML
ssh:
  user: root
  identity_file: id_ed25519
  known_hosts: known_hosts
ntp_servers:
  zcloud:
    address: $server
    upstream:
      - pool: ntp.ubuntu.com
    allow: [127.0.1.0/24]
    local_stratum: 10
clients:
  z-b-data-1: { address: ${clients[0]}, ssh: { jump: zcloud } }
  z-b-data-2: { address: ${clients[1]} }
  z-b-data-3: { address: ${clients[2]} }
YAML

step() { printf '\n\033[1m$ %s\033[0m\n' "$*" >&2; }
set +e
step clockprov plan -i inventory.yaml --detailed-exitcode
"$bin" plan -i "$dir/inventory.yaml" --detailed-exitcode; echo "(exit $?: 2 means changes to make)" >&2
step clockprov apply -i inventory.yaml --yes
"$bin" apply -i "$dir/inventory.yaml" --yes; status=$?
step clockprov plan -i inventory.yaml --detailed-exitcode
"$bin" plan -i "$dir/inventory.yaml" --detailed-exitcode; again=$?; echo "(exit $again: 0 means nothing left to do)" >&2
set -e
[ "$status" -eq 0 ] && [ "$again" -eq 0 ]
