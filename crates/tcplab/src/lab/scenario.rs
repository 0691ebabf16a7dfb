//! The experiments `tcplab lab` runs, and what the RFC says each endpoint goes through.
//!
//! An experiment is either a client script against the in-process echo server (or
//! against no listener), or a recipe of its own socket calls on both sides (see
//! [`super::recipes`]) for what the echo protocol cannot show: a listen queue that
//! overflows, a socket that connects to itself, a receiver that stops reading.

use tcplab_core::timeline::Connection;

use super::recipes::{self, Finding, Stage};
use crate::client::CloseStyle;

/// Whom the client talks to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Target {
    /// The in-process echo server.
    Server,
    /// A port where nothing listens.
    NoListener,
}

/// The part of a connection's life an experiment is about (`--list` groups by it).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Group {
    /// Opening a connection, and how it fails.
    Opening,
    /// Data: the echo, Nagle, flow control, loss.
    Data,
    /// Closing it.
    Closing,
    /// Resets and timeouts: how a connection ends without a close.
    Resets,
}

impl Group {
    /// Every group, in `--list` order.
    pub const ALL: [Group; 4] = [Group::Opening, Group::Data, Group::Closing, Group::Resets];

    /// Its heading in `--list`.
    pub fn title(self) -> &'static str {
        match self {
            Group::Opening => "Opening",
            Group::Data => "Data",
            Group::Closing => "Closing",
            Group::Resets => "Resets and timeouts",
        }
    }
}

/// A client script against the in-process echo server.
#[derive(Debug, Clone, Copy)]
pub struct EchoScript {
    /// Lines the client sends, each waiting for its reply.
    pub lines: &'static [&'static str],
    /// How the client ends.
    pub close: CloseStyle,
    /// End lines with `\r\n`.
    pub crlf: bool,
    /// Whom the client talks to.
    pub target: Target,
    /// The client's pause after the banner and before closing, in ms (0: none).
    pub pace_ms: u64,
}

/// How an experiment runs.
#[derive(Debug, Clone, Copy)]
pub enum Recipe {
    /// A client script against the echo server.
    Echo(EchoScript),
    /// Socket calls of its own on both sides; the server port is chosen (free) before
    /// the probes start.
    Calls(fn(&Stage<'_>) -> anyhow::Result<recipes::Outcome>),
}

/// One experiment.
#[derive(Debug, Clone, Copy)]
pub struct Scenario {
    /// Its name on the command line.
    pub name: &'static str,
    /// Where `--list` shows it.
    pub group: Group,
    /// One line on what it shows.
    pub about: &'static str,
    /// How it runs.
    pub recipe: Recipe,
    /// The client's state path the RFC predicts.
    pub client_path: &'static [&'static str],
    /// The server's state path the RFC predicts (its accepted socket).
    pub server_path: &'static [&'static str],
    /// The significant segments ([`tcplab_core::expect::significant_segments`]) in
    /// tcpdump's flags; `X+` is one or more `X` in a row.
    pub segments: &'static [&'static str],
    /// The error a socket call of the application returns, if any.
    pub errno: Option<&'static str>,
    /// Wire rules: run between two hosts joined by tcplab's wire (root only).
    pub wire: Option<&'static str>,
    /// Kernel parameters set inside the experiment's own namespace(s) (never on the
    /// machine) before it runs, e.g. `("net.ipv4.tcp_early_retrans", "0")`.
    pub sysctls: &'static [(&'static str, &'static str)],
    /// Kernel parameters that shape it, shown with their values above its ladder.
    pub params: &'static [&'static str],
    /// Checks of its own on the timeline (a retransmission's delay, a probe's count).
    pub verify: Option<fn(&Connection) -> Vec<Finding>>,
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

const PASSIVE_OPEN: &[&str] = &["LISTEN", "SYN_RECV", "ESTABLISHED"];
const ACTIVE_OPEN: &[&str] = &["CLOSED", "SYN_SENT", "ESTABLISHED"];
const ACTIVE_CLOSE_CLIENT: &[&str] = &[
    "CLOSED",
    "SYN_SENT",
    "ESTABLISHED",
    "FIN_WAIT1",
    "FIN_WAIT2",
    "TIME_WAIT",
];
const PASSIVE_CLOSE_SERVER: &[&str] = &[
    "LISTEN",
    "SYN_RECV",
    "ESTABLISHED",
    "CLOSE_WAIT",
    "LAST_ACK",
    "CLOSED",
];
const PASSIVE_CLOSE_CLIENT: &[&str] = &[
    "CLOSED",
    "SYN_SENT",
    "ESTABLISHED",
    "CLOSE_WAIT",
    "LAST_ACK",
    "CLOSED",
];
const ACTIVE_CLOSE_SERVER: &[&str] = &[
    "LISTEN",
    "SYN_RECV",
    "ESTABLISHED",
    "FIN_WAIT1",
    "FIN_WAIT2",
    "TIME_WAIT",
];
const SIMULTANEOUS_OPEN: &[&str] = &["CLOSED", "SYN_SENT", "SYN_RECV", "ESTABLISHED"];

/// Every experiment of this version, the default first.
pub const SCENARIOS: &[Scenario] = &[
    Scenario {
        name: "echo",
        group: Group::Data,
        about: "the classic experiment: banner, 'hello', its echo, 'quit'; the server closes first",
        recipe: Recipe::Echo(EchoScript {
            lines: &["hello", "quit"],
            close: CloseStyle::Wait,
            crlf: false,
            target: Target::Server,
            pace_ms: 0,
        }),
        client_path: &["CLOSED", "SYN_SENT", "ESTABLISHED", "CLOSE_WAIT", "LAST_ACK", "CLOSED"],
        server_path: &["LISTEN", "SYN_RECV", "ESTABLISHED", "FIN_WAIT1", "FIN_WAIT2", "TIME_WAIT"],
        // The client closes as soon as it reads the EOF: its FIN usually carries the ACK of the
        // server's FIN; a reader that wakes late ACKs first (`.?`).
        segments: &["S", "S.", ".", "P.", "P.", "P.", "P.", "F.", ".?", "F.", "."],
        errno: None,
        wire: None,
        sysctls: &[],
        params: &[
            "net.ipv4.tcp_fin_timeout",
        ],
        verify: None,
    },
    Scenario {
        name: "handshake",
        group: Group::Opening,
        about: "the three-way handshake alone: SYN, SYN,ACK, ACK; the lab stops watching \
                while both are ESTABLISHED",
        recipe: Recipe::Calls(recipes::handshake),
        client_path: ACTIVE_OPEN,
        server_path: PASSIVE_OPEN,
        segments: &["S", "S.", "."],
        errno: None,
        wire: None,
        sysctls: &[],
        params: &[
            "net.ipv4.tcp_syn_retries",
            "net.ipv4.tcp_synack_retries",
        ],
        verify: None,
    },
    Scenario {
        name: "refused",
        group: Group::Opening,
        about: "connect() to a port where nothing listens: the SYN is answered with RST",
        recipe: Recipe::Echo(EchoScript {
            lines: &[],
            close: CloseStyle::Fin,
            crlf: false,
            target: Target::NoListener,
            pace_ms: 0,
        }),
        client_path: &["CLOSED", "SYN_SENT", "CLOSED"],
        server_path: &[],
        segments: &["S", "R."],
        errno: Some("ECONNREFUSED"),
        wire: None,
        sysctls: &[],
        params: &[],
        verify: None,
    },
    Scenario {
        name: "syn-loss",
        group: Group::Opening,
        about: "the wire loses the first SYN: the client retransmits it after 1 s \
                (tcp_syn_linear_timeouts), then the echo experiment goes on",
        recipe: Recipe::Echo(EchoScript {
            lines: &["hello", "quit"],
            close: CloseStyle::Wait,
            crlf: false,
            target: Target::Server,
            pace_ms: 0,
        }),
        client_path: &["CLOSED", "SYN_SENT", "ESTABLISHED", "CLOSE_WAIT", "LAST_ACK", "CLOSED"],
        server_path: &["LISTEN", "SYN_RECV", "ESTABLISHED", "FIN_WAIT1", "FIN_WAIT2", "TIME_WAIT"],
        // The client closes as soon as it reads the EOF: its FIN usually carries the ACK of the
        // server's FIN; a reader that wakes late ACKs first (`.?`).
        segments: &["S", "S", "S.", ".", "P.", "P.", "P.", "P.", "F.", ".?", "F.", "."],
        errno: None,
        wire: Some("drop=c:1"),
        sysctls: &[],
        params: &[
            "net.ipv4.tcp_syn_retries",
            "net.ipv4.tcp_syn_linear_timeouts",
        ],
        verify: None,
    },
    Scenario {
        name: "simultaneous-open",
        group: Group::Opening,
        about: "both ends connect() to each other at once (the wire holds the first SYN \
                until the other exists): SYN_SENT -> SYN_RECV -> ESTABLISHED on both sides",
        recipe: Recipe::Calls(recipes::simultaneous_open),
        client_path: SIMULTANEOUS_OPEN,
        server_path: SIMULTANEOUS_OPEN,
        segments: &["S", "S", "S.", "S."],
        errno: None,
        wire: Some("hold-syn"),
        sysctls: &[],
        params: &[
            "net.ipv4.tcp_syn_retries",
        ],
        verify: None,
    },
    Scenario {
        name: "self-connect",
        group: Group::Opening,
        about: "a socket bound to port P connects to P: its own SYN makes it SYN_RECV, \
                and it ends up connected to itself (it echoes its own 'hello')",
        recipe: Recipe::Calls(recipes::self_connect),
        client_path: SIMULTANEOUS_OPEN,
        server_path: &[],
        segments: &["S", "S.", "P."],
        errno: None,
        wire: None,
        sysctls: &[],
        params: &[
            "net.ipv4.ip_local_port_range",
        ],
        verify: None,
    },
    Scenario {
        name: "backlog-overflow",
        group: Group::Opening,
        about: "listen(1) and no accept(): two connections fill the queue, the third \
                client's SYN is dropped and retransmitted every second until an accept()",
        recipe: Recipe::Calls(recipes::backlog_overflow),
        client_path: ACTIVE_OPEN,
        server_path: PASSIVE_OPEN,
        segments: &["S", "S", "S", "S.", "."],
        errno: None,
        wire: None,
        sysctls: &[],
        params: &[
            "net.core.somaxconn",
            "net.ipv4.tcp_max_syn_backlog",
            "net.ipv4.tcp_abort_on_overflow",
            "net.ipv4.tcp_syn_linear_timeouts",
        ],
        verify: Some(recipes::verify_syn_every_second),
    },
    Scenario {
        name: "syn-recv-stuck",
        group: Group::Opening,
        about: "the wire loses the handshake's third ACK (every copy): the client is \
                ESTABLISHED, the server's half-open request socket stays SYN_RECV, resends \
                its SYN,ACK, and completes only with the client's first data",
        recipe: Recipe::Calls(recipes::syn_recv_stuck),
        client_path: ACTIVE_OPEN,
        server_path: PASSIVE_OPEN,
        segments: &["S", "S.", ".", "S.", ".", "P."],
        errno: None,
        wire: Some("drop-third-ack"),
        sysctls: &[],
        params: &[
            "net.ipv4.tcp_synack_retries",
            "net.ipv4.tcp_syncookies",
        ],
        verify: None,
    },
    Scenario {
        name: "nagle-delayed-ack",
        group: Group::Data,
        about: "write, write, read: Nagle holds the second write until the first is ACKed, \
                the peer delays that ACK ~40 ms; with TCP_NODELAY the stall is gone",
        recipe: Recipe::Calls(recipes::nagle_delayed_ack),
        client_path: ACTIVE_CLOSE_CLIENT,
        server_path: PASSIVE_CLOSE_SERVER,
        // The server closes as soon as it reads the EOF: its FIN usually carries the ACK of the
        // client's FIN; a reader that wakes late ACKs first (`.?`).
        segments: &["S", "S.", ".", "P.", "P.", "P.", "P.", "P.", "P.", "P.", "P.", "F.", ".?", "F.", "."],
        errno: None,
        wire: None,
        sysctls: &[],
        params: &[
            "net.ipv4.tcp_autocorking",
        ],
        verify: None,
    },
    Scenario {
        name: "retransmission",
        group: Group::Data,
        about: "the wire loses the 2nd of a burst of six lines: SACKs, fast retransmit; \
                then a lone line, lost too: the retransmission timeout",
        recipe: Recipe::Calls(recipes::retransmission),
        client_path: ACTIVE_CLOSE_CLIENT,
        server_path: PASSIVE_CLOSE_SERVER,
        // The server closes as soon as it reads the EOF: its FIN usually carries the ACK of the
        // client's FIN; a reader that wakes late ACKs first (`.?`).
        segments: &["S", "S.", ".", "P.+", "F.", ".?", "F.", "."],
        errno: None,
        wire: Some("drop=c:4 drop=c:10"),
        sysctls: &[
            ("net.ipv4.tcp_early_retrans", "0"),
            ("net.ipv4.tcp_autocorking", "0"),
        ],
        params: &[
            "net.ipv4.tcp_sack",
            "net.ipv4.tcp_recovery",
            "net.ipv4.tcp_rto_min_us",
        ],
        verify: Some(recipes::verify_retransmission),
    },
    Scenario {
        name: "zero-window",
        group: Group::Data,
        about: "the receiver (4 KiB buffer) stops reading for 1 s: its window falls to 0, \
                the sender's persist timer probes it twice, a window update restarts the flow",
        recipe: Recipe::Calls(recipes::zero_window),
        client_path: ACTIVE_CLOSE_CLIENT,
        server_path: PASSIVE_CLOSE_SERVER,
        // How the data is cut into segments, and how fast the reader catches up after
        // the update, is the kernel's choice: `*` there.
        // The receiver answers the second probe only if 500 ms passed since it answered
        // the first (`tcp_invalid_ratelimit`): `?`.
        segments: &[
            "S",
            "S.",
            ".",
            "*",
            ". win 0",
            ". probe",
            ". win 0",
            ". probe",
            ". win 0?",
            ". win update",
            "*",
        ],
        errno: None,
        wire: None,
        sysctls: &[],
        params: &[
            "net.ipv4.tcp_rmem",
            "net.ipv4.tcp_window_scaling",
            "net.ipv4.tcp_retries2",
        ],
        verify: None,
    },
    Scenario {
        name: "client-close",
        group: Group::Closing,
        about: "the client closes first (active close) and ends in TIME_WAIT; the server \
                closes 250 ms after the EOF: four segments, each FIN ACKed alone",
        recipe: Recipe::Calls(recipes::client_close),
        client_path: ACTIVE_CLOSE_CLIENT,
        server_path: PASSIVE_CLOSE_SERVER,
        segments: &["S", "S.", ".", "P.", "P.", "F.", ".", "F.", "."],
        errno: None,
        wire: None,
        sysctls: &[],
        params: &[
            "net.ipv4.tcp_fin_timeout",
            "net.ipv4.tcp_max_tw_buckets",
        ],
        verify: None,
    },
    Scenario {
        name: "client-close-piggyback",
        group: Group::Closing,
        about: "the client closes first and the server closes at once: its FIN carries the \
                ACK of the client's FIN (three segments)",
        recipe: Recipe::Calls(recipes::client_close_piggyback),
        client_path: ACTIVE_CLOSE_CLIENT,
        server_path: PASSIVE_CLOSE_SERVER,
        segments: &["S", "S.", ".", "P.", "P.", "F.", "F.", "."],
        errno: None,
        wire: None,
        sysctls: &[],
        params: &[
            "net.ipv4.tcp_fin_timeout",
        ],
        verify: None,
    },
    Scenario {
        name: "server-close",
        group: Group::Closing,
        about: "the server closes first (after its reply); the client closes 250 ms after \
                the EOF: four segments, TIME_WAIT on the server",
        recipe: Recipe::Calls(recipes::server_close),
        client_path: PASSIVE_CLOSE_CLIENT,
        server_path: ACTIVE_CLOSE_SERVER,
        segments: &["S", "S.", ".", "P.", "P.", "F.", ".", "F.", "."],
        errno: None,
        wire: None,
        sysctls: &[],
        params: &[
            "net.ipv4.tcp_fin_timeout",
        ],
        verify: None,
    },
    Scenario {
        name: "half-close",
        group: Group::Closing,
        about: "shutdown(SHUT_WR): the client's FIN, yet the server still answers, then closes",
        recipe: Recipe::Echo(EchoScript {
            lines: &["hello"],
            close: CloseStyle::Half,
            crlf: false,
            target: Target::Server,
            pace_ms: 0,
        }),
        client_path: &["CLOSED", "SYN_SENT", "ESTABLISHED", "FIN_WAIT1", "FIN_WAIT2", "TIME_WAIT"],
        server_path: &["LISTEN", "SYN_RECV", "ESTABLISHED", "CLOSE_WAIT", "LAST_ACK", "CLOSED"],
        segments: &["S", "S.", ".", "P.", "FP.", "P.", "F.", "."],
        errno: None,
        wire: None,
        sysctls: &[],
        params: &[
            "net.ipv4.tcp_fin_timeout",
        ],
        verify: None,
    },
    Scenario {
        name: "simultaneous-close",
        group: Group::Closing,
        about: "both ends close at once (the wire holds the first FIN until the other \
                exists): FIN_WAIT1 -> CLOSING on both sides",
        recipe: Recipe::Echo(EchoScript {
            lines: &["quit"],
            close: CloseStyle::Fin,
            crlf: false,
            target: Target::Server,
            // The server's FIN reaches the wire (and is held) before the client closes,
            // and is let go well within the 200 ms minimum RTO: a longer hold makes the
            // server retransmit its FIN, a third F. on the wire.
            pace_ms: 30,
        }),
        client_path: &["CLOSED", "SYN_SENT", "ESTABLISHED", "FIN_WAIT1", "CLOSING", "TIME_WAIT"],
        server_path: &["LISTEN", "SYN_RECV", "ESTABLISHED", "FIN_WAIT1", "CLOSING", "TIME_WAIT"],
        segments: &["S", "S.", ".", "P.", "P.", "F.", "F.", ".", "."],
        errno: None,
        wire: Some("hold-first-fin"),
        sysctls: &[],
        params: &[
            "net.ipv4.tcp_fin_timeout",
            "net.ipv4.tcp_orphan_retries",
        ],
        verify: None,
    },
    Scenario {
        name: "time-wait-rebind",
        group: Group::Closing,
        about: "the server closes first and keeps TIME_WAIT on its port: a new listener's \
                bind() fails with EADDRINUSE, and works with SO_REUSEADDR on both sockets",
        recipe: Recipe::Calls(recipes::time_wait_rebind),
        client_path: PASSIVE_CLOSE_CLIENT,
        server_path: ACTIVE_CLOSE_SERVER,
        // The client closes 250 ms after the EOF: its ACK of the server's FIN (at once:
        // no data came, so no delayed ACK) and its FIN leave apart.
        segments: &["S", "S.", ".", "F.", ".", "F.", "."],
        errno: Some("EADDRINUSE"),
        wire: None,
        sysctls: &[],
        params: &[
            "net.ipv4.tcp_tw_reuse",
            "net.ipv4.tcp_max_tw_buckets",
        ],
        verify: None,
    },
    Scenario {
        name: "abortive-close",
        group: Group::Resets,
        about: "SO_LINGER {on, 0} then close(): RST instead of FIN, no TIME_WAIT anywhere",
        recipe: Recipe::Echo(EchoScript {
            lines: &["hello"],
            close: CloseStyle::Rst,
            crlf: false,
            target: Target::Server,
            pace_ms: 0,
        }),
        client_path: &["CLOSED", "SYN_SENT", "ESTABLISHED", "CLOSED"],
        server_path: &["LISTEN", "SYN_RECV", "ESTABLISHED", "CLOSED"],
        segments: &["S", "S.", ".", "P.", "P.", "P.", "R."],
        errno: None,
        wire: None,
        sysctls: &[],
        params: &[],
        verify: None,
    },
    Scenario {
        name: "unread-data-reset",
        group: Group::Resets,
        about: "close() with a reply still unread turns FIN into RST (the classic example's \\r\\n bug)",
        recipe: Recipe::Echo(EchoScript {
            lines: &["hello"],
            close: CloseStyle::Unread,
            crlf: true,
            target: Target::Server,
            pace_ms: 0,
        }),
        client_path: &["CLOSED", "SYN_SENT", "ESTABLISHED", "CLOSED"],
        server_path: &["LISTEN", "SYN_RECV", "ESTABLISHED", "CLOSED"],
        segments: &["S", "S.", ".", "P.", "P.", "P.", "R."],
        errno: None,
        wire: None,
        sysctls: &[],
        params: &[],
        verify: None,
    },
    Scenario {
        name: "keepalive-timeout",
        group: Group::Resets,
        about: "keepalive every 1 s, 3 probes, and the wire cut after the handshake: the \
                probes go unanswered, the client resets and read() fails with ETIMEDOUT",
        recipe: Recipe::Calls(recipes::keepalive_timeout),
        client_path: &["CLOSED", "SYN_SENT", "ESTABLISHED", "CLOSED"],
        server_path: PASSIVE_OPEN,
        segments: &["S", "S.", ".", ". probe", ". probe", ". probe", "R."],
        errno: Some("ETIMEDOUT"),
        wire: Some("cut=3"),
        sysctls: &[],
        params: &[
            "net.ipv4.tcp_keepalive_time",
            "net.ipv4.tcp_keepalive_intvl",
            "net.ipv4.tcp_keepalive_probes",
        ],
        verify: None,
    },
];

/// The scenario called `name`.
pub fn find(name: &str) -> Option<&'static Scenario> {
    SCENARIOS.iter().find(|s| s.name == name)
}
