//! Rendering: inventory host + what the host runs -> the files and units it should have.
//!
//! Pure: no I/O beyond reading override templates once, when the renderer is built.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use minijinja::{Environment, UndefinedBehavior};
use serde::Serialize;

use crate::daemon::{Daemon, DaemonVersion, Family};
use crate::inventory::{Host, Role, Upstream, UpstreamKind};
use crate::nts::HostNts;
use crate::value::{Cidr, NetAddress};

const BUILTIN_TEMPLATES: [(&str, &str); 3] = [
    (
        "chrony.conf.j2",
        include_str!("../templates/chrony.conf.j2"),
    ),
    (
        "chrony-redhat.conf.j2",
        include_str!("../templates/chrony-redhat.conf.j2"),
    ),
    (
        "timesyncd.conf.j2",
        include_str!("../templates/timesyncd.conf.j2"),
    ),
];

/// One file a host should have.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct DesiredFile {
    pub path: String,
    /// The text. Never serialized: outputs show diffs, and a [`FileKind::Secret`]'s text must
    /// not reach any output, log or saved plan.
    #[serde(skip)]
    pub content: String,
    pub mode: u32,
    pub owner: String,
    pub group: String,
    pub kind: FileKind,
}

/// What a managed file is, for what may be shown of it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum FileKind {
    /// The daemon's configuration: shown, diffed, checked (`chronyd -p`).
    #[default]
    Config,
    /// Public material the configuration names (an NTS certificate, a CA): diffed like text.
    Material,
    /// A private key: only its size and sha256 prefix are ever shown.
    Secret,
}

impl DesiredFile {
    #[must_use]
    pub fn is_secret(&self) -> bool {
        self.kind == FileKind::Secret
    }
}

/// What a host should run: the daemon (package and unit) and its configuration files.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct DesiredState {
    pub daemon: Daemon,
    pub files: Vec<DesiredFile>,
}

#[derive(Debug, thiserror::Error)]
pub enum RenderError {
    #[error("cannot read template {path}: {source}")]
    ReadTemplate {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("template {name}: {message}")]
    Template { name: String, message: String },
}

impl RenderError {
    fn from_minijinja(name: &str, error: &minijinja::Error) -> Self {
        let mut message = error.to_string();
        // "undefined value" alone does not say which: name the expression, from the template.
        if error.kind() == minijinja::ErrorKind::UndefinedError
            && let (Some(source), Some(range)) = (error.template_source(), error.range())
            && let Some(expression) = source.get(range)
        {
            message = format!("`{}` is undefined", expression.trim());
        }
        if let Some(line) = error.line() {
            message = format!("line {line}: {message}");
        }
        let mut source = std::error::Error::source(error);
        while let Some(inner) = source {
            let _ = write!(message, ": {inner}");
            source = inner.source();
        }
        RenderError::Template {
            name: name.to_owned(),
            message,
        }
    }
}

/// The compiled templates (built-in, or overridden from a directory).
pub struct Renderer {
    env: Environment<'static>,
}

/// The facts a rendering depends on: the system, the daemon the host runs there (see
/// `Host::daemon`), and its version: the host's actual one when it is installed, otherwise
/// what its distribution would install.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RenderInputs<'a> {
    pub os_id: &'a str,
    pub daemon: Daemon,
    pub version: DaemonVersion,
}

#[derive(Serialize)]
struct HostContext<'a> {
    name: &'a str,
    address: String,
    section: &'a str,
}

/// One flag per stock-file directive, so override templates can test them by name.
#[derive(Serialize)]
#[allow(clippy::struct_excessive_bools)]
struct ChronyFeatures {
    version: String,
    confdir: bool,
    sourcedir: bool,
    nts: bool,
    leapsectz: bool,
    /// chrony 4.6+ on Debian 13 and Ubuntu 25.10+ reads leap seconds from tzdata's
    /// `leap-seconds.list`, as the vendor's file does: those systems' tzdata no longer ships
    /// `right/UTC` (chronyd logs "Timezone right/UTC failed leap second check, ignoring").
    leapseclist: bool,
    /// A client of the fleet (its sources are its inventory servers, it serves no one). The
    /// vendor's `sourcedir` lines stay in its file as in a server's: Ubuntu 25.10+'s pools file
    /// in `sources.d` is switched off by a plan step of its own, and the effective settings
    /// show whatever else those directories hold.
    client: bool,
}

/// The NTS lines of chrony.conf, one small block of their own in the templates: a server's
/// certificate and key, a client's `nts` on each server and its private CA. Paths are ours,
/// never the inventory's.
#[derive(Serialize, Default)]
struct NtsContext {
    server: Option<NtsServerPaths>,
    /// `nts` on every `server` line (a client's sources are all its servers).
    client: bool,
    trusted_certs: Option<String>,
}

#[derive(Serialize)]
struct NtsServerPaths {
    certificate: String,
    key: String,
}

/// Where clockprov puts NTS material: beside chrony's own files on Debian and Ubuntu, under
/// `/etc/pki` (where the RHEL family keeps TLS material) there.
#[must_use]
pub fn nts_dir(family: Family) -> &'static str {
    match family {
        Family::Debian => "/etc/chrony/nts",
        Family::RedHat => "/etc/pki/chrony",
    }
}

/// The NTS files of `host` on `family`: certificate, key, CA (the ones it has).
#[must_use]
pub fn nts_paths(nts: &HostNts, family: Family) -> Vec<String> {
    let dir = nts_dir(family);
    match nts {
        HostNts::Off
        | HostNts::Client {
            trusted_certs: None,
        } => Vec::new(),
        HostNts::Server { .. } => vec![
            format!("{dir}/clockprov.crt"),
            format!("{dir}/clockprov.key"),
        ],
        HostNts::Client {
            trusted_certs: Some(_),
        } => vec![format!("{dir}/clockprov-ca.crt")],
    }
}

/// The group chronyd's user reads its key through (the package's system user).
#[must_use]
pub fn chrony_group(family: Family) -> &'static str {
    match family {
        Family::Debian => "_chrony",
        Family::RedHat => "chrony",
    }
}

/// The NTS files `host` should have, and the template's view of them.
fn nts_files(nts: &HostNts, family: Family) -> (Vec<DesiredFile>, NtsContext) {
    let paths = nts_paths(nts, family);
    let file = |path: &str, content: &str, mode, group: &str, kind| DesiredFile {
        path: path.to_owned(),
        content: content.to_owned(),
        mode,
        owner: "root".to_owned(),
        group: group.to_owned(),
        kind,
    };
    match nts {
        HostNts::Off => (Vec::new(), NtsContext::default()),
        HostNts::Server { certificate, key } => (
            vec![
                file(
                    &paths[0],
                    &certificate.content,
                    0o644,
                    "root",
                    FileKind::Material,
                ),
                // Readable by chronyd's NTS-KE helper, which runs as the daemon's user.
                file(
                    &paths[1],
                    key.expose(),
                    0o640,
                    chrony_group(family),
                    FileKind::Secret,
                ),
            ],
            NtsContext {
                server: Some(NtsServerPaths {
                    certificate: paths[0].clone(),
                    key: paths[1].clone(),
                }),
                ..NtsContext::default()
            },
        ),
        HostNts::Client { trusted_certs } => match trusted_certs {
            None => (
                Vec::new(),
                NtsContext {
                    client: true,
                    ..NtsContext::default()
                },
            ),
            Some(ca) => (
                vec![file(
                    &paths[0],
                    &ca.content,
                    0o644,
                    "root",
                    FileKind::Material,
                )],
                NtsContext {
                    client: true,
                    trusted_certs: Some(paths[0].clone()),
                    ..NtsContext::default()
                },
            ),
        },
    }
}

#[derive(Serialize)]
struct TimesyncdFeatures {
    systemd_version: u32,
    default_fallback: &'static str,
}

impl Renderer {
    /// Compile the templates; files named `chrony.conf.j2` / `chrony-redhat.conf.j2` /
    /// `timesyncd.conf.j2` (clockprov's timesyncd drop-in) in `override_dir` replace the
    /// built-in ones.
    ///
    /// # Errors
    /// An override cannot be read or does not compile.
    pub fn new(override_dir: Option<&Path>) -> Result<Renderer, RenderError> {
        let mut env = Environment::new();
        env.set_undefined_behavior(UndefinedBehavior::Strict);
        env.set_keep_trailing_newline(true);
        // Debug info on in every build, not only under debug_assertions (minijinja's default):
        // without it a release binary's error has no template source, and an undefined variable
        // cannot be named (`RenderError::from_minijinja`).
        env.set_debug(true);
        for (name, builtin) in BUILTIN_TEMPLATES {
            let source = match override_dir.map(|dir| dir.join(name)) {
                Some(path) if path.exists() => {
                    std::fs::read_to_string(&path).map_err(|source| RenderError::ReadTemplate {
                        path: path.clone(),
                        source,
                    })?
                }
                _ => builtin.to_owned(),
            };
            env.add_template_owned(name, source)
                .map_err(|e| RenderError::from_minijinja(name, &e))?;
        }
        Ok(Renderer { env })
    }

    /// The files and daemon `host` should have.
    ///
    /// # Errors
    /// A template fails (an undefined variable, a filter error).
    pub fn render(
        &self,
        host: &Host,
        inputs: RenderInputs<'_>,
    ) -> Result<DesiredState, RenderError> {
        let nts = &host.nts;
        match &host.role {
            Role::Server(spec) => {
                let host = HostContext {
                    name: host.name.as_str(),
                    address: host.address.to_string(),
                    section: "ntp_servers",
                };
                self.render_chrony(
                    &host,
                    &spec.upstream,
                    &spec.allow,
                    spec.local_stratum,
                    nts,
                    inputs,
                )
            }
            Role::Client { servers, .. } if inputs.daemon == Daemon::Chrony => {
                let host = HostContext {
                    name: host.name.as_str(),
                    address: host.address.to_string(),
                    section: "clients",
                };
                self.render_chrony(&host, &client_sources(servers), &[], None, nts, inputs)
            }
            Role::Client { spec, servers, .. } => {
                let content = self.render_client(
                    &HostContext {
                        name: host.name.as_str(),
                        address: host.address.to_string(),
                        section: "clients",
                    },
                    servers,
                    spec.fallback_ntp.as_deref(),
                    inputs,
                )?;
                Ok(DesiredState {
                    daemon: Daemon::Timesyncd,
                    files: vec![timesyncd_dropin(content)],
                })
            }
        }
    }

    /// chrony.conf in its family's stock layout: a server's (upstream, allow, local stratum)
    /// or a client's (its servers only: `allow` empty).
    fn render_chrony(
        &self,
        host: &HostContext<'_>,
        upstream: &[Upstream],
        allow: &[Cidr],
        local_stratum: Option<u8>,
        nts: &HostNts,
        inputs: RenderInputs<'_>,
    ) -> Result<DesiredState, RenderError> {
        let modern = inputs.version.major >= 4;
        let family = Family::of(inputs.os_id);
        let leapseclist =
            family == Family::Debian && (inputs.version.major, inputs.version.minor) >= (4, 6);
        let (nts_files, nts) = nts_files(nts, family);
        let context = minijinja::context! {
            host => host,
            chrony => ChronyFeatures {
                version: inputs.version.to_string(),
                confdir: modern,
                sourcedir: modern,
                nts: modern,
                leapsectz: modern && !leapseclist,
                leapseclist,
                client: host.section != "ntp_servers",
            },
            upstream => upstream,
            allow => allow.iter().map(Cidr::to_string).collect::<Vec<_>>(),
            local_stratum => local_stratum,
            nts => nts,
        };
        let template = match family {
            Family::Debian => "chrony.conf.j2",
            Family::RedHat => "chrony-redhat.conf.j2",
        };
        let text = self.render_template(template, &context)?;
        let mut files = vec![config_file(Daemon::Chrony, family, text)];
        files.extend(nts_files);
        Ok(DesiredState {
            daemon: Daemon::Chrony,
            files,
        })
    }

    /// The files a golden image should carry: a client of `servers`, of the daemon
    /// `inputs.daemon`.
    ///
    /// # Errors
    /// A template fails.
    pub fn render_image(
        &self,
        name: &str,
        servers: &[NetAddress],
        fallback: Option<&[NetAddress]>,
        inputs: RenderInputs<'_>,
    ) -> Result<DesiredState, RenderError> {
        let host = HostContext {
            name,
            address: String::new(),
            section: "images",
        };
        if inputs.daemon == Daemon::Chrony {
            return self.render_chrony(
                &host,
                &client_sources(servers),
                &[],
                None,
                &HostNts::Off,
                inputs,
            );
        }
        let content = self.render_client(&host, servers, fallback, inputs)?;
        Ok(DesiredState {
            daemon: Daemon::Timesyncd,
            files: vec![timesyncd_dropin(content)],
        })
    }

    fn render_client(
        &self,
        host: &HostContext<'_>,
        servers: &[NetAddress],
        fallback: Option<&[NetAddress]>,
        inputs: RenderInputs<'_>,
    ) -> Result<String, RenderError> {
        let default_fallback = if inputs.os_id == "ubuntu" {
            "ntp.ubuntu.com"
        } else {
            "0.debian.pool.ntp.org 1.debian.pool.ntp.org 2.debian.pool.ntp.org 3.debian.pool.ntp.org"
        };
        let context = minijinja::context! {
            host => host,
            ntp => servers.iter().map(ToString::to_string).collect::<Vec<_>>(),
            fallback_ntp => fallback.map(|f| f.iter().map(ToString::to_string).collect::<Vec<_>>()),
            timesyncd => TimesyncdFeatures { systemd_version: inputs.version.major, default_fallback },
        };
        self.render_template("timesyncd.conf.j2", &context)
    }

    fn render_template(
        &self,
        name: &str,
        context: &minijinja::Value,
    ) -> Result<String, RenderError> {
        let template = self
            .env
            .get_template(name)
            .map_err(|e| RenderError::from_minijinja(name, &e))?;
        let mut text = template
            .render(context)
            .map_err(|e| RenderError::from_minijinja(name, &e))?;
        if !text.ends_with('\n') {
            text.push('\n');
        }
        Ok(text)
    }
}

/// A chrony client's sources: each of its servers, `server ADDR iburst`.
fn client_sources(servers: &[NetAddress]) -> Vec<Upstream> {
    servers
        .iter()
        .map(|address| Upstream {
            kind: UpstreamKind::Server,
            host: address.clone(),
            iburst: true,
            maxsources: None,
        })
        .collect()
}

/// clockprov's timesyncd drop-in (the main file stays the vendor's: see [`crate::layout`]).
fn timesyncd_dropin(content: String) -> DesiredFile {
    DesiredFile {
        path: crate::layout::TIMESYNCD_DROPIN.to_owned(),
        content,
        mode: 0o644,
        owner: "root".to_owned(),
        group: "root".to_owned(),
        kind: FileKind::Config,
    }
}

fn config_file(daemon: Daemon, family: Family, content: String) -> DesiredFile {
    DesiredFile {
        path: daemon.config_path_on(family).to_owned(),
        content,
        mode: 0o644,
        owner: "root".to_owned(),
        group: "root".to_owned(),
        kind: FileKind::Config,
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::nts::tests::fixture;

    pub(crate) const NTS: &str = "ntp_servers:\n  zcloud:\n    address: 192.168.6.200\n    local_stratum: 10\n    allow: [192.168.6.0/24]\n    nts: { certificate: server.crt, key: server.key }\nclients:\n  c1: { address: 192.168.6.226, daemon: chrony, nts: true }\n  c2: { address: 192.168.6.227, daemon: chrony, nts: { trusted_certs: ca.crt } }\n";

    /// [`NTS`]'s `host` rendered with chrony `version` on `os_id`.
    pub(crate) fn render_chrony(host: &str, os_id: &str, version: DaemonVersion) -> DesiredState {
        render_inventory(NTS, host, os_id, version)
    }

    /// `host` of the inventory `yaml` (NTS files from the NTS fixtures) rendered with chrony
    /// `version` on `os_id`.
    pub(crate) fn render_inventory(
        yaml: &str,
        host: &str,
        os_id: &str,
        version: DaemonVersion,
    ) -> DesiredState {
        let inventory = crate::inventory::Inventory::parse(&fixture("inv.yaml"), yaml).unwrap();
        let host = inventory
            .hosts
            .iter()
            .find(|h| h.name.as_str() == host)
            .unwrap();
        Renderer::new(None)
            .unwrap()
            .render(
                host,
                RenderInputs {
                    os_id,
                    daemon: Daemon::Chrony,
                    version,
                },
            )
            .unwrap()
    }

    /// Each file of `host` on `os_id` as `PATH MODE OWNER:GROUP KIND`, then chrony.conf's lines
    /// that NTS touches.
    fn rendered(host: &str, os_id: &str) -> String {
        let desired = render_chrony(host, os_id, DaemonVersion { major: 4, minor: 3 });
        let mut out = String::new();
        for f in &desired.files {
            let _ = writeln!(
                out,
                "{} {:o} {}:{} {:?}",
                f.path, f.mode, f.owner, f.group, f.kind
            );
        }
        for line in desired.files[0].content.lines() {
            if line.starts_with("nts") || line.starts_with("server") {
                let _ = writeln!(out, "{line}");
            }
        }
        out
    }

    /// The leap-second source of a Debian-family chrony.conf for chrony `major.minor`.
    fn leap_lines(major: u32, minor: u32) -> Vec<String> {
        render_chrony("zcloud", "debian", DaemonVersion { major, minor }).files[0]
            .content
            .lines()
            .filter(|l| l.starts_with("leapsec"))
            .map(str::to_owned)
            .collect()
    }

    #[test]
    fn chrony_4_6_reads_leap_seconds_from_tzdata_as_debian_13_and_ubuntu_25_10_do() {
        assert_eq!(leap_lines(3, 5), Vec::<String>::new());
        assert_eq!(leap_lines(4, 5), ["leapsectz right/UTC"]);
        assert_eq!(
            leap_lines(4, 6),
            ["leapseclist /usr/share/zoneinfo/leap-seconds.list"]
        );
        assert_eq!(
            leap_lines(4, 8),
            ["leapseclist /usr/share/zoneinfo/leap-seconds.list"]
        );
    }

    #[test]
    fn an_nts_server_gets_its_certificate_and_key_readable_by_chronyd() {
        insta::assert_snapshot!(rendered("zcloud", "debian"), @r"
        /etc/chrony/chrony.conf 644 root:root Config
        /etc/chrony/nts/clockprov.crt 644 root:root Material
        /etc/chrony/nts/clockprov.key 640 root:_chrony Secret
        ntsservercert /etc/chrony/nts/clockprov.crt
        ntsserverkey /etc/chrony/nts/clockprov.key
        ntsdumpdir /var/lib/chrony
        ");
        insta::assert_snapshot!(rendered("zcloud", "rocky"), @r"
        /etc/chrony.conf 644 root:root Config
        /etc/pki/chrony/clockprov.crt 644 root:root Material
        /etc/pki/chrony/clockprov.key 640 root:chrony Secret
        ntsservercert /etc/pki/chrony/clockprov.crt
        ntsserverkey /etc/pki/chrony/clockprov.key
        ntsdumpdir /var/lib/chrony
        ");
    }

    #[test]
    fn nts_clients_authenticate_their_servers_with_the_system_store_or_a_private_ca() {
        insta::assert_snapshot!(rendered("c1", "ubuntu"), @r"
        /etc/chrony/chrony.conf 644 root:root Config
        server 192.168.6.200 iburst nts
        ntsdumpdir /var/lib/chrony
        ");
        insta::assert_snapshot!(rendered("c2", "debian"), @r"
        /etc/chrony/chrony.conf 644 root:root Config
        /etc/chrony/nts/clockprov-ca.crt 644 root:root Material
        server 192.168.6.200 iburst nts
        ntstrustedcerts /etc/chrony/nts/clockprov-ca.crt
        ntsdumpdir /var/lib/chrony
        ");
    }
}
