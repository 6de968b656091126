//! Times in UTC for file names, records and saved plans. A few lines of arithmetic (Howard
//! Hinnant's days-to-civil algorithm) instead of a date crate: clockprov only ever prints them.

use std::time::SystemTime;

/// A moment in UTC, to the second.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Utc {
    year: i64,
    month: i64,
    day: i64,
    seconds_of_day: u64,
}

impl Utc {
    /// `seconds` since 1970-01-01T00:00:00Z.
    pub(crate) fn from_unix(seconds: u64) -> Self {
        let days = i64::try_from(seconds / 86_400).unwrap_or(0);
        let z = days + 719_468;
        let era = z.div_euclid(146_097);
        let doe = z.rem_euclid(146_097);
        let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
        let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
        let mp = (5 * doy + 2) / 153;
        let day = doy - (153 * mp + 2) / 5 + 1;
        let month = if mp < 10 { mp + 3 } else { mp - 9 };
        Utc {
            year: yoe + era * 400 + i64::from(month <= 2),
            month,
            day,
            seconds_of_day: seconds % 86_400,
        }
    }

    /// `time`; a time before the epoch counts as the epoch.
    pub(crate) fn from_system(time: SystemTime) -> Self {
        Self::from_unix(
            time.duration_since(SystemTime::UNIX_EPOCH)
                .map_or(0, |d| d.as_secs()),
        )
    }

    /// `YYYY-MM-DDTHH:MM:SSZ` (RFC 3339).
    pub(crate) fn rfc3339(self) -> String {
        self.format("-", "T", ":", "Z")
    }

    /// `YYYYmmddTHHMMSSZ`, as `date -u +%Y%m%dT%H%M%SZ` prints it: for names that sort by time.
    pub(crate) fn compact(self) -> String {
        self.format("", "T", "", "Z")
    }

    /// `YYYY-MM-DD HH:MM:SS`, for people.
    pub(crate) fn readable(self) -> String {
        self.format("-", " ", ":", "")
    }

    fn format(self, date_sep: &str, middle: &str, time_sep: &str, end: &str) -> String {
        let Utc {
            year,
            month,
            day,
            seconds_of_day: s,
        } = self;
        format!(
            "{year:04}{date_sep}{month:02}{date_sep}{day:02}{middle}{:02}{time_sep}{:02}{time_sep}{:02}{end}",
            s / 3600,
            s % 3600 / 60,
            s % 60
        )
    }
}

/// Lower-case hex SHA-256 of `bytes`, as `sha256sum` prints it.
pub(crate) fn sha256_hex(bytes: &[u8]) -> String {
    use std::fmt::Write as _;
    ring::digest::digest(&ring::digest::SHA256, bytes)
        .as_ref()
        .iter()
        .fold(String::with_capacity(64), |mut s, b| {
            let _ = write!(s, "{b:02x}");
            s
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates_as_date_prints_them() {
        assert_eq!(Utc::from_unix(0).compact(), "19700101T000000Z");
        assert_eq!(Utc::from_unix(1_795_619_103).compact(), "20261125T150503Z");
        assert_eq!(
            Utc::from_unix(951_782_400).rfc3339(),
            "2000-02-29T00:00:00Z"
        );
        assert_eq!(
            Utc::from_unix(1_796_529_600).readable(),
            "2026-12-06 04:00:00"
        );
    }

    #[test]
    fn sha256_as_sha256sum_prints_it() {
        assert_eq!(
            sha256_hex(b""),
            "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
    }
}
