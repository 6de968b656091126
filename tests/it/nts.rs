//! NTS on sshd test hosts: the server's certificate and key and a client's CA are uploaded with
//! their owners and modes, chrony.conf names them (checked by the hosts' real `chronyd -p` in
//! apply), the key is never printed or saved, and NTS is refused where it cannot work. (That
//! NTS really authenticates is proven on the VM lab: tests/vmlab.)

use std::os::unix::fs::MetadataExt as _;
use std::path::Path;
use std::process::Command;

use crate::support::hosts::HostSpec;
use crate::{Clockprov, LabBuilder};

/// A CA and a server certificate for `address` (its IP SAN), made with the openssl CLI.
pub(crate) fn make_pki(dir: &Path, address: &str) {
    std::fs::create_dir_all(dir).unwrap();
    let openssl = |args: &[&str]| {
        let out = Command::new("openssl")
            .args(args)
            .current_dir(dir)
            .output()
            .unwrap();
        assert!(out.status.success(), "openssl {args:?}: {out:?}");
    };
    let ec = [
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:P-256",
        "-nodes",
    ];
    openssl(
        &[
            &["req", "-x509"][..],
            &ec,
            &["-keyout", "ca.key", "-out", "ca.crt", "-days", "2"],
            &["-subj", "/CN=clockprov it CA"],
        ]
        .concat(),
    );
    openssl(
        &[
            &["req"][..],
            &ec,
            &[
                "-keyout",
                "server.key",
                "-out",
                "server.csr",
                "-subj",
                "/CN=zcloud",
            ],
        ]
        .concat(),
    );
    std::fs::write(
        dir.join("san.ext"),
        format!("subjectAltName=IP:{address}\n"),
    )
    .unwrap();
    openssl(&[
        "x509",
        "-req",
        "-in",
        "server.csr",
        "-CA",
        "ca.crt",
        "-CAkey",
        "ca.key",
        "-CAcreateserial",
        "-out",
        "server.crt",
        "-days",
        "2",
        "-extfile",
        "san.ext",
    ]);
}

/// The gid of `group` in a test host's own /etc/group.
fn gid_on(lab: &crate::Lab, addr: &str, group: &str) -> u32 {
    let groups = lab.hosts.read_etc(addr, "group").unwrap();
    groups
        .lines()
        .find_map(|l| l.strip_prefix(&format!("{group}:x:")))
        .and_then(|rest| rest.split(':').next())
        .and_then(|gid| gid.parse().ok())
        .unwrap_or_else(|| panic!("no {group} in {groups}"))
}

#[test]
fn nts_material_is_uploaded_the_key_is_never_shown_and_nts_is_refused_where_it_cannot_work() {
    let lab = LabBuilder::new()
        .clients(vec![
            HostSpec::new("debian-12", "chrony"),
            HostSpec::new("ubuntu-20.04", "systemd-timesyncd"),
        ])
        .start();
    let (server, client) = (lab.server.clone(), lab.clients[0].clone());
    make_pki(&lab.hosts.dir().join("pki"), &server);
    let key = std::fs::read_to_string(lab.hosts.dir().join("pki/server.key")).unwrap();
    let secret = body(&lab.hosts.dir().join("pki/server.key"));
    let ca = std::fs::read_to_string(lab.hosts.dir().join("pki/ca.crt")).unwrap();
    lab.rewrite_inventory(
        "    local_stratum: 10\n",
        "    local_stratum: 10\n    nts: { certificate: pki/server.crt, key: pki/server.key }\n",
    );
    lab.rewrite_inventory(
        &format!("{{ address: {client} }}"),
        &format!("{{ address: {client}, daemon: chrony, nts: {{ trusted_certs: pki/ca.crt }} }}"),
    );
    let run = |args: &[&str]| {
        lab.clockprov(args[0])
            .args(&args[1..])
            .secret(&secret)
            .run()
    };

    let saved = lab.hosts.dir().join("nts.plan");
    let plan = run(&["plan", "-v", "--out", saved.to_str().unwrap()]);
    assert_eq!(plan.code, 0, "{plan:?}");
    for expected in [
        "+ntsservercert /etc/chrony/nts/clockprov.crt\n",
        "+ntsserverkey /etc/chrony/nts/clockprov.key\n",
        "--- zcloud:/etc/chrony/nts/clockprov.key (absent)\n",
        &format!(
            " {} created\n",
            // As the plan describes it: size and sha256 prefix only.
            plan_secret(&key)
        ),
        &format!("+server {server} iburst nts\n"),
        "+ntstrustedcerts /etc/chrony/nts/clockprov-ca.crt\n",
        "+-----BEGIN CERTIFICATE-----\n",
    ] {
        assert!(
            plan.stdout.contains(expected),
            "{expected:?} not in {plan:?}"
        );
    }
    let file = std::fs::read_to_string(&saved).unwrap();
    assert!(
        !file.contains(&secret) && file.contains("\"secret\": true"),
        "{file}"
    );
    let json = run(&["plan", "--format", "json"]);
    assert!(json.stdout.contains("(secret, "), "{json:?}");
    let shown = Clockprov::new()
        .arg("show")
        .arg(&saved)
        .secret(&secret)
        .run();
    assert!(shown.stdout.contains(" created\n"), "{shown:?}");

    // The saved plan carries no key: apply takes it from the inventory, as reviewed.
    let applied = Clockprov::new()
        .args(["apply", "-v"])
        .arg(&saved)
        .secret(&secret)
        .run();
    assert_eq!(applied.code, 0, "{applied:?}");
    let key_file = lab.hosts.etc_file(&server, "chrony/nts/clockprov.key");
    assert_eq!(std::fs::read_to_string(&key_file).unwrap(), key);
    let meta = std::fs::metadata(&key_file).unwrap();
    assert_eq!(meta.mode() & 0o7777, 0o640);
    assert_eq!(
        (meta.uid(), meta.gid()),
        (0, gid_on(&lab, &server, "_chrony"))
    );
    let cert = lab.hosts.etc_file(&server, "chrony/nts/clockprov.crt");
    assert_eq!(std::fs::metadata(&cert).unwrap().mode() & 0o7777, 0o644);
    assert_eq!(
        lab.hosts
            .read_etc(&client, "chrony/nts/clockprov-ca.crt")
            .unwrap(),
        ca
    );
    let conf = lab.hosts.read_etc(&client, "chrony/chrony.conf").unwrap();
    assert!(
        conf.contains(&format!("\nserver {server} iburst nts\n")),
        "{conf}"
    );
    // A new CA: chrony is stopped, its saved NTS cookies dropped, started (a restart would keep
    // authenticating with the cookies of the old trust).
    let calls = lab.service_changes(&client);
    assert!(
        calls.contains(&"stop chrony.service".to_owned())
            && calls.contains(&"start chrony.service".to_owned())
            && !calls.iter().any(|c| c.starts_with("restart")),
        "{calls:?}"
    );
    let again = run(&["plan", "--detailed-exitcode"]);
    assert_eq!(again.code, 0, "{again:?}");

    let newer = a_newer_key_than_reviewed_is_refused(&lab, &secret, &key);
    nts_is_refused_where_it_cannot_work(&lab, &[secret, newer.0, newer.1]);
}

/// A new key, planned; then another one before apply: the saved plan is refused (it has no key
/// of its own to write), and nothing is written. Returns the two new keys' bodies.
fn a_newer_key_than_reviewed_is_refused(
    lab: &crate::Lab,
    secret: &str,
    key: &str,
) -> (String, String) {
    let server = lab.server.clone();
    let key_file = lab.hosts.etc_file(&server, "chrony/nts/clockprov.key");
    let pki = lab.hosts.dir().join("pki");
    make_pki(&pki, &server);
    let second = body(&pki.join("server.key"));
    let saved = lab.hosts.dir().join("nts2.plan");
    let plan = lab
        .clockprov("plan")
        .args(["--out", saved.to_str().unwrap()])
        .secret(secret)
        .secret(&second)
        .run();
    assert_eq!(plan.code, 0, "{plan:?}");
    assert!(plan.stdout.contains(" changed to (secret, "), "{plan:?}");
    make_pki(&pki, &server);
    let third = body(&pki.join("server.key"));
    let refused = Clockprov::new()
        .arg("apply")
        .arg(&saved)
        .secret(secret)
        .secret(&second)
        .secret(&third)
        .run();
    assert_eq!(refused.code, 1, "{refused:?}");
    assert!(
        refused.stdout.contains(
            "the inventory's key for /etc/chrony/nts/clockprov.key is not the one reviewed (sha256 "
        ),
        "{refused:?}"
    );
    assert_eq!(std::fs::read_to_string(&key_file).unwrap(), key);

    (second, third)
}

/// Refused at plan, nothing changed: timesyncd has no NTS, Ubuntu 20.04's chrony is 3.5.
fn nts_is_refused_where_it_cannot_work(lab: &crate::Lab, secrets: &[String]) {
    let focal = lab.clients[1].clone();
    for (daemon, message) in [
        (
            "",
            "nts is set, but this client runs systemd-timesyncd (Ubuntu 20.04",
        ),
        (
            "daemon: chrony, ",
            "nts is set, but NTS needs chrony 4.0 or later; Ubuntu 20.04",
        ),
    ] {
        let text = std::fs::read_to_string(&lab.inventory).unwrap();
        let start = text.find(&format!("{{ address: {focal}")).unwrap();
        let end = start + text[start..].find('\n').unwrap();
        let entry = format!("{{ address: {focal}, {daemon}nts: true }}");
        std::fs::write(
            &lab.inventory,
            format!("{}{entry}{}", &text[..start], &text[end..]),
        )
        .unwrap();
        let mut apply = lab.clockprov("apply").arg("--yes");
        for secret in secrets {
            apply = apply.secret(secret);
        }
        let before = (lab.service_changes(&focal), lab.hosts.apt_log(&focal));
        let plan = apply.run();
        assert_eq!(plan.code, 1, "{plan:?}");
        assert!(plan.stdout.contains(message), "{message:?} not in {plan:?}");
        assert_eq!(
            (lab.service_changes(&focal), lab.hosts.apt_log(&focal)),
            before
        );
    }
}

/// A key's base64 body (its first line of it: a line never wraps in any output): what must
/// never show anywhere.
fn body(path: &Path) -> String {
    let key = std::fs::read_to_string(path).unwrap();
    key.lines()
        .find(|l| !l.starts_with("-----"))
        .unwrap()
        .to_owned()
}

/// The plan's words for a secret: `(secret, N bytes, sha256 PREFIX…)`.
fn plan_secret(text: &str) -> String {
    let out = Command::new("sha256sum")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .and_then(|mut child| {
            use std::io::Write as _;
            child.stdin.take().unwrap().write_all(text.as_bytes())?;
            child.wait_with_output()
        })
        .unwrap();
    let sha = String::from_utf8(out.stdout).unwrap();
    format!("(secret, {} bytes, sha256 {}…)", text.len(), &sha[..12])
}
