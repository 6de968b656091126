//! `become: sudo` for a non-root login, with the real sudo on the sshd test hosts, and encrypted
//! private keys.

use std::os::unix::fs::{MetadataExt as _, PermissionsExt as _};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use crate::support::hosts::HostSpec;
use crate::{Lab, LabBuilder, Run};

const CHRONY: &str = "chrony/chrony.conf";
/// clockprov's timesyncd drop-in.
const TIMESYNCD: &str = "systemd/timesyncd.conf.d/zz-clockprov.conf";
const USER: &str = "alice";
/// If anything ever fed this to a shell as root, /etc/clockprov-fed-blindly would appear.
const PASSWORD: &str = "touch /etc/clockprov-fed-blindly";
const NOPASSWD: &str = "alice ALL=(ALL:ALL) NOPASSWD: ALL";
const WITH_PASSWORD: &str = "alice ALL=(ALL:ALL) ALL";

/// A lab whose hosts are logged into as `alice` with `become: sudo`.
fn sudo_lab(server: HostSpec, clients: Vec<HostSpec>) -> Lab {
    let lab = LabBuilder::new().server(server).clients(clients);
    // The ssh block must name the key and known_hosts, which exist only once the hosts do: write
    // a placeholder and fill it in below.
    let lab = lab
        .ssh_defaults("  user: alice\n  become: sudo\n  connect_timeout: 5s\n")
        .start();
    lab.rewrite_inventory(
        "  user: alice\n",
        &format!(
            "  user: alice\n  identity_file: {}\n  known_hosts: {}\n",
            lab.hosts.key().display(),
            lab.hosts.known_hosts().display()
        ),
    );
    lab
}

fn spec(os: &'static str, packages: &'static str) -> HostSpec {
    HostSpec::new(os, packages).with_user(USER)
}

/// Run clockprov on the lab with `envs` set and no terminal; the password must never be printed.
fn run(lab: &Lab, command: &str, extra: &[&str], envs: &[(&str, &str)]) -> Run {
    envs.iter()
        .fold(lab.clockprov(command).args(extra), |c, (k, v)| c.env(k, v))
        .secret(PASSWORD)
        .run()
}

fn assert_root_0644(path: &Path) {
    let meta = std::fs::metadata(path).unwrap();
    assert_eq!(
        meta.permissions().mode() & 0o7777,
        0o644,
        "{}",
        path.display()
    );
    assert_eq!((meta.uid(), meta.gid()), (0, 0), "{}", path.display());
}

#[test]
fn nopasswd_sudo_through_a_jump_host_applies_as_root_and_a_second_apply_does_nothing() {
    let lab = sudo_lab(
        spec("debian-12", "chrony"),
        vec![spec("ubuntu-20.04", "systemd-timesyncd")],
    );
    for addr in lab.all() {
        lab.hosts.set_sudoers(&addr, NOPASSWD);
    }
    // The seed's topology: the client is reached through the server, as the same ordinary user.
    let client = lab.clients[0].clone();
    lab.rewrite_inventory(
        &format!("address: {client} }}"),
        &format!("address: {client}, ssh: {{ jump: zcloud }} }}"),
    );
    let plan = run(&lab, "plan", &["--detailed-exitcode"], &[]);
    assert_eq!(plan.code, 2, "{plan:?}");
    assert!(plan.stdout.contains("Plan: 2 hosts to change"), "{plan:?}");
    // A password is given but sudo never asks for it: it must not be typed anywhere.
    let apply = run(
        &lab,
        "apply",
        &["--yes"],
        &[("CLOCKPROV_BECOME_PASSWORD", PASSWORD)],
    );
    assert_eq!(apply.code, 0, "{apply:?}");
    assert!(
        apply
            .stdout
            .contains("Apply: 2 hosts changed, 0 unchanged, 0 unreachable, 0 failed."),
        "{apply:?}"
    );
    assert!(
        lab.hosts
            .read_etc(&lab.clients[0], TIMESYNCD)
            .unwrap()
            .contains(&format!("\nNTP={}\n", lab.server))
    );
    assert_root_0644(&lab.hosts.etc_file(&lab.server, CHRONY));
    assert_root_0644(&lab.hosts.etc_file(&lab.clients[0], TIMESYNCD));
    for addr in lab.all() {
        assert_eq!(lab.restarts(&addr), 1, "{addr}");
        assert!(lab.hosts.read_etc(&addr, "clockprov-fed-blindly").is_none());
    }
    let mtime = std::fs::metadata(lab.hosts.etc_file(&lab.server, CHRONY))
        .unwrap()
        .modified()
        .unwrap();
    let again = run(&lab, "apply", &["--yes"], &[]);
    assert_eq!(again.code, 0, "{again:?}");
    assert!(
        again.stdout.contains("Apply: 0 hosts changed, 2 unchanged"),
        "{again:?}"
    );
    for addr in lab.all() {
        assert_eq!(lab.restarts(&addr), 1, "{addr} restarted again");
    }
    assert_eq!(
        std::fs::metadata(lab.hosts.etc_file(&lab.server, CHRONY))
            .unwrap()
            .modified()
            .unwrap(),
        mtime
    );
}

#[test]
fn a_sudo_password_comes_from_the_environment_or_a_file_and_its_absence_fails_only_that_host() {
    let lab = sudo_lab(
        spec("debian-12", "chrony"),
        vec![spec("ubuntu-20.04", "systemd-timesyncd")],
    );
    lab.hosts.set_sudoers(&lab.server, WITH_PASSWORD);
    lab.hosts.set_password(&lab.server, USER, PASSWORD);
    lab.hosts.set_sudoers(&lab.clients[0], NOPASSWD);

    // No password and no terminal: the server fails, the client is planned all the same.
    let none = run(&lab, "plan", &[], &[]);
    assert_eq!(none.code, 1, "{none:?}");
    assert!(
        none.stdout.contains(
            "sudo on zcloud requires a password: set CLOCKPROV_BECOME_PASSWORD or --become-password-file"
        ),
        "{none:?}"
    );
    assert!(
        none.stdout
            .contains("Plan: 1 host to change, 0 unchanged, 0 unreachable, 1 failed."),
        "{none:?}"
    );

    let apply = run(
        &lab,
        "apply",
        &["--yes"],
        &[("CLOCKPROV_BECOME_PASSWORD", PASSWORD)],
    );
    assert_eq!(apply.code, 0, "{apply:?}");
    assert!(
        lab.hosts
            .read_etc(&lab.server, CHRONY)
            .unwrap()
            .contains("allow 127.0.0.0/8")
    );
    assert_root_0644(&lab.hosts.etc_file(&lab.server, CHRONY));
    for addr in lab.all() {
        assert!(lab.hosts.read_etc(&addr, "clockprov-fed-blindly").is_none());
    }

    let file = lab.hosts.dir().join("become-password");
    std::fs::write(&file, format!("{PASSWORD}\n")).unwrap();
    std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o600)).unwrap();
    let file = file.display().to_string();
    let plan = run(
        &lab,
        "plan",
        &["--detailed-exitcode", "--become-password-file", &file],
        &[("CLOCKPROV_BECOME_PASSWORD", "the file wins over this")],
    );
    assert_eq!(plan.code, 0, "{plan:?}");
    assert!(
        plan.stdout.contains("Plan: 0 hosts to change, 2 unchanged"),
        "{plan:?}"
    );
}

#[test]
fn a_wrong_sudo_password_is_named_as_such() {
    let lab = sudo_lab(spec("debian-12", "chrony"), vec![]);
    lab.hosts.set_sudoers(&lab.server, WITH_PASSWORD);
    lab.hosts.set_password(&lab.server, USER, PASSWORD);
    let wrong = run(
        &lab,
        "plan",
        &[],
        &[("CLOCKPROV_BECOME_PASSWORD", "not the password")],
    );
    assert_eq!(wrong.code, 1, "{wrong:?}");
    assert!(
        wrong.stdout.contains(
            "sudo: wrong password for alice on zcloud (the password from CLOCKPROV_BECOME_PASSWORD)"
        ),
        "{wrong:?}"
    );
    assert!(!wrong.stdout.contains("not the password"), "{wrong:?}");
}

#[test]
fn sudo_denied_says_who_may_not_do_what_where() {
    let lab = sudo_lab(spec("debian-12", "chrony"), vec![]);
    lab.hosts.set_password(&lab.server, USER, PASSWORD);
    // Not in sudoers at all.
    let denied = run(
        &lab,
        "plan",
        &[],
        &[("CLOCKPROV_BECOME_PASSWORD", PASSWORD)],
    );
    assert_eq!(denied.code, 1, "{denied:?}");
    assert!(
        denied.stdout.contains(
            "sudo denied: alice may not run commands as root on zcloud (alice is not in the sudoers file"
        ),
        "{denied:?}"
    );
    // In sudoers, but only for another command.
    lab.hosts
        .set_sudoers(&lab.server, "alice ALL=(ALL:ALL) NOPASSWD: /usr/bin/true");
    let narrow = run(
        &lab,
        "plan",
        &[],
        &[("CLOCKPROV_BECOME_PASSWORD", PASSWORD)],
    );
    assert_eq!(narrow.code, 1, "{narrow:?}");
    assert!(
        narrow.stdout.contains(
            "sudo denied: alice may not run commands as root on zcloud (Sorry, user alice is not allowed to execute '/bin/sh …' as root on "
        ),
        "{narrow:?}"
    );
    // No sudo at all (removed from this host's /usr overlay only).
    lab.hosts.root(&lab.server, "rm /usr/bin/sudo");
    let missing = run(&lab, "plan", &[], &[]);
    assert_eq!(missing.code, 1, "{missing:?}");
    assert!(
        missing
            .stdout
            .contains("sudo is not installed on zcloud, and become: sudo needs it"),
        "{missing:?}"
    );
}

#[test]
fn sudo_chatter_on_stderr_does_not_disturb_facts_or_apply() {
    let name = format!("clockprov-unresolvable-{}", std::process::id());
    let lab = sudo_lab(
        spec("debian-12", "chrony").with_unresolvable_hostname(&name),
        vec![],
    );
    lab.hosts.set_sudoers(&lab.server, NOPASSWD);
    // The host is as promised: its sudo complains on stderr.
    let probe = Command::new("ssh")
        .args(lab.hosts.ssh_args())
        .arg(format!("{USER}@{}", lab.server))
        .arg("sudo -n true")
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert!(probe.status.success());
    assert!(
        String::from_utf8_lossy(&probe.stderr)
            .contains(&format!("sudo: unable to resolve host {name}")),
        "{probe:?}"
    );
    let apply = run(&lab, "apply", &["--yes"], &[]);
    assert_eq!(apply.code, 0, "{apply:?}");
    assert_root_0644(&lab.hosts.etc_file(&lab.server, CHRONY));
    let again = run(&lab, "plan", &["--detailed-exitcode"], &[]);
    assert_eq!(again.code, 0, "{again:?}");
}

#[test]
fn an_encrypted_identity_file_is_decrypted_with_the_passphrase_from_the_environment() {
    let lab = LabBuilder::new().clients(vec![]).start();
    let key = encrypted_key(&lab, "root");
    let key = key.display().to_string();

    let ok = run(
        &lab,
        "plan",
        &[],
        &[("CLOCKPROV_KEY_PASSPHRASE", "correct horse")],
    );
    assert_eq!(ok.code, 0, "{ok:?}");

    let wrong = run(
        &lab,
        "plan",
        &[],
        &[("CLOCKPROV_KEY_PASSPHRASE", "wrong horse")],
    );
    assert_eq!(wrong.code, 1, "{wrong:?}");
    assert!(
        wrong.stderr.contains(&format!(
            "inventory.yaml:3:18: ssh.identity_file: wrong passphrase for identity file {key} (from CLOCKPROV_KEY_PASSPHRASE)\n"
        )),
        "{wrong:?}"
    );

    let missing = run(&lab, "plan", &[], &[]);
    assert_eq!(missing.code, 1, "{missing:?}");
    assert!(
        missing.stderr.contains(&format!(
            "inventory.yaml:3:18: ssh.identity_file: identity file {key} is encrypted and no passphrase was given: set CLOCKPROV_KEY_PASSPHRASE"
        )),
        "{missing:?}"
    );

    // The same key as the default ~/.ssh/id_ed25519: decrypted with the variable, and without
    // it skipped (not an error: the agent usually holds such a key), so no key is left to try.
    let home = lab.hosts.dir().join("home");
    std::fs::create_dir_all(home.join(".ssh")).unwrap();
    std::fs::copy(&key, home.join(".ssh/id_ed25519")).unwrap();
    lab.rewrite_inventory(&format!("  identity_file: {key}\n"), "");
    let ok = lab
        .clockprov("plan")
        .home(&home)
        .env("CLOCKPROV_KEY_PASSPHRASE", "correct horse")
        .run();
    assert_eq!(ok.code, 0, "{ok:?}");
    let skipped = lab.clockprov("plan").home(&home).run();
    assert_eq!(skipped.code, 1, "{skipped:?}");
    assert!(
        skipped.stdout.contains("authentication as root")
            && skipped
                .stdout
                .contains("no keys: no usable identity file and no ssh-agent"),
        "{skipped:?}"
    );
}

/// A new ed25519 key encrypted with "correct horse", authorised for `login` (root or the
/// `--user`) on every host, and named by the inventory instead of the lab's key.
fn encrypted_key(lab: &Lab, login: &str) -> PathBuf {
    let key = lab.hosts.dir().join("id_encrypted");
    let made = Command::new("ssh-keygen")
        .args([
            "-q",
            "-t",
            "ed25519",
            "-N",
            "correct horse",
            "-C",
            "enc",
            "-f",
        ])
        .arg(&key)
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert!(made.status.success(), "{made:?}");
    let public = std::fs::read_to_string(key.with_extension("pub")).unwrap();
    let home = if login == "root" {
        "/root".to_owned()
    } else {
        format!("/home/{login}")
    };
    for addr in lab.all() {
        lab.hosts.root(
            &addr,
            &format!(
                "printf '%s\\n' '{}' >> {home}/.ssh/authorized_keys",
                public.trim()
            ),
        );
    }
    lab.rewrite_inventory(
        &format!("identity_file: {}", lab.hosts.key().display()),
        &format!("identity_file: {}", key.display()),
    );
    key
}

/// On a terminal: the key's passphrase is asked once, the sudo password once for both hosts,
/// neither is echoed, and both hosts are planned.
#[test]
fn on_a_terminal_the_passphrase_and_the_sudo_password_are_each_asked_once() {
    let lab = sudo_lab(
        spec("debian-12", "chrony"),
        vec![spec("ubuntu-20.04", "systemd-timesyncd")],
    );
    for addr in lab.all() {
        lab.hosts.set_sudoers(&addr, WITH_PASSWORD);
        lab.hosts.set_password(&addr, USER, PASSWORD);
    }
    let key = encrypted_key(&lab, USER);
    let mut terminal = lab
        .clockprov("plan")
        .arg("--detailed-exitcode")
        .secret(PASSWORD)
        .secret("correct horse")
        .terminal();
    terminal.wait_for(&format!("Enter passphrase for key {}: ", key.display()));
    terminal.type_line("correct horse");
    terminal.wait_for("[clockprov] sudo password for alice (used for every host): ");
    terminal.type_line(PASSWORD);
    let run = terminal.finish();
    let (code, output) = (run.code, run.stdout);
    assert_eq!(code, 2, "{output}");
    assert!(
        output.contains("Plan: 2 hosts to change, 0 unchanged, 0 unreachable, 0 failed."),
        "{output}"
    );
    assert_eq!(
        output.matches("Enter passphrase for key").count(),
        1,
        "{output}"
    );
    assert_eq!(
        output.matches("sudo password for alice").count(),
        1,
        "{output}"
    );
    assert!(
        !output.contains(PASSWORD) && !output.contains("correct horse"),
        "echoed: {output}"
    );
}
