//! What a user sees when they get something wrong: the real binary's messages, snapshot-tested.
//! Each names where (`FILE:LINE:COLUMN`, or the option), what was expected in the inventory's
//! words, and the closest valid name where there is one. Only the last test contacts hosts.

use std::path::Path;

use crate::{Clockprov, LabBuilder, Run};

const GOOD: &str = include_str!("../../inventories/zcloud.yaml");

/// clockprov run in `dir` (so that messages show the relative `inv.yaml`), no terminal.
fn clockprov_in(dir: &Path, args: &[&str], env: &[(&str, &str)]) -> Run {
    env.iter()
        .fold(Clockprov::new().current_dir(dir).args(args), |c, (k, v)| {
            c.env(k, v)
        })
        .run()
}

/// `inventory` written as `inv.yaml` in a scratch directory; the error of `command` on it.
fn error_of(command: &[&str], inventory: &str) -> String {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("inv.yaml"), inventory).unwrap();
    let mut args = command.to_vec();
    args.extend(["-i", "inv.yaml"]);
    let run = clockprov_in(dir.path(), &args, &[]);
    assert_eq!(run.code, 1, "{run:?}");
    assert!(run.stdout.is_empty(), "{run:?}");
    run.stderr
        .replace(&dir.path().display().to_string(), "/SCRATCH")
        .trim_end()
        .to_owned()
}

/// GOOD with `from` replaced by `to`.
fn with(from: &str, to: &str) -> String {
    assert!(GOOD.contains(from), "{from:?}");
    GOOD.replacen(from, to, 1)
}

#[test]
fn inventory_mistakes_say_where_and_how_to_fix_them() {
    let plan = ["plan"];
    // A key given twice: both lines.
    let twice = with(
        "  z-b-data-3: { address: 192.168.6.206 }\n",
        "  z-b-data-3: { address: 192.168.6.206 }\n  z-b-data-2: { address: 192.168.6.207 }\n",
    );
    insta::assert_snapshot!(error_of(&plan, &twice), @"error: inv.yaml:23:3: clients.z-b-data-2: defined twice (first at line 21); only one can be kept: remove or rename one of them");
    // A field dedented one level.
    let dedented = with(
        "    allow: [192.168.6.0/24]\n    local_stratum: 10             # keep serving the LAN while upstream is unreachable\n",
        "    local_stratum: 10\n  allow: [192.168.6.0/24]\n",
    );
    insta::assert_snapshot!(error_of(&plan, &dedented), @"error: inv.yaml:17:10: ntp_servers.allow: expected a mapping of server settings (address, ssh, upstream, allow, ...), found a list; `allow` looks like a setting of ntp_servers.zcloud indented too little (it is read as an entry named allow)");
    // ... with a line after it that YAML cannot place.
    let misplaced = with(
        "    allow: [192.168.6.0/24]\n",
        "  allow: [192.168.6.0/24]\n",
    );
    insta::assert_snapshot!(error_of(&plan, &misplaced), @"error: inv.yaml:17:5: not valid YAML (while parsing a block mapping, did not find expected key): check the indentation of this line and of the lines above it (the keys of one mapping line up exactly; a setting belongs under its host)");
    // A single value where a list is expected.
    let scalar = with("allow: [192.168.6.0/24]", "allow: 192.168.6.0/24");
    insta::assert_snapshot!(error_of(&plan, &scalar), @"error: inv.yaml:16:12: ntp_servers.zcloud.allow: expected a list of networks, e.g. [192.168.6.0/24], found the value `192.168.6.0/24`; a list is written `[192.168.6.0/24]`, or one `- item` per line");
    // A tab in the indentation.
    let tab = with("    allow:", "\tallow:");
    insta::assert_snapshot!(error_of(&plan, &tab), @"error: inv.yaml:16:1: a tab in the indentation: YAML indents with spaces only (replace the tab with spaces)");
    // A typo in a field.
    let typo = with("  identity_file:", "  identiy_file:");
    insta::assert_snapshot!(error_of(&plan, &typo), @"error: inv.yaml:4:3: ssh: unknown field `identiy_file`; did you mean `identity_file`?");
    // A typo in a host name.
    let host = with(
        "z-b-data-3: { address: 192.168.6.206 }",
        "z-b-data-3: { address: 192.168.6.206, ntp: [zclod] }",
    );
    insta::assert_snapshot!(error_of(&plan, &host), @"error: inv.yaml:22:47: clients.z-b-data-3.ntp: no ntp_servers entry is named zclod; did you mean `zcloud`?");
    let jump = with("ssh: { jump: zcloud }", "ssh: { jump: zclod }");
    insta::assert_snapshot!(error_of(&plan, &jump), @"error: inv.yaml:20:54: clients.z-b-data-1.ssh.jump: no inventory host is named zclod; did you mean `zcloud`? (a host outside the inventory is written [user@]host[:port], e.g. root@zclod or zclod:22)");
    // A structure mistake, in the inventory's words.
    let list = with(
        "  zcloud:\n    address: 192.168.6.200",
        "  zcloud:\n  - address: 192.168.6.200",
    );
    insta::assert_snapshot!(error_of(&plan, &list), @"error: inv.yaml:12:5: ntp_servers.zcloud: expected a mapping of server settings (address, ssh, upstream, allow, ...), found a list");
    // Numbers out of range, at their own line, in words.
    let stratum = with("local_stratum: 10", "local_stratum: 16");
    insta::assert_snapshot!(error_of(&plan, &stratum), @"error: inv.yaml:17:20: ntp_servers.zcloud.local_stratum: must be 1 to 15 (chrony's range), not 16");
    // A server that could never be synchronized.
    let alone = with(
        "    upstream:\n      - pool: ntp.ubuntu.com      # or `server: HOST`; iburst by default\n",
        "",
    )
    .replace(
        "    local_stratum: 10             # keep serving the LAN while upstream is unreachable\n",
        "",
    );
    insta::assert_snapshot!(error_of(&plan, &alone), @"error: inv.yaml:11:3: ntp_servers.zcloud: no `upstream` and no `local_stratum`: chrony would never count itself synchronized, so no client would ever synchronize to it; add `local_stratum: 10` to serve this server's own clock (an isolated LAN), or an `upstream:` list of time sources");
    // The same problems from every command that reads the inventory.
    for command in [
        ["apply", "--yes"].as_slice(),
        &["check"],
        &["bake", "--yes"],
        &["render", "zcloud"],
    ] {
        assert_eq!(
            error_of(command, &twice),
            error_of(&plan, &twice),
            "{command:?}"
        );
    }
}

/// An inventory whose hosts are on loopback addresses nobody listens on, and whose key files
/// are relative to it.
fn offline(identity_file: &str) -> String {
    format!(
        "ssh:\n  identity_file: {identity_file}\n  known_hosts: known_hosts\nntp_servers:\n  zcloud:\n    address: 127.0.0.1\n    ssh: {{ port: 9 }}\n    local_stratum: 10\n    allow: [127.0.0.0/8]\nclients:\n  z-b-data-1: {{ address: 127.0.0.1, ssh: {{ port: 9 }} }}\n  z-b-data-2: {{ address: 127.0.0.1, ssh: {{ port: 9 }} }}\n"
    )
}

#[test]
fn a_missing_key_file_names_its_line_and_the_path_it_resolved_to() {
    // Before any host is contacted: the cause once, the inventory line, the resolved path.
    insta::assert_snapshot!(error_of(&["plan"], &offline("keys/z3")), @"error: inv.yaml:2:18: ssh.identity_file: cannot read /SCRATCH/keys/z3 (resolved from keys/z3 against the inventory's directory): No such file or directory");
    insta::assert_snapshot!(error_of(&["check"], &offline("keys/z3")), @"error: inv.yaml:2:18: ssh.identity_file: cannot read /SCRATCH/keys/z3 (resolved from keys/z3 against the inventory's directory): No such file or directory");
}

#[test]
fn command_line_names_suggest_the_closest() {
    let inventory = offline("keys/z3");
    insta::assert_snapshot!(error_of(&["plan", "--limit", "z-b-dat-1"], &inventory), @"error: --limit z-b-dat-1 matches no host of inv.yaml; did you mean `z-b-data-1`? (hosts: zcloud, z-b-data-1, z-b-data-2)");
    insta::assert_snapshot!(error_of(&["check", "--limit", "zcloud,z-b-data-9"], &inventory), @"error: --limit z-b-data-9 matches no host of inv.yaml; did you mean `z-b-data-1`? (hosts: zcloud, z-b-data-1, z-b-data-2)");
    insta::assert_snapshot!(error_of(&["plan", "--limit", "nope*"], &inventory), @"error: --limit nope* matches no host of inv.yaml (hosts: zcloud, z-b-data-1, z-b-data-2)");
    insta::assert_snapshot!(error_of(&["plan", "--limit", "!z*"], &inventory), @"error: --limit !z* leaves no host of inv.yaml (3 hosts)");
    insta::assert_snapshot!(error_of(&["render", "zclod"], &inventory), @"error: no host named zclod in inv.yaml; did you mean `zcloud`?");
    insta::assert_snapshot!(error_of(&["render", "zcloud", "--os", "centos:9"], &inventory), @r"
        error: invalid value 'centos:9' for '--os <ID:VERSION>': not a supported system; supported: debian:12, debian:13, ubuntu:20.04, ubuntu:22.04, ubuntu:24.04, ubuntu:25.10, ubuntu:26.04, rhel:8, rhel:9, rhel:10, rocky:8, rocky:9, rocky:10, almalinux:8, almalinux:9, almalinux:10, fedora:42, fedora:43

        For more information, try '--help'.
        ");
    insta::assert_snapshot!(error_of(&["check", "--max-skew", "fifty"], &inventory), @r#"
        error: invalid value 'fifty' for '--max-skew <DURATION>': invalid duration "fifty": expected e.g. 0.05, 50ms, 30s, 2m or 1h

        For more information, try '--help'.
        "#);
}

#[test]
fn durations_are_accepted_everywhere() {
    // clap accepts each form; the run then stops at the missing key file, before any host.
    for skew in ["0.05", "50ms", "1s"] {
        let message = error_of(&["check", "--max-skew", skew], &offline("keys/z3"));
        assert!(
            message.contains("ssh.identity_file: cannot read"),
            "{skew}: {message}"
        );
        let message = error_of(
            &["apply", "--yes", "--max-skew", skew, "--wait-sync", "1.5s"],
            &offline("keys/z3"),
        );
        assert!(
            message.contains("ssh.identity_file: cannot read"),
            "{skew}: {message}"
        );
    }
}

#[test]
fn an_undefined_template_variable_is_named() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("inv.yaml"), offline("keys/z3")).unwrap();
    std::fs::create_dir(dir.path().join("tpl")).unwrap();
    std::fs::write(
        dir.path().join("tpl/chrony.conf.j2"),
        "# {{ host.name }}\nallow {{ server.allwo }}\n",
    )
    .unwrap();
    let run = clockprov_in(
        dir.path(),
        &["render", "-i", "inv.yaml", "--templates", "tpl", "zcloud"],
        &[],
    );
    assert_eq!(run.code, 1, "{run:?}");
    insta::assert_snapshot!(run.stderr.trim_end(), @"error: template chrony.conf.j2: line 2: `server.allwo` is undefined");
}

#[test]
fn the_inventory_can_come_from_the_environment() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("inv.yaml"), offline("keys/z3")).unwrap();
    let run = clockprov_in(
        dir.path(),
        &["render", "zcloud"],
        &[("CLOCKPROV_INVENTORY", "inv.yaml")],
    );
    assert_eq!(run.code, 0, "{run:?}");
    assert!(run.stdout.contains("\nlocal stratum 10\n"), "{run:?}");
    // -i wins over the environment.
    let run = clockprov_in(
        dir.path(),
        &["render", "-i", "missing.yaml", "zcloud"],
        &[("CLOCKPROV_INVENTORY", "inv.yaml")],
    );
    assert_eq!(run.code, 1, "{run:?}");
    assert!(run.stderr.contains("missing.yaml"), "{run:?}");
}

#[test]
fn help_says_where_the_format_is_and_what_commands_do() {
    let top = Clockprov::new().arg("--help").run();
    assert!(
        top.stdout
            .contains("README.md, section \"Inventory reference\""),
        "{top:?}"
    );
    let check = Clockprov::new().args(["check", "--help"]).run();
    assert!(!check.stdout.contains("--templates"), "{check:?}");
    for text in [
        "Exit codes: 0 every host ok (or only warnings); 1 an error",
        "2 a finding on some host; 3 inconclusive",
        "With --format nagios: 0 OK, 1 WARNING, 2 CRITICAL, 3 UNKNOWN",
        "not synchronized",
        "check changes nothing on any host",
        "CLOCKPROV_INVENTORY",
        "--max-skew <DURATION>",
    ] {
        assert!(check.stdout.contains(text), "{text:?}: {check:?}");
    }
    let apply = Clockprov::new().args(["apply", "--help"]).run();
    for text in [
        "backup",
        "rollback",
        "Without a terminal it refuses unless --yes",
        "--record DIR",
        "Records and backups",
    ] {
        assert!(apply.stdout.contains(text), "{text:?}: {apply:?}");
    }
}

/// `clockprov apply` on a terminal, answering its question: the exit code and what the terminal
/// showed.
fn apply_on_a_terminal(inventory: &Path, answer: &str) -> (i32, String) {
    let terminal = Clockprov::new()
        .args(["apply", "-i"])
        .arg(inventory)
        .terminal();
    let run = terminal.answer("[y/N]", answer);
    (run.code, run.stdout)
}

#[test]
fn answering_no_changes_nothing_and_is_not_an_error() {
    let lab = LabBuilder::new().start();
    let before = lab.hosts.read_etc(&lab.server, "chrony/chrony.conf");
    for no in ["n", "no", ""] {
        let (code, seen) = apply_on_a_terminal(&lab.inventory, no);
        assert_eq!(code, 0, "{no:?}: {seen}");
        assert!(
            seen.contains("Apply these changes to 2 hosts? [y/N]")
                && seen.contains("Apply cancelled; nothing was changed."),
            "{no:?}: {seen}"
        );
        assert!(!seen.contains("error"), "{no:?}: {seen}");
    }
    for addr in lab.all() {
        assert!(lab.service_changes(&addr).is_empty(), "{addr} was changed");
    }
    assert_eq!(
        lab.hosts.read_etc(&lab.server, "chrony/chrony.conf"),
        before
    );
    // `Y` is yes too.
    let (code, seen) = apply_on_a_terminal(&lab.inventory, "Y");
    assert_eq!(code, 0, "{seen}");
    assert!(
        seen.contains("Apply: 2 hosts changed, 0 unchanged, 0 unreachable, 0 failed."),
        "{seen}"
    );
    assert!(
        lab.hosts
            .read_etc(&lab.server, "chrony/chrony.conf")
            .unwrap()
            .contains("\nlocal stratum 10\n")
    );
}

#[test]
fn validate_checks_an_inventory_offline() {
    // Valid: the key file it names need not exist here, no host is contacted.
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("inv.yaml"), GOOD).unwrap();
    let run = clockprov_in(dir.path(), &["validate", "-i", "inv.yaml"], &[]);
    assert_eq!(run.code, 0, "{run:?}");
    insta::assert_snapshot!(run.stdout.trim_end(), @"inv.yaml: valid: 1 server, 3 clients, 1 image; every one renders for debian:12, debian:13, ubuntu:20.04, ubuntu:22.04, ubuntu:24.04, ubuntu:25.10, ubuntu:26.04, rhel:8, rhel:9, rhel:10, rocky:8, rocky:9, rocky:10, almalinux:8, almalinux:9, almalinux:10, fedora:42, fedora:43");
    assert!(run.stderr.is_empty(), "{run:?}");
    // The inventory's own mistakes, as every command reports them.
    let validate = ["validate"];
    let twice = with(
        "  z-b-data-3: { address: 192.168.6.206 }\n",
        "  z-b-data-3: { address: 192.168.6.206 }\n  z-b-data-2: { address: 192.168.6.207 }\n",
    );
    insta::assert_snapshot!(error_of(&validate, &twice), @"error: inv.yaml:23:3: clients.z-b-data-2: defined twice (first at line 21); only one can be kept: remove or rename one of them");
    let several = GOOD
        .replace(
            "z-b-data-2: { address: 192.168.6.205 }",
            "z-b-data-2: { address: 10.0.0.5 }",
        )
        .replace(
            "z-b-data-3: { address: 192.168.6.206 }",
            "z-b-data-3: { address: 192.168.6.206, ntp: [zclod] }",
        );
    insta::assert_snapshot!(error_of(&validate, &several), @r"
    error: inv.yaml:21:26: clients.z-b-data-2.address: 10.0.0.5 is outside every `allow` network of server zcloud (192.168.6.0/24), so it would never be served
    inv.yaml:22:47: clients.z-b-data-3.ntp: no ntp_servers entry is named zclod; did you mean `zcloud`?
    ");
    let looped = GOOD
        .replace(
            "z-b-data-2: { address: 192.168.6.205 }",
            "z-b-data-2: { address: 192.168.6.205, ssh: { jump: z-b-data-3 } }",
        )
        .replace(
            "z-b-data-3: { address: 192.168.6.206 }",
            "z-b-data-3: { address: 192.168.6.206, ssh: { jump: z-b-data-2 } }",
        );
    insta::assert_snapshot!(error_of(&validate, &looped), @r"
    error: inv.yaml:21:54: clients.z-b-data-2.ssh.jump: the jump chain loops: z-b-data-2 -> z-b-data-3 -> z-b-data-2
    inv.yaml:22:54: clients.z-b-data-3.ssh.jump: the jump chain loops: z-b-data-3 -> z-b-data-2 -> z-b-data-3
    ");
    let stratum = with("local_stratum: 10", "local_stratum: 16");
    insta::assert_snapshot!(error_of(&validate, &stratum), @"error: inv.yaml:17:20: ntp_servers.zcloud.local_stratum: must be 1 to 15 (chrony's range), not 16");
    // Templates that fail for some hosts or systems: each failure once, with where it was met.
    std::fs::create_dir(dir.path().join("tpl")).unwrap();
    std::fs::write(
        dir.path().join("tpl/chrony.conf.j2"),
        "# {{ host.name }}\n{% if not chrony.confdir %}allow {{ server.allwo }}{% endif %}\n",
    )
    .unwrap();
    std::fs::write(
        dir.path().join("tpl/timesyncd.conf.j2"),
        "[Time]\nNTP={{ ntp | join(' ') }}\n{% if host.section == 'images' %}# {{ image.path }}{% endif %}\n",
    )
    .unwrap();
    let run = clockprov_in(
        dir.path(),
        &["validate", "-i", "inv.yaml", "--templates", "tpl"],
        &[],
    );
    assert_eq!(run.code, 1, "{run:?}");
    assert!(run.stdout.is_empty(), "{run:?}");
    insta::assert_snapshot!(run.stderr.trim_end(), @r"
    error: host zcloud (rendered for ubuntu:20.04): template chrony.conf.j2: line 2: `server.allwo` is undefined
    image z-ubuntu20 (rendered for debian:12): template timesyncd.conf.j2: line 3: `image.path` is undefined
    ");
}
