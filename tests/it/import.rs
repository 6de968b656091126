//! `import ansible` and `import ssh-config`: the printed inventories, and that they reach the
//! same sshd test hosts the source would (plan runs against them and succeeds; their jump host
//! is on the route).

use std::path::{Path, PathBuf};

use crate::support::hosts::HostSpec;
use crate::{Clockprov, Lab, LabBuilder, Run};

/// The printed inventory with this run's paths and addresses made stable, for snapshots.
fn stable(lab: &Lab, text: &str) -> String {
    let mut names: Vec<(String, String)> = vec![
        (lab.hosts.dir().display().to_string(), "$DIR".to_owned()),
        (lab.server.clone(), "$SERVER".to_owned()),
    ];
    for (i, client) in lab.clients.iter().enumerate() {
        names.push((client.clone(), format!("$DATA{}", i + 1)));
    }
    // Longest first: 127.0.1.12 before 127.0.1.1.
    names.sort_by_key(|(from, _)| std::cmp::Reverse(from.len()));
    names
        .iter()
        .fold(text.to_owned(), |text, (from, to)| text.replace(from, to))
}

/// A HOME whose ~/.ssh has the test hosts' key (the default key) and `known_hosts`.
fn home(lab: &Lab) -> std::path::PathBuf {
    let home = lab.hosts.dir().join("import-home");
    std::fs::create_dir_all(home.join(".ssh")).unwrap();
    std::fs::copy(lab.hosts.key(), home.join(".ssh/id_ed25519")).unwrap();
    std::fs::copy(lab.hosts.known_hosts(), home.join(".ssh/known_hosts")).unwrap();
    home
}

/// Import, save, plan with it; the plan must reach every host and have the names and
/// addresses `expected`.
fn import_and_plan(
    lab: &Lab,
    home: &Path,
    args: &[&str],
    saved: &str,
    expected: &[(&str, &str)],
) -> (Run, String) {
    let import = Clockprov::new().home(home).arg("import").args(args).run();
    assert_eq!(import.code, 0, "{import:?}");
    let inventory = lab.hosts.dir().join(saved);
    std::fs::write(&inventory, &import.stdout).unwrap();
    let plan = Clockprov::new()
        .home(home)
        .args(["plan", "--format", "json", "-i"])
        .arg(&inventory)
        .run();
    assert_eq!(plan.code, 0, "{plan:?}");
    let doc = plan.json();
    let found: Vec<(String, String, String)> = doc["hosts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|h| {
            (
                h["name"].as_str().unwrap().to_owned(),
                h["address"].as_str().unwrap().to_owned(),
                h["status"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    let want: Vec<(String, String, String)> = expected
        .iter()
        .map(|(n, a)| ((*n).to_owned(), (*a).to_owned(), "change".to_owned()))
        .collect();
    assert_eq!(found, want, "{plan:?}");
    (import, inventory.display().to_string())
}

/// A realistic Ansible INI inventory for the lab: groups, children, group vars at two depths,
/// host vars, a jump host.
fn ansible_ini(lab: &Lab) -> PathBuf {
    let key = lab.hosts.key().display().to_string();
    let (server, d1, d2) = (&lab.server, &lab.clients[0], &lab.clients[1]);
    let ini = lab.hosts.dir().join("hosts.ini");
    std::fs::write(
        &ini,
        format!(
            "[all:vars]\nansible_user=root\nansible_python_interpreter=/usr/bin/python3\n\n\
             [ntp]\nzcloud ansible_host={server}\n\n\
             [ceph_data]\ndata-1 ansible_host={d1}\ndata-2 ansible_host={d2} ansible_port=22\n\n\
             [ceph_data:vars]\nansible_ssh_common_args='-o ProxyJump=zcloud -o ServerAliveInterval=30'\n\n\
             [cluster:children]\nntp\nceph_data\n\n\
             [cluster:vars]\nansible_ssh_private_key_file={key}\nansible_port=22\n"
        ),
    )
    .unwrap();
    ini
}

/// The same as Ansible's YAML.
fn ansible_yaml(lab: &Lab) -> PathBuf {
    let key = lab.hosts.key().display().to_string();
    let (server, d1, d2) = (&lab.server, &lab.clients[0], &lab.clients[1]);
    let yaml = lab.hosts.dir().join("hosts.yml");
    std::fs::write(
        &yaml,
        format!(
            "all:\n  vars:\n    ansible_user: root\n  children:\n    cluster:\n      vars:\n        ansible_ssh_private_key_file: {key}\n      children:\n        ntp:\n          hosts:\n            zcloud:\n              ansible_host: {server}\n        ceph_data:\n          vars:\n            ansible_ssh_common_args: -J zcloud\n          hosts:\n            data-1:\n              ansible_host: {d1}\n            data-2:\n              ansible_host: {d2}\n              ansible_port: 22\n"
        ),
    )
    .unwrap();
    yaml
}

/// An OpenSSH config: `Host` patterns, a bastion outside the import reached through `ProxyJump`.
fn ssh_config(lab: &Lab) -> PathBuf {
    let key = lab.hosts.key().display().to_string();
    let (server, d1, d2) = (&lab.server, &lab.clients[0], &lab.clients[1]);
    let config = lab.hosts.dir().join("ssh_config");
    std::fs::write(
        &config,
        format!(
            "Host bastion\n  HostName {server}\n  User root\n\n\
             Host zcloud\n  HostName {server}\n\n\
             Host data-1\n  HostName {d1}\n\n\
             Host data-2\n  HostName {d2}\n  Port 22\n\n\
             Host data-*\n  ProxyJump bastion\n  ForwardAgent no\n\n\
             Host *\n  User root\n  IdentityFile {key}\n  UserKnownHostsFile {}\n",
            lab.hosts.known_hosts().display()
        ),
    )
    .unwrap();
    config
}

#[test]
fn imported_inventories_reach_the_same_hosts() {
    let lab = LabBuilder::new()
        .clients(vec![
            HostSpec::new("ubuntu-20.04", "systemd-timesyncd"),
            HostSpec::new("debian-12", "systemd-timesyncd"),
        ])
        .start();
    let home = home(&lab);
    let (server, d1, d2) = (&lab.server, &lab.clients[0], &lab.clients[1]);
    let expected = [
        ("zcloud", server.as_str()),
        ("data-1", d1.as_str()),
        ("data-2", d2.as_str()),
    ];

    // Ansible, INI: groups, children, group vars at two depths, host vars, a jump host.
    let ini = ansible_ini(&lab);
    let ini_arg = ini.display().to_string();
    let (import, ini_inventory) = import_and_plan(
        &lab,
        &home,
        &[
            "ansible",
            &ini_arg,
            "--servers",
            "ntp",
            "--local-stratum",
            "10",
        ],
        "from-ini.yaml",
        &expected,
    );
    assert!(
        import.stderr.contains("not mapped: ")
            && import.stderr.contains("ansible_python_interpreter"),
        "{import:?}"
    );
    insta::assert_snapshot!("ansible_ini", stable(&lab, &import.stdout));

    // The same inventory as Ansible's YAML.
    let yaml = ansible_yaml(&lab);
    let yaml_arg = yaml.display().to_string();
    let (import, _) = import_and_plan(
        &lab,
        &home,
        &[
            "ansible",
            &yaml_arg,
            "--servers",
            "ntp",
            "--upstream",
            "ntp.ubuntu.com",
            "--local-stratum",
            "10",
        ],
        "from-yaml.yaml",
        &expected,
    );
    insta::assert_snapshot!("ansible_yaml", stable(&lab, &import.stdout));

    // OpenSSH: Host patterns, a bastion outside the import reached through ProxyJump.
    let config = ssh_config(&lab);
    let config_arg = config.display().to_string();
    let (import, ssh_inventory) = import_and_plan(
        &lab,
        &home,
        &[
            "ssh-config",
            &config_arg,
            "--servers",
            "zcloud",
            "--hosts",
            "!bastion",
            "--local-stratum",
            "10",
        ],
        "from-ssh-config.yaml",
        &expected,
    );
    assert!(import.stderr.contains("ForwardAgent"), "{import:?}");
    insta::assert_snapshot!("ssh_config", stable(&lab, &import.stdout));

    // The jump hosts are on the route: with the server stopped, the data hosts are unreachable
    // through it, in both imports.
    lab.hosts.stop_host(server);
    for inventory in [&ini_inventory, &ssh_inventory] {
        let plan = Clockprov::new()
            .home(&home)
            .args(["plan", "-l", "data-1", "-i", inventory])
            .run();
        assert_eq!(plan.code, 1, "{plan:?}");
        assert!(plan.stdout.contains("jump host"), "{plan:?}");
    }
}
