//! `import ansible INVENTORY`: an Ansible inventory, INI or YAML, with groups, `children`, group
//! `vars` and host vars, resolved per host as Ansible does (the `all` group first, then groups
//! from the shallowest to the deepest, by name within a depth, then the host's own vars).

use std::collections::BTreeMap;
use std::path::Path;

use crate::yaml::{self, Node, Value};

use super::{ImportError, Imported, ImportedHost, Sourced, shell_words, ssh_args};

/// A variable as written: its value and where.
#[derive(Debug, Clone)]
struct Var {
    value: String,
    at: String,
}

#[derive(Debug, Default)]
struct Group {
    vars: BTreeMap<String, Var>,
    children: Vec<String>,
    hosts: Vec<String>,
}

#[derive(Debug, Default)]
struct Parsed {
    groups: BTreeMap<String, Group>,
    /// Hosts in the order first seen, with where.
    hosts: Vec<(String, String)>,
    host_vars: BTreeMap<String, BTreeMap<String, Var>>,
    unmapped: Vec<String>,
}

impl Parsed {
    fn group(&mut self, name: &str) -> &mut Group {
        self.groups.entry(name.to_owned()).or_default()
    }

    fn host(&mut self, name: &str, group: &str, at: String) {
        if !self.hosts.iter().any(|(h, _)| h == name) {
            self.hosts.push((name.to_owned(), at));
        }
        let group = self.group(group);
        if !group.hosts.iter().any(|h| h == name) {
            group.hosts.push(name.to_owned());
        }
    }

    fn host_var(&mut self, host: &str, key: &str, var: Var) {
        self.host_vars
            .entry(host.to_owned())
            .or_default()
            .insert(key.to_owned(), var);
    }
}

/// Read `path`: YAML when it parses as a YAML mapping of groups (`.yml`/`.yaml`, or any file
/// starting with `all:`), else INI.
///
/// # Errors
/// The file cannot be read or is malformed (the error names the line).
pub(crate) fn read(path: &Path) -> Result<Imported, ImportError> {
    let text = std::fs::read_to_string(path).map_err(|e| {
        ImportError::Source(format!(
            "cannot read the Ansible inventory {}: {e}",
            path.display()
        ))
    })?;
    let file = path.display().to_string();
    let yaml = path.extension().is_some_and(|e| e == "yml" || e == "yaml")
        || text
            .lines()
            .find(|l| !l.trim().is_empty() && !l.trim_start().starts_with('#'))
            .is_some_and(|l| l.trim_end().ends_with(':') && !l.starts_with('['));
    let parsed = if yaml {
        parse_yaml(&file, &text)?
    } else {
        parse_ini(&file, &text)?
    };
    Ok(resolve(&parsed, format!("the Ansible inventory {file}")))
}

/// `name[01:03]suffix` -> name01suffix .. name03suffix (Ansible's numeric ranges).
fn expand_range(pattern: &str) -> Result<Vec<String>, String> {
    let Some((head, rest)) = pattern.split_once('[') else {
        return Ok(vec![pattern.to_owned()]);
    };
    let (range, tail) = rest
        .split_once(']')
        .ok_or_else(|| format!("{pattern}: unclosed ["))?;
    let (from, to) = range
        .split_once(':')
        .ok_or_else(|| format!("{pattern}: a range is [FROM:TO]"))?;
    let (Ok(a), Ok(b)) = (from.parse::<u32>(), to.parse::<u32>()) else {
        return Err(format!("{pattern}: only numeric ranges are imported"));
    };
    if b < a || b - a > 10_000 {
        return Err(format!("{pattern}: the range is empty or too long"));
    }
    let width = if from.starts_with('0') { from.len() } else { 0 };
    Ok((a..=b)
        .map(|n| format!("{head}{n:0width$}{tail}"))
        .collect())
}

fn unquote(text: &str) -> String {
    let t = text.trim();
    for q in ['\'', '"'] {
        if t.len() >= 2 && t.starts_with(q) && t.ends_with(q) {
            return t[1..t.len() - 1].to_owned();
        }
    }
    t.to_owned()
}

fn parse_ini(file: &str, text: &str) -> Result<Parsed, ImportError> {
    let mut parsed = Parsed::default();
    // Hosts before any section header are "ungrouped", as Ansible has it.
    let mut section = ("ungrouped".to_owned(), String::new());
    for (index, raw) in text.lines().enumerate() {
        let at = format!("{file}:{}", index + 1);
        let line = raw.trim();
        if line.is_empty() || line.starts_with('#') || line.starts_with(';') {
            continue;
        }
        let error = |message: String| ImportError::Source(format!("{at}: {message}"));
        if let Some(header) = line.strip_prefix('[') {
            let header = header
                .strip_suffix(']')
                .ok_or_else(|| error(format!("{line:?}: a section header ends with ]")))?;
            let (name, kind) = header.split_once(':').unwrap_or((header, ""));
            if !matches!(kind, "" | "vars" | "children") {
                return Err(error(format!("[{header}]: expected :vars or :children")));
            }
            parsed.group(name);
            section = (name.to_owned(), kind.to_owned());
            continue;
        }
        match section.1.as_str() {
            "vars" => {
                let (key, value) = line
                    .split_once('=')
                    .ok_or_else(|| error(format!("{line:?}: a group variable is KEY=VALUE")))?;
                let var = Var {
                    value: unquote(value),
                    at: format!("{at}, group {}'s vars", section.0),
                };
                parsed
                    .group(&section.0)
                    .vars
                    .insert(key.trim().to_owned(), var);
            }
            "children" => {
                let child = line.split_whitespace().next().unwrap_or(line).to_owned();
                parsed.group(&child);
                let group = parsed.group(&section.0);
                if !group.children.contains(&child) {
                    group.children.push(child);
                }
            }
            _ => {
                let words = shell_words(line).map_err(error)?;
                let Some((pattern, vars)) = words.split_first() else {
                    continue;
                };
                let names = match expand_range(pattern) {
                    Ok(names) => names,
                    Err(e) => {
                        parsed
                            .unmapped
                            .push(format!("{at}: host {e}; not imported"));
                        continue;
                    }
                };
                for name in names {
                    parsed.host(&name, &section.0, format!("{at}, group {}", section.0));
                    for var in vars {
                        let (key, value) = var.split_once('=').ok_or_else(|| {
                            error(format!("{var:?}: a host variable is KEY=VALUE"))
                        })?;
                        parsed.host_var(
                            &name,
                            key,
                            Var {
                                value: value.to_owned(),
                                at: at.clone(),
                            },
                        );
                    }
                }
            }
        }
    }
    Ok(parsed)
}

fn scalar(node: &Node) -> Option<String> {
    match &node.value {
        Value::Scalar { text, .. } => Some(text.clone()),
        Value::Null => Some(String::new()),
        _ => None,
    }
}

fn yaml_group(parsed: &mut Parsed, file: &str, name: &str, node: &Node) -> Result<(), ImportError> {
    parsed.group(name);
    let Value::Mapping(entries) = &node.value else {
        if node.value == Value::Null {
            return Ok(());
        }
        return Err(ImportError::Source(format!(
            "{file}:{}: group {name} is not a mapping of hosts, vars and children",
            node.at
        )));
    };
    for entry in entries {
        let at = format!("{file}:{}", entry.key_at.line);
        match entry.key.as_str() {
            "hosts" => {
                let Value::Mapping(hosts) = &entry.value.value else {
                    if entry.value.value == Value::Null {
                        continue;
                    }
                    return Err(ImportError::Source(format!(
                        "{at}: {name}.hosts is not a mapping of host names"
                    )));
                };
                for host in hosts {
                    let host_at = format!("{file}:{}", host.key_at.line);
                    let names = match expand_range(&host.key) {
                        Ok(names) => names,
                        Err(e) => {
                            parsed
                                .unmapped
                                .push(format!("{host_at}: host {e}; not imported"));
                            continue;
                        }
                    };
                    for host_name in names {
                        parsed.host(&host_name, name, format!("{host_at}, group {name}"));
                        if let Value::Mapping(vars) = &host.value.value {
                            for var in vars {
                                let var_at = format!("{file}:{}", var.key_at.line);
                                match scalar(&var.value) {
                                    Some(value) => parsed.host_var(
                                        &host_name,
                                        &var.key,
                                        Var { value, at: var_at },
                                    ),
                                    None => parsed.unmapped.push(format!(
                                        "{var_at}: {host_name}: {} (not a single value)",
                                        var.key
                                    )),
                                }
                            }
                        }
                    }
                }
            }
            "vars" => {
                if let Value::Mapping(vars) = &entry.value.value {
                    for var in vars {
                        let var_at = format!("{file}:{}", var.key_at.line);
                        match scalar(&var.value) {
                            Some(value) => {
                                parsed.group(name).vars.insert(
                                    var.key.clone(),
                                    Var {
                                        value,
                                        at: format!("{var_at}, group {name}'s vars"),
                                    },
                                );
                            }
                            None => parsed.unmapped.push(format!(
                                "{var_at}: group {name}: {} (not a single value)",
                                var.key
                            )),
                        }
                    }
                }
            }
            "children" => {
                if let Value::Mapping(children) = &entry.value.value {
                    for child in children {
                        if !parsed.group(name).children.contains(&child.key) {
                            parsed.group(name).children.push(child.key.clone());
                        }
                        yaml_group(parsed, file, &child.key, &child.value)?;
                    }
                }
            }
            other => parsed.unmapped.push(format!(
                "{at}: group {name}: {other} (not hosts, vars or children)"
            )),
        }
    }
    Ok(())
}

fn parse_yaml(file: &str, text: &str) -> Result<Parsed, ImportError> {
    let document = yaml::parse(text).map_err(|problems| {
        ImportError::Source(
            problems
                .iter()
                .map(|p| format!("{file}:{}: {}", p.at, p.message))
                .collect::<Vec<_>>()
                .join("; "),
        )
    })?;
    let Value::Mapping(groups) = &document.value else {
        return Err(ImportError::Source(format!(
            "{file}: an Ansible YAML inventory is a mapping of groups (all: ...)"
        )));
    };
    let mut parsed = Parsed::default();
    for group in groups {
        yaml_group(&mut parsed, file, &group.key, &group.value)?;
    }
    Ok(parsed)
}

/// Each group's depth below `all` (the longest path, as Ansible orders group vars).
fn depths(groups: &BTreeMap<String, Group>) -> BTreeMap<String, usize> {
    let mut depth: BTreeMap<String, usize> = groups.keys().map(|g| (g.clone(), 1)).collect();
    depth.insert("all".to_owned(), 0);
    // Relax as often as there are groups: enough for any chain, and a loop cannot hang it.
    for _ in 0..groups.len() {
        for (name, group) in groups {
            let d = depth[name];
            for child in &group.children {
                if child != "all" && depth.get(child).is_some_and(|c| *c < d + 1) {
                    depth.insert(child.clone(), d + 1);
                }
            }
        }
    }
    depth
}

/// The groups `host` is in, directly or through `children`.
fn groups_of(groups: &BTreeMap<String, Group>, host: &str) -> Vec<String> {
    let mut found: Vec<String> = groups
        .iter()
        .filter(|(_, g)| g.hosts.iter().any(|h| h == host))
        .map(|(n, _)| n.clone())
        .collect();
    let mut i = 0;
    while i < found.len() {
        let child = found[i].clone();
        for (name, group) in groups {
            if group.children.contains(&child) && !found.contains(name) {
                found.push(name.clone());
            }
        }
        i += 1;
    }
    found.retain(|g| g != "all" && g != "ungrouped");
    found
}

fn resolve(parsed: &Parsed, source: String) -> Imported {
    let depth = depths(&parsed.groups);
    let mut imported = Imported {
        source,
        unmapped: parsed.unmapped.clone(),
        ..Imported::default()
    };
    let mut reported: Vec<String> = Vec::new();
    for (name, at) in &parsed.hosts {
        let groups = groups_of(&parsed.groups, name);
        let mut ordered: Vec<&String> = groups.iter().collect();
        ordered.sort_by_key(|g| (depth.get(*g).copied().unwrap_or(1), (*g).clone()));
        let mut vars: BTreeMap<String, Var> = BTreeMap::new();
        let all = parsed.groups.get("all").into_iter();
        for group in all.chain(ordered.iter().filter_map(|g| parsed.groups.get(*g))) {
            vars.extend(group.vars.clone());
        }
        if let Some(own) = parsed.host_vars.get(name) {
            vars.extend(own.clone());
        }
        let mut host = ImportedHost {
            name: name.clone(),
            from: at.clone(),
            groups,
            ..ImportedHost::default()
        };
        let mut become_method: Option<&Var> = None;
        let mut become_on: Option<&Var> = None;
        for (key, var) in &vars {
            let sourced = || Sourced::new(var.value.clone(), format!("{key}, {}", var.at));
            let mut unmapped = |why: &str| {
                let line = format!("{}: {key}={} ({why})", var.at, var.value);
                if !reported.contains(&line) {
                    reported.push(line);
                }
            };
            match key.as_str() {
                "ansible_host" | "ansible_ssh_host" => host.address = Some(sourced()),
                "ansible_user" | "ansible_ssh_user" => host.user = Some(sourced()),
                "ansible_port" | "ansible_ssh_port" => host.port = Some(sourced()),
                "ansible_ssh_private_key_file" => host.identity_file = Some(sourced()),
                "ansible_become" => become_on = Some(var),
                "ansible_become_method" => become_method = Some(var),
                "ansible_ssh_common_args" | "ansible_ssh_extra_args" => {
                    match shell_words(&var.value) {
                        Ok(words) => {
                            let (jump, other) = ssh_args(&words);
                            if let Some(jump) = jump {
                                host.jump = Some(Sourced::new(
                                    jump,
                                    format!("{key} ProxyJump, {}", var.at),
                                ));
                            }
                            if !other.is_empty() {
                                unmapped(&format!(
                                    "ssh options other than ProxyJump: {}",
                                    other.join(" ")
                                ));
                            }
                        }
                        Err(e) => unmapped(&e),
                    }
                }
                "ansible_become_password" | "ansible_become_pass" => unmapped(
                    "clockprov takes the sudo password from --become-password-file, $CLOCKPROV_BECOME_PASSWORD or the terminal",
                ),
                k if k.starts_with("ansible_") => unmapped("no clockprov equivalent"),
                _ => unmapped("not a connection setting"),
            }
        }
        let truthy = |v: &Var| {
            matches!(
                v.value.to_ascii_lowercase().as_str(),
                "true" | "yes" | "1" | "on"
            )
        };
        if let Some(on) = become_on.filter(|v| truthy(v)) {
            let method = become_method.map_or("sudo", |m| m.value.as_str());
            if method == "sudo" {
                host.become_sudo = Some(Sourced::new("sudo", format!("ansible_become, {}", on.at)));
            } else {
                let line = format!(
                    "{}: ansible_become_method={method} (clockprov becomes root with sudo only)",
                    become_method.map_or(on.at.as_str(), |m| m.at.as_str())
                );
                if !reported.contains(&line) {
                    reported.push(line);
                }
            }
        }
        imported.hosts.push(host);
    }
    imported.unmapped.extend(reported);
    imported
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges_expand_with_their_padding() {
        assert_eq!(
            expand_range("db[01:03].lab").unwrap(),
            ["db01.lab", "db02.lab", "db03.lab"]
        );
        assert_eq!(
            expand_range("web[8:10]").unwrap(),
            ["web8", "web9", "web10"]
        );
        assert!(expand_range("web[a:c]").is_err());
    }

    #[test]
    fn deeper_groups_win_and_host_vars_win_over_all() {
        let ini = "\
[all:vars]
ansible_user=admin
ansible_port=2200

[dc:children]
rack1

[dc:vars]
ansible_port=2201

[rack1]
h1 ansible_host=10.0.0.1
h2 ansible_host=10.0.0.2 ansible_port=22

[rack1:vars]
ansible_ssh_common_args='-o ProxyJump=root@10.0.0.9 -o Compression=yes'
ntp_role=client
";
        let imported = resolve(&parse_ini("h.ini", ini).unwrap(), "x".into());
        let h1 = &imported.hosts[0];
        assert_eq!(h1.groups, ["rack1", "dc"]);
        assert_eq!(h1.user.as_ref().unwrap().value, "admin");
        assert_eq!(h1.port.as_ref().unwrap().value, "2201");
        assert_eq!(
            h1.port.as_ref().unwrap().from,
            "ansible_port, h.ini:9, group dc's vars"
        );
        assert_eq!(imported.hosts[1].port.as_ref().unwrap().value, "22");
        assert_eq!(h1.jump.as_ref().unwrap().value, "root@10.0.0.9");
        assert_eq!(
            imported.unmapped,
            [
                "h.ini:16, group rack1's vars: ansible_ssh_common_args=-o ProxyJump=root@10.0.0.9 -o Compression=yes (ssh options other than ProxyJump: -o Compression=yes)",
                "h.ini:17, group rack1's vars: ntp_role=client (not a connection setting)",
            ]
        );
    }
}
