#!/usr/bin/env bash
# bench.sh -- how fast is clockprov compared with the least any SSH fan-out has
# to do?
#
# Usage:
#   scripts/bench.sh [N...]          (default: 100 1000)
#   scripts/bench.sh --compare [N]   (default N: 100; pyinfra and ansible-core
#                                     on the same hosts, see scripts/bench/)
#
# For each N it starts N throw-away sshd test hosts with
# tests/hosts/testhosts.sh (1 debian-12 chrony server + N-1 ubuntu-20.04
# systemd-timesyncd clients on 127.1.0.0/16, or BENCH_NET), writes an inventory for them,
# and times with hyperfine (--warmup 1), at clockprov's default --forks (64;
# BENCH_FORKS for others), one command after the other:
#   floor        target/release/examples/floor: one connection + `true` per host
#   floor-read   plan's floor as issue 14 measured it: floor --read
#                /etc/chrony/chrony.conf --read /etc/systemd/timesyncd.conf, one
#                connection + `cat` of the two config files per host; plan's and
#                apply's ratios to it are in the note
#   floor-clock  check's floor: floor --clock-samples 7, one connection + one
#                channel in which bash answers 7 clock requests (check's
#                default --samples), one round trip each; check's ratio is to
#                this (its ratio to floor is in the note)
#   plan         clockprov plan: every host has a change
#   check        clockprov check: every host's clock and daemon read
#   apply-fresh  clockprov apply --yes, each run (warm-up included) on hosts
#                reset to how they started (hyperfine --prepare:
#                scripts/bench/reset-hosts.sh, not timed): a change everywhere
#   apply-noop   clockprov apply --yes on converged hosts: nothing to do
# No command has a terminal: apply runs on --yes alone.  Each command then
# runs CPU_RUNS more times under /usr/bin/time for the client's CPU
# (user+sys) per host and its peak resident set (%M), while its open files
# are counted from /proc every 20 ms; the test hosts' sshd listeners'
# cutime+cstime from /proc give the CPU the host side spent (sshd and
# whatever it ran: it reaps every per-connection process).
# Before timing, each command runs once (untimed): floor must succeed
# on every host, plan must see a change on every host, check must read every
# host, apply must change every host and a second apply none, and after a
# reset plan must see every change again.  If that fails, e.g. because with
# every host at once some connections queue for longer than the 10 s connect
# timeout, the failure goes in the table and all commands are timed with
# --connect-timeout $BENCH_RETRY_CONNECT_TIMEOUT.
#
# Output: a markdown table on stdout; progress and hyperfine's own output on
# stderr.  Needs root (the test hosts do).  The hosts are always torn down
# (testhosts.sh down: by the PIDs it recorded) and their directory removed,
# also on failure or Ctrl-C.
#
# Environment:
#   BENCH_RUNS       hyperfine --runs (default 5; at least 5)
#   BENCH_CPU_RUNS   /usr/bin/time runs per command (default 5)
#   BENCH_IDLE_PCT   wait before measuring until other processes use less
#                    than this % of the machine (default 10)
#   BENCH_IDLE_WAIT  give up waiting after this many seconds and measure
#                    anyway, with a warning (default 600)
#   BENCH_COMMANDS   only these of the commands above, space-separated, in
#                    this order (floor first: the others' ratios need it)
#   BENCH_NET        the hosts' /16 as A.B (default 127.1; another, e.g.
#                    127.2, lets two benchmarks run side by side)
#   BENCH_FORKS      --forks values, space-separated, `all` for N
#                    (default 64, clockprov's default)
#   BENCH_RETRY_CONNECT_TIMEOUT  see above (default 60s)
#   BENCH_ADJACENT   1 (default): the floor (floor-clock for check) is timed
#                    again right before each other command, and that
#                    command's "vs floor" is to this adjacent floor: on a
#                    shared machine the floor drifts by up to 15% within
#                    minutes; 0: every ratio to the first floor row
#   BENCH_KEEP=1     keep the work directory (the hosts are still stopped)
#   CARGO_TARGET_DIR as for cargo
#
# shellcheck source-path=SCRIPTDIR
set -euo pipefail
shopt -s nullglob

PROG=${0##*/}
ROOT=$(cd "${BASH_SOURCE[0]%/*}/.." && pwd -P)
TESTHOSTS=$ROOT/tests/hosts/testhosts.sh
BENCH_DIR=$ROOT/scripts/bench
CHECK_RUN="/bin/sh $BENCH_DIR/findings-ok.sh" # check exits 2 on these hosts: see there
RESET=                                        # the command that resets the hosts (hosts_up)
TARGET=${CARGO_TARGET_DIR:-$ROOT/target}
[[ $TARGET == /* ]] || TARGET=$ROOT/$TARGET
RUNS=${BENCH_RUNS:-5}
CPU_RUNS=${BENCH_CPU_RUNS:-5}
IDLE_PCT=${BENCH_IDLE_PCT:-10}
IDLE_WAIT=${BENCH_IDLE_WAIT:-600}
DEFAULT_FORKS=64 # clockprov's default --forks
read -r -a FORKS_LIST <<<"${BENCH_FORKS:-$DEFAULT_FORKS}"
NET=${BENCH_NET:-127.1}
ADJACENT=${BENCH_ADJACENT:-1}
if ! [[ $NET =~ ^127\.([0-9]{1,3})$ ]] || ((BASH_REMATCH[1] > 255)); then
    echo "bench.sh: BENCH_NET must be 127.B, not '$NET'" >&2
    exit 2
fi
CLK_TCK=$(getconf CLK_TCK)
NCPU=$(nproc)

log() { printf '%s: %s\n' "$PROG" "$*" >&2; }
die() { log "error: $*"; exit 1; }
usage() {
    sed -n 's/^# \{0,1\}//; /^Usage:/,/^Environment:/p' "${BASH_SOURCE[0]}" | sed '$d' >&2
    exit 2
}

# ------------------------------------------------------------- cleanup ------

WORK= # this run's directory: binaries, inventories, hosts
declare -a HOST_DIRS=()
BENCH_CLEANUPS=() # extra commands (compare mode), run before the hosts go down
declare -a ROWS=() # the result table's rows, printed at the end (or on failure)
TABLE_PRINTED=0

cleanup() {
    local rc=$? d c
    trap - EXIT INT TERM HUP
    set +e
    if ((rc != 0 && !TABLE_PRINTED && ${#ROWS[@]})); then
        log "failed or interrupted; the rows measured so far:"
        print_table
    fi
    for c in "${BENCH_CLEANUPS[@]}"; do eval "$c"; done
    for d in "${HOST_DIRS[@]}"; do
        if [[ -d $d/hosts ]]; then
            log "stopping the test hosts in $d"
            bash "$TESTHOSTS" down "$d" || log "warning: testhosts.sh down $d failed"
        fi
    done
    if [[ -n $WORK && -d $WORK ]]; then
        if [[ ${BENCH_KEEP:-0} == 1 ]]; then
            log "kept $WORK"
        else
            rm -rf "$WORK"
        fi
    fi
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM
trap 'exit 129' HUP

# --------------------------------------------------------------- setup ------

need_tool() { # command package
    command -v "$1" >/dev/null 2>&1 && return 0
    log "installing $2"
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$2" >&2 ||
        die "cannot install $2 (apt-get install -y $2)"
}

raise_nofile() { # at least this many open files
    local want=$1 soft hard
    soft=$(ulimit -Sn)
    hard=$(ulimit -Hn)
    [[ $soft == unlimited ]] || ((soft >= want)) && return 0
    if [[ $hard != unlimited ]] && ((hard < want)); then
        ulimit -Hn "$want" 2>/dev/null || die "ulimit -n: need $want open files, the hard limit is $hard"
    fi
    ulimit -Sn "$want" || die "cannot raise ulimit -n to $want"
}

build() {
    log "building: cargo build --release --examples --bins"
    (cd "$ROOT" && cargo build --release --examples --bins) >&2 || die "cargo build failed"
    # measure a snapshot: the binaries in target/ may be rebuilt while this runs
    mkdir -p "$WORK/bin"
    cp "$TARGET/release/clockprov" "$TARGET/release/examples/floor" "$WORK/bin/"
    CLOCKPROV=$WORK/bin/clockprov
    FLOOR=$WORK/bin/floor
    local rev
    rev=$(git -C "$ROOT" describe --always --dirty 2>/dev/null || echo unknown)
    log "measuring clockprov $rev (copied from $TARGET/release to $WORK/bin)"
}

addr_of() { printf '%s.%d.%d' "$NET" $(($1 / 250)) $(($1 % 250 + 1)); }

# hosts_up DIR N: fills ADDRS and LISTENERS (the sshd PIDs)
declare -a ADDRS=() LISTENERS=()
hosts_up() {
    local dir=$1 n=$2 i a p t0
    ADDRS=()
    for ((i = 0; i < n; i++)); do ADDRS+=("$(addr_of "$i")"); done
    raise_nofile $((n * 4 + 1024))
    HOST_DIRS+=("$dir")
    t0=$SECONDS
    log "starting $n test hosts in $dir (1 debian-12 chrony server, $((n - 1)) ubuntu-20.04 systemd-timesyncd clients)"
    bash "$TESTHOSTS" up "$dir" --os debian-12 --packages chrony "${ADDRS[0]}"
    if ((n > 1)); then
        bash "$TESTHOSTS" up "$dir" --os ubuntu-20.04 --packages systemd-timesyncd "${ADDRS[@]:1}"
    fi
    LISTENERS=()
    for a in "${ADDRS[@]}"; do
        read -r p <"$dir/hosts/$a/pid"
        LISTENERS+=("$p")
    done
    printf '%s\n' "${LISTENERS[@]}" >"$WORK/listeners"
    # what scripts/bench/reset-hosts.sh restores: the server's chrony.conf as it
    # started (one copy), and no drop-in on the clients (clockprov writes only
    # timesyncd.conf.d/zz-clockprov.conf on a timesyncd client: `-` = removed)
    local list=$dir/reset.list
    : >"$list"
    for i in "${!LISTENERS[@]}"; do
        if ((i == 0)); then
            cp "/proc/${LISTENERS[i]}/root/etc/chrony/chrony.conf" "$dir/seed-server"
            printf '%s %s %s\n' "${LISTENERS[i]}" /etc/chrony/chrony.conf "$dir/seed-server" >>"$list"
        else
            printf '%s %s -\n' "${LISTENERS[i]}" /etc/systemd/timesyncd.conf.d/zz-clockprov.conf >>"$list"
        fi
    done
    RESET="bash $BENCH_DIR/reset-hosts.sh $list"
    log "$n hosts up in $((SECONDS - t0)) s"
}

write_inventory() { # DIR INV
    local dir=$1 inv=$2 i
    {
        printf '# %s hosts for scripts/bench.sh (generated)\n' "${#ADDRS[@]}"
        printf 'ssh:\n  user: root\n  identity_file: %s/id_ed25519\n  known_hosts: %s/known_hosts\n  host_key_policy: strict\n' "$dir" "$dir"
        printf 'ntp_servers:\n  ntp-0:\n    address: %s\n    upstream:\n      - pool: 2.debian.pool.ntp.org\n    allow: [127.0.0.0/8]\n    local_stratum: 10\n' "${ADDRS[0]}"
        if ((${#ADDRS[@]} > 1)); then
            printf 'clients:\n'
            for ((i = 1; i < ${#ADDRS[@]}; i++)); do
                printf '  client-%04d: { address: %s }\n' "$i" "${ADDRS[i]}"
            done
        fi
    } >"$inv"
}

# summarize_errors: the distinct error messages on stdin (one a line, host
# names and addresses masked), most frequent first, as "COUNT x MESSAGE; ..."
summarize_errors() {
    sed -E 's/127\.[0-9]+\.[0-9]+\.[0-9]+/ADDR/g; s/^floor: [^ :]+: //' | sort | uniq -c | sort -rn | head -n 3 |
        awk '{ c = $1; sub(/^ *[0-9]+ /, ""); printf "%s%d x %s", (NR > 1 ? "; " : ""), c, $0 }'
}

# json_summary FILE FIELD: a count from a --format json document's summary
json_summary() { jq -r ".summary.$2 // empty" "$1" 2>/dev/null; }

# first_errors FILE.json FILE.err: the distinct errors of a run, summarized
first_errors() {
    { jq -r '.hosts[]? | .error // empty' "$1" 2>/dev/null; grep -v '^ *$' "$2"; } | summarize_errors
}

# sanity INV N [ARGS...]: each command once, untimed, with these options: floor
# must succeed on every host; plan must see a change on every host; check must
# read every host (exit 0, or 2 for findings); apply on fresh hosts must change
# every host and a second apply none; after a reset plan sees a change on
# every host again (the reset works).  On failure sets FAIL_NOTE, returns 1.
FAIL_NOTE=
sanity() {
    local inv=$1 n=$2 rc out=$WORK/sanity.json err=$WORK/sanity.err got step
    shift 2
    if ! "$FLOOR" -i "$inv" "$@" >"$WORK/sanity.out" 2>"$err"; then
        FAIL_NOTE="floor failed: $(grep '^floor: ' "$err" | summarize_errors)"
        return 1
    fi
    log "sanity: $(cat "$WORK/sanity.out")"
    $RESET || die "resetting the hosts failed"
    for step in plan:2:change check:0/2: apply:0:applied apply-noop:0:unchanged reset-plan:2:change; do
        local cmd=${step%%:*} want=${step#*:} field
        field=${want#*:} want=${want%%:*}
        rc=0
        case $cmd in
            apply | apply-noop) "$CLOCKPROV" apply --yes -i "$inv" "$@" --format json >"$out" 2>"$err" </dev/null || rc=$? ;;
            plan) "$CLOCKPROV" plan --detailed-exitcode -i "$inv" "$@" --format json >"$out" 2>"$err" || rc=$? ;;
            reset-plan) $RESET && "$CLOCKPROV" plan --detailed-exitcode -i "$inv" "$@" --format json >"$out" 2>"$err" || rc=$? ;;
            *) "$CLOCKPROV" "$cmd" -i "$inv" "$@" --format json >"$out" 2>"$err" || rc=$? ;;
        esac
        if [[ /$want/ != */$rc/* ]]; then
            FAIL_NOTE="$cmd exited $rc: $(first_errors "$out" "$err")"
            return 1
        fi
        if [[ -n $field ]]; then
            got=$(json_summary "$out" "$field")
            [[ $got == "$n" ]] || die "clockprov $cmd: '$field' on $got of $n hosts, expected all; see $out"
        fi
        log "sanity: $cmd $*: exit $rc${field:+, $field on all $n hosts}"
    done
}

# ----------------------------------------------------------- CPU meters -----

# busy jiffies of the whole machine (all CPUs)
machine_busy() {
    local _cpu user nice system _idle _iowait irq softirq steal _rest
    read -r _cpu user nice system _idle _iowait irq softirq steal _rest </proc/stat
    printf '%s' $((user + nice + system + irq + softirq + steal))
}

# wait until the machine is (nearly) idle: other work would skew wall times
wait_idle() {
    local t0=$SECONDS b0 b1 pct
    while :; do
        b0=$(machine_busy)
        sleep 2
        b1=$(machine_busy)
        # % of all CPUs busy over 2 s
        pct=$(((b1 - b0) * 100 / (2 * CLK_TCK * NCPU)))
        if ((pct < IDLE_PCT)); then
            ((SECONDS - t0 > 3)) && log "machine idle again (${pct}% busy)"
            return 0
        fi
        if ((SECONDS - t0 >= IDLE_WAIT)); then
            log "warning: the machine is still ${pct}% busy after ${IDLE_WAIT}s; measuring anyway (results are noisy)"
            NOISY=1
            return 0
        fi
        log "machine ${pct}% busy with other work (load: $(cut -d' ' -f1-3 /proc/loadavg)); waiting"
        sleep 8
    done
}

# CPU (ticks) the test hosts' sshd listeners spent, with all the per-connection
# processes they reaped; first waits until those processes are all gone
sshd_ticks() {
    local left deadline=$((SECONDS + 30))
    while :; do
        left=$(ps -e -o ppid= | awk 'NR == FNR { l[$1]; next } ($1 in l) { c++ } END { print c + 0 }' "$WORK/listeners" -)
        ((left == 0)) && break
        if ((SECONDS > deadline)); then
            log "warning: $left sshd connection processes still running after 30 s"
            break
        fi
        sleep 0.1
    done
    printf '/proc/%s/stat\n' "${LISTENERS[@]}" | xargs cat 2>/dev/null |
        awk '{ sub(/^.*\) /, ""); t += $12 + $13 + $14 + $15 } END { printf "%d", t }'
}

# sets SELF_TICKS: this shell's CPU with all its reaped children, from bash's
# times builtin (not in a subshell: a forked shell starts from zero)
SELF_TICKS=0
self_ticks() {
    local u s part
    SELF_TICKS=0
    times >"$WORK/times.out"
    while read -r u s; do
        for part in "$u" "$s"; do
            [[ $part =~ ^([0-9]+)m([0-9]+)\.([0-9]+)s$ ]] || continue
            SELF_TICKS=$((SELF_TICKS + (10#${BASH_REMATCH[1]} * 60 + 10#${BASH_REMATCH[2]}) * CLK_TCK +
                10#${BASH_REMATCH[3]} * CLK_TCK / 1000))
        done
    done <"$WORK/times.out"
}

# wait_ms MS: sleep without starting a process (a read that times out)
NEVER_FD=
wait_ms() {
    if [[ -z $NEVER_FD ]]; then
        mkfifo "$WORK/never"
        exec {NEVER_FD}<>"$WORK/never"
    fi
    read -r -t "$(printf '0.%03d' "$1")" -u "$NEVER_FD" _ || true
}

# cpu_runs NAME: runs command NAME (CMD, PREP) CPU_RUNS times under
# /usr/bin/time, its --prepare first (untimed); sets, as means per successful
# run for the whole fleet: CPU_CLIENT_MS, CPU_SSHD_MS, and the largest
# CPU_RSS_KB (peak resident set) and CPU_FDS (open files, sampled every 20 ms
# from /proc) over the runs; CPU_FAILED counts the runs that exited non-zero
# (left out of the means).
cpu_runs() {
    local name=$1 i f=$WORK/time.out e u s rss t0 t1 client=0 sshd=0 ok=0 tpid child grandchild comm fds
    local -a cmd=() open=()
    read -r -a cmd <<<"${CMD[$name]}"
    CPU_FAILED=0 CPU_RSS_KB=0 CPU_FDS=0
    for ((i = 0; i < CPU_RUNS; i++)); do
        [[ -n ${PREP[$name]:-} ]] && { ${PREP[$name]} || die "$name: --prepare failed"; }
        t0=$(sshd_ticks)
        /usr/bin/time -f '%e %U %S %M' -o "$f" "${cmd[@]}" >/dev/null 2>"$WORK/cpu-run.err" </dev/null &
        tpid=$! child=
        while kill -0 "$tpid" 2>/dev/null; do
            if [[ -z $child ]]; then
                read -r child _ 2>/dev/null <"/proc/$tpid/task/$tpid/children" || true # no newline: read fails, yet sets child
            fi
            # check runs under the findings-ok.sh wrapper (/bin/sh): sample the command it runs
            comm=
            [[ -n $child ]] && { read -r comm <"/proc/$child/comm" || true; } 2>/dev/null
            if [[ $comm == sh ]]; then
                grandchild=
                read -r grandchild _ 2>/dev/null <"/proc/$child/task/$child/children" || true
                [[ -n $grandchild ]] && child=$grandchild
            fi
            if [[ -n $child ]]; then
                open=("/proc/$child/fd/"*)
                fds=${#open[@]}
                ((fds > CPU_FDS)) && CPU_FDS=$fds
            fi
            wait_ms 20
        done
        if ! wait "$tpid"; then
            CPU_FAILED=$((CPU_FAILED + 1))
            log "  $name run $((i + 1))/$CPU_RUNS FAILED (left out): $(grep -v '^Command exited' "$WORK/cpu-run.err" | summarize_errors)"
            sshd_ticks >/dev/null
            continue
        fi
        t1=$(sshd_ticks)
        read -r e u s rss <"$f"
        client=$(awk -v c="$client" -v u="$u" -v s="$s" 'BEGIN { printf "%.3f", c + (u + s) * 1000 }')
        sshd=$((sshd + t1 - t0))
        ((rss > CPU_RSS_KB)) && CPU_RSS_KB=$rss
        ok=$((ok + 1))
        log "  $name run $((i + 1))/$CPU_RUNS: wall ${e}s, client user ${u}s sys ${s}s, peak RSS ${rss} KB, fds $CPU_FDS, sshd side $(awk -v t=$((t1 - t0)) -v k="$CLK_TCK" 'BEGIN { printf "%.2f", t / k }')s"
    done
    ((ok > 0)) || die "$name failed in every run under /usr/bin/time"
    CPU_CLIENT_MS=$(awk -v c="$client" -v r="$ok" 'BEGIN { printf "%.3f", c / r }')
    CPU_SSHD_MS=$(awk -v t="$sshd" -v r="$ok" -v k="$CLK_TCK" 'BEGIN { printf "%.3f", t * 1000 / k / r }')
}

# --------------------------------------------------------------- timing -----

# csv_field FILE NAME FIELD: a column of hyperfine's --export-csv row NAME
csv_field() {
    awk -F, -v name="$2" -v field="$3" '
        NR == 1 { for (i = 1; i <= NF; i++) col[$i] = i; next }
        $1 == name { print $col[field] }' "$1"
}

RETRY_TIMEOUT=${BENCH_RETRY_CONNECT_TIMEOUT:-60s}

# What is timed, in this order (NAMES), with each command's hyperfine
# --prepare (PREP, run before every run, warm-up included, not timed):
#   floor        examples/floor.rs: one connection + `true` per host
#   floor-read   examples/floor.rs --read (the two config files): plan's floor
#                as issue 14 measured it
#   floor-clock  examples/floor.rs --clock-samples 7: check's floor
#   plan         clockprov plan, a change on every host (hosts reset first)
#   check        clockprov check: every host's clock and daemon read
#   apply-fresh  clockprov apply --yes, every run on freshly reset hosts
#   apply-noop   clockprov apply --yes on converged hosts: nothing to do
NAMES=(floor floor-read floor-clock plan check apply-fresh apply-noop)
if [[ -n ${BENCH_COMMANDS:-} ]]; then
    read -r -a NAMES <<<"$BENCH_COMMANDS"
fi
declare -A CMD=() PREP=()

# set_commands INV [ARGS...]: fills CMD and PREP for these options
set_commands() {
    local inv=$1 o
    shift
    o="-i $inv $*"
    CMD=(
        [floor]="$FLOOR $o"
        [floor-read]="$FLOOR --read /etc/chrony/chrony.conf --read /etc/systemd/timesyncd.conf $o"
        [floor-clock]="$FLOOR --clock-samples 7 $o"
        [plan]="$CLOCKPROV plan $o"
        [check]="$CHECK_RUN $CLOCKPROV check $o"
        [apply-fresh]="$CLOCKPROV apply --yes $o"
        [apply-noop]="$CLOCKPROV apply --yes $o"
    )
    PREP=([plan]=$RESET [apply-fresh]=$RESET)
}

# time_cmd N NAME: hyperfine one command; sets MEAN SD (ms) and OTHER (CPUs
# used by other processes meanwhile)
time_cmd() {
    local n=$1 name=$2 hf=$WORK/hyperfine-$1-$2.csv s0 s1 b0 b1 m0 m1 t0 t1
    local -a prep=()
    [[ -n ${PREP[$name]:-} ]] && prep=(--prepare "${PREP[$name]}")
    log "N=$n $name: hyperfine --warmup 1 --runs $RUNS: ${CMD[$name]}"
    self_ticks
    m0=$SELF_TICKS s0=$(sshd_ticks) b0=$(machine_busy) t0=$EPOCHREALTIME
    # hyperfine gives each command /dev/null for stdin: apply must not need a terminal
    if ! hyperfine -N --style basic --warmup 1 --runs "$RUNS" "${prep[@]}" --export-csv "$hf" \
        -n "$name" "${CMD[$name]}" >&2; then
        FAIL_NOTE="a timed $name run failed"
        return 1
    fi
    b1=$(machine_busy) t1=$EPOCHREALTIME s1=$(sshd_ticks)
    self_ticks
    m1=$SELF_TICKS
    # what else ran meanwhile, in CPUs: all busy time minus ours and the hosts'
    # (the resets between runs count as ours: they run in hyperfine's children)
    OTHER=$(awk -v b=$((b1 - b0 - (s1 - s0) - (m1 - m0))) -v k="$CLK_TCK" -v t0="$t0" -v t1="$t1" \
        'BEGIN { o = b / k / (t1 - t0); if (o < 0) o = 0; printf "%.2f", o }')
    MEAN=$(awk -v v="$(csv_field "$hf" "$name" mean)" 'BEGIN { printf "%.3f", v * 1000 }')
    SD=$(awk -v v="$(csv_field "$hf" "$name" stddev)" 'BEGIN { printf "%.3f", v * 1000 }')
    log "N=$n $name: $MEAN ± $SD ms; other processes used ${OTHER} CPUs on average meanwhile"
}

bench_n() {
    local n=$1 dir forks label note name floor_mean read_floor_mean clock_floor_mean ref
    local -a extra=()
    dir=$WORK/hosts-$n
    INV=$WORK/inventory-$n.yaml
    hosts_up "$dir" "$n"
    write_inventory "$dir" "$INV"
    for forks in "${FORKS_LIST[@]}"; do
        [[ $forks == all ]] && forks=$n
        label="$forks"
        ((forks == DEFAULT_FORKS)) && label="$forks (default)"
        ((forks == n && forks != DEFAULT_FORKS)) && label="$forks (= N)"
        extra=(--forks "$forks")
        note=''
        if ! sanity "$INV" "$n" "${extra[@]}"; then
            log "N=$n forks=$forks: FAILED: $FAIL_NOTE"
            ROWS+=("| $n | $label | sanity run | failed | | | | | | | | $FAIL_NOTE |")
            extra+=(--connect-timeout "$RETRY_TIMEOUT")
            note="--connect-timeout $RETRY_TIMEOUT (all commands)"
            log "N=$n forks=$forks: again with ${extra[*]}"
            sanity "$INV" "$n" "${extra[@]}" || die "N=$n ${extra[*]}: $FAIL_NOTE"
        fi
        set_commands "$INV" "${extra[@]}"
        floor_mean='' read_floor_mean='' clock_floor_mean=''
        for name in "${NAMES[@]}"; do
            local rnote=$note adjacent=''
            NOISY=0
            wait_idle
            if ((ADJACENT)) && [[ $name != floor* ]]; then
                local base=floor
                [[ $name == check ]] && base=floor-clock
                if [[ -n ${CMD[$base]:-} ]] && time_cmd "$n" "$base"; then
                    adjacent=$MEAN
                    rnote+="${rnote:+; }$base right before: $(awk -v m="$MEAN" -v s="$SD" 'BEGIN { printf "%.0f ± %.0f ms", m, s }')"
                fi
            fi
            if ! time_cmd "$n" "$name"; then
                ROWS+=("| $n | $label | $name | failed | | | | | | | | $FAIL_NOTE${note:+; $note} |")
                continue
            fi
            [[ $name == floor ]] && floor_mean=$MEAN
            [[ $name == floor-read ]] && read_floor_mean=$MEAN
            [[ $name == floor-clock ]] && clock_floor_mean=$MEAN
            ref=$floor_mean
            if [[ $name == check && -n $clock_floor_mean ]]; then
                ref=$clock_floor_mean
                [[ -n $floor_mean ]] && rnote+="${rnote:+; }$(awk -v m="$MEAN" -v f="$floor_mean" 'BEGIN { printf "%.2fx floor", m / f }')"
            fi
            [[ -n $adjacent ]] && ref=$adjacent
            if [[ $name == plan || $name == apply-* ]] && [[ -n $read_floor_mean ]]; then
                rnote+="${rnote:+; }$(awk -v m="$MEAN" -v f="$read_floor_mean" 'BEGIN { printf "%.2fx floor-read", m / f }')"
            fi
            log "N=$n $name: CPU, $CPU_RUNS runs under /usr/bin/time"
            cpu_runs "$name"
            ((CPU_FAILED)) && rnote+="${rnote:+; }failed in $CPU_FAILED of $CPU_RUNS CPU runs"
            ((NOISY)) && rnote+="${rnote:+; }machine busy with other work"
            ROWS+=("$(awk -v n="$n" -v label="$label" -v name="$name" -v m="$MEAN" -v s="$SD" -v f="${ref:-0}" \
                -v c="$CPU_CLIENT_MS" -v rss="$CPU_RSS_KB" -v fds="$CPU_FDS" -v ss="$CPU_SSHD_MS" \
                -v other="$OTHER" -v note="$rnote" '
                function t(m, s) { return (m < 10) ? sprintf("%.2f ± %.2f ms", m, s) : sprintf("%.0f ± %.0f ms", m, s) }
                BEGIN {
                    printf "| %d | %s | %s | %s | %s | %.2f | %.1f MB | %.0f KB | %d | %.2f | %s | %s |",
                        n, label, name, t(m, s), (f > 0 ? sprintf("%.2f", m / f) : "-"), c / n,
                        rss / 1024, rss / n, fds, ss / n, other, note
                }')")
            log "row: ${ROWS[-1]}"
        done
    done
    log "stopping the $n test hosts"
    bash "$TESTHOSTS" down "$dir"
    rm -rf "$dir"
}

print_table() {
    TABLE_PRINTED=1
    ((${#ROWS[@]})) || return 0
    printf '\n'
    printf '| N | forks | command | wall mean ± σ | vs floor | client CPU ms/host | client peak RSS | RSS/host | client peak fds | host-side CPU ms/host | other load (CPUs) | note |\n'
    printf '|---:|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---|\n'
    printf '%s\n' "${ROWS[@]}"
    printf '\n'
    printf 'floor: one connection + "true" per host (examples/floor.rs); floor-read: the same running "cat" of the two\n'
    printf 'config files, plan'"'"'s floor as issue 14 measured it (plan'"'"'s and apply'"'"'s ratios to it in the note);\n'
    printf 'floor-clock: one connection + one channel whose\n'
    printf 'bash answers 7 clock requests, one round trip each (floor --clock-samples 7: check'"'"'s floor, its "vs floor";\n'
    printf 'check'"'"'s ratio to floor in the note); plan: a change on every host; check: clock\n'
    printf 'and daemon read on every host; apply-fresh: apply --yes, every run on freshly reset hosts (a change on\n'
    printf 'every host); apply-noop: apply --yes on converged hosts.  hyperfine --warmup 1 --runs %s.\n' "$RUNS"
    if ((ADJACENT)); then
        printf 'vs floor: to the floor (floor-clock for check) timed again right before the command (in the note).\n'
    fi
    printf 'client CPU ms/host: (user+sys)/N of the client process, mean of %s runs under /usr/bin/time; peak RSS:\n' "$CPU_RUNS"
    printf 'its largest maximum resident set (%%M) over those runs, and that /N; peak fds: open files, sampled every 20 ms.\n'
    printf 'host-side: the test hosts'"'"' sshd (key exchange, auth, sessions) and the commands they ran, per host.\n'
    printf 'other load: CPUs used by anything else while hyperfine ran (%s CPUs in this machine).\n' "$NCPU"
}

# ----------------------------------------------------------------- main -----

main() {
    local compare=0 a
    local -a sizes=()
    for a in "$@"; do
        case $a in
            --compare) compare=1 ;;
            -h | --help) usage ;;
            -*) die "unknown option '$a'" ;;
            *)
                [[ $a =~ ^[1-9][0-9]*$ ]] || die "not a host count: '$a'"
                ((a <= 62500)) || die "at most 62500 hosts ($NET.0.0/16)"
                sizes+=("$a")
                ;;
        esac
    done
    ((EUID == 0)) || die "must run as root (the test hosts mount overlays)"
    ((RUNS >= 5)) || die "BENCH_RUNS must be at least 5"
    ((CPU_RUNS >= 1)) || die "BENCH_CPU_RUNS must be at least 1"
    need_tool hyperfine hyperfine
    need_tool jq jq
    local f
    for f in "${NAMES[@]}"; do
        [[ " floor floor-read floor-clock plan check apply-fresh apply-noop " == *" $f "* ]] || die "BENCH_COMMANDS: no command '$f'"
    done
    for f in "${FORKS_LIST[@]}"; do
        [[ $f == all || $f =~ ^[1-9][0-9]*$ ]] || die "BENCH_FORKS: not a --forks value: '$f'"
    done
    [[ -x /usr/bin/time ]] || need_tool /usr/bin/time time
    WORK=$(mktemp -d /var/tmp/clockprov-bench.XXXXXX)
    chmod 755 "$WORK"
    if ((compare)); then
        ((${#sizes[@]})) || sizes=(100)
        ((${#sizes[@]} == 1)) || die "--compare takes one host count"
        # shellcheck disable=SC1091 source=bench/compare.sh
        . "$ROOT/scripts/bench/compare.sh"
        build
        compare_main "${sizes[0]}"
        return
    fi
    ((${#sizes[@]})) || sizes=(100 1000)
    build
    local n
    for n in "${sizes[@]}"; do bench_n "$n"; done
    print_table
}

main "$@"
