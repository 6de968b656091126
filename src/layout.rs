//! The files clockprov writes beside the vendor's (issue 12 item 3): its own drop-in where the
//! daemon reads drop-ins, else only the managed lines of the host's own main file.
//!
//! NOT WIRED IN YET (branch h-dropins-layout): these are the pure pieces; render, the
//! migration step and the VM tests are what is left (see the branch's last commit message).
//!
//! Where the drop-in sorts: timesyncd reads its drop-ins sorted by file name across
//! `/etc`, `/run`, `/usr/local/lib` and `/usr/lib`, and `NTP=` lists add up. Digits sort before
//! letters, so a `99-` name is read *before* `cloud-init.conf` (whose servers would be added
//! after ours) or any letter name. clockprov's drop-in is `zz-clockprov.conf`, read after every
//! usual name, and it starts the list again (`NTP=` empty, then the inventory's): the servers
//! timesyncd uses are the inventory's whatever was read before. A name sorting after it is
//! possible (`zzz.conf`): the effective settings (src/effective.rs) show it, as a warning.

use std::fmt::Write as _;

/// clockprov's timesyncd drop-in (read last; see the module's doc).
pub const TIMESYNCD_DROPIN: &str = "/etc/systemd/timesyncd.conf.d/zz-clockprov.conf";

/// The marker of a main file clockprov wrote whole (before drop-ins): such a file is given back
/// to the vendor's text by the migration.
pub const MANAGED_HEADER: &str = "# Managed by clockprov";

/// Did clockprov write this main file whole (the layout before drop-ins)?
#[must_use]
pub fn is_written_whole(text: &[u8]) -> bool {
    text.split(|&b| b == b'\n')
        .any(|line| line.starts_with(MANAGED_HEADER.as_bytes()))
}

/// clockprov's timesyncd drop-in: the list started again, then the inventory's servers (and its
/// fallback, when it names one; else the vendor's stays).
#[must_use]
pub fn timesyncd_dropin(
    inventory: &str,
    servers: &[String],
    fallback: Option<&[String]>,
) -> String {
    let mut text = format!(
        "# Managed by clockprov ({inventory}): the inventory's time servers. Read after the\n\
         # vendor's timesyncd.conf and the other drop-ins (its name sorts last); the empty NTP=\n\
         # drops the servers they named.\n[Time]\nNTP=\nNTP={}\n",
        servers.join(" ")
    );
    if let Some(fallback) = fallback {
        let _ = writeln!(text, "FallbackNTP=\nFallbackNTP={}", fallback.join(" "));
    }
    text
}

/// The `/etc/systemd/timesyncd.conf` each supported system's package ships, by the md5 dpkg
/// keeps for that conffile (`dpkg-query -W -f='${Conffiles}' systemd-timesyncd`; status
/// file). Taken from the lab's roots (bootstrapped from each archive, 2026-12-06) and
/// Debian 12's package: the migration gives a host back its vendor's file only when dpkg's md5
/// names one of these, so the file restored is byte for byte the one the package shipped.
/// (Ubuntu 26.04's is 24.04's; Ubuntu 25.10's was not looked at.)
pub const VENDOR_TIMESYNCD: [(&str, &str, &str); 5] = [
    (
        "dff71825daf78f541a22ea98d46df80e",
        "ubuntu 20.04, systemd-timesyncd 245.4-4ubuntu3.24",
        include_str!("vendor/timesyncd/ubuntu-20.04.conf"),
    ),
    (
        "01ca3edea53f3dcc591db0c2f330b538",
        "ubuntu 22.04, systemd-timesyncd 249.11-0ubuntu3.23",
        include_str!("vendor/timesyncd/ubuntu-22.04.conf"),
    ),
    (
        "e0877ff040d9c2541955eb1c1e856031",
        "ubuntu 24.04 and 26.04, systemd-timesyncd 255.4-1ubuntu8.19 and 259.9-0ubuntu0.1",
        include_str!("vendor/timesyncd/ubuntu-24.04.conf"),
    ),
    (
        "9bca5bc8be90d2921301a24084ffcd55",
        "debian 12, systemd-timesyncd 252.39-1~deb12u2",
        include_str!("vendor/timesyncd/debian-12.conf"),
    ),
    (
        "bd00db81a9f876df90e9d5c94b9ca2e7",
        "debian 13, systemd-timesyncd 257.13-1~deb13u1",
        include_str!("vendor/timesyncd/debian-13.conf"),
    ),
];

/// The vendor's timesyncd.conf whose md5 dpkg records as `md5`, if clockprov carries it.
#[must_use]
pub fn vendor_timesyncd(md5: &str) -> Option<&'static str> {
    VENDOR_TIMESYNCD
        .iter()
        .find(|(sum, _, _)| *sum == md5)
        .map(|(_, _, text)| *text)
}

/// chrony directives whose lines clockprov manages in a main file it must edit: the time
/// sources and whom it serves.
const CHRONY_MANAGED: [&str; 5] = ["server", "pool", "peer", "allow", "local"];

/// The comment lines clockprov puts in a block it writes into a host's file: managed too, so a
/// second run finds the same lines and writes the same file.
const OWN_COMMENT: &[u8] = b"# clockprov:";

/// Is `line` one clockprov manages in a chrony main file?
fn is_managed_chrony_line(line: &[u8]) -> bool {
    if line.starts_with(OWN_COMMENT) {
        return true;
    }
    let word: Vec<u8> = line
        .iter()
        .skip_while(|b| b.is_ascii_whitespace())
        .take_while(|b| !b.is_ascii_whitespace())
        .map(u8::to_ascii_lowercase)
        .collect();
    CHRONY_MANAGED
        .iter()
        .any(|d| d.as_bytes() == word.as_slice())
}

/// The host's own chrony main file with only the managed lines changed: every managed line is
/// taken out and `block` (lines of managed directives, or `# clockprov:` comments) goes where the
/// first one was (at the end if there was none). Every other byte stays as the host has it (the
/// vendor's comments, typos and typographic apostrophes included). Running it again on its own
/// output gives the same file.
#[must_use]
pub fn chrony_managed_lines(host: &[u8], block: &[String]) -> Vec<u8> {
    let mut out = Vec::with_capacity(host.len());
    let mut placed = false;
    let mut block_bytes = Vec::new();
    for line in block {
        debug_assert!(is_managed_chrony_line(line.as_bytes()), "{line}");
        block_bytes.extend_from_slice(line.as_bytes());
        block_bytes.push(b'\n');
    }
    let mut rest = host;
    while !rest.is_empty() {
        let end = rest
            .iter()
            .position(|&b| b == b'\n')
            .map_or(rest.len(), |n| n + 1);
        let (line, after) = rest.split_at(end);
        rest = after;
        let text = line.strip_suffix(b"\n").unwrap_or(line);
        if is_managed_chrony_line(text) {
            if !placed {
                out.extend_from_slice(&block_bytes);
                placed = true;
            }
        } else {
            out.extend_from_slice(line);
            if !line.ends_with(b"\n") {
                // A last line without its newline: the block may follow it.
                out.push(b'\n');
            }
        }
    }
    if !placed {
        out.extend_from_slice(&block_bytes);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// Ubuntu 20.04's chrony.conf as the test hosts' seed has it (with the vendor's "usuable"
    /// and its typographic apostrophe).
    const FOCAL: &str = include_str!("../tests/hosts/seed/ubuntu-20.04/chrony.conf");

    fn block() -> Vec<String> {
        vec![
            "# clockprov: the inventory's sources (ntp_servers.zcloud)".to_owned(),
            "pool ntp.ubuntu.com iburst".to_owned(),
            "allow 192.168.6.0/24".to_owned(),
            "local stratum 10".to_owned(),
        ]
    }

    #[test]
    fn only_the_managed_lines_of_the_hosts_file_change() {
        let host = FOCAL;
        assert!(host.contains("can\u{2019}t be used"));
        let edited = String::from_utf8(chrony_managed_lines(host.as_bytes(), &block())).unwrap();
        assert!(
            edited.contains("usuable directives"),
            "the vendor's typo stays"
        );
        assert!(
            edited.contains("can\u{2019}t be used"),
            "and its apostrophe"
        );
        let before: Vec<&str> = host.lines().filter(|l| !l.starts_with("pool ")).collect();
        let after: Vec<&str> = edited
            .lines()
            .filter(|l| !block().iter().any(|b| b == l))
            .collect();
        assert_eq!(before, after);
        // The block is where the vendor's pools were.
        assert!(edited.contains(
            "more information.\n# clockprov: the inventory's sources (ntp_servers.zcloud)\npool ntp.ubuntu.com iburst\nallow 192.168.6.0/24\nlocal stratum 10\n\n# This directive"
        ), "{edited}");
        assert_eq!(
            chrony_managed_lines(edited.as_bytes(), &block()),
            edited.as_bytes()
        );
    }

    #[test]
    fn a_file_without_sources_gets_the_block_at_its_end() {
        assert_eq!(
            chrony_managed_lines(b"keyfile /k", &block()[1..2]),
            b"keyfile /k\npool ntp.ubuntu.com iburst\n"
        );
    }

    #[test]
    fn the_drop_in_starts_the_list_again_and_the_old_layout_is_recognised() {
        let text = timesyncd_dropin("clients.data-1", &["10.0.0.1".to_owned()], None);
        assert!(text.ends_with("[Time]\nNTP=\nNTP=10.0.0.1\n"), "{text}");
        assert!(is_written_whole(
            b"#\n# Managed by clockprov (inventory: clients.x). Local edits\n"
        ));
        assert!(!is_written_whole(FOCAL.as_bytes()));
    }

    #[test]
    fn the_vendor_files_are_those_dpkg_names() {
        use std::io::Write as _;
        for (md5, system, text) in VENDOR_TIMESYNCD {
            let mut child = std::process::Command::new("md5sum")
                .stdin(std::process::Stdio::piped())
                .stdout(std::process::Stdio::piped())
                .spawn()
                .unwrap();
            child
                .stdin
                .take()
                .unwrap()
                .write_all(text.as_bytes())
                .unwrap();
            let out = child.wait_with_output().unwrap();
            let sum = String::from_utf8(out.stdout).unwrap();
            assert_eq!(sum.split_whitespace().next(), Some(md5), "{system}");
            assert!(!is_written_whole(text.as_bytes()), "{system}");
            assert_eq!(vendor_timesyncd(md5), Some(text));
        }
        // The test hosts' seeds are the vendor's files.
        assert_eq!(
            vendor_timesyncd("dff71825daf78f541a22ea98d46df80e"),
            Some(include_str!(
                "../tests/hosts/seed/ubuntu-20.04/timesyncd.conf"
            ))
        );
        assert_eq!(
            vendor_timesyncd("9bca5bc8be90d2921301a24084ffcd55"),
            Some(include_str!("../tests/hosts/seed/debian-12/timesyncd.conf"))
        );
    }

    proptest! {
        /// Any host file: nothing but managed lines changes, and a second run changes nothing.
        #[test]
        fn edits_are_exact_and_idempotent(host in proptest::collection::vec(any::<u8>(), 0..400)) {
            let once = chrony_managed_lines(&host, &block());
            prop_assert_eq!(chrony_managed_lines(&once, &block()), once.clone());
            let unmanaged = |text: &[u8]| -> Vec<Vec<u8>> {
                text.split(|&b| b == b'\n')
                    .filter(|l| !l.is_empty() && !is_managed_chrony_line(l))
                    .map(<[u8]>::to_vec)
                    .collect()
            };
            prop_assert_eq!(unmanaged(&host), unmanaged(&once));
        }
    }
}
