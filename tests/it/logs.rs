//! What `-v` says while plan, apply and check run against real sshd hosts, what apply's JSON
//! says happened, and the record it leaves on the controller.

use crate::LabBuilder;

/// SHA-256 by coreutils' `sha256sum`: the record is checked against a digest computed apart
/// from clockprov's own.
fn sha256_hex(data: &[u8]) -> String {
    use std::io::Write as _;
    let mut child = std::process::Command::new("sha256sum")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(data).unwrap();
    let out = child.wait_with_output().unwrap();
    String::from_utf8(out.stdout).unwrap()[..64].to_owned()
}

/// `text` with what changes from run to run written as a placeholder: durations, byte counts,
/// key fingerprints, clock offsets, the lab's directory and addresses.
fn masked(text: &str, replace: &[(&str, &str)]) -> String {
    let mut text = text.to_owned();
    for (from, to) in replace {
        text = text.replace(from, to);
    }
    // Each host's lines in their order, the hosts one after the other (whichever the fan-out
    // happened to start first).
    let mut lines: Vec<&str> = text.lines().collect();
    lines.sort_by_key(|line| line.split_once("}:").map(|(host, _)| host.to_owned()));
    let mut out = String::new();
    for line in lines {
        let words: Vec<String> = line
            .split(' ')
            .enumerate()
            .map(|(i, word)| {
                let next = line.split(' ').nth(i + 1).unwrap_or("");
                let numeric = !word.is_empty()
                    && word
                        .trim_start_matches(['+', '-', '('])
                        .chars()
                        .all(|c| c.is_ascii_digit() || c == '.');
                if numeric && ["ms", "ms)", "bytes", "s", "readings,"].contains(&next) {
                    "N".to_owned()
                } else if word.starts_with("(SHA256:") {
                    "(SHA256:FP)".to_owned()
                } else if let Some((file, _)) = word.split_once(".clockprov-") {
                    format!("{file}.clockprov-TIME.bak")
                } else {
                    word.to_owned()
                }
            })
            .collect();
        out.push_str(&words.join(" "));
        out.push('\n');
    }
    out
}

#[test]
fn verbose_logs_say_each_step_and_apply_records_what_it_did() {
    let lab = LabBuilder::new().start();
    let dir = lab.hosts.dir().display().to_string();
    let replace = [
        (dir.as_str(), "DIR"),
        (lab.server.as_str(), "SERVER"),
        (lab.clients[0].as_str(), "CLIENT"),
    ];
    // One host at a time, so that the log lines come in a stable order.
    let plan = lab.run("plan", &["-v", "--forks", "1"]);
    assert_eq!(plan.code, 0, "{plan:?}");
    insta::assert_snapshot!("plan_v", masked(&plan.stderr, &replace));
    let debug = lab.run("plan", &["-vv", "--forks", "1", "--limit", "zcloud"]);
    for text in [
        "offering key DIR/",
        "host key checked against DIR/known_hosts",
    ] {
        assert!(
            masked(&debug.stderr, &replace).contains(text),
            "{text:?}: {debug:?}"
        );
    }

    let records = tempfile::tempdir().unwrap();
    let record_dir = records.path().join("records");
    let apply = lab
        .clockprov("apply")
        .args([
            "-v", "--forks", "1", "--yes", "--format", "json", "--record",
        ])
        .arg(&record_dir)
        .run();
    assert_eq!(apply.code, 0, "{apply:?}");
    insta::assert_snapshot!("apply_v", masked(&apply.stderr, &replace));
    // The JSON says what happened, not what was planned.
    let json = apply.json();
    for host in json["hosts"].as_array().unwrap() {
        assert_eq!(host["status"], "applied", "{host}");
        assert!(host["error_kind"].is_null(), "{host}");
    }
    assert_eq!(json["summary"]["applied"], 2, "{json}");
    assert_eq!(json["summary"]["change"], 0, "{json}");

    check_record(&lab, &json, &record_dir);

    // Nothing to change: nothing applied, no record; --no-record writes none either.
    let again = lab
        .clockprov("apply")
        .args(["--yes", "--record"])
        .arg(&record_dir)
        .run();
    assert_eq!(again.code, 0, "{again:?}");
    assert!(!again.stdout.contains("Record:"), "{again:?}");
    assert_eq!(std::fs::read_dir(&record_dir).unwrap().count(), 1);
    // The default place is under the user's state directory ($HOME is the test's own).
    let home = tempfile::tempdir().unwrap();
    lab.rewrite_inventory("local_stratum: 10", "local_stratum: 9");
    let text = lab
        .clockprov("apply")
        .args(["--yes"])
        .home(home.path())
        .run();
    assert_eq!(text.code, 0, "{text:?}");
    let default_dir = home.path().join(".local/state/clockprov/records");
    assert!(
        text.stdout
            .contains(&format!("Record: {}/apply-", default_dir.display())),
        "{text:?}"
    );
    lab.rewrite_inventory("local_stratum: 9", "local_stratum: 8");
    let none = lab
        .clockprov("apply")
        .args(["--yes", "--no-record"])
        .home(home.path())
        .run();
    assert_eq!(none.code, 0, "{none:?}");
    assert!(!none.stdout.contains("Record:"), "{none:?}");
    assert_eq!(std::fs::read_dir(&default_dir).unwrap().count(), 1);

    // check -v: connection and clock reading per host.
    let check = lab.run("check", &["-v", "--forks", "1"]);
    let check_log = masked(&check.stderr, &replace);
    for text in [
        "host{name=zcloud}: connecting to SERVER:22 as root",
        "host{name=data-1}: authenticated as root with publickey DIR/",
        "host{name=data-1}: done in N ms",
    ] {
        assert!(check_log.contains(text), "{text:?}: {check_log}");
    }
}

/// The record an apply wrote: where its JSON says, with each file's digests and backup.
fn check_record(lab: &crate::Lab, json: &serde_json::Value, record_dir: &std::path::Path) {
    let path = std::path::PathBuf::from(json["record"].as_str().unwrap());
    assert_eq!(path.parent().unwrap(), record_dir);
    let name = path.file_name().unwrap().to_string_lossy().into_owned();
    assert!(
        name.starts_with("apply-") && name.ends_with("Z.json"),
        "{name}"
    );
    let record: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    assert_eq!(record["command"], "apply");
    assert_eq!(
        record["inventory"]["sha256"],
        sha256_hex(&std::fs::read(&lab.inventory).unwrap())
    );
    let hosts = record["hosts"].as_array().unwrap();
    assert_eq!(hosts.len(), 2, "{record}");
    for (host, addr, file, stock) in [
        (
            &hosts[0],
            &lab.server,
            "chrony/chrony.conf",
            Some(crate::support::hosts::seed("debian-12", "chrony.conf")),
        ),
        // clockprov's drop-in: created, so no file before it and no backup.
        (
            &hosts[1],
            &lab.clients[0],
            "systemd/timesyncd.conf.d/zz-clockprov.conf",
            None,
        ),
    ] {
        assert_eq!(host["outcome"], "applied", "{host}");
        let files = host["files"].as_array().unwrap();
        assert_eq!(files.len(), 1, "{host}");
        let now = lab.hosts.read_etc(addr, file).unwrap();
        assert_eq!(files[0]["path"], format!("/etc/{file}"));
        assert_eq!(files[0]["after_sha256"], sha256_hex(now.as_bytes()));
        let Some(stock) = stock else {
            assert_eq!(files[0]["before_sha256"], serde_json::Value::Null, "{host}");
            assert_eq!(files[0]["backup"], serde_json::Value::Null, "{host}");
            continue;
        };
        assert_eq!(files[0]["before_sha256"], sha256_hex(stock.as_bytes()));
        // The backup it names is the stock file, on the host.
        let backup = files[0]["backup"].as_str().unwrap();
        assert!(
            backup.starts_with(&format!("/etc/{file}.clockprov-")),
            "{backup}"
        );
        let relative = backup.strip_prefix("/etc/").unwrap();
        assert_eq!(lab.hosts.read_etc(addr, relative).unwrap(), stock);
        assert!(
            host["actions"]
                .as_array()
                .unwrap()
                .iter()
                .any(|a| a.as_str().unwrap().starts_with("restarted ")),
            "{host}"
        );
    }
}
