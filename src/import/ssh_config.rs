//! `import ssh-config [FILE]`: every `Host` name without wildcards becomes a host, with what
//! `ssh NAME` would use (looked up with clockprov's own OpenSSH config reader, `Match` and
//! `Include` as OpenSSH has them).

use std::collections::BTreeMap;
use std::path::Path;

use crate::ssh::config::{Context, HostConfig, Located, SshConfig, Strictness};
use crate::value::{JumpList, JumpRef};

use super::{ImportError, Imported, ImportedHost, Sourced};

fn at<T>(located: &Located<T>) -> String {
    located.loc.to_string()
}

/// Read `path` (`~` and includes relative to `home`).
///
/// # Errors
/// The file (or an include) cannot be read or has a malformed line, or a lookup reaches a
/// `Match` criterion clockprov does not evaluate.
pub(crate) fn read(path: &Path, home: &Path) -> Result<Imported, ImportError> {
    let config = SshConfig::load(path, home).map_err(|e| ImportError::Source(e.to_string()))?;
    let local_user = crate::ssh::config::local_user_name();
    let context = Context {
        user: None,
        port: None,
        default_user: "root",
        local_user: &local_user,
        home,
    };
    let (names, ignored) = config.hosts_and_ignored();
    let mut imported = Imported {
        source: format!("the OpenSSH config {}", path.display()),
        ..Imported::default()
    };
    let lookup = |name: &str| {
        config
            .lookup(name, &context)
            .map_err(|e| ImportError::Source(e.to_string()))
    };
    for name in &names {
        let found = lookup(&name.value)?;
        let mut host = ImportedHost {
            name: name.value.clone(),
            from: format!("Host {} ({})", name.value, name.loc),
            address: found
                .hostname
                .as_ref()
                .map(|h| Sourced::new(h.value.to_string(), format!("HostName, {}", at(h)))),
            user: found
                .user
                .as_ref()
                .map(|u| Sourced::new(u.value.to_string(), format!("User, {}", at(u)))),
            port: found
                .port
                .as_ref()
                .map(|p| Sourced::new(p.value.to_string(), format!("Port, {}", at(p)))),
            ..ImportedHost::default()
        };
        if let Some((first, rest)) = found.identity_files.split_first() {
            host.identity_file = Some(Sourced::new(
                first.value.display().to_string(),
                format!("IdentityFile, {}", at(first)),
            ));
            for other in rest {
                imported.unmapped.push(format!(
                    "{}: {}: IdentityFile {} (clockprov takes one key per host: the first, {})",
                    other.loc,
                    name.value,
                    other.value.display(),
                    first.value.display()
                ));
            }
        }
        if let Some(files) = &found.known_hosts_files
            && let Some((first, rest)) = files.value.split_first()
        {
            host.known_hosts = Some(Sourced::new(
                first.display().to_string(),
                format!("UserKnownHostsFile, {}", at(files)),
            ));
            if !rest.is_empty() {
                imported.unmapped.push(format!(
                    "{}: {}: UserKnownHostsFile after the first ({}): clockprov reads one",
                    files.loc,
                    name.value,
                    first.display()
                ));
            }
        }
        if let Some(strict) = &found.strict_host_key_checking {
            let (policy, why) = match strict.value {
                Strictness::Yes | Strictness::Ask => ("strict", ""),
                Strictness::AcceptNew => ("accept-new", ""),
                Strictness::No => (
                    "accept-new",
                    "; `no` would turn host key checking off, which clockprov never does",
                ),
            };
            host.host_key_policy = Some(Sourced::new(
                policy,
                format!(
                    "StrictHostKeyChecking {}, {}{why}",
                    strict.value,
                    at(strict)
                ),
            ));
        }
        if let Some(jump) = &found.proxy_jump {
            host.jump = Some(jump_value(jump, &mut imported.outside, &lookup)?);
        }
        imported.hosts.push(host);
    }
    for keyword in ignored {
        imported.unmapped.push(format!(
            "{}: {} (does not change where or as whom clockprov connects)",
            keyword.loc, keyword.value
        ));
    }
    Ok(imported)
}

/// A `ProxyJump` as the inventory's `jump`. A hop named by a bare word stays that word (an
/// imported host, when it is one); how to write it as a host outside the inventory,
/// `user@hostname:port` as the config says, goes to `outside`, for when it is not imported.
fn jump_value(
    jump: &Located<Option<JumpList>>,
    outside: &mut BTreeMap<String, String>,
    lookup: &dyn Fn(&str) -> Result<HostConfig, ImportError>,
) -> Result<Sourced, ImportError> {
    let Some(list) = &jump.value else {
        return Ok(Sourced::new(
            "none",
            format!("ProxyJump none, {}", at(jump)),
        ));
    };
    let mut hops = Vec::new();
    for hop in &list.0 {
        match hop {
            JumpRef::Name(name) => {
                let found = lookup(name.as_str())?;
                let host = found
                    .hostname
                    .as_ref()
                    .map_or_else(|| name.to_string(), |h| h.value.to_string());
                let user = found
                    .user
                    .as_ref()
                    .map(|u| format!("{}@", u.value))
                    .unwrap_or_default();
                let port = found.port.as_ref().map_or(22, |p| p.value);
                let host = if host.contains(':') {
                    format!("[{host}]")
                } else {
                    host
                };
                outside.insert(name.to_string(), format!("{user}{host}:{port}"));
                hops.push(name.to_string());
            }
            JumpRef::Hop(hop) => hops.push(hop.to_string()),
        }
    }
    Ok(Sourced::new(
        hops.join(","),
        format!("ProxyJump, {}", at(jump)),
    ))
}
