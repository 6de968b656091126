//! Reaching hosts: host keys, unreachable hosts, jump hosts, ssh-agent.

use std::fmt::Write as _;
use std::process::Command;

use crate::support::hosts::HostSpec;
use crate::{Lab, LabBuilder};

/// `SHA256:...` as `ssh-keygen -lf` shows it for the host's own public key.
fn keygen_fingerprint(lab: &Lab, addr: &str) -> String {
    let public = lab.hosts.host_dir(addr).join("ssh_host_ed25519_key.pub");
    let out = Command::new("ssh-keygen")
        .arg("-lf")
        .arg(&public)
        .output()
        .unwrap();
    assert!(out.status.success(), "ssh-keygen -lf {}", public.display());
    // `256 SHA256:... comment (ED25519)`
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(text.trim_end().ends_with("(ED25519)"), "{text}");
    text.split_whitespace().nth(1).unwrap().to_owned()
}

#[test]
fn unknown_host_keys_are_refused_unless_accept_new_records_them() {
    let lab = LabBuilder::new().start();
    let empty = lab.hosts.dir().join("empty_known_hosts");
    std::fs::write(&empty, "").unwrap();
    let text = std::fs::read_to_string(&lab.inventory).unwrap();
    let real = lab.hosts.known_hosts().display().to_string();
    let strict = text.replace(
        &format!("  known_hosts: {real}\n"),
        &format!(
            "  known_hosts: {}\n  host_key_policy: strict\n",
            empty.display()
        ),
    );
    std::fs::write(&lab.inventory, &strict).unwrap();
    let run = lab.run("plan", &[]);
    assert_eq!(run.code, 1, "{run:?}");
    assert!(
        run.stdout.contains(&format!(
            "host key of {}:22 is not in {}",
            lab.server,
            empty.display()
        )),
        "{run:?}"
    );
    // The key refused is shown as OpenSSH shows it, on stderr, and is the host's own.
    for addr in lab.all() {
        let shown = format!(
            "host key of {addr}:22 is not in {}, /etc/ssh/ssh_known_hosts or /etc/ssh/ssh_known_hosts2 (host_key_policy is strict); ED25519 key fingerprint is {}",
            empty.display(),
            keygen_fingerprint(&lab, &addr)
        );
        assert!(run.stderr.contains(&shown), "{shown}\n{run:?}");
    }
    assert!(
        run.stdout.contains("0 to change")
            || run
                .stdout
                .contains("Plan: 0 hosts to change, 0 unchanged, 2 unreachable"),
        "{run:?}"
    );
    assert_eq!(
        std::fs::read_to_string(&empty).unwrap(),
        "",
        "strict never writes known_hosts"
    );

    std::fs::write(
        &lab.inventory,
        strict.replace("host_key_policy: strict", "host_key_policy: accept-new"),
    )
    .unwrap();
    let run = lab.run("plan", &[]);
    assert_eq!(run.code, 0, "{run:?}");
    let learned = std::fs::read_to_string(&empty).unwrap();
    for addr in lab.all() {
        let shown = format!(
            "{addr}:22: recorded its new host key in {} (host_key_policy is accept-new); ED25519 key fingerprint is {}",
            empty.display(),
            keygen_fingerprint(&lab, &addr)
        );
        assert!(run.stderr.contains(&shown), "{shown}\n{run:?}");
        let recorded = learned
            .lines()
            .find(|l| l.starts_with(&format!("{addr} ")))
            .unwrap_or_else(|| panic!("{addr} not recorded: {learned}"));
        let truth = std::fs::read_to_string(lab.hosts.known_hosts()).unwrap();
        let key_of = |line: &str| line.split_whitespace().nth(2).unwrap().to_owned();
        let real_line = truth
            .lines()
            .find(|l| l.starts_with(&format!("{addr} ")))
            .unwrap();
        assert_eq!(
            key_of(recorded),
            key_of(real_line),
            "recorded the host's real key"
        );
    }
    // Recorded keys are then trusted under strict too.
    std::fs::write(&lab.inventory, &strict).unwrap();
    assert_eq!(lab.run("plan", &[]).code, 0);
}

#[test]
fn a_changed_host_key_is_refused_naming_the_file_and_line() {
    let lab = LabBuilder::new().start();
    // Give the server's address someone else's key (the client's), below a comment line.
    let known = std::fs::read_to_string(lab.hosts.known_hosts()).unwrap();
    let client_key = known
        .lines()
        .find(|l| l.starts_with(&format!("{} ", lab.clients[0])))
        .unwrap()
        .split_whitespace()
        .nth(2)
        .unwrap()
        .to_owned();
    let forged = lab.hosts.dir().join("forged_known_hosts");
    let mut text = String::from("# hosts of the lab\n");
    for line in known.lines() {
        if line.starts_with(&format!("{} ", lab.server)) {
            let _ = writeln!(text, "{} ssh-ed25519 {client_key}", lab.server);
        } else {
            text.push_str(line);
            text.push('\n');
        }
    }
    std::fs::write(&forged, &text).unwrap();
    let line = text
        .lines()
        .position(|l| l.starts_with(&format!("{} ", lab.server)))
        .unwrap()
        + 1;
    let real = lab.hosts.known_hosts().display().to_string();
    lab.rewrite_inventory(
        &format!("known_hosts: {real}"),
        &format!(
            "known_hosts: {}\n  host_key_policy: accept-new",
            forged.display()
        ),
    );
    let run = lab.run("plan", &[]);
    assert_eq!(run.code, 1, "{run:?}");
    assert!(
        run.stdout.contains(&format!("HOST KEY CHANGED for {}:22: the key it offered differs from the one in {}, line {line}", lab.server, forged.display())),
        "{run:?}"
    );
    // accept-new does not paper over a changed key, and the other host is planned normally.
    assert_eq!(std::fs::read_to_string(&forged).unwrap(), text);
    assert!(
        run.stdout
            .contains("Plan: 1 host to change, 0 unchanged, 1 unreachable, 0 failed."),
        "{run:?}"
    );
    let fingerprint = format!(
        "ED25519 key fingerprint is {}",
        keygen_fingerprint(&lab, &lab.server)
    );
    assert!(
        run.stderr.contains("HOST KEY CHANGED") && run.stderr.contains(&fingerprint),
        "{run:?}"
    );
    another_type_in_the_global_file(&lab, &known, &format!("known_hosts: {}", forged.display()));
}

/// Continues the test above on its lab, whose inventory has `known_hosts_setting`.
fn another_type_in_the_global_file(lab: &Lab, known: &str, known_hosts_setting: &str) {
    let fingerprint = format!(
        "ED25519 key fingerprint is {}",
        keygen_fingerprint(lab, &lab.server)
    );
    // A key of another type on record is a changed key too, under accept-new, wherever it is
    // recorded: here in the global file (GlobalKnownHostsFile, hashed by `ssh-keygen -H`),
    // which also vouches for the client, with an empty user file.
    let dir = lab.hosts.dir();
    let ecdsa = dir.join("other_ecdsa");
    let made = Command::new("ssh-keygen")
        .args(["-q", "-t", "ecdsa", "-N", "", "-C", "", "-f"])
        .arg(&ecdsa)
        .output()
        .unwrap();
    assert!(made.status.success(), "{made:?}");
    let ecdsa_public = std::fs::read_to_string(ecdsa.with_extension("pub")).unwrap();
    let client_line = known
        .lines()
        .find(|l| l.starts_with(&format!("{} ", lab.clients[0])))
        .unwrap();
    let global = dir.join("global_known_hosts");
    std::fs::write(
        &global,
        format!(
            "{} {}\n{client_line}\n",
            lab.server,
            ecdsa_public.trim_end()
        ),
    )
    .unwrap();
    let hashed = Command::new("ssh-keygen")
        .arg("-H")
        .arg("-f")
        .arg(&global)
        .output()
        .unwrap();
    assert!(hashed.status.success(), "{hashed:?}");
    assert!(
        std::fs::read_to_string(&global).unwrap().starts_with("|1|"),
        "hashed"
    );
    let user_file = dir.join("user_known_hosts");
    std::fs::write(&user_file, "").unwrap();
    let config = dir.join("ssh_config");
    std::fs::write(
        &config,
        format!("Host *\n  GlobalKnownHostsFile {}\n", global.display()),
    )
    .unwrap();
    lab.rewrite_inventory(
        known_hosts_setting,
        &format!(
            "known_hosts: {}\n  config_file: {}",
            user_file.display(),
            config.display()
        ),
    );
    let run = lab.run("plan", &[]);
    assert_eq!(run.code, 1, "{run:?}");
    let refusal = format!(
        "HOST KEY CHANGED for {}:22: the key it offered differs from the one in {}, line 1 (an ecdsa-sha2-nistp256 key is on record there and it offered an ssh-ed25519 key: a host with any key on record is known, and a key of another type is a changed key); {fingerprint}",
        lab.server,
        global.display()
    );
    assert!(run.stdout.contains(&refusal), "{refusal}\n{run:?}");
    assert!(run.stderr.contains(&refusal), "{refusal}\n{run:?}");
    assert!(
        run.stdout
            .contains("Plan: 1 host to change, 0 unchanged, 1 unreachable, 0 failed."),
        "the client is trusted through the global file: {run:?}"
    );
    assert_eq!(
        std::fs::read_to_string(&user_file).unwrap(),
        "",
        "nothing learned: neither the changed key nor the client's"
    );
}

#[test]
fn an_unreachable_host_does_not_stop_the_others() {
    let lab = LabBuilder::new()
        .clients(vec![
            HostSpec::new("ubuntu-20.04", "systemd-timesyncd"),
            HostSpec::new("ubuntu-20.04", "systemd-timesyncd"),
        ])
        .start();
    lab.hosts.stop_host(&lab.clients[0]);
    let run = lab.run("apply", &["--yes"]);
    assert_eq!(run.code, 1, "{run:?}");
    assert!(
        run.stdout.contains(&format!(
            "UNREACHABLE data-1: cannot connect to {}:22",
            lab.clients[0]
        )),
        "{run:?}"
    );
    assert!(
        run.stdout
            .contains("Apply: 2 hosts changed, 0 unchanged, 1 unreachable, 0 failed."),
        "{run:?}"
    );
    assert_eq!(lab.restarts(&lab.clients[1]), 1);
}

#[test]
fn a_host_behind_a_jump_host_is_reached_through_it() {
    let lab = LabBuilder::new().start();
    let client = lab.clients[0].clone();
    lab.rewrite_inventory(
        &format!("address: {client} }}"),
        &format!("address: {client}, ssh: {{ jump: zcloud }} }}"),
    );
    let run = lab.run("apply", &["--yes"]);
    assert_eq!(run.code, 0, "{run:?}");
    assert!(
        lab.hosts
            .read_etc(&client, "systemd/timesyncd.conf.d/zz-clockprov.conf")
            .unwrap()
            .contains(&format!("NTP={}", lab.server))
    );
    // The client's sshd saw the connection come from the jump host's sshd, which forwarded it
    // (both are on loopback, so prove it by stopping the jump host: the client becomes unreachable).
    lab.hosts.stop_host(&lab.server);
    let run = lab.run("plan", &[]);
    assert_eq!(run.code, 1, "{run:?}");
    assert!(
        run.stdout.contains("UNREACHABLE")
            && run.stdout.contains(&format!(
                "cannot reach jump host zcloud for data-1: cannot connect to {}:22",
                lab.server
            )),
        "{run:?}"
    );
}

#[test]
fn keys_from_ssh_agent_work_without_an_identity_file() {
    struct Kill(std::process::Child);
    impl Drop for Kill {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
    let lab = LabBuilder::new().start();
    let sock = lab.hosts.dir().join("agent.sock");
    let agent = Command::new("ssh-agent")
        .args(["-D", "-a"])
        .arg(&sock)
        .stdout(std::process::Stdio::null())
        .spawn()
        .expect("ssh-agent");
    let agent = Kill(agent);
    for _ in 0..50 {
        if sock.exists() {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    let added = Command::new("ssh-add")
        .arg(lab.hosts.key())
        .env("SSH_AUTH_SOCK", &sock)
        .output()
        .unwrap();
    assert!(
        added.status.success(),
        "{}",
        String::from_utf8_lossy(&added.stderr)
    );
    let known = lab.hosts.known_hosts().display().to_string();
    let text = std::fs::read_to_string(&lab.inventory).unwrap();
    let ssh_block_end = text.find("ntp_servers:").unwrap();
    std::fs::write(
        &lab.inventory,
        format!(
            "ssh:\n  user: root\n  known_hosts: {known}\n{}",
            &text[ssh_block_end..]
        ),
    )
    .unwrap();
    // The builder clears SSH_AUTH_SOCK and gives each run an empty HOME: the agent is the only
    // source of keys, when it is given.
    let run = |with_agent: bool| {
        let plan = lab.clockprov("plan");
        if with_agent {
            plan.env("SSH_AUTH_SOCK", &sock).run()
        } else {
            plan.run()
        }
    };
    let without = run(false);
    assert_eq!(without.code, 1, "{without:?}");
    assert!(
        without.stdout.contains("authentication as root") && without.stdout.contains("no keys"),
        "{without:?}"
    );
    let with = run(true);
    assert_eq!(with.code, 0, "{with:?}");
    drop(agent);
}

/// An Ed25519 identity is signed by clockprov itself (its key expanded once per run); the other
/// types are signed by russh. Each kind is accepted by real OpenSSH servers, and a key they do not
/// know is refused: the signature is what they check.
#[test]
fn identity_files_of_each_key_type_authenticate_and_an_unknown_key_is_refused() {
    let lab = LabBuilder::new().start();
    let keygen = |name: &str, kind: &[&str]| {
        let path = lab.hosts.dir().join(name);
        let made = Command::new("ssh-keygen")
            .args(["-q", "-N", "", "-C", name, "-f"])
            .arg(&path)
            .args(kind)
            .output()
            .expect("ssh-keygen");
        assert!(made.status.success(), "{made:?}");
        path
    };
    let keys = [
        keygen("fresh_ed25519", &["-t", "ed25519"]),
        keygen("fresh_ecdsa", &["-t", "ecdsa"]),
        keygen("fresh_rsa", &["-t", "rsa", "-b", "3072"]),
    ];
    let unknown = keygen("unknown_ed25519", &["-t", "ed25519"]);
    for addr in lab.all() {
        let authorized = lab.hosts.host_dir(&addr).join("root/.ssh/authorized_keys");
        let mut text = std::fs::read_to_string(&authorized).unwrap();
        for key in &keys {
            text.push_str(&std::fs::read_to_string(key.with_extension("pub")).unwrap());
        }
        std::fs::write(&authorized, text).unwrap();
    }
    let mut current = lab.hosts.key();
    for key in keys.iter().chain([&unknown]) {
        lab.rewrite_inventory(
            &format!("identity_file: {}", current.display()),
            &format!("identity_file: {}", key.display()),
        );
        current.clone_from(key);
        let run = lab.run("plan", &["-v"]);
        if key == &unknown {
            assert_eq!(run.code, 1, "{run:?}");
            assert!(
                run.stdout.contains("authentication as root") && run.stdout.contains("was refused"),
                "{run:?}"
            );
            continue;
        }
        assert_eq!(run.code, 0, "{}: {run:?}", key.display());
        let accepted = format!("authenticated as root with publickey {}", key.display());
        assert_eq!(
            run.stderr.matches(&accepted).count(),
            lab.all().len(),
            "{}: {}",
            key.display(),
            run.stderr
        );
    }
}
