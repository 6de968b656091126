//! Integration tests: the clockprov binary against real OpenSSH sshd test hosts on loopback
//! addresses, each with its own private /etc (see tests/hosts/testhosts.sh).

// Test helpers panic on failure by design.
#![allow(clippy::missing_panics_doc)]

#[path = "../support/mod.rs"]
mod support;

mod fleet;
mod harness;
mod jump;
mod messages;
mod privilege;
mod ssh;

use std::fmt::Write as _;
use std::path::PathBuf;
use std::process::{Command, Stdio};

use support::hosts::{HostSpec, TestHosts};
pub use support::run::Run;

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
        let ssh = self.ssh_defaults.unwrap_or_else(|| {
            format!(
                "  user: root\n  identity_file: {}\n  known_hosts: {}\n  connect_timeout: 5s\n",
                hosts.key().display(),
                hosts.known_hosts().display()
            )
        });
        let mut text = format!(
            "ssh:\n{ssh}ntp_servers:\n  zcloud:\n    address: {server}\n    upstream:\n      - pool: ntp.ubuntu.com\n    allow: [127.0.0.0/8]\n    local_stratum: 10\nclients:\n"
        );
        for (i, client) in clients.iter().enumerate() {
            let _ = writeln!(text, "  data-{}: {{ address: {client} }}", i + 1);
        }
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

/// Run clockprov with `args`, no terminal, no colour.
#[must_use]
pub fn clockprov(args: &[&str]) -> Run {
    Command::new(env!("CARGO_BIN_EXE_clockprov"))
        .args(args)
        .env("NO_COLOR", "1")
        .env_remove("SSH_AUTH_SOCK")
        .stdin(Stdio::null())
        .output()
        .expect("run clockprov")
        .into()
}

impl Lab {
    #[must_use]
    pub fn run(&self, command: &str, extra: &[&str]) -> Run {
        let inventory = self.inventory.display().to_string();
        let mut args = vec![command, "-i", inventory.as_str()];
        args.extend_from_slice(extra);
        clockprov(&args)
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
