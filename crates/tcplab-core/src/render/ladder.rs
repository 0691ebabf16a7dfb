//! The terminal ladder diagram: the client's column on the left, the server's on the
//! right, one arrow per segment between them, each state change written beside its
//! endpoint at the moment it happens, with the RFC's words for its cause.
//!
//! ```text
//!      time  client                                                      server
//!  0.000 ms  CLOSED       │                                            │ LISTEN
//!  0.010 ms  SYN_SENT     │ snd SYN                                    │
//!  0.012 ms               │─── SYN seq 0 win 65495 ───────────────────▶│
//! ```

use std::fmt::Write as _;

use crate::state::TcpState;
use crate::timeline::{Cause, Connection, Item, Role, SegmentEntry, StateEntry};

/// How to draw.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Style {
    /// Total width in columns (the terminal's). At least 60 is used.
    pub width: usize,
    /// ANSI colours (only on a terminal).
    pub color: bool,
    /// Payload bytes shown in a segment's label.
    pub preview: usize,
}

impl Default for Style {
    fn default() -> Self {
        Style {
            width: 100,
            color: false,
            preview: 24,
        }
    }
}

const TIME_W: usize = 11;
const SIDE_W: usize = 12;

/// ANSI colour codes used when [`Style::color`] is set.
mod ansi {
    pub const RESET: &str = "\x1b[0m";
    pub const STATE: &str = "\x1b[1;33m";
    pub const CALL: &str = "\x1b[32m";
    pub const TO_SERVER: &str = "\x1b[36m";
    pub const TO_CLIENT: &str = "\x1b[35m";
    pub const RST: &str = "\x1b[1;31m";
    pub const DIM: &str = "\x1b[2m";
}

/// Draws one connection.
pub fn render(conn: &Connection, style: Style) -> String {
    let width = style.width.max(60);
    let lane = width - TIME_W - 2 * SIDE_W - 4;
    let mut out = String::new();
    let mut notes: Vec<String> = Vec::new();
    let start = conn.entries.first().map_or(0, |e| e.ts_ns);

    let client = format!("client {}", conn.client);
    let server = format!("server {}", conn.server);
    let pad = width.saturating_sub(TIME_W + client.chars().count() + server.chars().count());
    let _ = writeln!(
        out,
        "{:>w$}{client}{}{server}",
        "",
        " ".repeat(pad),
        w = TIME_W
    );

    let mut any_inferred = false;
    let mut any_polled = false;
    for e in &conn.entries {
        let ms = e.ts_ns.saturating_sub(start) as f64 / 1e6;
        let time = format!("{ms:>8.3} ms");
        let (left, middle, right) = match &e.item {
            Item::Segment(s) => (String::new(), arrow(s, lane, style), String::new()),
            Item::Call(c) => {
                let text = paint(&c.call, ansi::CALL, style);
                side(c.role, text, c.call.chars().count(), lane)
            }
            Item::State(s) => {
                any_inferred |= s.inferred;
                any_polled |= s.poll_resolution;
                if let Some(linux) = &s.linux {
                    notes.push(format!("{} {}: {linux}", s.role.name(), s.to));
                }
                let (name, cause) = state_text(s);
                let name_len = name.chars().count();
                let name = paint(&name, ansi::STATE, style);
                let cause = fit(&cause, lane - 2);
                let middle = match s.role {
                    Role::Client => format!(" {cause:<w$} ", w = lane - 2),
                    Role::Server => format!(" {cause:>w$} ", w = lane - 2),
                };
                let middle = paint(&middle, ansi::DIM, style);
                match s.role {
                    Role::Client => (pad_to(name, name_len, SIDE_W), middle, String::new()),
                    Role::Server => (String::new(), middle, name),
                }
            }
        };
        let left = if left.is_empty() {
            " ".repeat(SIDE_W)
        } else {
            left
        };
        let middle = if middle.is_empty() {
            " ".repeat(lane)
        } else {
            middle
        };
        let line = format!("{time} {left}│{middle}│ {right}");
        let _ = writeln!(out, "{}", line.trim_end());
    }

    let _ = writeln!(out);
    for role in [Role::Client, Role::Server] {
        let path = conn.path(role);
        if !path.is_empty() {
            let names: Vec<&str> = path.iter().map(|s| s.name()).collect();
            let _ = writeln!(out, "{}: {}", role.name(), names.join(" → "));
        }
    }
    if any_inferred {
        let _ = writeln!(
            out,
            "* inferred from the segments by the RFC 9293 rules (no kernel event)"
        );
    }
    if any_polled {
        let _ = writeln!(out, "≈ seen by polling sock_diag: the time is approximate");
    }
    for (i, note) in notes.iter().enumerate() {
        let _ = writeln!(out, "[{}] {note}", i + 1);
    }
    out
}

/// The state name with its marks, and the cause text.
fn state_text(s: &StateEntry) -> (String, String) {
    let mut name = s.to.name().to_string();
    if s.inferred {
        name.push('*');
    }
    if s.poll_resolution {
        name.push('≈');
    }
    let mut cause = match &s.cause {
        Cause::Timer { explain } => format!("timer: {explain}"),
        other => other.explain().to_string(),
    };
    if let Some(reason) = &s.rst_reason {
        let _ = write!(cause, " ({reason})");
    }
    if s.from.is_none() && !s.poll_resolution {
        cause = "already open when observation began".into();
    }
    if s.poll_resolution && s.from.is_some_and(|f| !crate::state::is_legal(f, s.to)) {
        // Polls see states, not transitions: the ones in between were too short.
        cause = "states in between were too short for the polls".into();
    } else if s.from.is_some_and(|f| !crate::state::is_legal(f, s.to)) {
        cause = format!(
            "ILLEGAL {} → {}: {cause}",
            s.from.map_or("?", TcpState::name),
            s.to
        );
    }
    (name, cause)
}

/// Places a call's text beside its endpoint; a long one spills into the lane.
fn side(role: Role, text: String, len: usize, lane: usize) -> (String, String, String) {
    match role {
        Role::Client if len <= SIDE_W => (pad_to(text, len, SIDE_W), String::new(), String::new()),
        Role::Client => (
            String::new(),
            format!(" {text}{}", " ".repeat(lane.saturating_sub(len + 1))),
            String::new(),
        ),
        Role::Server => (String::new(), String::new(), text),
    }
}

/// The arrow of one segment, `lane` columns wide.
fn arrow(s: &SegmentEntry, lane: usize, style: Style) -> String {
    let seg = &s.segment;
    let mut label = seg.flag_names();
    let _ = write!(label, " seq {}", s.rel_seq);
    if seg.has(crate::timeline::flags::ACK) {
        let _ = write!(label, " ack {}", s.rel_ack);
    }
    let _ = write!(label, " win {}", seg.window);
    if seg.len > 0 {
        let _ = write!(label, " len {}", seg.len);
        let shown = &seg.payload[..seg.payload.len().min(style.preview)];
        let mut preview = escape(shown);
        if seg.payload.len() > shown.len() || (seg.len as usize) > seg.payload.len() {
            preview.push('…');
        }
        let _ = write!(label, " \"{preview}\"");
    }
    if let Some(analysis) = s.analysis {
        label = format!("{} {label}", analysis.label());
    }
    if s.retransmission {
        label = format!("RETRANSMISSION {label}");
    }
    if s.lost {
        label = format!("LOST {label}");
    }
    let body = lane.saturating_sub(6);
    let label = fit(&label, body);
    let fill = body.saturating_sub(label.chars().count());
    let to_server = s.from == Role::Client;
    let text = match (to_server, s.lost) {
        (true, false) => format!("── {label} {}─▶", "─".repeat(fill)),
        (false, false) => format!("◀─ {label} {}──", "─".repeat(fill)),
        (true, true) => format!("── {label} {}─✕", "─".repeat(fill)),
        (false, true) => format!("✕─ {label} {}──", "─".repeat(fill)),
    };
    let color = if seg.has(crate::timeline::flags::RST) {
        ansi::RST
    } else if to_server {
        ansi::TO_SERVER
    } else {
        ansi::TO_CLIENT
    };
    paint(&text, color, style)
}

/// Bytes as text for a preview: printable ASCII, `\n \r \t`, else `\xNN`.
fn escape(bytes: &[u8]) -> String {
    let mut s = String::new();
    for &b in bytes {
        match b {
            b'\n' => s.push_str("\\n"),
            b'\r' => s.push_str("\\r"),
            b'\t' => s.push_str("\\t"),
            b'"' => s.push_str("\\\""),
            b'\\' => s.push_str("\\\\"),
            0x20..=0x7e => s.push(b as char),
            _ => {
                let _ = write!(s, "\\x{b:02x}");
            }
        }
    }
    s
}

/// Cuts `text` to `width` columns, marking the cut with `…`.
fn fit(text: &str, width: usize) -> String {
    if text.chars().count() <= width {
        return text.to_string();
    }
    let mut cut: String = text.chars().take(width.saturating_sub(1)).collect();
    cut.push('…');
    cut
}

fn pad_to(text: String, len: usize, width: usize) -> String {
    format!("{text}{}", " ".repeat(width.saturating_sub(len)))
}

fn paint(text: &str, color: &str, style: Style) -> String {
    if style.color {
        format!("{color}{text}{}", ansi::RESET)
    } else {
        text.to_string()
    }
}
