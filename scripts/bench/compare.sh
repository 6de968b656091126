# shellcheck shell=bash
# compare.sh -- `scripts/bench.sh --compare [N]`: the same N test hosts
# through clockprov, the floor, pyinfra (--dry --diff, then -y) and
# ansible-core (--check --diff, then a real run; forks 50): plan's job, then
# apply's on hosts reset before every run.  Sourced by scripts/bench.sh, whose
# helpers (hosts_up, write_inventory, sanity, wait_idle, sshd_ticks,
# csv_field, log, die) and settings (WORK, ROOT, RUNS, FLOOR, CLOCKPROV,
# RESET) it uses.
#
# The tools live in a venv, made on first use:
#   BENCH_VENV      default /var/tmp/clockprov-bench-venv
#   BENCH_PYINFRA   pip requirement, default pyinfra==3.10.0
#   BENCH_ANSIBLE   pip requirement, default ansible-core==2.19.*
#                   (the newest series that runs on Python 3.11)
#   BENCH_TOOLS     default "pyinfra ansible"; "pyinfra" leaves Ansible out
# Both tools render the same files clockprov does, from the Jinja2 templates
# in this directory (pyinfra_deploy.py, ansible_playbook.yml, ansible.cfg).

VENV=${BENCH_VENV:-/var/tmp/clockprov-bench-venv}
HELPERS=$ROOT/scripts/bench
PYINFRA_REQ=${BENCH_PYINFRA:-pyinfra==3.10.0}
ANSIBLE_REQ=${BENCH_ANSIBLE:-ansible-core==2.19.*}

setup_venv() {
    if [[ ! -x $VENV/bin/pyinfra || ! -x $VENV/bin/ansible-playbook ]]; then
        log "creating $VENV: pip install $PYINFRA_REQ $ANSIBLE_REQ"
        rm -rf "$VENV"
        python3 -m venv "$VENV" || die "python3 -m venv $VENV failed"
        "$VENV/bin/pip" install -q "$PYINFRA_REQ" "$ANSIBLE_REQ" >&2 || die "pip install failed"
    fi
    # byte-compile once: if PYTHONDONTWRITEBYTECODE is set (it is on some CI
    # images) every run would compile every module it imports
    PYTHONDONTWRITEBYTECODE='' "$VENV/bin/python" -m compileall -q -j 0 "$VENV/lib" >/dev/null 2>&1 || true
    log "tools: pyinfra $("$VENV/bin/python" -c 'import importlib.metadata as m; print(m.version("pyinfra"))'), ansible-core $("$VENV/bin/python" -c 'import importlib.metadata as m; print(m.version("ansible-core"))'), python $("$VENV/bin/python" -c 'import platform; print(platform.python_version())')"
}

# tool inventories for the hosts in ADDRS, connection details as clockprov's:
# user root, the test hosts' key, their known_hosts, strict host key checking
write_tool_inventories() { # HOSTDIR PYINFRA_INV ANSIBLE_INV
    local dir=$1 pinv=$2 ainv=$3 i name
    {
        printf '# pyinfra inventory for scripts/bench.sh --compare (generated)\n'
        printf '_ssh = {\n'
        printf '    "ssh_user": "root",\n'
        printf '    "ssh_key": "%s/id_ed25519",\n' "$dir"
        printf '    "ssh_known_hosts_file": "%s/known_hosts",\n' "$dir"
        printf '    "ssh_strict_host_key_checking": "yes",\n'
        printf '    "ssh_allow_agent": False,\n'
        printf '    "ssh_look_for_keys": False,\n'
        printf '}\n'
        printf 'ntp_servers = [("ntp-0", {**_ssh, "ssh_hostname": "%s"})]\n' "${ADDRS[0]}"
        printf 'clients = [\n'
        for ((i = 1; i < ${#ADDRS[@]}; i++)); do
            printf -v name 'client-%04d' "$i"
            printf '    ("%s", {**_ssh, "ssh_hostname": "%s"}),\n' "$name" "${ADDRS[i]}"
        done
        printf ']\n'
    } >"$pinv"
    {
        printf '# Ansible inventory for scripts/bench.sh --compare (generated)\n'
        printf 'all:\n  vars:\n'
        printf '    ansible_user: root\n'
        printf '    ansible_ssh_private_key_file: %s/id_ed25519\n' "$dir"
        printf '    ansible_ssh_common_args: "-o UserKnownHostsFile=%s/known_hosts -o StrictHostKeyChecking=yes -o IdentitiesOnly=yes -o BatchMode=yes"\n' "$dir"
        printf '  children:\n'
        printf '    ntp_servers:\n      hosts:\n        ntp-0: { ansible_host: %s }\n' "${ADDRS[0]}"
        printf '    clients:\n      hosts:\n'
        for ((i = 1; i < ${#ADDRS[@]}; i++)); do
            printf '        client-%04d: { ansible_host: %s }\n' "$i" "${ADDRS[i]}"
        done
    } >"$ainv"
}

# run a tool once (not timed) and check it saw a change on every host
check_tools() { # N PYINFRA_CMD... -- ANSIBLE_CMD...
    local n=$1 out changed
    shift
    local -a pcmd=() acmd=()
    while [[ $1 != -- ]]; do pcmd+=("$1"); shift; done
    shift
    acmd=("$@")
    out=$WORK/pyinfra-check.out
    "${pcmd[@]}" >"$out" 2>&1 || die "pyinfra failed; see $out"
    # the "Detected changes" table: OPERATION COUNT (HOSTS...)
    changed=$(awk '$1 ~ /^(chrony|timesyncd)\.conf$/ && $2 ~ /^[0-9]+$/ { c += $2 } END { print c + 0 }' "$out")
    ((changed == n)) || die "pyinfra: $changed of $n hosts would change; see $out"
    log "pyinfra check run: changes on $changed of $n hosts"
    ((${#acmd[@]})) || return 0
    out=$WORK/ansible-check.out
    "${acmd[@]}" >"$out" 2>&1 || die "ansible-playbook failed; see $out"
    changed=$(grep -c 'changed=[1-9][0-9]* .*unreachable=0 .*failed=0' "$out" || true)
    ((changed == n)) || die "ansible-playbook: $changed of $n hosts changed; see $out"
    log "ansible check run: changes on $changed of $n hosts"
}

compare_main() {
    local n=$1 dir inv pinv ainv cp name cmd hf s0 s1 b0 b1 m0 m1 t0 t1 other mean sd user sys floor_mean ref_mean rc
    local -a names=() cmds=() preps=() prep=()
    local -A ref=()
    setup_venv
    dir=$WORK/hosts-$n
    inv=$WORK/inventory-$n.yaml
    pinv=$WORK/pyinfra_inventory.py
    ainv=$WORK/ansible_inventory.yml
    cp=$WORK/ansible-cp
    mkdir -p "$cp" "$WORK/ansible-home" "$WORK/ansible-tmp"
    export ANSIBLE_CONFIG=$HELPERS/ansible.cfg
    export ANSIBLE_HOME=$WORK/ansible-home
    export ANSIBLE_LOCAL_TEMP=$WORK/ansible-tmp
    export ANSIBLE_SSH_CONTROL_PATH_DIR=$cp
    export ANSIBLE_NOCOLOR=1
    export PYINFRA_PROGRESS=off
    BENCH_CLEANUPS+=("bash '$HELPERS/ssh-masters-exit.sh' '$cp'")

    hosts_up "$dir" "$n"
    write_inventory "$dir" "$inv"
    write_tool_inventories "$dir" "$pinv" "$ainv"
    sanity "$inv" "$n" || die "$FAIL_NOTE"

    # plan's peers first (the hosts are fresh: every tool sees a change on
    # every host), then apply's, every run on hosts reset as they started;
    # Ansible's runs start without its ControlMasters (closed in --prepare)
    local masters="bash $HELPERS/ssh-masters-exit.sh $cp"
    names=(floor clockprov clockprov-f50 pyinfra ansible clockprov-apply pyinfra-apply ansible-apply)
    cmds=(
        "$FLOOR -i $inv"
        "$CLOCKPROV plan -i $inv"
        "$CLOCKPROV plan -i $inv --forks 50"
        "$VENV/bin/pyinfra $pinv $HELPERS/pyinfra_deploy.py --dry --diff"
        "$VENV/bin/ansible-playbook -i $ainv $HELPERS/ansible_playbook.yml --check --diff -f 50"
        "$CLOCKPROV apply --yes -i $inv"
        "$VENV/bin/pyinfra $pinv $HELPERS/pyinfra_deploy.py -y"
        "$VENV/bin/ansible-playbook -i $ainv $HELPERS/ansible_playbook.yml -f 50"
    )
    read -r -a BENCH_ANSIBLE_CHECK <<<"${cmds[4]}"
    [[ ${BENCH_TOOLS:-pyinfra ansible} == *ansible* ]] || BENCH_ANSIBLE_CHECK=()
    preps=("" "" "" "" "$masters" "$RESET" "$RESET" "bash -c '$RESET && $masters'")
    if [[ ${BENCH_TOOLS:-pyinfra ansible} != *ansible* ]]; then
        # without Ansible (its runs take minutes here): drop its rows
        names=("${names[@]:0:4}" "${names[@]:5:2}") cmds=("${cmds[@]:0:4}" "${cmds[@]:5:2}")
        preps=("${preps[@]:0:4}" "${preps[@]:5:2}")
    fi
    ref=([pyinfra]=clockprov [ansible]=clockprov [clockprov-f50]=clockprov [pyinfra-apply]=clockprov-apply [ansible-apply]=clockprov-apply)
    # shellcheck disable=SC2086 # word splitting wanted, as hyperfine -N does
    check_tools "$n" ${cmds[3]} -- "${BENCH_ANSIBLE_CHECK[@]}"
    bash "$HELPERS/ssh-masters-exit.sh" "$cp"

    local -a rows=()
    local -A means=()
    local i
    for i in "${!names[@]}"; do
        name=${names[i]} cmd=${cmds[i]}
        hf=$WORK/compare-$name.csv
        prep=()
        [[ -n ${preps[i]} ]] && prep=(--prepare "${preps[i]}")
        NOISY=0
        wait_idle
        log "N=$n: hyperfine $name: $cmd"
        self_ticks
        m0=$SELF_TICKS s0=$(sshd_ticks) b0=$(machine_busy) t0=$EPOCHREALTIME
        hyperfine -N --style basic --warmup 1 --runs "$RUNS" "${prep[@]}" --export-csv "$hf" -n "$name" "$cmd" >&2
        # Ansible's last ControlMasters still hold their connections open
        bash "$HELPERS/ssh-masters-exit.sh" "$cp"
        b1=$(machine_busy) t1=$EPOCHREALTIME s1=$(sshd_ticks)
        self_ticks
        m1=$SELF_TICKS
        if [[ $name == *-apply ]]; then
            # the same job: after the tool's apply clockprov has nothing to change
            rc=0
            "$CLOCKPROV" plan -i "$inv" --detailed-exitcode >"$WORK/after-$name.txt" 2>&1 || rc=$?
            ((rc == 0)) || die "$name left hosts that clockprov plan would still change (exit $rc); see $WORK/after-$name.txt"
            log "$name: clockprov plan afterwards: nothing to change on any host"
        fi
        # what else ran meanwhile, in CPUs: all busy time minus ours and the hosts'
        other=$(awk -v b=$((b1 - b0 - (s1 - s0) - (m1 - m0))) -v k="$CLK_TCK" -v t0="$t0" -v t1="$t1" \
            'BEGIN { o = b / k / (t1 - t0); if (o < 0) o = 0; printf "%.2f", o }')
        mean=$(csv_field "$hf" "$name" mean) sd=$(csv_field "$hf" "$name" stddev)
        user=$(csv_field "$hf" "$name" user) sys=$(csv_field "$hf" "$name" system)
        means[$name]=$mean
        [[ $name == floor ]] && floor_mean=$mean
        ref_mean=${ref[$name]:+${means[${ref[$name]}]}}
        rows+=("$(awk -v name="$name" -v m="$mean" -v s="$sd" -v u="$user" -v y="$sys" -v f="$floor_mean" -v r="${ref_mean:-0}" \
            -v n="$n" -v runs=$((RUNS + 1)) -v ticks=$((s1 - s0)) -v k="$CLK_TCK" -v noisy="$NOISY" -v other="$other" '
            function t(m, s) { m *= 1000; s *= 1000; return (m < 10) ? sprintf("%.2f ± %.2f ms", m, s) : sprintf("%.0f ± %.0f ms", m, s) }
            BEGIN {
                printf "| %s | %d | %s%s | %.2f | %s | %.2f | %.2f | %s |", name, n, t(m, s), (noisy ? " (busy!)" : ""),
                    m / f, (r > 0 ? sprintf("%.2f", m / r) : "-"), (u + y) * 1000 / n, ticks * 1000 / k / runs / n, other
            }')")
        log "row: ${rows[-1]}"
    done
    bash "$HELPERS/ssh-masters-exit.sh" "$cp"

    printf '\n| tool | N | wall mean ± σ | vs floor | vs clockprov | client CPU ms/host | host-side CPU ms/host | other load (CPUs) |\n'
    printf '|---|---:|---:|---:|---:|---:|---:|---:|\n'
    printf '%s\n' "${rows[@]}"
    printf '\n'
    printf 'floor: examples/floor.rs, forks 64; clockprov: plan, forks 64 (default); clockprov-f50: plan --forks 50;\n'
    printf 'pyinfra: --dry --diff, files.template, its default parallelism (20 x CPUs = %d) (%s);\n' "$((NCPU * 20 < n ? NCPU * 20 : n))" "$PYINFRA_REQ"
    printf 'ansible: ansible-playbook --check --diff -f 50, template module, pipelining, ControlPersist closed between runs (%s).\n' "$ANSIBLE_REQ"
    printf '*-apply: the real run (clockprov apply --yes, pyinfra -y, ansible-playbook), every run on hosts reset as\n'
    printf 'they started: the file written and the unit restarted on every host; afterwards clockprov plan finds nothing to change.\n'
    printf 'vs clockprov: against clockprov plan (plan rows) or clockprov-apply (apply rows), same run.\n'
    printf 'client CPU: user+sys of the command and its children (hyperfine), per host; host-side: the test hosts'"'"' sshd\n'
    printf 'and what it ran, per host per run (resets excluded: they run outside sshd); other load: CPUs used by anything\n'
    printf 'else meanwhile (%s CPUs here).\n' "$NCPU"
    printf 'Every tool sees (and shows) a change on every host.\n'
    other=$(cut -d' ' -f1-3 /proc/loadavg)
    log "load average at the end: $other"
}
