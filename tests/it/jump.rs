//! Jump hosts and the OpenSSH client config, against real sshd test hosts.
//!
//! The test hosts all listen on loopback, so a target is never reachable *only* through its jump
//! host here: these tests prove the route by stopping the jump host (the target, still running,
//! becomes unreachable). Proving a topology where the controller has no route to the target is
//! the VM lab's job.

use std::fmt::Write as _;
use std::path::PathBuf;
use std::process::Command;

use crate::support::hosts::{HostSpec, TestHosts};
use crate::{Clockprov, LabBuilder, Run, inventory, ssh_defaults};

/// The error plan printed under host `name` (the line after its `== name (...): UNREACHABLE`).
fn error_of(run: &Run, name: &str) -> String {
    let mut lines = run.stdout.lines();
    lines
        .find(|l| l.starts_with(&format!("== {name} (")) && l.ends_with("UNREACHABLE"))
        .unwrap_or_else(|| panic!("{name} is not unreachable: {run:?}"));
    lines.next().unwrap_or_default().trim().to_owned()
}

/// A key no test host accepts.
fn stranger_key(hosts: &TestHosts) -> PathBuf {
    let path = hosts.dir().join("stranger_ed25519");
    let out = Command::new("ssh-keygen")
        .args(["-q", "-t", "ed25519", "-N", "", "-C", "stranger", "-f"])
        .arg(&path)
        .output()
        .expect("ssh-keygen");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    path
}

#[test]
fn a_target_behind_proxy_jump_with_everything_from_an_ssh_config_file() {
    let lab = LabBuilder::new().start();
    let (server, client) = (lab.server.clone(), lab.clients[0].clone());
    let config = lab.hosts.dir().join("ssh_config");
    // HostName, User, Port, IdentityFile and ProxyJump all come from here; `Host *` defaults at
    // the bottom, and a later `User nobody` that must lose (first value wins).
    std::fs::write(
        &config,
        format!(
            "# how the admin reaches the lab\nHost data-1\n    HostName {client}\n    ProxyJump bastion\nHost bastion\n    HostName={server}\nHost *\n    User root\n    Port 22\n    IdentityFile \"{key}\"\nHost *\n    User nobody\n    IdentityFile ~/.ssh/not-there\n",
            key = lab.hosts.key().display()
        ),
    )
    .unwrap();
    let ssh = format!(
        "  known_hosts: {}\n  config_file: {}\n  connect_timeout: 30s\n",
        lab.hosts.known_hosts().display(),
        config.display()
    );
    std::fs::write(
        &lab.inventory,
        inventory(&ssh, &server, &[("data-1", &client, "host: data-1")]),
    )
    .unwrap();
    let run = lab.run("plan", &[]);
    assert_eq!(run.code, 0, "{run:?}");
    assert!(
        run.stdout
            .contains("Plan: 2 hosts to change, 0 unchanged, 0 unreachable, 0 failed."),
        "{run:?}"
    );
    // The route went through `bastion` (the server's sshd): without it the client, still
    // running, cannot be reached; zcloud itself is reached directly, and is down too.
    lab.hosts.stop_host(&server);
    let run = lab.run("plan", &[]);
    assert_eq!(run.code, 1, "{run:?}");
    assert!(
        error_of(&run, "data-1").starts_with(&format!(
            "cannot reach jump host bastion for data-1: cannot connect to {server}:22"
        )),
        "{run:?}"
    );
}

#[test]
fn a_missing_config_file_is_an_error_naming_the_inventory_line() {
    let dir = tempfile::tempdir().unwrap();
    let inventory_path = dir.path().join("inv.yaml");
    std::fs::write(
        &inventory_path,
        inventory(
            "  config_file: ssh/nope\n",
            "127.0.0.1",
            &[("data-1", "127.0.0.2", "")],
        ),
    )
    .unwrap();
    let run = Clockprov::new()
        .args(["plan", "-i"])
        .arg(&inventory_path)
        .run();
    assert_eq!(run.code, 1, "{run:?}");
    // The cause once, at the value's own line and column.
    assert_eq!(
        run.stderr,
        format!(
            "error: {}:2:16: ssh.config_file: cannot read OpenSSH config {}: No such file or directory\n",
            inventory_path.display(),
            dir.path().join("ssh/nope").display()
        ),
        "{run:?}"
    );
}

#[test]
fn chains_of_two_jumps_by_inventory_and_by_list() {
    let lab = LabBuilder::new()
        .clients(vec![
            HostSpec::new("ubuntu-20.04", "systemd-timesyncd"),
            HostSpec::new("ubuntu-20.04", "systemd-timesyncd"),
        ])
        .start();
    let (server, c1, c2) = (
        lab.server.clone(),
        lab.clients[0].clone(),
        lab.clients[1].clone(),
    );
    let ssh = ssh_defaults(&lab.hosts);
    // data-2 -> data-1 -> zcloud, each by its own `jump:`.
    std::fs::write(
        &lab.inventory,
        inventory(
            &ssh,
            &server,
            &[
                ("data-1", &c1, "jump: zcloud"),
                ("data-2", &c2, "jump: data-1"),
            ],
        ),
    )
    .unwrap();
    let run = lab.run("plan", &["-vv"]);
    assert_eq!(run.code, 0, "{run:?}");
    // -v says which way each connection goes.
    for line in [
        format!("connecting to {server}:22 as root\n"),
        format!("connecting to {c1}:22 as root via zcloud\n"),
        format!("connecting to {c2}:22 as root via data-1\n"),
        "route to data-2: ".to_owned(),
    ] {
        assert!(run.stderr.contains(&line), "{line:?}: {run:?}");
    }
    // The same route as a list on data-2, while data-1 itself is reached directly.
    std::fs::write(
        &lab.inventory,
        inventory(
            &ssh,
            &server,
            &[
                ("data-1", &c1, ""),
                ("data-2", &c2, "jump: \"zcloud,data-1\""),
            ],
        ),
    )
    .unwrap();
    let run = lab.run("plan", &[]);
    assert_eq!(run.code, 0, "{run:?}");
    lab.hosts.stop_host(&server);
    let run = lab.run("plan", &[]);
    assert_eq!(run.code, 1, "{run:?}");
    assert!(
        error_of(&run, "data-2").starts_with(&format!("cannot reach jump host data-1 for data-2: cannot reach jump host zcloud for data-1: cannot connect to {server}:22"
        )),
        "{run:?}"
    );
    assert!(
        run.stdout
            .contains("Plan: 1 host to change, 0 unchanged, 2 unreachable, 0 failed."),
        "data-1 on its own is still reached directly: {run:?}"
    );
}

#[test]
fn a_jump_host_outside_the_inventory() {
    let lab = LabBuilder::new().start();
    let (server, client) = (lab.server.clone(), lab.clients[0].clone());
    // Only the client is in the inventory's hands; the jump host is written user@host:port.
    let ssh = ssh_defaults(&lab.hosts);
    let mut text = inventory(
        &ssh,
        &server,
        &[("data-1", &client, &format!("jump: \"root@{server}:22\""))],
    );
    text = text.replace(
        &format!("    address: {server}\n"),
        &format!("    address: {server}\n    ssh: {{ host: 127.0.0.1, port: 1 }}\n"),
    );
    std::fs::write(&lab.inventory, text).unwrap();
    let run = lab.run("plan", &[]);
    assert_eq!(
        run.code, 1,
        "zcloud itself is pointed at a closed port: {run:?}"
    );
    assert!(
        run.stdout
            .contains("Plan: 1 host to change, 0 unchanged, 1 unreachable, 0 failed."),
        "data-1 is planned through root@{server}:22: {run:?}"
    );
    lab.hosts.stop_host(&server);
    let run = lab.run("plan", &[]);
    assert!(
        error_of(&run, "data-1").starts_with(&format!(
            "cannot reach jump host root@{server}:22 for data-1: cannot connect to {server}:22"
        )),
        "{run:?}"
    );
}

#[test]
fn each_way_access_fails_says_whether_jump_host_or_target() {
    let lab = LabBuilder::new().start();
    let (server, client) = (lab.server.clone(), lab.clients[0].clone());
    let stranger = stranger_key(&lab.hosts);
    let ssh = ssh_defaults(&lab.hosts);
    let write = |zcloud_ssh: &str, client_ssh: &str, top: &str| {
        let mut text = inventory(top, &server, &[("data-1", &client, client_ssh)]);
        if !zcloud_ssh.is_empty() {
            text = text.replace(
                &format!("    address: {server}\n"),
                &format!("    address: {server}\n    ssh: {{ {zcloud_ssh} }}\n"),
            );
        }
        std::fs::write(&lab.inventory, text).unwrap();
    };
    // The jump host refuses our key.
    write(
        &format!("identity_file: {}", stranger.display()),
        "jump: zcloud",
        &ssh,
    );
    let run = lab.run("plan", &[]);
    assert_eq!(run.code, 1, "{run:?}");
    assert!(
        error_of(&run, "data-1").starts_with(&format!("cannot reach jump host zcloud for data-1: authentication as root on {server}:22 was refused"
        )),
        "{run:?}"
    );
    // The target refuses it, the jump host lets us in.
    write(
        "",
        &format!("jump: zcloud, identity_file: {}", stranger.display()),
        &ssh,
    );
    let run = lab.run("plan", &[]);
    assert_eq!(run.code, 1, "{run:?}");
    assert!(
        error_of(&run, "data-1").starts_with(&format!(
            "authentication as root on {client}:22 was refused"
        )),
        "{run:?}"
    );
    assert!(
        run.stdout
            .contains("Plan: 1 host to change, 0 unchanged, 1 unreachable, 0 failed."),
        "{run:?}"
    );
    // Host keys are checked on both: a known_hosts without the jump host's key, then without
    // the target's.
    let known = std::fs::read_to_string(lab.hosts.known_hosts()).unwrap();
    for (missing, expect) in [
        (
            &server,
            format!("cannot reach jump host zcloud for data-1: host key of {server}:22 is not in"),
        ),
        (&client, format!("host key of {client}:22 is not in")),
    ] {
        let partial = lab.hosts.dir().join("partial_known_hosts");
        let kept: String = known
            .lines()
            .filter(|l| !l.starts_with(&format!("{missing} ")))
            .fold(String::new(), |mut kept, l| {
                let _ = writeln!(kept, "{l}");
                kept
            });
        std::fs::write(&partial, kept).unwrap();
        let top = ssh.replace(
            &lab.hosts.known_hosts().display().to_string(),
            &partial.display().to_string(),
        );
        write("", "jump: zcloud", &top);
        let run = lab.run("plan", &[]);
        assert_eq!(run.code, 1, "{run:?}");
        assert!(
            error_of(&run, "data-1").starts_with(&expect),
            "{expect}\n{run:?}"
        );
    }
    // The jump host is fine but cannot reach the target.
    write("", "jump: zcloud", &ssh);
    lab.hosts.stop_host(&client);
    let run = lab.run("plan", &[]);
    assert_eq!(run.code, 1, "{run:?}");
    assert!(
        error_of(&run, "data-1")
            .starts_with(&format!("cannot connect to {client}:22 via zcloud: ")),
        "{run:?}"
    );
}
