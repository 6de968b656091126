//! The one record format every remote script prints, and its parser.
//!
//! A script's output is a sequence of lines `@@kind field field...`, ending with the line
//! `@@end` (so output cut short is told apart from output that is complete). Two framings carry
//! what is not a line of fields:
//! - a payload: a record announces (or implies) a length N; exactly N raw bytes follow, then a
//!   newline. Any byte survives, and no marker inside the payload is looked at.
//! - a section: a record followed by lines of a command's own output (`KEY=VALUE` lines of
//!   `systemctl show`), up to the next line that starts with `@@`.
//!
//! Host output is untrusted: the parser never panics, never slices text by byte index, and its
//! errors carry at most a short, escaped excerpt of what the host printed.

use std::borrow::Cow;

/// What is wrong with a script's output.
#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
pub enum RecordError {
    #[error("the output ends without its end marker (was it cut short?)")]
    Truncated,
    #[error("the output has a line that is not a record: {line}")]
    Garbage { line: String },
    #[error("the output has an unknown record @@{kind}")]
    Unknown { kind: String },
    #[error("bad @@{kind} record ({why}): {line}")]
    Bad {
        kind: String,
        why: String,
        line: String,
    },
    #[error("the output goes on after its end marker: {line}")]
    AfterEnd { line: String },
}

/// One `@@kind ...` line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record<'a> {
    /// The word after `@@` (`[a-z0-9_-]`).
    pub kind: &'a str,
    /// The rest of the line after `@@kind ` (without the newline), as the host printed it.
    pub rest: &'a [u8],
}

impl<'a> Record<'a> {
    /// The rest of the line as text (invalid UTF-8 replaced).
    #[must_use]
    pub fn text(&self) -> Cow<'a, str> {
        String::from_utf8_lossy(self.rest)
    }

    /// The fields: the rest of the line split at single spaces (an empty field stays a field).
    #[must_use]
    pub fn fields(&self) -> Vec<Cow<'a, str>> {
        if self.rest.is_empty() {
            return Vec::new();
        }
        self.rest
            .split(|&b| b == b' ')
            .map(String::from_utf8_lossy)
            .collect()
    }

    /// An error for this record: `why` it does not make sense.
    #[must_use]
    pub fn bad(&self, why: &str) -> RecordError {
        RecordError::Bad {
            kind: self.kind.to_owned(),
            why: why.to_owned(),
            line: excerpt(self.rest),
        }
    }

    /// The error for a record kind the caller does not know.
    #[must_use]
    pub fn unknown(&self) -> RecordError {
        RecordError::Unknown {
            kind: self.kind.to_owned(),
        }
    }
}

/// A cursor over a script's output.
#[derive(Debug)]
pub struct Records<'a> {
    input: &'a [u8],
    pos: usize,
    ended: bool,
}

impl<'a> Records<'a> {
    #[must_use]
    pub fn new(input: &'a [u8]) -> Records<'a> {
        Records {
            input,
            pos: 0,
            ended: false,
        }
    }

    /// The whole output this cursor reads.
    #[must_use]
    pub fn input(&self) -> &'a [u8] {
        self.input
    }

    fn remaining(&self) -> &'a [u8] {
        self.input.get(self.pos..).unwrap_or_default()
    }

    /// The next line without its newline, or `None` at the end of the input (a last line
    /// without a newline counts as a line).
    fn next_line(&mut self) -> Option<&'a [u8]> {
        let rest = self.remaining();
        if rest.is_empty() {
            return None;
        }
        if let Some(n) = rest.iter().position(|&b| b == b'\n') {
            self.pos += n + 1;
            rest.get(..n)
        } else {
            self.pos = self.input.len();
            Some(rest)
        }
    }

    /// The next record; `Ok(None)` once `@@end` is read and nothing but blank space follows.
    ///
    /// # Errors
    /// The input ends without `@@end`, a line is not a record, or something follows `@@end`.
    pub fn next_record(&mut self) -> Result<Option<Record<'a>>, RecordError> {
        if self.ended {
            return Ok(None);
        }
        let Some(line) = self.next_line() else {
            return Err(RecordError::Truncated);
        };
        let record = parse_line(line)?;
        if record.kind == "end" && record.rest.is_empty() {
            self.ended = true;
            let trailing = self.remaining();
            if trailing.iter().all(u8::is_ascii_whitespace) {
                return Ok(None);
            }
            return Err(RecordError::AfterEnd {
                line: excerpt(trailing),
            });
        }
        Ok(Some(record))
    }

    /// Exactly `len` raw bytes, then a newline: the payload announced by the last record.
    ///
    /// # Errors
    /// Fewer than `len` bytes are left, or the payload is not followed by a newline.
    pub fn payload(&mut self, len: usize) -> Result<&'a [u8], RecordError> {
        let rest = self.remaining();
        let (Some(payload), Some(after)) = (rest.get(..len), rest.get(len..)) else {
            return Err(RecordError::Truncated);
        };
        match after.first() {
            Some(b'\n') => {
                self.pos += len + 1;
                Ok(payload)
            }
            None => Err(RecordError::Truncated),
            Some(_) => Err(RecordError::Garbage {
                line: format!("payload longer than the {len} bytes announced"),
            }),
        }
    }

    /// The lines of a section: everything up to the next line that starts with `@@` (which is
    /// left for [`Records::next_record`]).
    pub fn section(&mut self) -> Vec<&'a [u8]> {
        let mut lines = Vec::new();
        while !self.remaining().is_empty() && !self.remaining().starts_with(b"@@") {
            if let Some(line) = self.next_line() {
                lines.push(line);
            }
        }
        lines
    }
}

fn parse_line(line: &[u8]) -> Result<Record<'_>, RecordError> {
    let garbage = || RecordError::Garbage {
        line: excerpt(line),
    };
    let body = line.strip_prefix(b"@@").ok_or_else(garbage)?;
    let (kind, rest) = match body.iter().position(|&b| b == b' ') {
        Some(n) => (
            body.get(..n).unwrap_or_default(),
            body.get(n + 1..).unwrap_or_default(),
        ),
        None => (body, &b""[..]),
    };
    let valid = !kind.is_empty()
        && kind
            .iter()
            .all(|&b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || b == b'-');
    if !valid {
        return Err(garbage());
    }
    let kind = std::str::from_utf8(kind).map_err(|_| garbage())?;
    Ok(Record { kind, rest })
}

/// At most 120 characters of host text for an error message, control characters escaped (a
/// host must not write to the operator's terminal).
#[must_use]
pub fn excerpt(bytes: &[u8]) -> String {
    let text = String::from_utf8_lossy(bytes);
    let mut out = String::new();
    for (i, c) in text.chars().enumerate() {
        if i == 120 {
            out.push('…');
            break;
        }
        if c.is_control() {
            out.extend(c.escape_default());
        } else {
            out.push(c);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn records_payloads_and_sections() {
        let input = b"@@a one two\n@@blob 5\nx\n@@y\n@@units\nId=a\n\nId=b\n@@b\n@@end\n";
        let mut records = Records::new(input);
        let a = records.next_record().unwrap().unwrap();
        assert_eq!(
            (a.kind, a.fields()),
            ("a", vec!["one".into(), "two".into()])
        );
        let blob = records.next_record().unwrap().unwrap();
        assert_eq!(blob.kind, "blob");
        assert_eq!(records.payload(5).unwrap(), b"x\n@@y");
        assert_eq!(records.next_record().unwrap().unwrap().kind, "units");
        assert_eq!(records.section(), vec![&b"Id=a"[..], b"", b"Id=b"]);
        assert_eq!(records.next_record().unwrap().unwrap().kind, "b");
        assert_eq!(records.next_record(), Ok(None));
        assert_eq!(records.next_record(), Ok(None));
    }

    #[test]
    fn errors_are_typed() {
        let all = |input: &[u8]| -> Result<usize, RecordError> {
            let mut records = Records::new(input);
            let mut n = 0;
            while records.next_record()?.is_some() {
                n += 1;
            }
            Ok(n)
        };
        assert_eq!(all(b"@@a\n"), Err(RecordError::Truncated));
        assert_eq!(all(b""), Err(RecordError::Truncated));
        assert!(matches!(
            all(b"hello\n@@end\n"),
            Err(RecordError::Garbage { .. })
        ));
        assert!(matches!(
            all(b"@@A\n@@end\n"),
            Err(RecordError::Garbage { .. })
        ));
        assert!(matches!(
            all(b"@@end\nmore\n"),
            Err(RecordError::AfterEnd { .. })
        ));
        assert_eq!(all(b"@@a\n@@end"), Ok(1));
        let mut records = Records::new(b"@@blob 9\nabc");
        records.next_record().unwrap();
        assert_eq!(records.payload(9), Err(RecordError::Truncated));
        let mut records = Records::new(b"@@blob 2\nabc\n");
        records.next_record().unwrap();
        assert!(matches!(
            records.payload(2),
            Err(RecordError::Garbage { .. })
        ));
    }

    #[test]
    fn excerpts_escape_control_characters() {
        assert_eq!(excerpt(b"a\x1b[2Jb\xff"), "a\\u{1b}[2Jb\u{fffd}");
        assert_eq!(excerpt(&[b'x'; 500]).chars().count(), 121);
    }

    proptest! {
        /// Any bytes: records, payloads and sections in any order never panic.
        #[test]
        fn never_panics(input in proptest::collection::vec(any::<u8>(), 0..400), lens in proptest::collection::vec(0usize..64, 0..8)) {
            let mut records = Records::new(&input);
            let mut lens = lens.into_iter();
            for _ in 0..100 {
                match records.next_record() {
                    Ok(Some(record)) => {
                        let _ = record.fields();
                        let _ = record.bad("x");
                        match lens.next() {
                            Some(n) if n % 2 == 0 => { let _ = records.payload(n); }
                            Some(_) => { let _ = records.section(); }
                            None => {}
                        }
                    }
                    Ok(None) | Err(_) => break,
                }
            }
        }
    }
}
