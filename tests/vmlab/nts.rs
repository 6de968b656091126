//! NTS on real VMs (issue 12): a CA this test makes (tests/vmlab/nts-pki.sh, the openssl CLI), a
//! certificate for zcloud's address, and Ubuntu 26.04's chrony client trusting that CA: `apply
//! --wait-sync` makes zcloud an NTS-KE server and the client authenticate it and synchronize,
//! which `check` reports and chrony itself confirms (`chronyc -N authdata`). Then the client is
//! given a CA that did not sign zcloud's certificate: check reports a clear NTS finding for it
//! alone, zcloud unaffected; the right CA restores it. Run on the mixed fleet (mixed.rs), once
//! it has converged; the measured facts behind it are in tests/vmlab/nts-facts.md.

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use crate::support::clockprov::{Clockprov, Run};
use crate::support::lab::{Lab, assert_synchronized_to_zcloud, host, wait_for};

const SERVER: &str = "zcloud";
const CLIENT: &str = "ubuntu26";
const SERVER_ADDRESS: &str = "192.168.6.200";

/// A CA and a server certificate for [`SERVER_ADDRESS`] in the lab's directory `DIR/name`:
/// `ca.crt`, `ca.key`, `server.crt`, `server.key`.
fn make_pki(lab: &Lab, name: &str) {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/vmlab/nts-pki.sh");
    let dir = lab.file(name);
    let out = Command::new("bash")
        .arg(script)
        .arg(&dir)
        .arg(SERVER_ADDRESS)
        .output()
        .expect("run nts-pki.sh");
    assert!(out.status.success(), "nts-pki.sh: {out:?}");
}

/// The base64 body of `name`'s server key: what no output may ever show.
fn server_key_body(lab: &Lab, name: &str) -> String {
    let key = std::fs::read_to_string(Path::new(&lab.file(name)).join("server.key")).unwrap();
    key.lines()
        .filter(|l| !l.starts_with("-----"))
        .collect::<String>()
}

/// The lab's inventory with zcloud serving NTS with `server`'s certificate and key, and the
/// client trusting `ca`'s CA; written next to it (its paths are relative to its directory).
fn nts_inventory(lab: &Lab, server: &str, ca: &str) -> String {
    let base = std::fs::read_to_string(lab.inventory()).unwrap();
    let client_line = format!("  {CLIENT}: {{ address: 192.168.6.226 }}");
    assert!(
        base.lines().any(|l| l == client_line) && base.contains("    local_stratum: 10\n"),
        "the lab's inventory changed shape: {base}"
    );
    let text = base
        .replace(
            "    local_stratum: 10\n",
            &format!(
                "    local_stratum: 10\n    nts: {{certificate: {server}/server.crt, key: {server}/server.key}}\n"
            ),
        )
        .replace(
            &client_line,
            &format!("  {CLIENT}: {{ address: 192.168.6.226, nts: {{trusted_certs: {ca}/ca.crt}} }}"),
        );
    let path = lab.file(&format!("inventory-nts-{ca}.yaml"));
    std::fs::write(&path, text).unwrap();
    path
}

/// clockprov in the lab, `key` a secret no output may show.
fn clockprov(lab: &Lab, key: &str, args: &[&str]) -> Run {
    Clockprov::new()
        .netns(lab.file("."))
        .args(args)
        .secret(key)
        .run()
}

/// `check --format json`: exit code and document.
fn check(lab: &Lab, key: &str, inventory: &str) -> (i32, serde_json::Value) {
    let run = clockprov(lab, key, &["check", "-i", inventory, "--format", "json"]);
    (run.code, run.json())
}

/// chrony's own view on the client: its line for the server in `chronyc -N authdata`, as
/// fields (`Name Mode KeyID Type KLen Last Atmp NAK Cook CLen`).
fn authdata(lab: &Lab) -> Vec<String> {
    let out = lab.ssh(CLIENT, "chronyc -N authdata");
    out.lines()
        .find(|l| l.starts_with(SERVER_ADDRESS))
        .unwrap_or_else(|| panic!("no {SERVER_ADDRESS} in authdata: {out}"))
        .split_whitespace()
        .map(str::to_owned)
        .collect()
}

/// Authenticated by NTS, as chrony says: mode NTS with a key (`KeyID`, `KLen`) and cookies.
fn chrony_authenticated(fields: &[String]) -> bool {
    fields[1] == "NTS" && fields[2] != "0" && fields[4] != "0" && fields[8] != "0"
}

/// What check says of the client's one source's authentication: mode (`NTS`) and whether it
/// authenticates.
fn nts_of(h: &serde_json::Value) -> (String, bool) {
    let sources = h["daemon"]["authentication"].as_array();
    let Some([source]) = sources.map(Vec::as_slice) else {
        return (format!("not one source: {sources:?}"), false);
    };
    assert_eq!(source["source"], SERVER_ADDRESS, "{h:#}");
    (
        source["mode"].as_str().unwrap_or_default().to_owned(),
        source["authenticated"] == true,
    )
}

/// check's NTS finding on a host, if any.
fn nts_finding(h: &serde_json::Value) -> Option<&serde_json::Value> {
    h["findings"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["kind"] == "nts-not-authenticated")
}

pub(crate) fn nts_authenticates_and_a_wrong_ca_is_found(lab: &Lab) {
    make_pki(lab, "nts-a");
    make_pki(lab, "nts-b");
    let key_a = server_key_body(lab, "nts-a");
    let good = nts_inventory(lab, "nts-a", "nts-a");
    // The same server, its client trusting another CA.
    let wrong = nts_inventory(lab, "nts-a", "nts-b");

    // 1. NTS on: zcloud serves NTS-KE, the client authenticates it and synchronizes.
    let apply = clockprov(
        lab,
        &key_a,
        &["apply", "-i", &good, "--yes", "--wait-sync", "300s"],
    );
    assert_eq!(apply.code, 0, "{apply:?}{}", lab.time_daemon_diagnostics());
    let ((), took) = wait_for(
        "the client authenticated by NTS and synchronized, as check reports it",
        Duration::from_secs(120),
        Duration::from_secs(5),
        || {
            let (code, doc) = check(lab, &key_a, &good);
            let h = host(&doc, CLIENT);
            if code == 0 && h["status"] == "ok" && nts_of(h) == ("NTS".to_owned(), true) {
                Ok(())
            } else {
                Err(format!("{code}: {h:#}"))
            }
        },
    );
    eprintln!("NTS settled {took:?} after apply");
    let (_, doc) = check(lab, &key_a, &good);
    assert_synchronized_to_zcloud(&doc, CLIENT);
    let fields = authdata(lab);
    assert!(chrony_authenticated(&fields), "{fields:?}");
    assert_eq!(
        lab.ssh(SERVER, "ss -Hltn 'sport = :4460' | wc -l").trim(),
        "2",
        "NTS-KE on IPv4 and IPv6"
    );

    // 2. A CA that did not sign zcloud's certificate: the client cannot authenticate it, and
    //    check says so for that client alone.
    let apply = clockprov(lab, &key_a, &["apply", "-i", &wrong, "--yes"]);
    assert_eq!(apply.code, 0, "{apply:?}{}", lab.time_daemon_diagnostics());
    let (doc, took) = wait_for(
        "an NTS finding for the client with the wrong CA",
        Duration::from_secs(120),
        Duration::from_secs(5),
        || {
            let (code, doc) = check(lab, &key_a, &wrong);
            if code != 0 && nts_finding(host(&doc, CLIENT)).is_some() {
                Ok(doc)
            } else {
                Err(format!("{code}: {:#}", host(&doc, CLIENT)))
            }
        },
    );
    eprintln!("wrong CA found {took:?} after apply");
    let h = host(&doc, CLIENT);
    assert_ne!(h["status"], "ok", "{h:#}");
    assert_eq!(nts_of(h), ("NTS".to_owned(), false), "{h:#}");
    let finding = nts_finding(h).unwrap();
    // NTS-KE is retried with a back-off: the number of attempts depends on when check ran.
    let said = finding["sources"][0].as_str().unwrap();
    assert!(
        said.starts_with(&format!(
            "{SERVER_ADDRESS} not authenticated by NTS (no key: NTS-KE failed, "
        )) && said.ends_with(", 0 cookies)"),
        "{finding:#}"
    );
    let server = host(&doc, SERVER);
    assert!(
        server["status"] == "ok" || server["status"] == "warning",
        "{server:#}"
    );
    let fields = authdata(lab);
    assert!(!chrony_authenticated(&fields), "{fields:?}");

    // 3. The right CA again: authenticated and synchronized.
    let apply = clockprov(
        lab,
        &key_a,
        &["apply", "-i", &good, "--yes", "--wait-sync", "300s"],
    );
    assert_eq!(apply.code, 0, "{apply:?}{}", lab.time_daemon_diagnostics());
    let fields = authdata(lab);
    assert!(chrony_authenticated(&fields), "{fields:?}");
}
