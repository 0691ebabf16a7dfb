//! Checking a run against what the RFC (and the textbook) predicts: each endpoint's
//! state path, the pattern of the segments, and the error the application saw.
//!
//! Pure data in, differences out: `tcplab lab NAME --check` prints them as a diff and
//! exits non-zero when there are any.

use std::fmt::Write as _;

use crate::state::TcpState;
use crate::timeline::{flags, Connection, Item, Role};

/// What a scenario should show.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Expected {
    /// The client's state path.
    pub client: Vec<TcpState>,
    /// The server's state path (its accepted socket); empty when there is none.
    pub server: Vec<TcpState>,
    /// The segments that carry SYN, FIN, RST or data, in tcpdump's flag notation
    /// (`S`, `S.`, `P.`, `F.`, `R.`); pure ACKs are left out, since the delayed-ACK
    /// timer decides whether they exist.
    pub segments: Vec<String>,
    /// The error the client's socket call returned (`ECONNREFUSED`, ...), if any.
    pub errno: Option<String>,
}

/// What a run showed, in the same terms.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Seen {
    /// The client's state path.
    pub client: Vec<TcpState>,
    /// The server's state path.
    pub server: Vec<TcpState>,
    /// The significant segments (see [`Expected::segments`]).
    pub segments: Vec<String>,
    /// The client's error.
    pub errno: Option<String>,
}

/// One thing that differs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Difference {
    /// What: `client path`, `server path`, `segments`, `errno`.
    pub what: &'static str,
    /// Expected, as text.
    pub expected: String,
    /// Seen, as text.
    pub seen: String,
}

/// The segments of `conn` that carry SYN, FIN, RST or data, as tcpdump's flags.
pub fn significant_segments(conn: &Connection) -> Vec<String> {
    conn.entries
        .iter()
        .filter_map(|e| match &e.item {
            Item::Segment(s)
                if s.segment.flags & (flags::SYN | flags::FIN | flags::RST) != 0
                    || s.segment.len > 0 =>
            {
                Some(s.segment.tcpdump_flags())
            }
            _ => None,
        })
        .collect()
}

/// What `conn` showed, with the client's `errno`.
pub fn seen(conn: &Connection, errno: Option<&str>) -> Seen {
    Seen {
        client: conn.path(Role::Client),
        server: conn.path(Role::Server),
        segments: significant_segments(conn),
        errno: errno.map(str::to_string),
    }
}

fn path_text(path: &[TcpState]) -> String {
    if path.is_empty() {
        return "(none)".into();
    }
    path.iter()
        .map(|s| s.name())
        .collect::<Vec<_>>()
        .join(" → ")
}

/// Every difference between `expected` and `seen`.
pub fn compare(expected: &Expected, seen: &Seen) -> Vec<Difference> {
    let mut out = Vec::new();
    let mut push = |what, e: String, s: String| {
        if e != s {
            out.push(Difference {
                what,
                expected: e,
                seen: s,
            });
        }
    };
    push(
        "client path",
        path_text(&expected.client),
        path_text(&seen.client),
    );
    push(
        "server path",
        path_text(&expected.server),
        path_text(&seen.server),
    );
    push(
        "segments",
        expected.segments.join(" "),
        seen.segments.join(" "),
    );
    push(
        "errno",
        expected.errno.clone().unwrap_or_else(|| "(none)".into()),
        seen.errno.clone().unwrap_or_else(|| "(none)".into()),
    );
    out
}

/// The differences as a readable diff: `-` expected, `+` seen.
pub fn render_diff(diffs: &[Difference]) -> String {
    let mut s = String::new();
    for d in diffs {
        let _ = writeln!(s, "{}:", d.what);
        let _ = writeln!(s, "  - expected: {}", d.expected);
        let _ = writeln!(s, "  + seen:     {}", d.seen);
    }
    s
}

/// Parses a path written as state names separated by commas or arrows
/// (`CLOSED,SYN_SENT,...` or `CLOSED → SYN_SENT → ...`).
pub fn parse_path(text: &str) -> Result<Vec<TcpState>, crate::state::UnknownState> {
    text.split([',', '→', '>'])
        .map(|w| w.trim().trim_end_matches('-').trim())
        .filter(|w| !w.is_empty())
        .map(str::parse)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::timeline::build;
    use crate::timeline::fixtures::*;
    use TcpState::*;

    fn expected() -> Expected {
        Expected {
            client: CLIENT_PATH.to_vec(),
            server: SERVER_PATH.to_vec(),
            segments: ["S", "S.", "P.", "P.", "P.", "P.", "F.", "F."]
                .map(String::from)
                .to_vec(),
            errno: None,
        }
    }

    #[test]
    fn a_run_that_matches_has_no_differences() {
        let conn = &build(&echo_segments(), &echo_changes(), &echo_calls())[0];
        assert_eq!(compare(&expected(), &seen(conn, None)), vec![]);
    }

    #[test]
    fn a_wrong_expectation_shows_as_a_diff() {
        let conn = &build(&echo_segments(), &echo_changes(), &echo_calls())[0];
        let mut wrong = expected();
        wrong.client = vec![Closed, SynSent, Established, FinWait1];
        wrong.errno = Some("ECONNRESET".into());
        let diffs = compare(&wrong, &seen(conn, None));
        assert_eq!(diffs.len(), 2);
        assert_eq!(
            render_diff(&diffs),
            "client path:\n  - expected: CLOSED → SYN_SENT → ESTABLISHED → FIN_WAIT1\n  \
             + seen:     CLOSED → SYN_SENT → ESTABLISHED → CLOSE_WAIT → LAST_ACK → CLOSED\n\
             errno:\n  - expected: ECONNRESET\n  + seen:     (none)\n"
        );
    }

    #[test]
    fn paths_parse_with_commas_or_arrows() {
        assert_eq!(
            parse_path("CLOSED, SYN_SENT,established").unwrap(),
            [Closed, SynSent, Established]
        );
        assert_eq!(
            parse_path("LISTEN → SYN_RECV -> ESTABLISHED").unwrap(),
            [Listen, SynRecv, Established]
        );
        assert!(parse_path("CLOSED,NOPE").is_err());
    }
}
