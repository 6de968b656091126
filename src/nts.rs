//! NTS (Network Time Security, RFC 8915) material: a chrony server's certificate and private key,
//! a client's private CA. Read once, when the inventory is loaded, and checked there: a
//! certificate that does not parse or does not name its server's address would only show up as
//! clients that never authenticate.
//!
//! The key is a secret: it is kept in wiped memory, never printed (`Debug` says only its size),
//! and every output shows it as "(secret, N bytes, sha256 ...)".

use std::fmt;
use std::net::IpAddr;
use std::path::{Path, PathBuf};

use x509_cert::Certificate;
use x509_cert::der::{Decode as _, DecodePem as _};
use x509_cert::ext::pkix::SubjectAltName;
use x509_cert::ext::pkix::name::GeneralName;
use zeroize::Zeroizing;

use crate::daemon::{Daemon, DaemonVersion};
use crate::inventory::{Host, Role};
use crate::render::RenderInputs;
use crate::value::NetAddress;

/// chrony's NTS-KE port: a server with `nts` must be reachable there as well as on UDP 123.
pub const NTS_KE_PORT: u16 = 4460;

/// A certificate file (a server's, or a client's CA): public, shown in plans as any file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertificateFile {
    /// Where it was read, as resolved against the inventory's directory.
    pub source: PathBuf,
    pub content: String,
}

/// A server's private key: wiped on drop, never shown.
#[derive(Clone, PartialEq, Eq)]
pub struct KeyFile {
    pub source: PathBuf,
    content: Zeroizing<String>,
}

impl KeyFile {
    /// The key itself: only to write it to its host.
    #[must_use]
    pub fn expose(&self) -> &str {
        &self.content
    }
}

impl fmt::Debug for KeyFile {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "KeyFile({}, {} bytes)",
            self.source.display(),
            self.content.len()
        )
    }
}

/// What a host does with NTS, as the inventory says and with its files read.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum HostNts {
    #[default]
    Off,
    /// A server: NTS-KE with this certificate and key.
    Server {
        certificate: CertificateFile,
        key: KeyFile,
    },
    /// A client authenticating its servers, against the system's CA store or a private CA.
    Client {
        trusted_certs: Option<CertificateFile>,
    },
}

impl HostNts {
    #[must_use]
    pub fn is_on(&self) -> bool {
        !matches!(self, HostNts::Off)
    }
}

/// Where NTS cannot work on a host: refused at plan, before anything is changed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NtsUnavailable {
    #[error(
        "nts is set, but this client runs systemd-timesyncd ({os}'s default), which has no NTS: set `daemon: chrony` for it"
    )]
    Timesyncd { os: String },
    #[error("nts is set, but NTS needs chrony 4.0 or later; {os} has chrony {version}")]
    OldChrony { os: String, version: DaemonVersion },
    #[error(
        "nts is set, but chrony {version} ({os}) cannot check a server's IP address ({address}) against its certificate; chrony 4.1 or later can, or name the server by a DNS name its certificate lists"
    )]
    IpAddressNeeds41 {
        os: String,
        version: DaemonVersion,
        address: NetAddress,
    },
}

impl From<NtsUnavailable> for crate::outcome::HostError {
    fn from(error: NtsUnavailable) -> Self {
        crate::outcome::HostError::new(crate::outcome::ErrorKind::UnsupportedOs, error.to_string())
    }
}

/// Refuse NTS where the host's daemon cannot do it: timesyncd, chrony before 4.0, and a
/// client checking an IP address against a certificate before 4.1. `os` names the system.
///
/// # Errors
/// As above.
pub fn check_host(host: &Host, inputs: RenderInputs<'_>, os: &str) -> Result<(), NtsUnavailable> {
    if !host.nts.is_on() {
        return Ok(());
    }
    let os = os.to_owned();
    let version = inputs.version;
    if inputs.daemon == Daemon::Timesyncd {
        return Err(NtsUnavailable::Timesyncd { os });
    }
    if version < (DaemonVersion { major: 4, minor: 0 }) {
        return Err(NtsUnavailable::OldChrony { os, version });
    }
    if let Role::Client { servers, .. } = &host.role
        && version < (DaemonVersion { major: 4, minor: 1 })
        && let Some(address) = servers.iter().find(|a| a.ip().is_some())
    {
        return Err(NtsUnavailable::IpAddressNeeds41 {
            os,
            version,
            address: address.clone(),
        });
    }
    Ok(())
}

/// A short description of secret bytes for outputs: size and the start of their sha256.
#[must_use]
pub fn describe_secret(bytes: &[u8]) -> String {
    let sha = crate::utc::sha256_hex(bytes);
    format!(
        "(secret, {} bytes, sha256 {}…)",
        bytes.len(),
        sha.get(..12).unwrap_or(&sha)
    )
}

/// The largest NTS file read: a certificate chain is a few KiB.
const MAX_FILE: u64 = 1 << 20;

/// Read a regular file of at most [`MAX_FILE`] bytes (a device or a FIFO named by mistake would
/// never end, or block).
fn read(path: &Path, what: &str) -> Result<String, String> {
    use std::io::Read as _;
    let cannot = |e: &std::io::Error| {
        format!(
            "cannot read the {what} {}: {}",
            path.display(),
            crate::inventory::io_reason(e)
        )
    };
    // Before opening: opening a FIFO for reading waits for a writer.
    if !std::fs::metadata(path).map_err(|e| cannot(&e))?.is_file() {
        return Err(format!(
            "the {what} {} is not a regular file",
            path.display()
        ));
    }
    let file = std::fs::File::open(path).map_err(|e| cannot(&e))?;
    let mut bytes = Vec::new();
    file.take(MAX_FILE + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| cannot(&e))?;
    if bytes.len() as u64 > MAX_FILE {
        return Err(format!(
            "the {what} {} is larger than {MAX_FILE} bytes: not a PEM file",
            path.display()
        ));
    }
    String::from_utf8(bytes)
        .map_err(|_| format!("the {what} {} is not a PEM text file", path.display()))
}

fn file_name(path: &Path) -> String {
    path.file_name().map_or_else(
        || path.display().to_string(),
        |n| n.to_string_lossy().into_owned(),
    )
}

/// Read a PEM certificate (the first of the file) and check it parses.
///
/// # Errors
/// Unreadable, not PEM, not an X.509 certificate.
pub fn load_certificate(path: &Path) -> Result<(CertificateFile, Certificate), String> {
    let content = read(path, "certificate")?;
    let certificate = first_certificate(&content)
        .map_err(|reason| format!("{} is not a PEM certificate ({reason})", path.display()))?;
    Ok((
        CertificateFile {
            source: path.to_owned(),
            content,
        },
        certificate,
    ))
}

fn first_certificate(text: &str) -> Result<Certificate, String> {
    let begin = "-----BEGIN CERTIFICATE-----";
    let end = "-----END CERTIFICATE-----";
    let start = text
        .find(begin)
        .ok_or_else(|| format!("no `{begin}` line"))?;
    let stop = text[start..]
        .find(end)
        .map(|i| start + i + end.len())
        .ok_or_else(|| format!("no `{end}` line"))?;
    Certificate::from_pem(&text.as_bytes()[start..stop]).map_err(|e| e.to_string())
}

/// Read a CA bundle (`ntstrustedcerts`): one or more PEM certificates, each of which parses.
///
/// # Errors
/// Unreadable, no certificate, one that does not parse.
pub fn load_ca(path: &Path) -> Result<CertificateFile, String> {
    let (file, _) = load_certificate(path)?;
    let mut rest = file.content.as_str();
    while let Some(start) = rest.find("-----BEGIN CERTIFICATE-----") {
        let block = &rest[start..];
        first_certificate(block).map_err(|reason| {
            format!(
                "{} is not a PEM certificate bundle ({reason})",
                path.display()
            )
        })?;
        rest = &block["-----BEGIN CERTIFICATE-----".len()..];
    }
    Ok(file)
}

/// The names a certificate is valid for, as chrony's TLS (`GnuTLS`) checks them: its
/// `subjectAltName` DNS names and IP addresses.
#[must_use]
pub fn certificate_names(certificate: &Certificate) -> Vec<String> {
    let Ok(Some((_, SubjectAltName(names)))) = certificate
        .tbs_certificate()
        .get_extension::<SubjectAltName>()
    else {
        return Vec::new();
    };
    names
        .iter()
        .filter_map(|name| match name {
            GeneralName::DnsName(dns) => Some(dns.to_string()),
            GeneralName::IpAddress(octets) => ip_of(octets.as_bytes()).map(|ip| ip.to_string()),
            _ => None,
        })
        .collect()
}

fn ip_of(octets: &[u8]) -> Option<IpAddr> {
    match octets.len() {
        4 => <[u8; 4]>::try_from(octets).ok().map(IpAddr::from),
        16 => <[u8; 16]>::try_from(octets).ok().map(IpAddr::from),
        _ => None,
    }
}

/// Is `address` among `names` (an IP address as an IP SAN, a name as a DNS SAN, `*.` wildcards
/// matching one label)?
#[must_use]
pub fn names_address(names: &[String], address: &NetAddress) -> bool {
    match address {
        NetAddress::Ip(ip) => names.iter().any(|n| n.parse::<IpAddr>().ok() == Some(*ip)),
        NetAddress::Name(host) => names.iter().any(|n| dns_matches(n, host)),
    }
}

fn dns_matches(pattern: &str, host: &str) -> bool {
    let (pattern, host) = (pattern.to_ascii_lowercase(), host.to_ascii_lowercase());
    let host = host.trim_end_matches('.');
    match pattern.strip_prefix("*.") {
        Some(suffix) => host
            .split_once('.')
            .is_some_and(|(label, rest)| !label.is_empty() && rest == suffix),
        None => pattern == host,
    }
}

/// The refusal for a certificate that does not name `address`.
#[must_use]
pub fn not_named(certificate: &Path, names: &[String], address: &NetAddress) -> String {
    let listed = if names.is_empty() {
        "no address or DNS name (no subjectAltName)".to_owned()
    } else {
        names.join(", ")
    };
    format!(
        "certificate {} names {listed}; not {address} (clients check the server's address against the certificate's subjectAltName)",
        file_name(certificate)
    )
}

/// Read a PEM private key as chronyd (`GnuTLS`) reads it: unencrypted PKCS#8 (`PRIVATE KEY`),
/// or the RSA / EC forms.
///
/// # Errors
/// Unreadable, not PEM, encrypted, not a private key. The message never quotes the file.
pub fn load_key(path: &Path) -> Result<KeyFile, String> {
    let content = Zeroizing::new(read(path, "key")?);
    let not_a_key = |why: &str| format!("{} is not a PEM private key ({why})", path.display());
    let start = content
        .find("-----BEGIN ")
        .ok_or_else(|| not_a_key("no `-----BEGIN` line"))?;
    let (label, der) = x509_cert::der::pem::decode_vec(content[start..].as_bytes())
        .map_err(|_| not_a_key("the PEM block does not decode"))?;
    let der = Zeroizing::new(der);
    match label {
        "PRIVATE KEY" => {
            pkcs8::PrivateKeyInfoRef::from_der(&der)
                .map_err(|_| not_a_key("the PKCS#8 structure does not parse"))?;
        }
        "RSA PRIVATE KEY" | "EC PRIVATE KEY" => {}
        "ENCRYPTED PRIVATE KEY" => {
            return Err(not_a_key(
                "it is encrypted; chronyd cannot ask for a passphrase",
            ));
        }
        other => return Err(not_a_key(&format!("it holds a {other}"))),
    }
    Ok(KeyFile {
        source: path.to_owned(),
        content,
    })
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// A CA and a server certificate for 192.168.6.200 and zcloud.lan, made once by openssl for
    /// these tests (`tests/fixtures/nts/README`).
    pub(crate) fn fixture(name: &str) -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/fixtures/nts")
            .join(name)
    }

    #[test]
    fn a_certificate_names_its_ip_and_dns_sans() {
        let (_, cert) = load_certificate(&fixture("server.crt")).unwrap();
        let names = certificate_names(&cert);
        assert_eq!(names, ["zcloud.lan", "192.168.6.200"]);
        assert!(names_address(&names, &"192.168.6.200".parse().unwrap()));
        assert!(names_address(&names, &"ZCLOUD.lan".parse().unwrap()));
        assert!(!names_address(&names, &"192.168.6.201".parse().unwrap()));
        insta::assert_snapshot!(
            not_named(&fixture("server.crt"), &names, &"192.168.6.201".parse().unwrap()),
            @"certificate server.crt names zcloud.lan, 192.168.6.200; not 192.168.6.201 (clients check the server's address against the certificate's subjectAltName)"
        );
    }

    #[test]
    fn only_regular_files_of_a_sane_size_are_read() {
        let error = load_certificate(Path::new("/dev/zero")).unwrap_err();
        assert_eq!(error, "the certificate /dev/zero is not a regular file");
        let error = load_key(Path::new("/")).unwrap_err();
        assert!(
            error.ends_with("/ is not a regular file") || error.contains("cannot read"),
            "{error}"
        );
    }

    #[test]
    fn wildcards_match_one_label() {
        assert!(dns_matches("*.lan", "zcloud.lan"));
        assert!(!dns_matches("*.lan", "a.zcloud.lan"));
        assert!(!dns_matches("*.lan", "lan"));
    }

    #[test]
    fn keys_are_checked_and_never_quoted() {
        let key = load_key(&fixture("server.key")).unwrap();
        assert!(key.expose().contains("PRIVATE KEY"));
        let debug = format!("{key:?}");
        assert!(!debug.contains("PRIVATE"), "{debug}");
        let error = load_key(&fixture("server.crt")).unwrap_err();
        assert!(
            error.ends_with("is not a PEM private key (it holds a CERTIFICATE)"),
            "{error}"
        );
        let error = load_certificate(&fixture("server.key")).unwrap_err();
        assert!(
            error.contains("is not a PEM certificate (no `-----BEGIN CERTIFICATE-----` line)"),
            "{error}"
        );
        assert!(!error.contains("MII"), "{error}");
    }

    #[test]
    fn a_ca_bundle_parses_whole() {
        assert!(load_ca(&fixture("ca.crt")).is_ok());
        let secret = describe_secret(b"abc");
        assert_eq!(secret, "(secret, 3 bytes, sha256 ba7816bf8f01…)");
    }
}

#[cfg(test)]
mod host_tests {
    use super::tests::fixture;
    use super::*;

    #[test]
    fn nts_is_refused_where_the_daemon_cannot_do_it() {
        let source = "ntp_servers:\n  zcloud:\n    address: 192.168.6.200\n    local_stratum: 10\n    allow: [192.168.6.0/24]\n    nts: { certificate: server.crt, key: server.key }\nclients:\n  c: { address: 192.168.6.3, nts: true }\n  plain: { address: 192.168.6.4 }\n";
        let inventory = crate::inventory::Inventory::parse(&fixture("inv.yaml"), source).unwrap();
        let [server, client, plain] = &inventory.hosts[..] else {
            panic!()
        };
        let inputs = |daemon, major, minor| RenderInputs {
            os_id: "debian",
            daemon,
            version: DaemonVersion { major, minor },
        };
        let refusal = |host, daemon, major, minor| {
            check_host(host, inputs(daemon, major, minor), "Some OS")
                .err()
                .map(|e| e.to_string())
        };
        assert_eq!(refusal(server, Daemon::Chrony, 4, 0), None);
        assert_eq!(refusal(client, Daemon::Chrony, 4, 1), None);
        assert_eq!(refusal(plain, Daemon::Timesyncd, 2, 45), None);
        insta::assert_snapshot!(refusal(server, Daemon::Chrony, 3, 5).unwrap(), @"nts is set, but NTS needs chrony 4.0 or later; Some OS has chrony 3.5");
        insta::assert_snapshot!(refusal(client, Daemon::Chrony, 4, 0).unwrap(), @"nts is set, but chrony 4.0 (Some OS) cannot check a server's IP address (192.168.6.200) against its certificate; chrony 4.1 or later can, or name the server by a DNS name its certificate lists");
        insta::assert_snapshot!(refusal(client, Daemon::Timesyncd, 245, 4).unwrap(), @"nts is set, but this client runs systemd-timesyncd (Some OS's default), which has no NTS: set `daemon: chrony` for it");
    }
}
