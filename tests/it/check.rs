//! `check` against sshd test hosts: read-only, verdicts that say what was found, `--limit` that
//! still measures a client's server, and the monitoring formats (Prometheus validated by
//! `promtool`, Nagios exit codes).
//!
//! The test hosts run no systemd and share this machine's clock, so each host gets stand-ins
//! under `/usr/local/bin` (first on sshd's PATH; its /usr is the host's own overlay):
//! `timedatectl` / `chronyc` that print what a daemon in the wanted state prints and record
//! every call, and for a skewed or hostile clock a `bash` whose clock replies come 2 s ahead or
//! as `nan` (clockprov's reader runs `bash` by name; the login shell is /bin/bash).

use std::path::Path;

use crate::support::hosts::{HostSpec, next_addr};
use crate::{Clockprov, Lab, LabBuilder};

const TIMEDATECTL: &str = r#"#!/bin/sh
# clockprov check test: timedatectl stand-in; records every call.
printf '%s\n' "$*" >>/etc/clockprov-test/timedatectl.log
case $1 in
show-timesync) cat /etc/clockprov-test/show-timesync ;;
show) cat /etc/clockprov-test/show ;;
timesync-status) cat /etc/clockprov-test/timesync-status ;;
*) exit 1 ;;
esac
"#;

/// chronyc serving its own clock: `local stratum 10`, no upstream reached.
const CHRONYC: &str = r"#!/bin/sh
# clockprov check test: chronyc stand-in, an isolated server.
printf '%s\n' 'Reference ID    : 7F7F0101 ()' 'Stratum         : 10' \
  'System time     : 0.000001000 seconds slow of NTP time' 'Leap status     : Normal'
";

/// The clock reader's `bash`, `seconds` ahead (an integer): the real bash runs the script, and
/// its clock replies (`NUMBER SECONDS.MICROS`, the only lines starting with a digit) are shifted.
fn skewed_bash(seconds: u32) -> String {
    format!(
        "#!/bin/sh\n# clockprov check test: the clock reader, {seconds} s ahead.\n\
         /bin/bash \"$@\" | while IFS= read -r l; do case $l in \
         [0-9]*\\ [0-9]*.[0-9]*) t=${{l#* }}; \
         printf '%s %s.%s\\n' \"${{l%% *}}\" $((${{t%.*}} + {seconds})) \"${{t#*.}}\" ;; \
         *) printf '%s\\n' \"$l\" ;; esac; done\n"
    )
}

/// The clock reader's `bash` answering `nan` to every clock request.
const NAN_BASH: &str = "#!/bin/sh\n# clockprov check test: a clock reader answering nan.\n\
    /bin/bash \"$@\" | while IFS= read -r l; do case $l in \
    [0-9]*\\ [0-9]*.[0-9]*) printf '%s nan\\n' \"${l%% *}\" ;; \
    *) printf '%s\\n' \"$l\" ;; esac; done\n";

/// Install `text` as the executable `/usr/local/bin/NAME` on the host.
fn install(lab: &Lab, addr: &str, name: &str, text: &str) {
    lab.hosts.root(
        addr,
        &format!(
            "mkdir -p /usr/local/bin /etc/clockprov-test && cat >/usr/local/bin/{name} <<'CLOCKPROV_EOF'\n{text}CLOCKPROV_EOF\nchmod 755 /usr/local/bin/{name}"
        ),
    );
}

/// A timesyncd client following `server`, synchronized or not, whose daemon measured `offset`
/// (timedatectl's sign: server minus host).
fn timesyncd(lab: &Lab, addr: &str, server: &str, synchronized: bool, offset: &str) {
    install(lab, addr, "timedatectl", TIMEDATECTL);
    lab.hosts.add_system_bus_socket(addr);
    let (leap, sync) = if synchronized { (0, "yes") } else { (3, "no") };
    lab.hosts.root(
        addr,
        &format!(
            "cd /etc/clockprov-test && : >timedatectl.log && \
             printf 'ServerName={server}\\nServerAddress={server}\\nNTPMessage={{ Leap={leap}, Version=4, Mode=4, Stratum=11 }}\\n' >show-timesync && \
             printf 'NTPSynchronized={sync}\\n' >show && \
             printf '       Offset: {offset}\\n' >timesync-status"
        ),
    );
}

/// The systemctl stand-in's state of `unit` on `addr`, set directly (not through systemctl,
/// whose log the test reads).
fn set_active(lab: &Lab, addr: &str, unit: &str, state: &str) {
    let file = lab
        .hosts
        .host_dir(addr)
        .join(format!("state/units/{unit}.active"));
    std::fs::write(&file, format!("{state}\n")).unwrap();
}

fn host<'a>(doc: &'a serde_json::Value, name: &str) -> &'a serde_json::Value {
    doc["hosts"]
        .as_array()
        .unwrap()
        .iter()
        .find(|h| h["name"] == name)
        .unwrap_or_else(|| panic!("no {name} in {doc}"))
}

/// `ceph` as the monitor host runs it for `check --ceph`: prints what Ceph 15.2 printed on the
/// Ceph lab with mon.z-b-data-2 4 s ahead (tests/fixtures/ceph), and records every call.
const CEPH: &str = r#"#!/bin/sh
# clockprov check test: ceph stand-in, the Ceph lab's real output (tests/fixtures/ceph).
printf '%s\n' "$*" >>/etc/clockprov-test/ceph.log
for a; do
    case $a in
    time-sync-status | quorum_status) query=$a ;;
    health) query=health-detail ;;
    esac
done
cat "/etc/clockprov-test/ceph/skewed-$query.json"
"#;

/// The Ceph stand-in and its fixtures on the host.
fn install_ceph(lab: &Lab, addr: &str) {
    install(lab, addr, "ceph", CEPH);
    for query in ["time-sync-status", "health-detail", "quorum-status"] {
        let fixture = format!(
            "{}/tests/fixtures/ceph/skewed-{query}.json",
            env!("CARGO_MANIFEST_DIR")
        );
        let text = std::fs::read_to_string(&fixture).unwrap();
        // Ceph's name for the query, as the stand-in reads it.
        let file = query.replace("quorum-status", "quorum_status");
        lab.hosts.root(
            addr,
            &format!(
                "mkdir -p /etc/clockprov-test/ceph && cat >/etc/clockprov-test/ceph/skewed-{file}.json <<'CLOCKPROV_EOF'\n{text}\nCLOCKPROV_EOF"
            ),
        );
    }
}

fn promtool(metrics: &str, dir: &Path) -> std::process::Output {
    let file = dir.join("clockprov.prom");
    std::fs::write(&file, metrics).unwrap();
    std::process::Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(std::fs::File::open(&file).unwrap())
        .output()
        .expect("promtool (Debian package prometheus; scripts/setup.sh installs it)")
}

#[test]
#[allow(clippy::too_many_lines)] // one shared fleet of hosts, every case on it
fn check_changes_nothing_and_judges_every_kind_of_host() {
    let clients: Vec<HostSpec> = (0..5)
        .map(|_| HostSpec::new("debian-12", "systemd-timesyncd"))
        .collect();
    // data-9 has no sshd: connections to it are refused.
    let nowhere = next_addr();
    let lab = LabBuilder::new()
        .clients(clients)
        .inventory_extra(&format!("  data-9: {{ address: {nowhere} }}\n"))
        .start();
    let server = lab.server.clone();
    let [ok, skewed, stopped, unsynced, nan] = [0, 1, 2, 3, 4].map(|i| lab.clients[i].clone());
    install(&lab, &server, "chronyc", CHRONYC);
    set_active(&lab, &server, "chrony.service", "active");
    for addr in [&ok, &skewed, &stopped, &unsynced, &nan] {
        let in_sync = addr != &unsynced;
        // timesyncd's sign: server minus host; data-2 is 2 s ahead.
        let offset = if addr == &skewed {
            "-2.000123s"
        } else {
            "+1.5ms"
        };
        timesyncd(&lab, addr, &server, in_sync, offset);
        set_active(&lab, addr, "systemd-timesyncd.service", "active");
    }
    set_active(&lab, &stopped, "systemd-timesyncd.service", "inactive");
    install(&lab, &skewed, "bash", &skewed_bash(2));
    install(&lab, &nan, "bash", NAN_BASH);
    let log_before: Vec<usize> = lab
        .all()
        .iter()
        .map(|a| lab.hosts.systemctl_log(a).len())
        .collect();

    let run = lab.run("check", &["--format", "json", "--samples", "3"]);
    assert_eq!(run.code, 1, "an unreachable host is an error: {run:?}");
    let doc = run.json();
    assert_eq!(doc["format_version"], 1);

    // Read-only: the stopped daemon stays stopped, was never asked (asking timesyncd over D-Bus
    // starts it), and check says what it found.
    assert_eq!(
        lab.hosts
            .unit_state(&stopped, "systemd-timesyncd.service")
            .map(|(_, active)| active)
            .as_deref(),
        Some("inactive")
    );
    assert_eq!(
        lab.hosts
            .read_etc(&stopped, "clockprov-test/timedatectl.log")
            .as_deref(),
        Some(""),
        "the inactive daemon was asked"
    );
    assert!(
        lab.hosts
            .read_etc(&ok, "clockprov-test/timedatectl.log")
            .unwrap()
            .contains("show-timesync"),
        "the stand-in is where clockprov looks"
    );
    for (addr, before) in lab.all().iter().zip(&log_before) {
        for call in &lab.hosts.systemctl_log(addr)[*before..] {
            assert!(call.starts_with("is-active "), "{addr}: systemctl {call}");
        }
    }
    let h = host(&doc, "data-3");
    assert_eq!(h["status"], "findings", "{h}");
    assert_eq!(h["findings"][0]["kind"], "daemon-not-running", "{h}");
    assert_eq!(h["findings"][0]["state"], "inactive", "{h}");
    assert_eq!(
        h["synchronized"], false,
        "no SYNC yes beside a stopped daemon: {h}"
    );

    // The isolated server: a warning, and its clients are judged against it.
    let h = host(&doc, "zcloud");
    assert_eq!(h["status"], "warning", "{h}");
    assert_eq!(h["findings"][0]["kind"], "isolated", "{h}");
    let h = host(&doc, "data-1");
    assert_eq!(h["status"], "ok", "{h}");
    assert_eq!(h["judged_against"], "zcloud", "{h}");
    assert!(
        h["offset_to_server_seconds"].as_f64().unwrap().abs() < 0.05,
        "{h}"
    );
    assert_eq!(h["daemon"]["leap_status"], "normal", "{h}");
    // Skewed: 2 s ahead by clockprov's measurement and by the daemon's, with one sign.
    let h = host(&doc, "data-2");
    assert_eq!(h["findings"][0]["kind"], "skew", "{h}");
    let ours = h["offset_to_server_seconds"].as_f64().unwrap();
    let daemons = h["daemon"]["offset_seconds"].as_f64().unwrap();
    assert!(
        (ours - 2.0).abs() < 0.1 && (daemons - 2.0).abs() < 0.01,
        "{h}"
    );
    let h = host(&doc, "data-4");
    assert_eq!(h["findings"][0]["kind"], "not-synchronized", "{h}");
    assert_eq!(h["daemon"]["leap_status"], "not-synchronized", "{h}");
    let h = host(&doc, "data-5");
    assert_eq!(h["status"], "failed", "a NaN reading fails its host: {h}");
    assert_eq!(h["error_kind"], "unexpected-output", "{h}");
    assert!(h["error"].as_str().unwrap().contains("nan"), "{h}");
    let h = host(&doc, "data-9");
    assert_eq!(h["status"], "unreachable", "{h}");
    assert_eq!(
        doc["summary"],
        serde_json::json!({"ok": 1, "warning": 1, "findings": 3, "inconclusive": 0, "unreachable": 1, "failed": 1})
    );

    // --limit CLIENT still measures the client's server.
    let run = lab.run("check", &["--format", "json", "--limit", "data-1"]);
    assert_eq!(run.code, 0, "{run:?}");
    let doc = run.json();
    assert_eq!(doc["hosts"].as_array().unwrap().len(), 1, "{doc}");
    assert!(
        doc["hosts"][0]["offset_to_server_seconds"].is_f64(),
        "{doc}"
    );

    // Nagios: one line, exit 0 OK / 1 WARNING / 2 CRITICAL / 3 UNKNOWN.
    for (name, code, word) in [
        ("data-1", 0, "OK"),
        ("zcloud", 1, "WARNING"),
        ("data-2", 2, "CRITICAL"),
        ("data-3", 2, "CRITICAL"),
        ("data-4", 2, "CRITICAL"),
        ("data-5", 3, "UNKNOWN"),
        ("data-9", 3, "UNKNOWN"),
    ] {
        let run = lab.run("check", &["--format", "nagios", "--limit", name]);
        assert_eq!(run.code, code, "{name}: {run:?}");
        assert!(
            run.stdout.starts_with(&format!("CLOCKPROV {word} - ")),
            "{name}: {run:?}"
        );
        assert_eq!(run.stdout.lines().count(), 1, "{name}: {run:?}");
    }
    // Thresholds replace the 50 ms skew limit: data-2, 2 s ahead, is a WARNING beyond 1 s and
    // critical beyond 1.5 s. (Not a client on the server's own clock against a nanosecond: two
    // loopback hosts share one clock, and their difference can round to exactly zero.)
    for (critical, code) in [("10s", 1), ("1.5s", 2)] {
        let run = lab.run(
            "check",
            &[
                "--format",
                "nagios",
                "--limit",
                "data-2",
                "--warning",
                "1s",
                "--critical",
                critical,
            ],
        );
        assert_eq!(run.code, code, "{run:?}");
        let perf: f64 = run
            .stdout
            .split("'data-2 offset'=")
            .nth(1)
            .and_then(|v| v.split('s').next())
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| panic!("perfdata: {run:?}"));
        assert!((perf - 2.0).abs() < 0.1, "perfdata: {run:?}");
    }

    // Prometheus: the exposition format, as promtool reads it.
    let run = lab.run("check", &["--format", "prometheus"]);
    assert_eq!(run.code, 1, "{run:?}");
    let out = promtool(&run.stdout, lab.hosts.dir());
    assert!(
        out.status.success(),
        "promtool: {}{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
        run.stdout
    );
    for line in [
        "clockprov_reachable{host=\"data-9\",role=\"client\",server=\"zcloud\"} 0",
        "clockprov_check_success{host=\"data-1\",role=\"client\",server=\"zcloud\"} 1",
        "clockprov_server_isolated{host=\"zcloud\",role=\"server\",server=\"\"} 1",
    ] {
        assert!(run.stdout.lines().any(|l| l == line), "{line}: {run:?}");
    }
    // The test is able to fail: promtool refuses a broken exposition.
    assert!(
        !promtool("clockprov_x{host=\"a} 1\n", lab.hosts.dir())
            .status
            .success()
    );

    // --ceph on a monitor host outside the inventory (data-1's host, left out of a second
    // inventory): reached with the inventory's ssh settings, only asked, never measured.
    install_ceph(&lab, &ok);
    let without_ok = lab.hosts.dir().join("inventory-without-data-1.yaml");
    let text = std::fs::read_to_string(&lab.inventory).unwrap();
    let entry = format!("  data-1: {{ address: {ok} }}\n");
    assert!(text.contains(&entry), "{text}");
    std::fs::write(&without_ok, text.replace(&entry, "")).unwrap();
    let outside = format!("root@{ok}:22");
    let check_ceph = |inventory: &Path, ceph: &str, extra: &[&str]| {
        Clockprov::new()
            .args(["check", "-i"])
            .arg(inventory)
            .args(["--limit", "zcloud", "--ceph", ceph])
            .args(extra)
            .run()
    };
    let run = check_ceph(&without_ok, &outside, &["--format", "json"]);
    assert_eq!(run.code, 2, "Ceph's own warning is a finding: {run:?}");
    let doc = run.json();
    let ceph = &doc["ceph"];
    assert_eq!(ceph["queried"], outside.as_str(), "{ceph:#}");
    assert_eq!(
        ceph["clock_skew"]["summary"], "clock skew detected on mon.z-b-data-2",
        "{ceph:#}"
    );
    assert_eq!(ceph["monitors"].as_array().unwrap().len(), 3, "{ceph:#}");
    let rows: Vec<&str> = doc["hosts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|h| h["name"].as_str().unwrap())
        .collect();
    assert_eq!(rows, ["zcloud"], "no clock row for the monitor host");
    let calls = lab.hosts.read_etc(&ok, "clockprov-test/ceph.log").unwrap();
    assert!(
        calls.lines().any(|l| l.contains("time-sync-status")),
        "{calls}"
    );
    let run = check_ceph(&without_ok, &outside, &[]);
    assert!(
        run.stdout
            .contains(&format!("Ceph (asked on {outside}): HEALTH_WARN"))
            && run
                .stdout
                .contains("MON_CLOCK_SKEW (HEALTH_WARN): clock skew detected on mon.z-b-data-2"),
        "{run:?}"
    );
    // A name that is an inventory host keeps meaning that host.
    let run = check_ceph(&lab.inventory, "data-1", &["--format", "json"]);
    assert_eq!(run.code, 2, "{run:?}");
    assert_eq!(run.json()["ceph"]["queried"], "data-1", "{run:?}");
    // Measured and then asked: check closes each host's connection once it is measured, but not
    // the monitor's, which Ceph is asked over afterwards.
    let run = Clockprov::new()
        .args(["check", "-i"])
        .arg(&lab.inventory)
        .args(["--limit", "data-1", "--ceph", "data-1", "--format", "json"])
        .run();
    let doc = run.json();
    assert_eq!(doc["ceph"]["error"], serde_json::Value::Null, "{doc:#}");
    assert_eq!(
        doc["ceph"]["clock_skew"]["summary"], "clock skew detected on mon.z-b-data-2",
        "{doc:#}"
    );
    assert!(
        doc["hosts"]
            .as_array()
            .unwrap()
            .iter()
            .any(|h| h["name"] == "data-1" && h["status"] != "unreachable"),
        "{doc:#}"
    );
    // Unreachable outside the inventory: the Ceph part says so, an error as for a host.
    let nobody = format!("root@{}", next_addr());
    let run = check_ceph(&without_ok, &nobody, &["--format", "json"]);
    assert_eq!(run.code, 1, "{run:?}");
    let ceph = &run.json()["ceph"];
    assert_eq!(ceph["queried"], nobody.as_str(), "{ceph:#}");
    assert!(
        ceph["error"].as_str().unwrap().contains("refused"),
        "{ceph:#}"
    );
    // Bad --ceph values are refused before anything is contacted, naming the flag.
    for (value, error) in [
        (
            "a b",
            "invalid value 'a b' for '--ceph <HOST>': invalid name \"a b\": contains a space; \
             names use letters, digits, '-', '_' and '.'; a host outside the inventory is \
             written [user@]address[:port]",
        ),
        (
            "-oProxyCommand=x",
            "invalid value '-oProxyCommand=x' for '--ceph <HOST>': invalid name \
             \"-oProxyCommand=x\": contains '=', which is not allowed here; names use letters, \
             digits, '-', '_' and '.'; a host outside the inventory is written \
             [user@]address[:port]",
        ),
        (
            "user@",
            "invalid value 'user@' for '--ceph <HOST>': invalid host \"user@\": invalid \
             address \"\": it is empty",
        ),
        (
            "host:99999",
            "invalid value 'host:99999' for '--ceph <HOST>': invalid host \"host:99999\": the \
             port \"99999\" is not a port number (1 to 65535)",
        ),
        (
            "data-7",
            "--ceph data-7: no inventory host is named data-7, and it is no IP address or \
             dotted DNS name (a host outside the inventory: [user@]address[:port]); did you \
             mean `data-1`?",
        ),
    ] {
        let run = lab.run("check", &[&format!("--ceph={value}")]);
        assert_eq!(run.code, 1, "{value}: {run:?}");
        assert_eq!(
            run.stderr.lines().next(),
            Some(format!("error: {error}").as_str()),
            "{value}: {run:?}"
        );
        assert_eq!(run.stdout, "", "{value}: {run:?}");
    }

    // The monitoring formats are check's: plan refuses them before contacting anyone.
    let run = lab.run("plan", &["--format", "nagios"]);
    assert_eq!(run.code, 1, "{run:?}");
    assert!(
        run.stderr.contains("--format nagios is for check only"),
        "{run:?}"
    );
}
