//! The experiments `tcplab lab` runs: a client script against the in-process server (or
//! against no listener), and what the RFC says each endpoint goes through.

use crate::client::CloseStyle;

/// Whom the client talks to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Target {
    /// The in-process echo server.
    Server,
    /// A port where nothing listens.
    NoListener,
}

/// One experiment.
#[derive(Debug, Clone, Copy)]
pub struct Scenario {
    /// Its name on the command line.
    pub name: &'static str,
    /// One line on what it shows.
    pub about: &'static str,
    /// Lines the client sends, each waiting for its reply.
    pub lines: &'static [&'static str],
    /// How the client ends.
    pub close: CloseStyle,
    /// End lines with `\r\n`.
    pub crlf: bool,
    /// Whom the client talks to.
    pub target: Target,
    /// The client's state path the RFC predicts.
    pub client_path: &'static [&'static str],
    /// The server's state path the RFC predicts (its accepted socket).
    pub server_path: &'static [&'static str],
    /// The segments that carry SYN, FIN, RST or data, in tcpdump's flags.
    pub segments: &'static [&'static str],
    /// The error the client's socket call returns, if any.
    pub errno: Option<&'static str>,
    /// Wire rules: run between two hosts joined by tcplab's wire (root only).
    pub wire: Option<&'static str>,
    /// The client's pause after the banner and before closing, in ms (0: none).
    pub pace_ms: u64,
}

impl Scenario {
    /// What a check of this scenario expects.
    pub fn expected(&self) -> tcplab_core::expect::Expected {
        let path = |names: &[&str]| {
            names
                .iter()
                .map(|n| n.parse().expect("scenario paths use state names"))
                .collect()
        };
        tcplab_core::expect::Expected {
            client: path(self.client_path),
            server: path(self.server_path),
            segments: self.segments.iter().map(|s| s.to_string()).collect(),
            errno: self.errno.map(str::to_string),
        }
    }
}

/// Every experiment of this version, the default first.
pub const SCENARIOS: &[Scenario] = &[
    Scenario {
        name: "echo",
        about: "the classic experiment: banner, 'hello', its echo, 'quit'; the server closes first",
        lines: &["hello", "quit"],
        close: CloseStyle::Wait,
        crlf: false,
        target: Target::Server,
        client_path: &["CLOSED", "SYN_SENT", "ESTABLISHED", "CLOSE_WAIT", "LAST_ACK", "CLOSED"],
        server_path: &["LISTEN", "SYN_RECV", "ESTABLISHED", "FIN_WAIT1", "FIN_WAIT2", "TIME_WAIT"],
        segments: &["S", "S.", "P.", "P.", "P.", "P.", "F.", "F."],
        errno: None,
        wire: None,
        pace_ms: 0,
    },
    Scenario {
        name: "client-close",
        about: "the client closes first (active close) and ends in TIME_WAIT",
        lines: &["hello"],
        close: CloseStyle::Fin,
        crlf: false,
        target: Target::Server,
        client_path: &["CLOSED", "SYN_SENT", "ESTABLISHED", "FIN_WAIT1", "FIN_WAIT2", "TIME_WAIT"],
        server_path: &["LISTEN", "SYN_RECV", "ESTABLISHED", "CLOSE_WAIT", "LAST_ACK", "CLOSED"],
        segments: &["S", "S.", "P.", "P.", "P.", "F.", "F."],
        errno: None,
        wire: None,
        pace_ms: 0,
    },
    Scenario {
        name: "half-close",
        about: "shutdown(SHUT_WR): the client's FIN, yet the server still answers, then closes",
        lines: &["hello"],
        close: CloseStyle::Half,
        crlf: false,
        target: Target::Server,
        client_path: &["CLOSED", "SYN_SENT", "ESTABLISHED", "FIN_WAIT1", "FIN_WAIT2", "TIME_WAIT"],
        server_path: &["LISTEN", "SYN_RECV", "ESTABLISHED", "CLOSE_WAIT", "LAST_ACK", "CLOSED"],
        segments: &["S", "S.", "P.", "FP.", "P.", "F."],
        errno: None,
        wire: None,
        pace_ms: 0,
    },
    Scenario {
        name: "abortive-close",
        about: "SO_LINGER {on, 0} then close(): RST instead of FIN, no TIME_WAIT anywhere",
        lines: &["hello"],
        close: CloseStyle::Rst,
        crlf: false,
        target: Target::Server,
        client_path: &["CLOSED", "SYN_SENT", "ESTABLISHED", "CLOSED"],
        server_path: &["LISTEN", "SYN_RECV", "ESTABLISHED", "CLOSED"],
        segments: &["S", "S.", "P.", "P.", "P.", "R."],
        errno: None,
        wire: None,
        pace_ms: 0,
    },
    Scenario {
        name: "refused",
        about: "connect() to a port where nothing listens: the SYN is answered with RST",
        lines: &[],
        close: CloseStyle::Fin,
        crlf: false,
        target: Target::NoListener,
        client_path: &["CLOSED", "SYN_SENT", "CLOSED"],
        server_path: &[],
        segments: &["S", "R."],
        errno: Some("ECONNREFUSED"),
        wire: None,
        pace_ms: 0,
    },
    Scenario {
        name: "unread-data-reset",
        about: "close() with a reply still unread turns FIN into RST (the classic example's \\r\\n bug)",
        lines: &["hello"],
        close: CloseStyle::Unread,
        crlf: true,
        target: Target::Server,
        client_path: &["CLOSED", "SYN_SENT", "ESTABLISHED", "CLOSED"],
        server_path: &["LISTEN", "SYN_RECV", "ESTABLISHED", "CLOSED"],
        segments: &["S", "S.", "P.", "P.", "P.", "R."],
        errno: None,
        wire: None,
        pace_ms: 0,
    },
    Scenario {
        name: "simultaneous-close",
        about: "both ends close at once (the wire holds the first FIN until the other \
                exists): FIN_WAIT1 -> CLOSING on both sides",
        lines: &["quit"],
        close: CloseStyle::Fin,
        crlf: false,
        target: Target::Server,
        client_path: &["CLOSED", "SYN_SENT", "ESTABLISHED", "FIN_WAIT1", "CLOSING", "TIME_WAIT"],
        server_path: &["LISTEN", "SYN_RECV", "ESTABLISHED", "FIN_WAIT1", "CLOSING", "TIME_WAIT"],
        segments: &["S", "S.", "P.", "P.", "F.", "F."],
        errno: None,
        wire: Some("hold-first-fin"),
        // The server's FIN reaches the wire (and is held) before the client closes,
        // and is let go well within the 200 ms minimum RTO: a longer hold makes the
        // server retransmit its FIN, a third F. on the wire.
        pace_ms: 30,
    },
    Scenario {
        name: "syn-loss",
        about: "the wire loses the first SYN: the client retransmits it after 1 s \
                (tcp_syn_linear_timeouts), then the echo experiment goes on",
        lines: &["hello", "quit"],
        close: CloseStyle::Wait,
        crlf: false,
        target: Target::Server,
        client_path: &["CLOSED", "SYN_SENT", "ESTABLISHED", "CLOSE_WAIT", "LAST_ACK", "CLOSED"],
        server_path: &["LISTEN", "SYN_RECV", "ESTABLISHED", "FIN_WAIT1", "FIN_WAIT2", "TIME_WAIT"],
        segments: &["S", "S", "S.", "P.", "P.", "P.", "P.", "F.", "F."],
        errno: None,
        wire: Some("drop=c:1"),
        pace_ms: 0,
    },
];

/// The scenario called `name`.
pub fn find(name: &str) -> Option<&'static Scenario> {
    SCENARIOS.iter().find(|s| s.name == name)
}
