//! Timestamped event lines on stderr, for the server's connection log.

use std::fmt;
use std::io::Write as _;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{SystemTime, UNIX_EPOCH};

use crate::clock;

/// What the server recorded in memory (for `tcplab lab`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    /// When, ns of CLOCK_MONOTONIC.
    pub mono_ns: u64,
    /// The peer of the connection, `None` for the server as a whole.
    pub peer: Option<SocketAddr>,
    /// An event line or a socket call.
    pub kind: RecordKind,
}

/// The two kinds of [`Record`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RecordKind {
    /// A log line, as `serve` prints it.
    Event(String),
    /// A socket call: `accept()`, `read(6)`, `write(18)`, `close()`.
    Call(String),
}

/// Records kept in memory, shared with the server.
pub type Collected = Arc<Mutex<Vec<Record>>>;

/// Where log lines go.
#[derive(Debug, Clone, Default)]
pub enum Log {
    /// Nowhere.
    #[default]
    Quiet,
    /// To stderr, one line per event, prefixed with the UTC time of day (µs).
    Stderr,
    /// Into memory, for `tcplab lab` to put on its timeline.
    Collect(Collected),
}

impl Log {
    /// An event of the connection with `peer`.
    // (Inlined, as `call`: with `--quiet` the server's hot paths then cost a compare,
    // not a call with its arguments built.)
    #[inline]
    pub fn conn(&self, peer: SocketAddr, message: fmt::Arguments<'_>) {
        if !matches!(self, Log::Quiet) {
            self.emit(Some(peer), message);
        }
    }

    /// An event of the server as a whole.
    #[inline]
    pub fn server(&self, message: fmt::Arguments<'_>) {
        if !matches!(self, Log::Quiet) {
            self.emit(None, message);
        }
    }

    fn emit(&self, peer: Option<SocketAddr>, message: fmt::Arguments<'_>) {
        match self {
            Log::Quiet => {}
            Log::Stderr => {
                let now = TimeOfDay(SystemTime::now());
                let line = match peer {
                    Some(peer) => format!("{now} {peer} {message}\n"),
                    None => format!("{now} server {message}\n"),
                };
                let _ = std::io::stderr().lock().write_all(line.as_bytes());
            }
            Log::Collect(records) => push(records, peer, RecordKind::Event(message.to_string())),
        }
    }

    /// A socket call on the connection with `peer`; only kept when collecting (the
    /// stderr log does not show calls).
    #[inline]
    pub fn call(&self, peer: SocketAddr, call: fmt::Arguments<'_>) {
        if let Log::Collect(records) = self {
            push_call(records, peer, call);
        }
    }
}

#[inline(never)]
fn push_call(records: &Collected, peer: SocketAddr, call: fmt::Arguments<'_>) {
    push(records, Some(peer), RecordKind::Call(call.to_string()));
}

fn push(records: &Collected, peer: Option<SocketAddr>, kind: RecordKind) {
    let record = Record {
        mono_ns: clock::mono_ns(),
        peer,
        kind,
    };
    records
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .push(record);
}

/// A wall-clock time shown as tcpdump does: UTC `HH:MM:SS.uuuuuu`.
#[derive(Debug, Clone, Copy)]
pub struct TimeOfDay(pub SystemTime);

impl fmt::Display for TimeOfDay {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let since = self.0.duration_since(UNIX_EPOCH).unwrap_or_default();
        let secs = since.as_secs() % 86_400;
        write!(
            f,
            "{:02}:{:02}:{:02}.{:06}",
            secs / 3600,
            secs / 60 % 60,
            secs % 60,
            since.subsec_micros()
        )
    }
}

/// Shows bytes as text: printable ASCII as is, `\n \r \t \\` escaped, anything else as
/// `\xNN`, so a
/// log line stays one line whatever the client sent.
pub fn escape(bytes: &[u8]) -> impl fmt::Display + '_ {
    Escaped(bytes)
}

struct Escaped<'a>(&'a [u8]);

impl fmt::Display for Escaped<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for &b in self.0 {
            match b {
                b'\\' => f.write_str("\\\\")?,
                b'\n' => f.write_str("\\n")?,
                b'\r' => f.write_str("\\r")?,
                b'\t' => f.write_str("\\t")?,
                0x20..=0x7e => fmt::Write::write_char(f, b as char)?,
                _ => write!(f, "\\x{b:02x}")?,
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn escapes_everything_unprintable() {
        assert_eq!(
            escape(b"a\0b\xff\\ c\r\n").to_string(),
            "a\\x00b\\xff\\\\ c\\r\\n"
        );
    }

    #[test]
    fn time_of_day_is_utc_with_microseconds() {
        let t = UNIX_EPOCH + Duration::from_micros(86_400_000_000 * 3 + 3_723_000_042);
        assert_eq!(TimeOfDay(t).to_string(), "01:02:03.000042");
    }
}
