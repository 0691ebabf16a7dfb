//! Checking a run against what the RFC (and the textbook) predicts: each endpoint's
//! state path, the pattern of the segments, and the error the application saw.
//!
//! Pure data in, differences out: `tcplab lab NAME --check` prints them as a diff and
//! exits non-zero when there are any.

use std::fmt::Write as _;

use crate::state::TcpState;
use crate::timeline::{flags, seq_ge, Analysis, Connection, Item, Role};

/// What a scenario should show.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Expected {
    /// The client's state path.
    pub client: Vec<TcpState>,
    /// The server's state path (its accepted socket); empty when there is none.
    pub server: Vec<TcpState>,
    /// The significant segments (see [`significant_segments`]) in tcpdump's flag
    /// notation (`S`, `S.`, `.`, `P.`, `F.`, `R.`, `. win 0`, ...); a token ending in
    /// `+` stands for one or more such segments in a row, `?` for zero or one, `*` for
    /// any (see
    /// [`segments_match`]).
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
    /// What: `client path`, `server path`, `segments`, `errno`, or a finding of the
    /// experiment's own (a measured stall, a bind's result).
    pub what: String,
    /// Expected, as text.
    pub expected: String,
    /// Seen, as text.
    pub seen: String,
}

/// The segments of `conn` that tell its story, as tcpdump's flags: every segment that
/// carries SYN, FIN, RST or data; and those pure ACKs that do something — the first
/// acknowledgment of the peer's SYN or FIN that arrived (`.`), a window closed to zero
/// (`. win 0`), the window opened again (`. win update`), and a probe (`. probe`: one
/// byte below what was already sent, as keepalive and zero-window probes are). Other
/// pure ACKs are left out: the delayed-ACK timer decides whether they exist.
pub fn significant_segments(conn: &Connection) -> Vec<String> {
    /// What one direction has done so far.
    #[derive(Default)]
    struct Side {
        /// Sequence ends of this side's SYN and FIN, not yet acknowledged.
        unacked_ctl: Vec<u32>,
        /// The highest acknowledgment the peer sent that arrived.
        acked: Option<u32>,
    }
    let mut sides: [Side; 2] = Default::default();
    let index = |role: Role| usize::from(role == Role::Server);
    let mut out = Vec::new();
    for e in &conn.entries {
        let Item::Segment(entry) = &e.item else {
            continue;
        };
        let s = &entry.segment;
        let me = index(entry.from);
        let peer = 1 - me;
        let control = s.flags & (flags::SYN | flags::FIN | flags::RST) != 0 || s.len > 0;
        // A lost ACK counts (it is drawn, and its loss is the story), but leaves the
        // SYN or FIN unacknowledged, so the next ACK of it counts too.
        let acks_ctl = s.has(flags::ACK)
            && sides[peer]
                .unacked_ctl
                .iter()
                .any(|&end| seq_ge(s.ack, end));
        let token = match entry.analysis {
            _ if control => Some(s.tcpdump_flags()),
            Some(Analysis::KeepAlive | Analysis::ZeroWindowProbe) => Some(". probe".to_string()),
            Some(Analysis::ZeroWindow) => Some(". win 0".to_string()),
            Some(Analysis::WindowUpdate) => Some(". win update".to_string()),
            None if acks_ctl => Some(".".to_string()),
            None => None,
        };
        out.extend(token);
        if s.has(flags::ACK) && !entry.lost {
            let peer = &mut sides[peer];
            peer.unacked_ctl.retain(|&end| !seq_ge(s.ack, end));
            if peer.acked.is_none_or(|a| seq_ge(s.ack, a)) {
                peer.acked = Some(s.ack);
            }
        }
        let side = &mut sides[me];
        let end = s.seq.wrapping_add(s.seq_len());
        // A SYN or FIN sent again (a simultaneous open's SYN,ACK) that the peer already
        // acknowledged needs no acknowledgment.
        let acked = side.acked.is_some_and(|a| seq_ge(a, end));
        if s.flags & (flags::SYN | flags::FIN) != 0 && !acked && !side.unacked_ctl.contains(&end) {
            side.unacked_ctl.push(end);
        }
    }
    out
}

/// Whether the `seen` segments fit the `pattern`: each element a token that must match
/// one segment, a token followed by `+` that matches one or more in a row (for counts
/// the kernel decides, such as how a burst is cut into segments), a token followed by
/// `?` that matches zero or one (a pure ACK whose timing is the kernel's), or `*` for
/// any segments at all (a phase whose details the experiment does not predict).
pub fn segments_match(pattern: &[String], seen: &[String]) -> bool {
    match pattern.split_first() {
        None => seen.is_empty(),
        Some((first, rest)) if first == "*" => {
            (0..=seen.len()).any(|n| segments_match(rest, &seen[n..]))
        }
        Some((first, rest)) => {
            let (token, least, most) = match (first.strip_suffix('+'), first.strip_suffix('?')) {
                (Some(token), _) => (token, 1, usize::MAX),
                (_, Some(token)) => (token, 0, 1),
                _ => (first.as_str(), 1, 1),
            };
            let run = seen.iter().take_while(|s| *s == token).take(most).count();
            (least..=run)
                .rev()
                .any(|n| segments_match(rest, &seen[n..]))
        }
    }
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
    let none = || "(none)".to_string();
    let segments_differ = !segments_match(&expected.segments, &seen.segments);
    [
        (
            "client path",
            path_text(&expected.client),
            path_text(&seen.client),
            true,
        ),
        (
            "server path",
            path_text(&expected.server),
            path_text(&seen.server),
            true,
        ),
        (
            "segments",
            expected.segments.join(" "),
            seen.segments.join(" "),
            segments_differ,
        ),
        (
            "errno",
            expected.errno.clone().unwrap_or_else(none),
            seen.errno.clone().unwrap_or_else(none),
            true,
        ),
    ]
    .into_iter()
    .filter(|(_, e, s, may_differ)| *may_differ && e != s)
    .map(|(what, expected, seen, _)| Difference {
        what: what.to_string(),
        expected,
        seen,
    })
    .collect()
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
            segments: ["S", "S.", ".", "P.", "P.", "P.", "P.", "F.", ".", "F.", "."]
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

    fn tokens(t: &[&str]) -> Vec<String> {
        t.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn a_plus_matches_one_or_more_in_a_row() {
        let pattern = tokens(&["S", "P.+", ".", "P.+"]);
        assert!(segments_match(&pattern, &tokens(&["S", "P.", ".", "P."])));
        assert!(segments_match(
            &pattern,
            &tokens(&["S", "P.", "P.", ".", "P.", "P."])
        ));
        assert!(!segments_match(&pattern, &tokens(&["S", ".", "P."])));
        assert!(!segments_match(&pattern, &tokens(&["S", "P.", "."])));
        assert!(!segments_match(
            &pattern,
            &tokens(&["S", "P.", ".", "P.", "F."])
        ));
        // Backtracking: the run may end before the last equal token.
        let pattern = tokens(&["P.+", "P."]);
        assert!(segments_match(&pattern, &tokens(&["P.", "P.", "P."])));
        assert!(!segments_match(&pattern, &tokens(&["P."])));
        let pattern = tokens(&["F.", ".?", "F."]);
        assert!(segments_match(&pattern, &tokens(&["F.", "F."])));
        assert!(segments_match(&pattern, &tokens(&["F.", ".", "F."])));
        assert!(!segments_match(&pattern, &tokens(&["F.", ".", ".", "F."])));
        let pattern = tokens(&["S", "*", ". win 0", "*"]);
        assert!(segments_match(&pattern, &tokens(&["S", ". win 0"])));
        assert!(segments_match(
            &pattern,
            &tokens(&["S", "P.", ".", ". win 0", "F."])
        ));
        assert!(!segments_match(&pattern, &tokens(&["S", "P.", "F."])));
    }

    #[test]
    fn zero_window_probes_and_the_update_are_significant() {
        use crate::timeline::{build_connection, Segment, States};
        let (c, s) = (
            "192.0.2.1:40000".parse().unwrap(),
            "192.0.2.2:80".parse().unwrap(),
        );
        let seg = |ts, from_client: bool, flags, seq, ack, window, len| Segment {
            ts_ns: ts,
            src: if from_client { c } else { s },
            dst: if from_client { s } else { c },
            flags,
            seq,
            ack,
            window,
            len,
            payload: Vec::new(),
            options: Vec::new(),
        };
        use crate::timeline::flags::*;
        let segments = [
            seg(1, true, SYN, 100, 0, 1000, 0),
            seg(2, false, SYN | ACK, 500, 101, 1000, 0),
            seg(3, true, ACK, 101, 501, 1000, 0),
            seg(4, true, PSH | ACK, 101, 501, 1000, 10),
            seg(5, false, ACK, 501, 111, 0, 0),
            seg(6, true, ACK, 110, 501, 1000, 0),
            seg(7, false, ACK, 501, 111, 0, 0),
            seg(8, false, ACK, 501, 111, 500, 0),
            seg(9, true, PSH | ACK, 111, 501, 1000, 10),
            seg(10, false, ACK, 501, 121, 500, 0),
        ];
        let conn = build_connection(c, s, &segments, States::Kernel(&[]), &[]);
        assert_eq!(
            significant_segments(&conn),
            [
                "S",
                "S.",
                ".",
                "P.",
                ". win 0",
                ". probe",
                ". win 0",
                ". win update",
                "P."
            ]
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
