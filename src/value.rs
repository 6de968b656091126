//! Validated value types for everything that can reach a config file or a remote command.
//!
//! Each type checks its input when it is deserialized, so a bad value is reported by the YAML
//! parser with the file's line and column, before anything talks to a host.

use std::fmt;
use std::net::IpAddr;
use std::path::PathBuf;
use std::str::FromStr;
use std::time::Duration;

use serde::{Deserialize, Deserializer, Serialize, Serializer, de};

/// Why a value was refused, worded to follow the value in an error message.
fn describe_bad_char(c: char) -> String {
    match c {
        '\n' => "contains a newline".to_owned(),
        '\r' => "contains a carriage return".to_owned(),
        '\t' => "contains a tab".to_owned(),
        ' ' => "contains a space".to_owned(),
        c if c.is_control() => format!("contains the control character U+{:04X}", u32::from(c)),
        c => format!("contains {c:?}, which is not allowed here"),
    }
}

/// Reads a value from text through its `FromStr`; `expecting` says what the text should be, in
/// the inventory's words, when something else (a list, a mapping) is found instead.
struct FromText<T> {
    expecting: &'static str,
    marker: std::marker::PhantomData<T>,
}

impl<T: FromStr<Err = String>> de::Visitor<'_> for FromText<T> {
    type Value = T;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.expecting)
    }

    fn visit_str<E: de::Error>(self, text: &str) -> Result<T, E> {
        text.parse().map_err(E::custom)
    }
}

macro_rules! deserialize_from_str {
    ($ty:ty, $expecting:expr) => {
        impl<'de> Deserialize<'de> for $ty {
            fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
                deserializer.deserialize_str(FromText {
                    expecting: $expecting,
                    marker: std::marker::PhantomData,
                })
            }
        }
        impl Serialize for $ty {
            fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
                serializer.collect_str(self)
            }
        }
    };
}

/// An IP address or a DNS host name: what may follow `NTP=`, `server`, `pool` or `ssh -p`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum NetAddress {
    Ip(IpAddr),
    Name(String),
}

impl NetAddress {
    #[must_use]
    pub fn ip(&self) -> Option<IpAddr> {
        match self {
            NetAddress::Ip(ip) => Some(*ip),
            NetAddress::Name(_) => None,
        }
    }
}

impl FromStr for NetAddress {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        if let Ok(ip) = text.parse::<IpAddr>() {
            return Ok(NetAddress::Ip(ip));
        }
        let refuse = |why: String| Err(format!("invalid address {text:?}: {why}"));
        if text.is_empty() {
            return refuse("it is empty".to_owned());
        }
        if let Some(c) = text
            .chars()
            .find(|c| !(c.is_ascii_alphanumeric() || *c == '-' || *c == '.'))
        {
            return refuse(format!(
                "{}; expected an IP address or a DNS name",
                describe_bad_char(c)
            ));
        }
        if text.len() > 253 {
            return refuse("a DNS name has at most 253 characters".to_owned());
        }
        let name = text.strip_suffix('.').unwrap_or(text);
        for label in name.split('.') {
            if label.is_empty() {
                return refuse("a DNS name has no empty labels".to_owned());
            }
            if label.len() > 63 {
                return refuse(format!("the label {label:?} is longer than 63 characters"));
            }
            if label.starts_with('-') || label.ends_with('-') {
                return refuse(format!("the label {label:?} starts or ends with '-'"));
            }
        }
        if name
            .split('.')
            .all(|label| label.chars().all(|c| c.is_ascii_digit()))
        {
            return refuse("it looks like an IPv4 address but is not a valid one".to_owned());
        }
        Ok(NetAddress::Name(text.to_owned()))
    }
}

impl fmt::Display for NetAddress {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            NetAddress::Ip(ip) => write!(f, "{ip}"),
            NetAddress::Name(name) => f.write_str(name),
        }
    }
}

deserialize_from_str!(NetAddress, "an IP address or a DNS name");

/// A network in CIDR notation (or a single address), as chrony's `allow` takes it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Cidr {
    pub network: IpAddr,
    pub prefix: u8,
}

impl Cidr {
    #[must_use]
    pub fn contains(&self, ip: IpAddr) -> bool {
        match (self.network, ip) {
            (IpAddr::V4(net), IpAddr::V4(ip)) => {
                let mask = u32::MAX
                    .checked_shl(32 - u32::from(self.prefix))
                    .unwrap_or(0);
                u32::from(net) & mask == u32::from(ip) & mask
            }
            (IpAddr::V6(net), IpAddr::V6(ip)) => {
                let mask = u128::MAX
                    .checked_shl(128 - u32::from(self.prefix))
                    .unwrap_or(0);
                u128::from(net) & mask == u128::from(ip) & mask
            }
            _ => false,
        }
    }
}

impl FromStr for Cidr {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let refuse = |why: &str| Err(format!("invalid CIDR {text:?}: {why}"));
        let (addr, prefix) = match text.split_once('/') {
            Some((addr, prefix)) => (addr, Some(prefix)),
            None => (text, None),
        };
        let Ok(network) = addr.parse::<IpAddr>() else {
            return refuse("expected an IP network such as 192.168.6.0/24");
        };
        let max = if network.is_ipv4() { 32 } else { 128 };
        let prefix = match prefix {
            None => max,
            Some(p) if !p.is_empty() && p.chars().all(|c| c.is_ascii_digit()) => {
                match p.parse::<u8>() {
                    Ok(p) if p <= max => p,
                    _ => return refuse(&format!("the prefix length must be 0 to {max}")),
                }
            }
            Some(_) => return refuse("the prefix length must be a number"),
        };
        Ok(Cidr { network, prefix })
    }
}

impl fmt::Display for Cidr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.network, self.prefix)
    }
}

deserialize_from_str!(Cidr, "a network such as 192.168.6.0/24");

/// The name of an inventory host or image: used in output, `--limit` and `jump:` references.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Name(String);

impl Name {
    #[must_use]
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl FromStr for Name {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let ok_char = |c: char| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.');
        if text.is_empty() || text.len() > 253 {
            return Err(format!(
                "invalid name {text:?}: names have 1 to 253 characters"
            ));
        }
        if let Some(c) = text.chars().find(|c| !ok_char(*c)) {
            return Err(format!(
                "invalid name {text:?}: {}; names use letters, digits, '-', '_' and '.'",
                describe_bad_char(c)
            ));
        }
        if !text.starts_with(|c: char| c.is_ascii_alphanumeric()) {
            return Err(format!(
                "invalid name {text:?}: names start with a letter or a digit"
            ));
        }
        Ok(Name(text.to_owned()))
    }
}

impl fmt::Display for Name {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

deserialize_from_str!(Name, "a name (letters, digits, '-', '_' and '.')");

/// A login name for SSH: POSIX portable user names.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct UserName(String);

impl UserName {
    #[must_use]
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl FromStr for UserName {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let ok_char = |c: char| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.');
        if text.is_empty() || text.len() > 32 || text.starts_with('-') {
            return Err(format!("invalid user name {text:?}"));
        }
        if let Some(c) = text.chars().find(|c| !ok_char(*c)) {
            return Err(format!(
                "invalid user name {text:?}: {}",
                describe_bad_char(c)
            ));
        }
        Ok(UserName(text.to_owned()))
    }
}

impl fmt::Display for UserName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

deserialize_from_str!(UserName, "a user name");

/// One hop of a jump chain outside the inventory: `[user@]host[:port]` (an IPv6 address is written
/// `[addr]` or `[addr]:port`), as OpenSSH's `ProxyJump` and `-J` take it; `ssh://` is allowed in
/// front, as OpenSSH allows it.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct JumpHop {
    pub user: Option<UserName>,
    pub host: NetAddress,
    pub port: Option<u16>,
}

impl FromStr for JumpHop {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        JumpHop::parse(text, "jump host")
    }
}

impl JumpHop {
    /// Parse `[user@]host[:port]`; an error starts `invalid WHAT "TEXT": `.
    fn parse(text: &str, what: &str) -> Result<JumpHop, String> {
        let refuse = |why: String| format!("invalid {what} {text:?}: {why}");
        let rest = text.strip_prefix("ssh://").unwrap_or(text);
        let (user, rest) = match rest.rsplit_once('@') {
            Some((user, rest)) => (Some(user.parse::<UserName>().map_err(refuse)?), rest),
            None => (None, rest),
        };
        let (host, port) = if let Some(bracketed) = rest.strip_prefix('[') {
            let Some((host, after)) = bracketed.split_once(']') else {
                return Err(refuse("a '[' without its ']'".to_owned()));
            };
            match after {
                "" => (host, None),
                _ => match after.strip_prefix(':') {
                    Some(port) => (host, Some(port)),
                    None => return Err(refuse(format!("unexpected {after:?} after ']'"))),
                },
            }
        } else {
            match rest.split_once(':') {
                Some((host, port)) => (host, Some(port)),
                None => (rest, None),
            }
        };
        let host = host.parse::<NetAddress>().map_err(refuse)?;
        let port = match port {
            None => None,
            Some(port) => match port.parse::<u16>() {
                Ok(p) if p > 0 && port.chars().all(|c| c.is_ascii_digit()) => Some(p),
                _ => {
                    return Err(refuse(format!(
                        "the port {port:?} is not a port number (1 to 65535)"
                    )));
                }
            },
        };
        Ok(JumpHop { user, host, port })
    }
}

impl fmt::Display for JumpHop {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(user) = &self.user {
            write!(f, "{user}@")?;
        }
        match (&self.host, self.port) {
            (NetAddress::Ip(IpAddr::V6(ip)), Some(port)) => write!(f, "[{ip}]:{port}"),
            (host, Some(port)) => write!(f, "{host}:{port}"),
            (host, None) => write!(f, "{host}"),
        }
    }
}

/// A host to reach that may be outside the inventory (`check --ceph HOST`): a bare word (an
/// inventory host's name, else an address), or `[user@]address[:port]` (an IPv6 address in
/// brackets when a port follows), which is always a host outside the inventory.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum HostRef {
    /// No user, no port: an inventory host's name when one has it, else an address.
    Bare(String),
    Outside(JumpHop),
}

impl FromStr for HostRef {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        // A bare IPv6 address has colons but no port.
        if text.parse::<std::net::Ipv6Addr>().is_ok() {
            return Ok(HostRef::Bare(text.to_owned()));
        }
        if text.contains(['@', ':', '[']) {
            return JumpHop::parse(text, "host").map(HostRef::Outside);
        }
        match (text.parse::<Name>(), text.parse::<NetAddress>()) {
            (Ok(_), _) | (_, Ok(_)) => Ok(HostRef::Bare(text.to_owned())),
            (Err(why), Err(_)) => Err(format!(
                "{why}; a host outside the inventory is written [user@]address[:port]"
            )),
        }
    }
}

impl HostRef {
    /// The host outside the inventory this names, or `None` when it is the inventory host of
    /// that name (one of `names`). A bare word that is neither an inventory host nor an IP
    /// address or a dotted DNS name is refused: it is likelier a mistyped name than a host.
    ///
    /// # Errors
    /// A bare word that names no inventory host and is no address (the message says so).
    pub fn outside<'a>(
        &self,
        names: impl IntoIterator<Item = &'a str> + Clone,
    ) -> Result<Option<JumpHop>, String> {
        let word = match self {
            HostRef::Outside(hop) => return Ok(Some(hop.clone())),
            HostRef::Bare(word) => word,
        };
        if names.clone().into_iter().any(|n| n == word) {
            return Ok(None);
        }
        match word.parse::<NetAddress>() {
            Ok(host) if host.ip().is_some() || word.contains('.') => Ok(Some(JumpHop {
                user: None,
                host,
                port: None,
            })),
            _ => Err(format!(
                "no inventory host is named {word}, and it is no IP address or dotted DNS name \
                 (a host outside the inventory: [user@]address[:port]){}",
                crate::suggest::did_you_mean(word, names)
            )),
        }
    }
}

impl fmt::Display for HostRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            HostRef::Bare(word) => f.write_str(word),
            HostRef::Outside(hop) => write!(f, "{hop}"),
        }
    }
}

/// One hop of a jump chain: a bare name (an inventory host, when one has that name) or a host
/// written `[user@]host[:port]`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum JumpRef {
    Name(Name),
    Hop(JumpHop),
}

impl FromStr for JumpRef {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        // A user, a port or brackets make it a host; a bare word may name an inventory host.
        if text.contains(['@', ':', '[']) {
            text.parse().map(JumpRef::Hop)
        } else {
            text.parse().map(JumpRef::Name)
        }
    }
}

impl fmt::Display for JumpRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            JumpRef::Name(name) => write!(f, "{name}"),
            JumpRef::Hop(hop) => write!(f, "{hop}"),
        }
    }
}

/// A jump chain, `a,b,c`: the connection goes to `a`, through it to `b`, through both to `c`,
/// and through all three to the host. `none` (an empty chain) connects directly, whatever a
/// default or the OpenSSH config says.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct JumpList(pub Vec<JumpRef>);

impl FromStr for JumpList {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        if text.trim().is_empty() {
            return Err("invalid jump: it is empty".to_owned());
        }
        if text.eq_ignore_ascii_case("none") {
            return Ok(JumpList(Vec::new()));
        }
        text.split(',')
            .map(|hop| {
                if hop.is_empty() {
                    Err(format!("invalid jump {text:?}: an empty hop"))
                } else {
                    hop.parse()
                }
            })
            .collect::<Result<Vec<_>, _>>()
            .map(JumpList)
    }
}

impl fmt::Display for JumpList {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.0.is_empty() {
            return f.write_str("none");
        }
        for (i, hop) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str(",")?;
            }
            write!(f, "{hop}")?;
        }
        Ok(())
    }
}

deserialize_from_str!(
    JumpList,
    "a jump host: an inventory host's name or [user@]host[:port], or a chain a,b"
);

/// A path on the controller (identity files, `known_hosts`, templates). `~/` is expanded against
/// `$HOME` when used, not when parsed, so the inventory stays portable.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct LocalPath(String);

impl LocalPath {
    /// The path with a leading `~/` replaced by `$HOME`.
    #[must_use]
    pub fn expand(&self) -> PathBuf {
        match (self.0.strip_prefix("~/"), std::env::var_os("HOME")) {
            (Some(rest), Some(home)) => PathBuf::from(home).join(rest),
            _ => PathBuf::from(&self.0),
        }
    }

    #[must_use]
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl FromStr for LocalPath {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        if text.is_empty() {
            return Err("invalid path: it is empty".to_owned());
        }
        if let Some(c) = text.chars().find(|c| c.is_control()) {
            return Err(format!("invalid path {text:?}: {}", describe_bad_char(c)));
        }
        Ok(LocalPath(text.to_owned()))
    }
}

impl fmt::Display for LocalPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

deserialize_from_str!(LocalPath, "a file path");

/// A duration written as `90s`, `2m`, `1500ms`, `0.05` or `1.5s` (a bare number is seconds).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DurationValue(pub Duration);

impl FromStr for DurationValue {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let refuse =
            || format!("invalid duration {text:?}: expected e.g. 0.05, 50ms, 30s, 2m or 1h");
        let split = text
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(text.len());
        let (number, unit) = text.split_at(split);
        // Digits with at most one dot, and at least one digit: no signs, exponents or `inf`.
        if number.is_empty()
            || number == "."
            || number.matches('.').count() > 1
            || !number.chars().any(|c| c.is_ascii_digit())
        {
            return Err(refuse());
        }
        let nanos_per_unit: u128 = match unit.trim_start() {
            "" | "s" => 1_000_000_000,
            "ms" => 1_000_000,
            "m" | "min" => 60_000_000_000,
            "h" => 3_600_000_000_000,
            _ => return Err(refuse()),
        };
        // Exact decimal arithmetic: 0.05 s is 50 ms, not 49.999999 ms.
        let (whole, fraction) = number.split_once('.').unwrap_or((number, ""));
        let fraction = &fraction[..fraction.len().min(18)];
        let parse = |digits: &str| -> Result<u128, String> {
            if digits.is_empty() {
                Ok(0)
            } else {
                digits.parse::<u128>().map_err(|_| refuse())
            }
        };
        let scale = 10u128.pow(u32::try_from(fraction.len()).unwrap_or(0));
        let fraction_nanos = parse(fraction)? * nanos_per_unit / scale;
        let nanos = parse(whole)?
            .checked_mul(nanos_per_unit)
            .and_then(|n| n.checked_add(fraction_nanos))
            .ok_or_else(refuse)?;
        let secs = u64::try_from(nanos / 1_000_000_000).map_err(|_| refuse())?;
        let subsec = u32::try_from(nanos % 1_000_000_000).map_err(|_| refuse())?;
        Ok(DurationValue(Duration::new(secs, subsec)))
    }
}

impl DurationValue {
    /// Seconds, as JSON and the check's arithmetic use them.
    #[must_use]
    pub fn seconds(self) -> f64 {
        self.0.as_secs_f64()
    }
}

impl fmt::Display for DurationValue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let nanos = self.0.as_nanos();
        if nanos.is_multiple_of(1_000_000_000) {
            write!(f, "{}s", self.0.as_secs())
        } else if nanos.is_multiple_of(1_000_000) {
            write!(f, "{}ms", self.0.as_millis())
        } else {
            write!(f, "{}s", self.0.as_secs_f64())
        }
    }
}

deserialize_from_str!(DurationValue, "a duration such as 10s, 2m or 500ms");

/// An amount of bytes written as `4MiB`, `512KiB`, `1GiB` or a bare number of bytes (`K`, `M`,
/// `G` and `KB`, `MB`, `GB` are taken as the binary units too: nobody means 10^6 here).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct ByteSize(pub u64);

impl ByteSize {
    pub const MIB: u64 = 1024 * 1024;

    /// As a `usize` for buffer sizes (saturating on 32-bit targets).
    #[must_use]
    pub fn bytes(self) -> usize {
        usize::try_from(self.0).unwrap_or(usize::MAX)
    }
}

impl FromStr for ByteSize {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let refuse =
            || format!("invalid size {text:?}: expected e.g. 4MiB, 512KiB, 1GiB or 1048576");
        let split = text
            .find(|c: char| !c.is_ascii_digit())
            .unwrap_or(text.len());
        let (number, unit) = text.split_at(split);
        let number: u64 = number.parse().map_err(|_| refuse())?;
        let scale: u64 = match unit.trim_start().to_ascii_lowercase().as_str() {
            "" | "b" => 1,
            "k" | "kb" | "kib" => 1024,
            "m" | "mb" | "mib" => Self::MIB,
            "g" | "gb" | "gib" => 1024 * Self::MIB,
            _ => return Err(refuse()),
        };
        let bytes = number.checked_mul(scale).ok_or_else(refuse)?;
        if bytes == 0 {
            return Err(format!("invalid size {text:?}: must be more than 0 bytes"));
        }
        Ok(ByteSize(bytes))
    }
}

impl fmt::Display for ByteSize {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let units = [(1024 * Self::MIB, "GiB"), (Self::MIB, "MiB"), (1024, "KiB")];
        match units
            .iter()
            .find(|(scale, _)| self.0.is_multiple_of(*scale))
        {
            Some((scale, unit)) => write!(f, "{}{unit}", self.0 / scale),
            None => write!(f, "{} bytes", self.0),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn byte_sizes_parse_and_display() {
        for (text, bytes, shown) in [
            ("4MiB", 4 << 20, "4MiB"),
            ("4M", 4 << 20, "4MiB"),
            ("512KiB", 512 << 10, "512KiB"),
            ("1GiB", 1 << 30, "1GiB"),
            ("1000", 1000, "1000 bytes"),
            ("2048", 2048, "2KiB"),
        ] {
            let size = text.parse::<ByteSize>().unwrap();
            assert_eq!(size.0, bytes, "{text}");
            assert_eq!(size.to_string(), shown);
            assert_eq!(
                shown
                    .trim_end_matches(" bytes")
                    .parse::<ByteSize>()
                    .unwrap(),
                size
            );
        }
        for bad in [
            "",
            "0",
            "4 MB of text",
            "-1",
            "1.5MiB",
            "99999999999999999999G",
            "MiB",
        ] {
            assert!(bad.parse::<ByteSize>().is_err(), "{bad}");
        }
    }

    #[test]
    fn addresses_accept_ips_and_dns_names() {
        for good in [
            "192.168.6.200",
            "::1",
            "fe80::1",
            "zcloud",
            "ntp.ubuntu.com",
            "a-b.example.net.",
        ] {
            assert!(good.parse::<NetAddress>().is_ok(), "{good}");
        }
    }

    #[test]
    fn addresses_refuse_anything_that_could_smuggle_text() {
        for bad in [
            "127.0.1.3\nallow all",
            "$(reboot)",
            "a b",
            "host;rm",
            "`id`",
            "",
            "-oProxyCommand=x",
            "300.1.1.1",
            "a..b",
            "x\u{7}",
        ] {
            assert!(bad.parse::<NetAddress>().is_err(), "{bad:?} was accepted");
        }
        let err = "127.0.1.3\nallow all".parse::<NetAddress>().unwrap_err();
        assert_eq!(
            err,
            r#"invalid address "127.0.1.3\nallow all": contains a newline; expected an IP address or a DNS name"#
        );
    }

    #[test]
    fn cidr_parses_and_contains() {
        let net: Cidr = "192.168.6.0/24".parse().unwrap();
        assert!(net.contains("192.168.6.204".parse().unwrap()));
        assert!(!net.contains("192.168.7.1".parse().unwrap()));
        assert!(!net.contains("::1".parse().unwrap()));
        let all: Cidr = "0.0.0.0/0".parse().unwrap();
        assert!(all.contains("10.1.2.3".parse().unwrap()));
        let one: Cidr = "10.0.0.1".parse().unwrap();
        assert_eq!(one.prefix, 32);
        let v6: Cidr = "fd00::/8".parse().unwrap();
        assert!(v6.contains("fd12::1".parse().unwrap()));
        for bad in [
            "192.168.6.0/33",
            "192.168.6.0/",
            "all",
            "192.168.6.0/24 x",
            "1.2.3.4/-1",
        ] {
            assert!(bad.parse::<Cidr>().is_err(), "{bad}");
        }
    }

    #[test]
    fn names_and_users_are_restricted() {
        assert!("z-b-data-1".parse::<Name>().is_ok());
        assert!("-x".parse::<Name>().is_err());
        assert!("a/b".parse::<Name>().is_err());
        assert!("huatai".parse::<UserName>().is_ok());
        assert!("root;id".parse::<UserName>().is_err());
    }

    /// `check --ceph HOST`: an inventory name stays that host; an address, or anything with a
    /// user, port or brackets, is a host outside the inventory; a bare unknown word is refused.
    #[test]
    fn host_refs() {
        let names = ["zcloud", "z-b-data-1", "10.0.0.7"];
        let outside = |text: &str| {
            text.parse::<HostRef>()
                .and_then(|h| h.outside(names))
                .map(|hop| hop.map(|h| h.to_string()))
        };
        assert_eq!(outside("z-b-data-1"), Ok(None));
        assert_eq!(outside("10.0.0.7"), Ok(None), "an inventory name first");
        for (text, hop) in [
            ("root@192.168.6.206", "root@192.168.6.206"),
            ("192.168.6.206", "192.168.6.206"),
            ("mon3.example", "mon3.example"),
            ("ops@mon3:2222", "ops@mon3:2222"),
            ("fd00::6", "fd00::6"),
            ("[fd00::6]:22", "[fd00::6]:22"),
            ("z-b-data-1:22", "z-b-data-1:22"),
        ] {
            assert_eq!(outside(text), Ok(Some(hop.to_owned())), "{text}");
        }
        assert_eq!(
            outside("zclod"),
            Err(
                "no inventory host is named zclod, and it is no IP address or dotted DNS name \
                 (a host outside the inventory: [user@]address[:port]); did you mean `zcloud`?"
                    .to_owned()
            )
        );
        for bad in [
            "a b",
            "-oProxyCommand=x",
            "user@",
            "host:99999",
            "[::1",
            "a;b@h",
            "",
        ] {
            assert!(bad.parse::<HostRef>().is_err(), "{bad}");
        }
    }

    #[test]
    fn jump_hops_and_lists() {
        let hop: JumpHop = "huatai@192.168.6.200:2222".parse().unwrap();
        assert_eq!(hop.user.as_ref().map(UserName::as_str), Some("huatai"));
        assert_eq!(hop.host.to_string(), "192.168.6.200");
        assert_eq!(hop.port, Some(2222));
        assert_eq!(hop.to_string(), "huatai@192.168.6.200:2222");
        let v6: JumpHop = "ssh://[fe80::1]:22".parse().unwrap();
        assert_eq!(
            (v6.host.to_string(), v6.port),
            ("fe80::1".to_owned(), Some(22))
        );
        assert_eq!(v6.to_string(), "[fe80::1]:22");
        let list: JumpList = "zcloud,root@bastion:22".parse().unwrap();
        assert_eq!(
            list.0,
            [
                JumpRef::Name("zcloud".parse().unwrap()),
                JumpRef::Hop("root@bastion:22".parse().unwrap())
            ]
        );
        for (bad, why) in [
            (
                "root@",
                "invalid jump host \"root@\": invalid address \"\": it is empty",
            ),
            (
                "root@host:0",
                "invalid jump host \"root@host:0\": the port \"0\" is not a port number (1 to 65535)",
            ),
            (
                "host:+22",
                "invalid jump host \"host:+22\": the port \"+22\" is not a port number (1 to 65535)",
            ),
            (
                "a;b@host",
                "invalid jump host \"a;b@host\": invalid user name \"a;b\": contains ';', which is not allowed here",
            ),
            (
                "x@$(id):22",
                "invalid jump host \"x@$(id):22\": invalid address \"$(id)\": contains '$', which is not allowed here; expected an IP address or a DNS name",
            ),
            ("a,,b", "invalid jump \"a,,b\": an empty hop"),
            ("[::1", "invalid jump host \"[::1\": a '[' without its ']'"),
        ] {
            assert_eq!(bad.parse::<JumpList>().unwrap_err(), why, "{bad}");
        }
    }

    #[test]
    fn durations() {
        for (text, seconds) in [
            ("120s", 120.0),
            ("2m", 120.0),
            ("1500ms", 1.5),
            ("7", 7.0),
            ("0.05", 0.05),
            ("50ms", 0.05),
            ("1s", 1.0),
            ("1.5s", 1.5),
            ("1h", 3600.0),
        ] {
            let parsed = text.parse::<DurationValue>().unwrap();
            assert!((parsed.seconds() - seconds).abs() < 1e-9, "{text}");
            // Display round-trips: clap shows defaults with it.
            assert_eq!(parsed.to_string().parse::<DurationValue>().unwrap(), parsed);
        }
        assert_eq!("50ms".parse::<DurationValue>().unwrap().to_string(), "50ms");
        assert_eq!("2m".parse::<DurationValue>().unwrap().to_string(), "120s");
        for bad in [
            "2 minutes",
            "",
            "-1s",
            "1e3",
            ".",
            "1.2.3",
            "inf",
            "5x",
            "s",
        ] {
            assert_eq!(
                bad.parse::<DurationValue>().unwrap_err(),
                format!("invalid duration {bad:?}: expected e.g. 0.05, 50ms, 30s, 2m or 1h"),
            );
        }
    }
}
