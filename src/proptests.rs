//! Property tests of every parser of untrusted text, through the same facade as the fuzz
//! targets ([`crate::fuzzing`]): arbitrary input never panics, and an error that has a location
//! names the file and a line that exists. Inputs are both arbitrary text and text built from
//! each format's own words (so that the parsers get past their first line), and mutations of
//! real files.

use proptest::prelude::*;

use crate::fuzzing;

/// A real inventory, to mutate.
const INVENTORY: &str = include_str!("../inventories/zcloud.yaml");

/// Lines made of `words`, separators and arbitrary bits, joined by newlines.
fn lines_of(words: &'static [&'static str], max_lines: usize) -> impl Strategy<Value = String> {
    let word = prop_oneof![
        4 => proptest::sample::select(words).prop_map(str::to_owned),
        1 => "\\PC{0,12}",
        1 => "[ \t=:,\"'#|@\\[\\]{}&*!-]{1,3}",
    ];
    let line = ("[ \t]{0,6}", proptest::collection::vec(word, 0..6))
        .prop_map(|(indent, words)| format!("{indent}{}", words.join(" ")));
    proptest::collection::vec(line, 0..max_lines).prop_map(|lines| lines.join("\n"))
}

/// `text` with one range replaced by `patch` (char boundaries kept).
fn mutate(text: &str, at: usize, len: usize, patch: &str) -> String {
    let chars: Vec<char> = text.chars().collect();
    let at = at % (chars.len() + 1);
    let end = (at + len).min(chars.len());
    let mut out: String = chars[..at].iter().collect();
    out.push_str(patch);
    out.extend(&chars[end..]);
    out
}

const INVENTORY_WORDS: &[&str] = &[
    "ssh:",
    "ntp_servers:",
    "clients:",
    "images:",
    "templates:",
    "zcloud:",
    "c1:",
    "address:",
    "10.0.0.1",
    "upstream:",
    "- pool: ntp.ubuntu.com",
    "- server:",
    "allow:",
    "[10.0.0.0/8]",
    "local_stratum:",
    "10",
    "16",
    "user:",
    "root",
    "port:",
    "identity_file:",
    "known_hosts:",
    "host_key_policy:",
    "accept-new",
    "jump:",
    "become:",
    "sudo",
    "daemon:",
    "chrony",
    "timesyncd",
    "nts:",
    "certificate:",
    "key:",
    "trusted_certs:",
    "true",
    "/dev/zero",
    "{trusted_certs: /}",
    "servers:",
    "&a",
    "*a",
    "<<:",
    "---",
    "...",
    "!!str",
    "|",
    ">",
    "~",
    "null",
    "\"\\u00e9\"",
];

const SSH_CONFIG_WORDS: &[&str] = &[
    "Host",
    "Match",
    "all",
    "host",
    "originalhost",
    "user",
    "localuser",
    "exec",
    "canonical",
    "!",
    "*",
    "?",
    "HostName",
    "%h",
    "%%",
    "%r",
    "%d",
    "%u",
    "%p",
    "%n",
    "User",
    "Port",
    "22",
    "0",
    "70000",
    "IdentityFile",
    "~/.ssh/id_ed25519",
    "~root/x",
    "ProxyJump",
    "none",
    "a@b:22,c",
    "UserKnownHostsFile",
    "GlobalKnownHostsFile",
    "StrictHostKeyChecking",
    "accept-new",
    "yes",
    "no",
    "=",
    "\"quoted arg\"",
    "zcloud",
    "10.0.0.1",
];

const KNOWN_HOSTS_WORDS: &[&str] = &[
    "@revoked",
    "@cert-authority",
    "10.0.0.1",
    "[10.0.0.1]:2222",
    "zcloud,*.lab,!bad.lab",
    "|1|O33ESRMWPVkMYIwJ1Uw+n877jTo=|nuuC5vEqXlEZ/8BXQR7m619W6Ak=",
    "|1|AAAA|",
    "ssh-ed25519",
    "ecdsa-sha2-nistp256",
    "ssh-future",
    "AAAAC3NzaC1lZDI1NTE5AAAAIJdD7y3aLq454yWBdwLWbieU1ebz9/cu7/QEXn9OIeZJ",
    "AAAAC3NzaC1lZDI1NTE5AAAAILIG2T/B0l0gaqj3puu510tu9N1OkQ4znY3LYuEm5zCF",
    "AAAACnNzaC1mdXR1cmUAAAADYWJj",
    "AAAA",
    "AAAA/////w==",
    "#",
];

const FACTS_WORDS: &[&str] = &[
    "@@osl",
    "ID=debian",
    "VERSION_ID=\"12\"",
    "PRETTY_NAME='x'",
    "@@pkg",
    "chrony",
    "systemd-timesyncd",
    "ii",
    "rc",
    "\u{e9}i",
    "i\u{e9}",
    "4.3-2",
    "@@units",
    "ActiveState=active",
    "UnitFileState=enabled",
    "@@pending",
    "chrony.service",
    "@@absent",
    "@@stat",
    "81a4",
    "a1ff",
    "14",
    "99999999999999999999",
    "644",
    "root",
    "/etc/chrony/chrony.conf",
    "/etc/systemd/timesyncd.conf",
    "/etc/systemd/timesyncd.conf.d/cloud-init.conf",
    "/etc/chrony/sources.d/x.sources",
    "/etc/chrony/conf.d/.hidden.conf",
    "@@files",
    "server x iburs",
    "[Time]",
    "NTP=",
    "sourcedir /etc/chrony/sources.d",
    "@@read",
    "0",
    "@@end",
];

const DAEMON_WORDS: &[&str] = &[
    "@@unit",
    "active",
    "@@show-timesync",
    "@@show",
    "@@timesync-status",
    "@@tracking",
    "@@authdata",
    "192.168.6.200,NTS,1,15,256,16,0,0,8,100",
    "192.168.6.200,NTS,0,0,0,4294967295,1,0,0,0",
    "4294967296,",
    "NTS,",
    "SK,",
    "-,",
    "ServerName=zcloud",
    "ServerAddress=10.0.0.1",
    "NTPMessage={",
    "Leap=0,",
    "Stratum=3,",
    "Stratum=99999999999,",
    "}",
    "NTPSynchronized=yes",
    "Offset:",
    "+12.949ms",
    "-1.987251s",
    "850us",
    "1e308s",
    "NaNs",
    "inf",
    "\u{b5}s",
    "Reference ID    : 7F000101 (127.0.0.1)",
    "Stratum         : 4",
    "System time     : 0.000001 seconds fast of NTP time",
    "Last offset     : -nan seconds",
    "Leap status     : Normal",
    "@@end",
];

/// A floating point value as a controller's clock or a host's reading may be.
fn float() -> impl Strategy<Value = f64> {
    prop_oneof![
        3 => 1.7e9f64..1.8e9,
        1 => any::<f64>(),
        1 => Just(f64::NAN),
        1 => Just(f64::INFINITY),
        1 => Just(f64::NEG_INFINITY),
        1 => Just(-0.0),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 128, ..ProptestConfig::default() })]

    #[test]
    fn yaml_and_inventory_from_their_words(text in lines_of(INVENTORY_WORDS, 24)) {
        fuzzing::yaml(&text);
        fuzzing::inventory(&text);
    }

    #[test]
    fn inventory_mutations(at in 0usize..4000, len in 0usize..40, patch in "\\PC{0,16}|[\t\n :-]{1,4}") {
        let text = mutate(INVENTORY, at, len, &patch);
        fuzzing::yaml(&text);
        fuzzing::inventory(&text);
    }

    #[test]
    fn arbitrary_text(text in "\\PC{0,200}", bytes in proptest::collection::vec(any::<u8>(), 0..200)) {
        fuzzing::yaml(&text);
        fuzzing::inventory(&text);
        fuzzing::ssh_config(&text);
        fuzzing::known_hosts(&bytes);
        fuzzing::known_hosts(text.as_bytes());
        fuzzing::facts(text.as_bytes());
        fuzzing::daemon_views(text.as_bytes());
        fuzzing::guestfish(&bytes);
        fuzzing::guestfish(text.as_bytes());
    }

    #[test]
    fn ssh_config_from_its_words(text in lines_of(SSH_CONFIG_WORDS, 16)) {
        fuzzing::ssh_config(&text);
    }

    #[test]
    fn known_hosts_from_its_words(text in lines_of(KNOWN_HOSTS_WORDS, 12)) {
        fuzzing::known_hosts(text.as_bytes());
    }

    #[test]
    fn facts_from_their_words(text in lines_of(FACTS_WORDS, 16)) {
        fuzzing::facts(text.as_bytes());
        // The records as the script prints them: one space between fields.
        fuzzing::facts(text.split_whitespace().collect::<Vec<_>>().join(" ").replace(" @@", "\n@@").as_bytes());
    }

    #[test]
    fn daemon_views_from_their_words(text in lines_of(DAEMON_WORDS, 16)) {
        fuzzing::daemon_views(text.as_bytes());
        fuzzing::daemon_views(text.replace(" : ", ": ").replace("= ", "=").as_bytes());
    }

    #[test]
    fn authdata_csv_never_panics(lines in proptest::collection::vec(proptest::collection::vec("\\PC{0,6}|NTS|SK|-|[0-9]{1,11}", 0..12), 0..6)) {
        let text: Vec<String> = lines.iter().map(|fields| fields.join(",")).collect();
        fuzzing::daemon_views(format!("@@unit active\n@@authdata\n{}\n@@end\n", text.join("\n")).as_bytes());
    }

    #[test]
    fn clock_readings(
        remote in proptest::collection::vec(prop_oneof![float().prop_map(|f| f.to_string()), "\\PC{0,12}"], 0..8),
        controller in proptest::collection::vec(float(), 0..16),
    ) {
        fuzzing::clock_readings(&remote.join("\n"), &controller);
    }

    #[test]
    fn guestfish_replies(lines in proptest::collection::vec("\\PC{0,40}|st_(mode|uid|gid): -?[0-9]{1,12}|/[a-z/.]{0,10}: /dev/[a-z0-9]{1,5}|\\[Install\\]|WantedBy=[a-z./]{0,12}|Package: chrony|Status: install ok installed|Version: 4.3|<domain>|<disk type='file'>", 0..10)) {
        fuzzing::guestfish(lines.join("\n").as_bytes());
    }
}

/// Inputs that broke a parser once (found by the fuzz targets or the properties above).
#[test]
fn regressions() {
    // A dpkg status that is not ASCII (byte slicing in the middle of a character).
    fuzzing::facts("@@pkg chrony \u{e9}i 4.3\n@@end\n".as_bytes());
    // Lone carriage returns: line breaks to YAML, not to `str::lines` (an error named a line
    // past the end of the text).
    fuzzing::inventory("a: 1\r\r\r\r\r\rb: { c: d: e }\n");
    fuzzing::yaml("a: 1\r\r\r\r\r\rb: { c: d: e }\n");
    // The harness's own fixed marker inside guestfish's input (the real one is random).
    fuzzing::guestfish(b"true\n@@clockprov-0123456789abcdef-1\nfalse\n");
}

/// "Billion laughs": each alias copies the one before ten times (10^9 values from 300 bytes);
/// refused at the line where the copies pass the bound, in no time and little memory.
#[test]
fn aliases_cannot_blow_up() {
    let mut text = String::from("a0: &a0 [x, x, x, x, x, x, x, x, x, x]\n");
    for level in 1..9 {
        let prev = format!("*a{}", level - 1);
        let _ = std::fmt::Write::write_fmt(
            &mut text,
            format_args!("a{level}: &a{level} [{}]\n", [prev.as_str(); 10].join(", ")),
        );
    }
    let start = std::time::Instant::now();
    let problems = crate::yaml::parse(&text).unwrap_err();
    assert!(start.elapsed() < std::time::Duration::from_secs(5));
    assert_eq!(problems.len(), 1, "{problems:?}");
    assert_eq!(problems[0].at.line, 5, "{problems:?}");
    assert!(
        problems[0].message.contains("copy more than 100000 values"),
        "{problems:?}"
    );
    fuzzing::inventory(&text);
}

/// Deep nesting is an error or a value, never a stack overflow.
#[test]
fn deep_nesting() {
    for depth in [100, 10_000] {
        fuzzing::inventory(&format!("{}{}", "[".repeat(depth), "]".repeat(depth)));
        fuzzing::inventory(&"- ".repeat(depth));
        fuzzing::inventory(&"{a: ".repeat(depth));
    }
}
