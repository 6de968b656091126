//! `clockprov import`: a clockprov inventory from the inventories people already have (an
//! Ansible inventory, an OpenSSH client config). Each reader gives the hosts with where each
//! value came from, and what it could not map; [`write`] prints the inventory with that as
//! comments, and checks it parses as an inventory before anyone sees it.

pub(crate) mod ansible;
pub(crate) mod ssh_config;

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::net::IpAddr;
use std::path::Path;

use crate::glob::Limit;
use crate::inventory::Inventory;

/// A value and where it came from (`hosts.ini:12, group data's vars`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Sourced {
    pub(crate) value: String,
    pub(crate) from: String,
}

impl Sourced {
    pub(crate) fn new(value: impl Into<String>, from: impl Into<String>) -> Sourced {
        Sourced {
            value: value.into(),
            from: from.into(),
        }
    }
}

/// One host as read from the source.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct ImportedHost {
    pub(crate) name: String,
    /// Where the host is defined.
    pub(crate) from: String,
    /// The groups it belongs to (Ansible), for `--servers GROUP`.
    pub(crate) groups: Vec<String>,
    pub(crate) address: Option<Sourced>,
    pub(crate) user: Option<Sourced>,
    pub(crate) port: Option<Sourced>,
    pub(crate) jump: Option<Sourced>,
    pub(crate) identity_file: Option<Sourced>,
    pub(crate) known_hosts: Option<Sourced>,
    pub(crate) host_key_policy: Option<Sourced>,
    pub(crate) become_sudo: Option<Sourced>,
}

/// What a reader found.
#[derive(Debug, Clone, Default)]
pub(crate) struct Imported {
    /// `the Ansible inventory hosts.ini`.
    pub(crate) source: String,
    pub(crate) hosts: Vec<ImportedHost>,
    /// What could not be mapped, one line each, with where it is.
    pub(crate) unmapped: Vec<String>,
    /// Jump hosts named in the source that are hosts of its own (OpenSSH `Host` aliases): how
    /// to write each as a host outside the inventory, when it is not imported.
    pub(crate) outside: BTreeMap<String, String>,
}

/// What the sources do not say: which hosts serve time, and how.
#[derive(Debug, Clone, Default)]
pub(crate) struct ServerChoice {
    /// Host or group names and globs.
    pub(crate) servers: Vec<String>,
    /// Only these hosts (or groups); all when empty.
    pub(crate) hosts: Vec<String>,
    pub(crate) upstream: Vec<String>,
    pub(crate) local_stratum: Option<u8>,
    pub(crate) allow: Vec<String>,
}

#[derive(Debug, thiserror::Error)]
pub(crate) enum ImportError {
    #[error("{0}")]
    Source(String),
    #[error("{0}")]
    Choice(String),
    #[error(
        "the imported inventory does not load: {0} (a value of the source that clockprov does not accept)"
    )]
    NotAnInventory(String),
}

/// A double-quoted YAML scalar (JSON's string syntax is YAML's): nothing from the source can end
/// the value or start a comment.
fn quoted(text: &str) -> String {
    serde_json::to_string(text).expect("a string serializes")
}

/// A comment's text on one line, whatever the source put in it.
fn comment(text: &str) -> String {
    text.chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect()
}

fn selects(limit: &Limit, host: &ImportedHost) -> bool {
    limit.selects(&host.name) || host.groups.iter().any(|g| limit.selects(g))
}

/// Check the patterns of `--servers` / `--hosts` against hosts and groups: one that matches
/// nothing is an error, as `--limit`'s are.
fn check_patterns(
    flag: &str,
    patterns: &[String],
    hosts: &[ImportedHost],
) -> Result<Limit, ImportError> {
    let limit = Limit::new(patterns);
    let mut names: Vec<&str> = hosts.iter().map(|h| h.name.as_str()).collect();
    names.extend(
        hosts
            .iter()
            .flat_map(|h| h.groups.iter().map(String::as_str)),
    );
    names.sort_unstable();
    names.dedup();
    let unmatched = limit.unmatched(&names);
    if let Some(pattern) = unmatched.first() {
        return Err(ImportError::Choice(format!(
            "{flag} {pattern} matches no host or group of the import{} (hosts: {})",
            crate::suggest::did_you_mean(pattern, names.iter().copied()),
            hosts
                .iter()
                .map(|h| h.name.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        )));
    }
    Ok(limit)
}

/// `host` with each jump hop that is not an imported host written as a host outside the
/// inventory (the inventory takes a bare word for one of its own hosts only): as the source
/// defines it (`outside`), else `NAME:22`.
fn outside_jumps(
    host: &ImportedHost,
    names: &[&str],
    outside: &BTreeMap<String, String>,
) -> ImportedHost {
    let mut host = host.clone();
    if let Some(jump) = &mut host.jump {
        let mut notes = Vec::new();
        let hops: Vec<String> = jump
            .value
            .split(',')
            .map(|hop| {
                if hop.contains(['@', ':', '[']) || names.contains(&hop) || hop == "none" {
                    hop.to_owned()
                } else if let Some(written) = outside.get(hop) {
                    notes.push(format!("{hop} is not imported: as the source defines it"));
                    written.clone()
                } else {
                    notes.push(format!("{hop} is not an imported host: port 22"));
                    format!("{hop}:22")
                }
            })
            .collect();
        jump.value = hops.join(",");
        if !notes.is_empty() {
            jump.from = format!("{} ({})", jump.from, notes.join("; "));
        }
    }
    host
}

/// The `allow:` CIDRs: `--allow`, else each client's address when it is an IP.
fn allow_list(
    choice: &ServerChoice,
    clients: &[&ImportedHost],
) -> Result<(Vec<String>, &'static str), ImportError> {
    if !choice.allow.is_empty() {
        return Ok((choice.allow.clone(), "--allow"));
    }
    let mut allow = Vec::new();
    for client in clients {
        let address = client
            .address
            .as_ref()
            .map_or(client.name.as_str(), |a| a.value.as_str());
        match address.parse::<IpAddr>() {
            Ok(IpAddr::V4(ip)) => allow.push(format!("{ip}/32")),
            Ok(IpAddr::V6(ip)) => allow.push(format!("{ip}/128")),
            Err(_) => {
                return Err(ImportError::Choice(format!(
                    "client {} has the address {address:?}, not an IP: say which networks the servers serve with --allow CIDR",
                    client.name
                )));
            }
        }
    }
    allow.dedup();
    Ok((
        allow,
        "each client's address (--allow CIDR to serve a whole network)",
    ))
}

fn field(out: &mut String, indent: &str, key: &str, value: Option<&Sourced>) {
    if let Some(v) = value {
        let text = if key == "port" && v.value.parse::<u16>().is_ok() {
            v.value.clone()
        } else {
            quoted(&v.value)
        };
        let _ = writeln!(out, "{indent}{key}: {text}  # {}", comment(&v.from));
    }
}

fn host_entry(out: &mut String, host: &ImportedHost) {
    let _ = writeln!(out, "  {}:  # {}", quoted(&host.name), comment(&host.from));
    match &host.address {
        Some(address) => field(out, "    ", "address", Some(address)),
        None => {
            let _ = writeln!(
                out,
                "    address: {}  # the host's name",
                quoted(&host.name)
            );
        }
    }
    let ssh = [
        ("user", &host.user),
        ("port", &host.port),
        ("jump", &host.jump),
        ("identity_file", &host.identity_file),
        ("known_hosts", &host.known_hosts),
        ("host_key_policy", &host.host_key_policy),
        ("become", &host.become_sudo),
    ];
    if ssh.iter().any(|(_, v)| v.is_some()) {
        out.push_str("    ssh:\n");
        for (key, value) in ssh {
            field(out, "      ", key, value.as_ref());
        }
    }
}

/// The inventory for `imported`, as YAML with comments, checked by loading it.
///
/// # Errors
/// `--servers` or `--hosts` match nothing, no server is chosen, the servers' upstream or the
/// networks they serve are not given and cannot be derived.
pub(crate) fn write(
    imported: &Imported,
    choice: &ServerChoice,
    command: &str,
) -> Result<String, ImportError> {
    if imported.hosts.is_empty() {
        return Err(ImportError::Source(format!(
            "{} has no hosts",
            imported.source
        )));
    }
    let only = check_patterns("--hosts", &choice.hosts, &imported.hosts)?;
    let servers = check_patterns("--servers", &choice.servers, &imported.hosts)?;
    let hosts: Vec<&ImportedHost> = imported
        .hosts
        .iter()
        .filter(|h| selects(&only, h))
        .collect();
    let names: Vec<&str> = hosts.iter().map(|h| h.name.as_str()).collect();
    let hosts: Vec<ImportedHost> = hosts
        .iter()
        .map(|h| outside_jumps(h, &names, &imported.outside))
        .collect();
    let hosts: Vec<&ImportedHost> = hosts.iter().collect();
    let (server_hosts, clients): (Vec<&ImportedHost>, Vec<&ImportedHost>) = hosts
        .iter()
        .partition(|h| !choice.servers.is_empty() && selects(&servers, h));
    if server_hosts.is_empty() {
        return Err(ImportError::Choice(
            "no time server: name the hosts (or groups) that serve time with --servers PATTERN"
                .to_owned(),
        ));
    }
    if choice.upstream.is_empty() && choice.local_stratum.is_none() {
        return Err(ImportError::Choice(
            "say what the servers serve: --upstream HOST (an NTP pool or server, repeatable) and/or --local-stratum N (keep serving without upstream)".to_owned(),
        ));
    }
    let mut out = String::new();
    let _ = writeln!(
        out,
        "# A clockprov inventory imported from {}",
        comment(&imported.source)
    );
    let _ = writeln!(out, "# by `{}`.", comment(command));
    out.push_str(
        "# Each value's comment says where it came from. Review it, then: clockprov plan -i FILE\n",
    );
    if imported.unmapped.is_empty() {
        out.push_str(
            "#\n# Everything the source says about these hosts' connections was mapped.\n",
        );
    } else {
        out.push_str("#\n# Not mapped (clockprov has no equivalent, or does not need it):\n");
        for line in &imported.unmapped {
            let _ = writeln!(out, "#   {}", comment(line));
        }
    }
    let (allow, allow_from) = allow_list(choice, &clients)?;
    out.push_str("\nntp_servers:\n");
    for host in &server_hosts {
        host_entry(&mut out, host);
        if !choice.upstream.is_empty() {
            out.push_str("    upstream:  # --upstream\n");
            for upstream in &choice.upstream {
                let _ = writeln!(out, "      - pool: {}", quoted(upstream));
            }
        }
        if let Some(stratum) = choice.local_stratum {
            let _ = writeln!(out, "    local_stratum: {stratum}  # --local-stratum");
        }
        if !clients.is_empty() {
            let _ = writeln!(out, "    allow:  # {allow_from}");
            for cidr in &allow {
                let _ = writeln!(out, "      - {}", quoted(cidr));
            }
        }
    }
    if !clients.is_empty() {
        out.push_str("\nclients:\n");
        for host in &clients {
            host_entry(&mut out, host);
        }
    }
    Inventory::parse(Path::new("imported inventory"), &out)
        .map_err(|e| ImportError::NotAnInventory(e.to_string()))?;
    Ok(out)
}

/// Split a command-line string as a POSIX shell would split words (quotes and backslashes; no
/// expansions): how Ansible passes `ansible_ssh_common_args` to ssh.
pub(crate) fn shell_words(text: &str) -> Result<Vec<String>, String> {
    let mut words = Vec::new();
    let mut word: Option<String> = None;
    let mut chars = text.chars();
    while let Some(c) = chars.next() {
        match c {
            c if c.is_whitespace() => {
                if let Some(w) = word.take() {
                    words.push(w);
                }
            }
            '\'' => {
                let w = word.get_or_insert_with(String::new);
                loop {
                    match chars.next() {
                        Some('\'') => break,
                        Some(c) => w.push(c),
                        None => return Err(format!("unterminated ' in {text:?}")),
                    }
                }
            }
            '"' => {
                let w = word.get_or_insert_with(String::new);
                loop {
                    match chars.next() {
                        Some('"') => break,
                        Some('\\') => match chars.next() {
                            Some(c) => w.push(c),
                            None => return Err(format!("trailing \\ in {text:?}")),
                        },
                        Some(c) => w.push(c),
                        None => return Err(format!("unterminated \" in {text:?}")),
                    }
                }
            }
            '\\' => match chars.next() {
                Some(c) => word.get_or_insert_with(String::new).push(c),
                None => return Err(format!("trailing \\ in {text:?}")),
            },
            c => word.get_or_insert_with(String::new).push(c),
        }
    }
    words.extend(word);
    Ok(words)
}

/// The options of an ssh command line (`ansible_ssh_common_args`): its `ProxyJump` (`-J X`,
/// `-o ProxyJump=X`, `-oProxyJump X`), and every other option, which clockprov does not map.
pub(crate) fn ssh_args(words: &[String]) -> (Option<String>, Vec<String>) {
    let mut jump = None;
    let mut other = Vec::new();
    let mut i = 0;
    while i < words.len() {
        let word = &words[i];
        let next = words.get(i + 1);
        let (option, consumed) = if word == "-o" || word == "-J" {
            (next.map(|n| (word.as_str(), n.clone())), 2)
        } else if let Some(rest) = word.strip_prefix("-o") {
            (Some(("-o", rest.to_owned())), 1)
        } else if let Some(rest) = word.strip_prefix("-J") {
            (Some(("-J", rest.to_owned())), 1)
        } else {
            (None, 1)
        };
        match option {
            Some(("-J", value)) => jump = Some(value),
            Some((_, value)) => {
                let (key, val) = value
                    .split_once(['=', ' '])
                    .map_or((value.as_str(), ""), |(k, v)| (k, v.trim()));
                if key.eq_ignore_ascii_case("proxyjump") && !val.is_empty() {
                    jump = Some(val.to_owned());
                } else {
                    other.push(format!("-o {value}"));
                }
            }
            None => other.push(word.clone()),
        }
        i += consumed;
    }
    (jump, other)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn host(name: &str, address: &str, group: &str) -> ImportedHost {
        ImportedHost {
            name: name.into(),
            from: "test".into(),
            groups: vec![group.into()],
            address: Some(Sourced::new(address, "test")),
            ..ImportedHost::default()
        }
    }

    #[test]
    fn what_the_source_cannot_say_must_be_said() {
        let imported = Imported {
            source: "test".into(),
            hosts: vec![
                host("s1", "10.0.0.1", "ntp"),
                host("c1", "10.0.0.2", "data"),
            ],
            ..Imported::default()
        };
        let choice = |servers: &str, stratum: Option<u8>| ServerChoice {
            servers: vec![servers.into()],
            local_stratum: stratum,
            ..ServerChoice::default()
        };
        let error = |c| write(&imported, &c, "x").unwrap_err().to_string();
        assert_eq!(
            error(choice("npt", Some(10))),
            "--servers npt matches no host or group of the import; did you mean `ntp`? (hosts: s1, c1)"
        );
        assert!(error(choice("ntp", None)).starts_with("say what the servers serve: --upstream"));
        let text = write(&imported, &choice("ntp", Some(10)), "x").unwrap();
        assert!(text.contains("ntp_servers:\n  \"s1\":"), "{text}");
        assert!(text.contains("      - \"10.0.0.2/32\"\n"), "{text}");
        // A value from the source cannot break out of its string or its comment.
        let mut hostile = imported.clone();
        hostile.hosts[1].user = Some(Sourced::new("a\"\nb: c", "x\ny: z"));
        let error = write(&hostile, &choice("ntp", Some(10)), "x")
            .unwrap_err()
            .to_string();
        assert!(error.contains("does not load"), "{error}");
    }

    #[test]
    fn shell_words_split_as_sh_does() {
        assert_eq!(
            shell_words(r#"-o ProxyJump=root@10.0.0.1 -o 'StrictHostKeyChecking=no' "-J" a\ b"#)
                .unwrap(),
            [
                "-o",
                "ProxyJump=root@10.0.0.1",
                "-o",
                "StrictHostKeyChecking=no",
                "-J",
                "a b"
            ]
        );
        assert!(shell_words("'open").is_err());
    }

    #[test]
    fn proxy_jump_in_every_spelling() {
        for args in [
            "-o ProxyJump=bastion",
            "-oProxyJump=bastion",
            "-o proxyjump=bastion",
            "-J bastion",
            "-Jbastion",
            "-o 'ProxyJump bastion'",
        ] {
            let (jump, other) = ssh_args(&shell_words(args).unwrap());
            assert_eq!(jump.as_deref(), Some("bastion"), "{args}");
            assert!(other.is_empty(), "{args}");
        }
        let (jump, other) = ssh_args(&shell_words("-o StrictHostKeyChecking=no -C").unwrap());
        assert_eq!(jump, None);
        assert_eq!(other, ["-o StrictHostKeyChecking=no", "-C"]);
    }
}
