//! The seed's real topology on the VM lab (`tests/lab/lab.sh up --bastion`, issue 5): the
//! controller runs in its own network namespace whose only way in is zcloud's second NIC
//! (10.0.6.200); the clients (192.168.6.204-206) are reachable only through zcloud. clockprov
//! runs in that namespace and must plan, apply and check the fleet through the jump host, by the
//! inventory's `jump:` and by an OpenSSH config's `ProxyJump`, logging in as root or as the
//! ordinary user `huatai` with `become: sudo`; and fail clearly when it cannot.
//!
//! Two tests, one lab each, never at the same time (one lock): the root login through `jump:`,
//! and the sudo / OpenSSH config paths.

// Test helpers panic on failure by design.
#![allow(clippy::missing_panics_doc)]

use std::process::{Command, Stdio};

#[path = "../support/mod.rs"]
#[allow(dead_code)] // each test binary uses its own part
mod support;
use support::clockprov::Run;
use support::lab::{self, PASSWORD_VAR, assert_synchronized_to_zcloud};

const CLIENTS: [&str; 3] = ["z-b-data-1", "z-b-data-2", "z-b-data-3"];
const HOSTS: [&str; 4] = ["zcloud", "z-b-data-1", "z-b-data-2", "z-b-data-3"];

/// The lab in its bastion topology, with the sudo password at hand (never printed: the lab
/// registers it as a secret of every clockprov run).
struct Lab(lab::Lab);

impl std::ops::Deref for Lab {
    type Target = lab::Lab;

    fn deref(&self) -> &lab::Lab {
        &self.0
    }
}

impl Lab {
    /// `lab.sh up DIR --bastion`: four VMs, the controller namespace, the bastion inventories.
    fn up() -> Lab {
        Lab(lab::Lab::up("clockprov-vmlab-bastion-", &["--bastion"]))
    }

    /// An inventory in the lab's directory (its relative paths are the lab's files): `base` with
    /// every `from` replaced by its `to`.
    fn derived_inventory(&self, base: &str, name: &str, edits: &[(&str, &str)]) -> String {
        let mut text = std::fs::read_to_string(self.file(base)).unwrap();
        for (from, to) in edits {
            assert!(text.contains(from), "{base} has no {from:?}:\n{text}");
            text = text.replace(from, to);
        }
        std::fs::write(self.file(name), text).unwrap();
        self.file(name)
    }

    fn password(&self) -> String {
        std::fs::read_to_string(self.file("become_password"))
            .unwrap()
            .trim_end()
            .to_owned()
    }

    /// clockprov in the controller's namespace, with `CLOCKPROV_BECOME_PASSWORD` only when given.
    fn clockprov(&self, args: &[&str], password: Option<&str>) -> Run {
        self.0.clockprov(args, &password_env(password))
    }
}

fn password_env(password: Option<&str>) -> Vec<(&str, &str)> {
    password.map(|p| (PASSWORD_VAR, p)).into_iter().collect()
}

fn check_json(lab: &Lab, inventory: &str, password: Option<&str>) -> (i32, serde_json::Value) {
    lab.check_json(inventory, &password_env(password))
}

/// Plan (every host to change), apply with `--wait-sync`, check (every client synchronized to
/// zcloud within 0.05 s): the whole story through the jump host, with `inventory`; `password`
/// in `CLOCKPROV_BECOME_PASSWORD`, `extra` options for plan and apply.
fn plan_apply_check<'a>(lab: &Lab, inventory: &'a str, password: Option<&str>, extra: &[&'a str]) {
    let with = |args: &[&'a str]| [args, extra].concat();
    let plan = lab.clockprov(
        &with(&["plan", "-i", inventory, "--detailed-exitcode"]),
        password,
    );
    assert_eq!(plan.code, 2, "{plan:?}");
    assert!(
        plan.stdout.contains("+allow 192.168.6.0/24\n")
            && plan.stdout.contains("+NTP=192.168.6.200\n")
            && plan.stdout.contains("Plan: 4 hosts to change, 0 unchanged"),
        "{plan:?}"
    );

    let apply = lab.clockprov(
        &with(&["apply", "-i", inventory, "--yes", "--wait-sync", "240s"]),
        password,
    );
    assert_eq!(apply.code, 0, "{apply:?}{}", lab.time_daemon_diagnostics());
    assert!(apply.stdout.contains("Apply: 4 hosts changed"), "{apply:?}");

    let (code, after) = check_json(lab, inventory, password);
    assert_eq!(code, 0, "{after:#}");
    for client in CLIENTS {
        assert_synchronized_to_zcloud(&after, client);
    }
    files_are_roots(lab);
}

/// The managed files on the VMs: owned by root, mode 0644 (whoever logged in).
fn files_are_roots(lab: &Lab) {
    for vm in HOSTS {
        let path = stock_path(vm);
        let stat = lab.ssh(vm, &format!("stat -c '%U:%G %a' {path}"));
        assert_eq!(stat.trim(), "root:root 644", "{vm}:{path}");
    }
}

/// Put the stock files back (saved by `save_stock`) and restart the daemons: the next apply has
/// the whole story to do again.
fn save_stock(lab: &Lab) {
    for vm in HOSTS {
        let path = stock_path(vm);
        // A client's stock state is no drop-in: saved as an empty mark, "absent".
        lab.ssh(
            vm,
            &format!("if [ -e {path} ]; then cp -p {path} /root/stock.conf; else : >/root/stock.absent; fi"),
        );
    }
}

fn restore_stock(lab: &Lab) {
    for vm in HOSTS {
        let path = stock_path(vm);
        let unit = if vm == "zcloud" {
            "chrony"
        } else {
            "systemd-timesyncd"
        };
        lab.ssh(
            vm,
            &format!(
                "if [ -e /root/stock.absent ]; then rm -f {path}; else cp -p /root/stock.conf {path}; fi && systemctl restart {unit}"
            ),
        );
    }
}

fn stock_path(vm: &str) -> &'static str {
    if vm == "zcloud" {
        "/etc/chrony/chrony.conf"
    } else {
        // clockprov's drop-in: the vendor's timesyncd.conf is never written.
        "/etc/systemd/timesyncd.conf.d/zz-clockprov.conf"
    }
}

/// The topology itself: from the controller's namespace the LAN is unreachable, so the lab's
/// ordinary inventory (clients and zcloud at their LAN addresses) reaches nobody.
fn the_lan_is_unreachable(lab: &Lab) {
    let routes = lab.exec("ip", &["route", "show"]);
    assert_eq!(routes.code, 0, "{routes:?}");
    assert!(
        routes.stdout.contains("10.0.6.0/24") && !routes.stdout.contains("192.168.6."),
        "{routes:?}"
    );
    for address in ["192.168.6.200", "192.168.6.204"] {
        let connect = lab.exec(
            "timeout",
            &["5", "bash", "-c", &format!("exec 3<>/dev/tcp/{address}/22")],
        );
        assert_ne!(connect.code, 0, "{address}: {connect:?}");
        assert!(
            connect.stderr.contains("Network is unreachable"),
            "{address}: {connect:?}"
        );
    }
    let direct = lab.clockprov(
        &[
            "plan",
            "-i",
            &lab.file("inventory.yaml"),
            "--connect-timeout",
            "5s",
        ],
        None,
    );
    assert_eq!(direct.code, 1, "{direct:?}");
    assert!(direct.stdout.contains("4 unreachable"), "{direct:?}");
}

#[test]
fn bastion_root_login_through_jump() {
    let lab = Lab::up();
    save_stock(&lab);
    the_lan_is_unreachable(&lab);

    // The jump host's address is wrong: zcloud and every host behind it are unreachable, and the
    // clients say it was their jump host that failed.
    let bad = lab.derived_inventory(
        "inventory-bastion-root.yaml",
        "inventory-bastion-badjump.yaml",
        &[("host: 10.0.6.200", "host: 10.0.6.99")],
    );
    let unreachable = lab.clockprov(&["plan", "-i", &bad, "--connect-timeout", "5s"], None);
    assert_eq!(unreachable.code, 1, "{unreachable:?}");
    assert!(
        unreachable
            .stdout
            .contains("Plan: 0 hosts to change, 0 unchanged, 4 unreachable"),
        "{unreachable:?}"
    );
    for client in CLIENTS {
        let section = section(&unreachable, client);
        assert!(
            section.contains("UNREACHABLE") && section.contains("jump host zcloud"),
            "{client}: {section}"
        );
    }

    auth_refused_on_the_jump_host_or_the_target(&lab);

    // Root login, clients through `jump: zcloud`.
    plan_apply_check(&lab, &lab.file("inventory-bastion-root.yaml"), None, &[]);

    // Root login, every connection from the OpenSSH config (HostName, ProxyJump,
    // IdentityFile, UserKnownHostsFile, StrictHostKeyChecking); the inventory's `user` wins over
    // the config's `User`.
    let from_config = lab.derived_inventory(
        "inventory-bastion-sshconfig.yaml",
        "inventory-bastion-sshconfig-root.yaml",
        &[("  become: sudo", "  user: root")],
    );
    restore_stock(&lab);
    plan_apply_check(&lab, &from_config, None, &[]);
}

/// What clockprov printed about `host` (its `== host` section of a plan).
fn section<'a>(run: &'a Run, host: &str) -> &'a str {
    run.stdout
        .split("== ")
        .find(|s| s.starts_with(&format!("{host} ")))
        .unwrap_or_else(|| panic!("no {host} in {run:?}"))
}

/// Refused by the jump host (a key zcloud does not know): the clients say it was their jump host;
/// refused by the targets (a login with no key there), zcloud fine: the clients say it was them.
fn auth_refused_on_the_jump_host_or_the_target(lab: &Lab) {
    let status = Command::new("ssh-keygen")
        .args(["-q", "-t", "ed25519", "-N", "", "-C", "unknown", "-f"])
        .arg(lab.file("id_unknown"))
        .stdin(Stdio::null())
        .status()
        .expect("run ssh-keygen");
    assert!(status.success());
    let unknown_key = lab.derived_inventory(
        "inventory-bastion-root.yaml",
        "inventory-bastion-unknownkey.yaml",
        &[("identity_file: id_ed25519", "identity_file: id_unknown")],
    );
    let refused = lab.clockprov(&["plan", "-i", &unknown_key], None);
    assert_eq!(refused.code, 1, "{refused:?}");
    assert!(
        section(&refused, "zcloud").contains("refused"),
        "{refused:?}"
    );
    for client in CLIENTS {
        let section = section(&refused, client);
        assert!(
            section.contains("jump host zcloud") && section.contains("refused"),
            "{client}: {section}"
        );
    }

    let wrong_user = lab.derived_inventory(
        "inventory-bastion-root.yaml",
        "inventory-bastion-wronguser.yaml",
        &[(
            "ssh: { jump: zcloud }",
            "ssh: { jump: zcloud, user: daemon }",
        )],
    );
    let refused = lab.clockprov(&["plan", "-i", &wrong_user], None);
    assert_eq!(refused.code, 1, "{refused:?}");
    assert!(
        !section(&refused, "zcloud").contains("refused"),
        "{refused:?}"
    );
    for (client, address) in CLIENTS.iter().zip(["204", "205", "206"]) {
        let section = section(&refused, client);
        assert!(
            section.contains(&format!(
                "authentication as daemon on 192.168.6.{address}:22 was refused"
            )) && !section.contains("jump host"),
            "{client}: {section}"
        );
    }
}

#[test]
fn bastion_sudo_and_openssh_config() {
    let lab = Lab::up();
    save_stock(&lab);
    let password = lab.password();
    let inventory = lab.file("inventory-bastion.yaml");

    // sudo needs a password and none is given (no terminal, no CLOCKPROV_BECOME_PASSWORD).
    let none = lab.clockprov(&["apply", "-i", &inventory, "--yes"], None);
    assert_eq!(none.code, 1, "{none:?}");
    assert!(all_text(&none).contains("password"), "{none:?}");
    stock_is_untouched(&lab);

    // sudo denied: a login in no sudoers rule, and huatai with a rule refusing everything.
    let nosudo = lab.derived_inventory(
        "inventory-bastion.yaml",
        "inventory-bastion-nosudo.yaml",
        &[("user: huatai", "user: nosudo")],
    );
    let denied = lab.clockprov(&["apply", "-i", &nosudo, "--yes"], Some(&password));
    assert_denied(&denied);
    lab.lab("sudo", &["denied"]);
    let denied = lab.clockprov(&["apply", "-i", &inventory, "--yes"], Some(&password));
    lab.lab("sudo", &["password"]);
    assert_denied(&denied);
    stock_is_untouched(&lab);

    // (a) huatai with the sudo password, clients through the inventory's `jump: zcloud`.
    plan_apply_check(&lab, &inventory, Some(&password), &[]);
    let sudo_log = lab.ssh("zcloud", "journalctl -q --no-pager _COMM=sudo | tail -n 30");
    assert!(
        sudo_log.contains("huatai") && sudo_log.contains("USER=root"),
        "sudo ran the steps: {sudo_log}"
    );
    let leaks = lab.ssh(
        "zcloud",
        &format!("journalctl -q --no-pager | grep -c -F -e '{password}' || true"),
    );
    assert_eq!(
        leaks.trim(),
        "0",
        "the sudo password is in zcloud's journal"
    );

    // A jump host that is not in the inventory: `user@host:port`.
    let userjump = lab.derived_inventory(
        "inventory-bastion.yaml",
        "inventory-bastion-userjump.yaml",
        &[("jump: zcloud", "jump: \"huatai@10.0.6.200:22\"")],
    );
    let through = lab.clockprov(
        &[
            "plan",
            "-i",
            &userjump,
            "--limit",
            "z-b-data-*",
            "--detailed-exitcode",
        ],
        Some(&password),
    );
    assert_eq!(through.code, 0, "{through:?}");
    assert!(
        through
            .stdout
            .contains("Plan: 0 hosts to change, 3 unchanged"),
        "{through:?}"
    );

    // NOPASSWD: no password needed, none given; zcloud's file written through sudo again.
    lab.ssh(
        "zcloud",
        "cp -p /root/stock.conf /etc/chrony/chrony.conf && systemctl restart chrony",
    );
    lab.lab("sudo", &["nopasswd"]);
    let nopasswd = lab.clockprov(
        &["apply", "-i", &inventory, "--yes", "--limit", "zcloud"],
        None,
    );
    lab.lab("sudo", &["password"]);
    assert_eq!(nopasswd.code, 0, "{nopasswd:?}");
    assert!(
        nopasswd.stdout.contains("Apply: 1 host changed"),
        "{nopasswd:?}"
    );

    // (b) Everything from an OpenSSH config: HostName, User, IdentityFile, ProxyJump,
    // UserKnownHostsFile, StrictHostKeyChecking; the sudo password from a file this time.
    restore_stock(&lab);
    plan_apply_check(
        &lab,
        &lab.file("inventory-bastion-sshconfig.yaml"),
        None,
        &["--become-password-file", &lab.file("become_password")],
    );
}

fn assert_denied(run: &Run) {
    assert_eq!(run.code, 1, "{run:?}");
    let text = all_text(run);
    assert!(
        text.contains("sudo")
            && (text.contains("denied")
                || text.contains("not allowed")
                || text.contains("not in the sudoers")),
        "{run:?}"
    );
}

/// stdout and stderr together, lower case.
fn all_text(run: &Run) -> String {
    format!("{}\n{}", run.stdout, run.stderr).to_lowercase()
}

/// No managed file was changed (after a run that must not have changed anything).
fn stock_is_untouched(lab: &Lab) {
    for vm in HOSTS {
        let same = lab.ssh(
            vm,
            &format!(
                "if [ -e /root/stock.absent ]; then test ! -e {0}; else cmp -s /root/stock.conf {0}; fi && echo same || echo changed",
                stock_path(vm)
            ),
        );
        assert_eq!(same.trim(), "same", "{vm}: {}", stock_path(vm));
    }
}
