//! Saved plans (`plan --out`, `show`, `apply PLAN`) against real sshd hosts.

use std::path::Path;

use crate::support::hosts::HostSpec;
use crate::support::templates::chrony_with;
use crate::{Lab, LabBuilder};

const CHRONY: &str = "chrony/chrony.conf";
/// clockprov's timesyncd drop-in.
const TIMESYNCD: &str = "systemd/timesyncd.conf.d/zz-clockprov.conf";

/// The `after.content` the plan file holds for `host`'s one file.
fn reviewed_content(plan: &serde_json::Value, host: &str) -> String {
    let host = plan["hosts"]
        .as_array()
        .unwrap()
        .iter()
        .find(|h| h["name"] == host)
        .unwrap_or_else(|| panic!("{host} not in the plan"));
    host["plan"]["files"][0]["after"]["content"]
        .as_str()
        .unwrap()
        .to_owned()
}

#[test]
fn a_saved_plan_is_applied_only_where_the_host_is_as_reviewed() {
    // (A `# clockprov:` line: the template's managed lines are what reaches the host's file.)
    let templates = chrony_with("# clockprov: reviewed");
    let lab = LabBuilder::new()
        .clients(vec![
            HostSpec::new("ubuntu-20.04", "systemd-timesyncd"),
            HostSpec::new("debian-12", "systemd-timesyncd"),
        ])
        .inventory_extra(&format!("templates: {}\n", templates.path().display()))
        .start();
    let plan_path = lab.hosts.dir().join("reviewed.plan");
    let planned = lab.run("plan", &["--out", plan_path.to_str().unwrap()]);
    assert_eq!(planned.code, 0, "{planned:?}");
    assert!(planned.stderr.contains("Saved the plan to"), "{planned:?}");
    // Planning changed nothing.
    for addr in lab.all() {
        assert!(lab.service_changes(&addr).is_empty(), "{addr}");
    }

    let shown = crate::Clockprov::new().arg("show").arg(&plan_path).run();
    assert_eq!(shown.code, 0, "{shown:?}");
    assert!(
        shown
            .stdout
            .contains("Plan: 3 hosts to change, 0 unchanged"),
        "{shown:?}"
    );
    assert!(shown.stdout.contains("+NTP="), "{shown:?}");
    let json = crate::Clockprov::new()
        .args(["show", "--format", "json"])
        .arg(&plan_path)
        .run();
    let plan: serde_json::Value = serde_json::from_str(&json.stdout).unwrap();
    assert_eq!(plan["format_version"], 1);
    assert_eq!(plan["hosts"].as_array().unwrap().len(), 3);
    assert_eq!(plan["hosts"][0]["facts_sha256"].as_str().unwrap().len(), 64);
    let server_content = reviewed_content(&plan, "zcloud");
    assert!(
        server_content.contains("\nlocal stratum 10\n# clockprov: reviewed\n"),
        "{server_content}"
    );

    // After the review: the template changes (the reviewed text must be what is written, not a
    // new rendering), and someone edits data-1's file by hand.
    std::fs::write(
        templates.path().join("chrony.conf.j2"),
        "# clockprov: not reviewed\n",
    )
    .unwrap();
    let edited = "[Time]\nNTP=10.9.9.9\n";
    // On the host: a directory made in the overlay's upper layer from outside is not seen.
    lab.hosts.root(
        &lab.clients[0],
        "mkdir -p /etc/systemd/timesyncd.conf.d && printf '[Time]\\nNTP=10.9.9.9\\n' >/etc/systemd/timesyncd.conf.d/zz-clockprov.conf",
    );

    let applied = crate::Clockprov::new().arg("apply").arg(&plan_path).run();
    assert_eq!(applied.code, 1, "{applied:?}");
    assert!(
        applied.stdout.contains(
            "refused: the host changed since the plan was reviewed: file /etc/systemd/timesyncd.conf.d/zz-clockprov.conf was absent, now a file; nothing was done"
        ),
        "{applied:?}"
    );
    assert!(applied.stdout.contains("data-1"), "{applied:?}");
    // data-1: untouched.
    assert_eq!(
        lab.hosts.read_etc(&lab.clients[0], TIMESYNCD).unwrap(),
        edited
    );
    assert!(lab.service_changes(&lab.clients[0]).is_empty());
    // The others: exactly the reviewed files, one restart each.
    assert_eq!(
        lab.hosts.read_etc(&lab.server, CHRONY).unwrap(),
        server_content
    );
    assert_eq!(
        lab.hosts.read_etc(&lab.clients[1], TIMESYNCD).unwrap(),
        reviewed_content(&plan, "data-2")
    );
    for addr in [&lab.server, &lab.clients[1]] {
        assert_eq!(lab.restarts(addr), 1, "{addr}");
    }

    only_the_reviewed_actions(&lab, templates.path());
}

/// A fleet unchanged since its plan, where data-1 alone has something to do: `apply PLAN` does
/// exactly what the plan says there, and nothing anywhere else. Then an edited inventory.
fn only_the_reviewed_actions(lab: &Lab, templates: &Path) {
    std::fs::write(
        templates.join("chrony.conf.j2"),
        std::fs::read_to_string(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/templates/chrony.conf.j2"
        ))
        .unwrap()
            + "\n# clockprov: reviewed\n",
    )
    .unwrap();
    let second = lab.hosts.dir().join("second.plan");
    let planned = lab.run("plan", &["--out", second.to_str().unwrap()]);
    assert!(
        planned
            .stdout
            .contains("Plan: 1 host to change, 2 unchanged"),
        "{planned:?}"
    );
    let plan: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&second).unwrap()).unwrap();
    let data1 = plan["hosts"]
        .as_array()
        .unwrap()
        .iter()
        .find(|h| h["name"] == "data-1")
        .unwrap();
    assert_eq!(data1["plan"]["files"][0]["action"], "update");
    assert_eq!(
        data1["plan"]["unit"],
        serde_json::json!({"unit": "systemd-timesyncd.service", "enable": false, "restart": true, "start": false})
    );
    let before: Vec<Vec<String>> = lab.all().iter().map(|a| lab.service_changes(a)).collect();
    let applied = crate::Clockprov::new().arg("apply").arg(&second).run();
    assert_eq!(applied.code, 0, "{applied:?}");
    assert_eq!(
        lab.hosts.read_etc(&lab.clients[0], TIMESYNCD).unwrap(),
        reviewed_content(&plan, "data-1")
    );
    let after: Vec<Vec<String>> = lab.all().iter().map(|a| lab.service_changes(a)).collect();
    assert_eq!(after[0], before[0], "the server was touched");
    assert_eq!(after[2], before[2], "data-2 was touched");
    let new: Vec<&String> = after[1][before[1].len()..].iter().collect();
    assert_eq!(new.len(), 1, "{new:?}");
    assert!(new[0].starts_with("restart"), "{new:?}");
    assert!(new[0].contains("systemd-timesyncd"), "{new:?}");
    let again = lab.run("plan", &["--detailed-exitcode"]);
    assert_eq!(again.code, 0, "{again:?}");

    // The inventory edited since: the plan is refused whole, before any host is contacted.
    lab.rewrite_inventory("local_stratum: 10", "local_stratum: 9");
    let refused = crate::Clockprov::new().arg("apply").arg(&second).run();
    assert_eq!(refused.code, 1, "{refused:?}");
    assert!(
        refused.stderr.contains("changed since the plan"),
        "{refused:?}"
    );
}
