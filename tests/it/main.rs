//! Integration tests: the clockprov binary against real OpenSSH sshd test hosts on loopback
//! addresses, each with its own private /etc (see tests/hosts/testhosts.sh).

// Test helpers panic on failure by design.
#![allow(clippy::missing_panics_doc)]

#[path = "../support/mod.rs"]
#[allow(dead_code)] // each test binary uses its own part
mod support;

mod check;
mod daemons;
mod facts;
mod fleet;
mod harness;
mod hostile;
mod import;
mod jump;
mod logs;
mod messages;
mod nts;
mod planfile;
mod privilege;
mod ssh;
mod txn;
mod vendor_sources;

use std::fmt::Write as _;
use std::path::PathBuf;

pub use support::clockprov::{Clockprov, Run};
use support::hosts::{HostSpec, TestHosts};

/// A small fleet: one chrony server and some timesyncd clients, with an inventory for them.
pub struct Lab {
    pub hosts: TestHosts,
    pub server: String,
    pub clients: Vec<String>,
    pub inventory: PathBuf,
}

/// Builds a [`Lab`]: which flavours to start and what the inventory says.
pub struct LabBuilder {
    server: HostSpec,
    clients: Vec<HostSpec>,
    extra_inventory: String,
    ssh_defaults: Option<String>,
}

impl Default for LabBuilder {
    fn default() -> Self {
        Self::new()
    }
}

impl LabBuilder {
    #[must_use]
    pub fn new() -> LabBuilder {
        LabBuilder {
            server: HostSpec::new("debian-12", "chrony"),
            clients: vec![HostSpec::new("ubuntu-20.04", "systemd-timesyncd")],
            extra_inventory: String::new(),
            ssh_defaults: None,
        }
    }

    #[must_use]
    pub fn server(mut self, spec: HostSpec) -> Self {
        self.server = spec;
        self
    }

    #[must_use]
    pub fn clients(mut self, specs: Vec<HostSpec>) -> Self {
        self.clients = specs;
        self
    }

    /// Text appended to the inventory (e.g. `templates: DIR`).
    #[must_use]
    pub fn inventory_extra(mut self, text: &str) -> Self {
        self.extra_inventory.push_str(text);
        self
    }

    /// Replace the inventory's top-level `ssh:` block body (indented two spaces).
    #[must_use]
    pub fn ssh_defaults(mut self, text: &str) -> Self {
        self.ssh_defaults = Some(text.to_owned());
        self
    }

    #[must_use]
    pub fn start(self) -> Lab {
        let mut all = vec![self.server.clone()];
        all.extend(self.clients.iter().cloned());
        let hosts = TestHosts::start(&all);
        let server = self.server.addr.clone();
        let clients: Vec<String> = self.clients.iter().map(|c| c.addr.clone()).collect();
        let ssh = self.ssh_defaults.unwrap_or_else(|| ssh_defaults(&hosts));
        let names: Vec<String> = (1..=clients.len()).map(|i| format!("data-{i}")).collect();
        let entries: Vec<(&str, &str, &str)> = names
            .iter()
            .zip(&clients)
            .map(|(name, address)| (name.as_str(), address.as_str(), ""))
            .collect();
        let mut text = inventory(&ssh, &server, &entries);
        text.push_str(&self.extra_inventory);
        let inventory = hosts.dir().join("inventory.yaml");
        std::fs::write(&inventory, text).unwrap();
        Lab {
            hosts,
            server,
            clients,
            inventory,
        }
    }
}

/// The top-level `ssh:` body that reaches `hosts` as root: their key and `known_hosts`.
#[must_use]
pub fn ssh_defaults(hosts: &TestHosts) -> String {
    format!(
        "  user: root\n  identity_file: {}\n  known_hosts: {}\n  connect_timeout: 30s\n",
        hosts.key().display(),
        hosts.known_hosts().display()
    )
}

/// An inventory: `ssh` as the top-level `ssh:` body, the chrony server zcloud at `server`, and
/// `clients` (`(name, address, ssh block)`, an empty block for none).
#[must_use]
pub fn inventory(ssh: &str, server: &str, clients: &[(&str, &str, &str)]) -> String {
    let mut text = format!(
        "ssh:\n{ssh}ntp_servers:\n  zcloud:\n    address: {server}\n    upstream:\n      - pool: ntp.ubuntu.com\n    allow: [127.0.0.0/8]\n    local_stratum: 10\nclients:\n"
    );
    for (name, address, ssh) in clients {
        if ssh.is_empty() {
            let _ = writeln!(text, "  {name}: {{ address: {address} }}");
        } else {
            let _ = writeln!(text, "  {name}: {{ address: {address}, ssh: {{ {ssh} }} }}");
        }
    }
    text
}

impl Lab {
    /// `clockprov COMMAND -i INVENTORY`, to be given more.
    pub fn clockprov(&self, command: &str) -> Clockprov {
        Clockprov::new().args([command, "-i"]).arg(&self.inventory)
    }

    /// `clockprov COMMAND -i INVENTORY EXTRA...`, run.
    #[must_use]
    pub fn run(&self, command: &str, extra: &[&str]) -> Run {
        self.clockprov(command).args(extra).run()
    }

    /// What `render` prints for the chrony host `name` on `os` (`ID:VERSION_ID`) whose own
    /// chrony.conf is the seed of `seed_os`: the file plan makes of it (only the managed lines
    /// changed).
    #[must_use]
    pub fn render_onto(&self, name: &str, os: &str, seed_os: &str) -> String {
        let own = crate::support::hosts::seed_file(seed_os, "chrony.conf");
        let run = self.run(
            "render",
            &[name, "--os", os, "--onto", own.to_str().unwrap()],
        );
        assert_eq!(run.code, 0, "{run:?}");
        run.stdout
    }

    pub fn rewrite_inventory(&self, from: &str, to: &str) {
        let text = std::fs::read_to_string(&self.inventory).unwrap();
        assert!(text.contains(from), "inventory has no {from:?}");
        std::fs::write(&self.inventory, text.replace(from, to)).unwrap();
    }

    #[must_use]
    pub fn all(&self) -> Vec<String> {
        let mut all = vec![self.server.clone()];
        all.extend(self.clients.iter().cloned());
        all
    }

    #[must_use]
    pub fn restarts(&self, addr: &str) -> usize {
        self.hosts
            .systemctl_log(addr)
            .iter()
            .filter(|l| l.starts_with("restart"))
            .count()
    }

    /// systemctl calls that change something (not queries).
    #[must_use]
    pub fn service_changes(&self, addr: &str) -> Vec<String> {
        self.hosts
            .systemctl_log(addr)
            .into_iter()
            .filter(|l| {
                !l.starts_with("is-enabled")
                    && !l.starts_with("is-active")
                    && !l.starts_with("status")
                    && !l.starts_with("show")
            })
            .collect()
    }
}
