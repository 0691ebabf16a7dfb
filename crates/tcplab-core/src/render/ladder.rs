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
    /// Total width in columns (the terminal's): every line fits in it. At least
    /// [`MIN_WIDTH`] is used.
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

/// The narrowest ladder: a narrower [`Style::width`] draws this wide anyway (the
/// lane between the two columns would be too narrow to hold an arrow's label).
pub const MIN_WIDTH: usize = 60;

/// One output line of an entry: the client's column, the lane, the server's column,
/// each already padded to its width and painted.
struct Row {
    left: String,
    middle: String,
    right: String,
}

/// Draws one connection. Every line fits in `style.width` columns (at least
/// [`MIN_WIDTH`]): text too long for its place wraps onto the lines below, indented.
pub fn render(conn: &Connection, style: Style) -> String {
    let width = style.width.max(MIN_WIDTH);
    let lane = width - TIME_W - 2 * SIDE_W - 4;
    let mut out = String::new();
    let mut notes: Vec<String> = Vec::new();
    let start = conn.entries.first().map_or(0, |e| e.ts_ns);

    header(&mut out, conn, width);

    let mut any_inferred = false;
    let mut any_polled = false;
    for e in &conn.entries {
        let rows = match &e.item {
            Item::Segment(s) => arrow(s, lane, style),
            Item::Call(c) => beside(
                c.role,
                &c.call,
                ansi::CALL,
                Vec::new(),
                ansi::CALL,
                lane,
                style,
            ),
            Item::State(s) => {
                any_inferred |= s.inferred;
                any_polled |= s.poll_resolution;
                if let Some(linux) = &s.linux {
                    notes.push(format!("{} {}: {linux}", s.role.name(), s.to));
                }
                let (name, cause) = state_text(s);
                let cause = wrap(&words(&cause), lane - 2, lane - 2);
                beside(s.role, &name, ansi::STATE, cause, ansi::DIM, lane, style)
            }
        };
        let time = time_text(e.ts_ns.saturating_sub(start));
        for (i, row) in rows.into_iter().enumerate() {
            let time = if i == 0 { time.as_str() } else { "" };
            let line = format!(
                "{time:>w$} {}│{}│ {}",
                row.left,
                row.middle,
                row.right,
                w = TIME_W
            );
            let _ = writeln!(out, "{}", line.trim_end());
        }
    }

    let _ = writeln!(out);
    for role in [Role::Client, Role::Server] {
        let path = conn.path(role);
        if !path.is_empty() {
            let last = path.len() - 1;
            let units: Vec<String> = path
                .iter()
                .enumerate()
                .map(|(i, s)| match i == last {
                    true => s.name().to_string(),
                    false => format!("{} →", s.name()),
                })
                .collect();
            footnote(&mut out, &format!("{}: ", role.name()), &units, width);
        }
    }
    if any_inferred {
        let text = "inferred from the segments by the RFC 9293 rules (no kernel event)";
        footnote(&mut out, "* ", &words(text), width);
    }
    if any_polled {
        let text = "seen by polling sock_diag: the time is approximate";
        footnote(&mut out, "≈ ", &words(text), width);
    }
    for (i, note) in notes.iter().enumerate() {
        footnote(&mut out, &format!("[{}] ", i + 1), &words(note), width);
    }
    out
}

/// The two endpoints' names above their columns; on two lines when one does not hold
/// both.
fn header(out: &mut String, conn: &Connection, width: usize) {
    let client = format!("client {}", conn.client);
    let server = format!("server {}", conn.server);
    let (c, s) = (client.chars().count(), server.chars().count());
    if TIME_W + c + 1 + s <= width {
        let pad = width - TIME_W - c - s;
        let _ = writeln!(out, "{:>TIME_W$}{client}{}{server}", "", " ".repeat(pad));
    } else {
        let indent = if TIME_W + c <= width { TIME_W } else { 0 };
        let _ = writeln!(out, "{:>indent$}{client}", "");
        let _ = writeln!(out, "{server:>width$}");
    }
}

/// A footnote below the ladder: `prefix` then `units` joined by spaces, wrapped at
/// `width`, the lines after the first indented as far as the prefix.
fn footnote(out: &mut String, prefix: &str, units: &[String], width: usize) {
    let indent = prefix.chars().count();
    for (i, line) in wrap(units, width - indent, width - indent)
        .iter()
        .enumerate()
    {
        let lead = if i == 0 { prefix } else { "" };
        let _ = writeln!(out, "{lead:indent$}{line}");
    }
}

/// A line of prose wrapped as the ladder's footnotes are, for the lines a command
/// prints around a ladder (a title, a note): at most `width` columns (at least
/// [`MIN_WIDTH`], as the ladder), the lines after the first indented by `indent`.
/// Ends with a newline.
pub fn paragraph(text: &str, width: usize, indent: usize) -> String {
    let width = width.max(MIN_WIDTH);
    let indent = indent.min(width / 2);
    let mut out = String::new();
    for (i, line) in wrap(&words(text), width, width - indent).iter().enumerate() {
        let lead = if i == 0 { 0 } else { indent };
        let _ = writeln!(out, "{:lead$}{line}", "");
    }
    out
}

/// The time column: milliseconds since the first entry, in at most [`TIME_W`] columns
/// (seconds once the milliseconds would not fit).
fn time_text(ns: u64) -> String {
    let ms = ns as f64 / 1e6;
    let s = ns as f64 / 1e9;
    [
        format!("{ms:>8.3} ms"),
        format!("{s:>9.3} s"),
        format!("{s:>9.0} s"),
    ]
    .into_iter()
    .find(|t| t.chars().count() <= TIME_W)
    .unwrap_or_else(|| format!("{:>9} s", ns / 1_000_000_000))
}

/// Text beside an endpoint (a state name or a call) with `more` lines for the lane.
/// Text too wide for the endpoint's column goes into the lane instead, left-aligned
/// for the client and right-aligned for the server, each beside its own column.
fn beside(
    role: Role,
    text: &str,
    color: &str,
    more: Vec<String>,
    more_color: &str,
    lane: usize,
    style: Style,
) -> Vec<Row> {
    let len = text.chars().count();
    let mut lane_lines: Vec<(String, &str)> = Vec::new();
    let side_text = if len <= SIDE_W {
        Some(text)
    } else {
        for line in wrap(&words(text), lane - 2, lane - 2) {
            lane_lines.push((line, color));
        }
        None
    };
    lane_lines.extend(more.into_iter().map(|l| (l, more_color)));
    let rows = lane_lines.len().max(1);
    (0..rows)
        .map(|i| {
            let side = match (i, side_text) {
                (0, Some(t)) => paint(t, color, style),
                _ => String::new(),
            };
            let side_len = if side.is_empty() { 0 } else { len };
            let middle = match lane_lines.get(i) {
                Some((line, color)) => {
                    let text = match role {
                        Role::Client => format!(" {line:<w$} ", w = lane - 2),
                        Role::Server => format!(" {line:>w$} ", w = lane - 2),
                    };
                    paint(&text, color, style)
                }
                None => " ".repeat(lane),
            };
            match role {
                Role::Client => Row {
                    left: pad_to(side, side_len, SIDE_W),
                    middle,
                    right: String::new(),
                },
                Role::Server => Row {
                    left: " ".repeat(SIDE_W),
                    middle,
                    right: side,
                },
            }
        })
        .collect()
}

/// Where to break a word too wide for its line, given the part of it that fits: after
/// a `(`, `,`, `:` or `/`, else after a `_`, else wherever the line ends.
fn break_point(fits: &[char]) -> usize {
    let after = |set: &str| {
        fits.iter()
            .rposition(|&c| set.contains(c))
            .filter(|&i| i > 0)
            .map(|i| i + 1)
    };
    after("(,:/").or_else(|| after("_")).unwrap_or(fits.len())
}

/// `text` split at spaces.
fn words(text: &str) -> Vec<String> {
    text.split(' ')
        .filter(|w| !w.is_empty())
        .map(str::to_string)
        .collect()
}

/// Packs `units` into lines: the first at most `first` columns, the others at most
/// `rest`, units joined by one space. A unit wider than a line is broken into pieces;
/// nothing is dropped.
fn wrap(units: &[String], first: usize, rest: usize) -> Vec<String> {
    let mut lines: Vec<String> = Vec::new();
    let mut line = String::new();
    let mut len = 0;
    let limit = |lines: &Vec<String>| if lines.is_empty() { first } else { rest }.max(1);
    for unit in units {
        let mut unit: Vec<char> = unit.chars().collect();
        loop {
            let max = limit(&lines);
            let room = if len == 0 {
                max
            } else {
                max.saturating_sub(len + 1)
            };
            if unit.len() <= room {
                if len > 0 {
                    line.push(' ');
                    len += 1;
                }
                line.extend(&unit);
                len += unit.len();
                break;
            }
            if len == 0 {
                // Wider than a whole line: break it where a reader would.
                let rest_of_unit = unit.split_off(break_point(&unit[..max]));
                lines.push(unit.into_iter().collect());
                unit = rest_of_unit;
                continue;
            }
            lines.push(std::mem::take(&mut line));
            len = 0;
        }
    }
    if len > 0 || lines.is_empty() {
        lines.push(line);
    }
    lines
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

/// The arrow of one segment, `lane` columns wide: the label rides on the arrow, and
/// what does not fit continues on the lines below it. The payload preview is the one
/// part that may be cut (it is a preview): it takes the room left on the label's last
/// line, or a line of its own when little is left.
fn arrow(s: &SegmentEntry, lane: usize, style: Style) -> Vec<Row> {
    let seg = &s.segment;
    let mut units: Vec<String> = Vec::new();
    if s.lost {
        units.push("LOST".into());
    }
    if s.retransmission {
        units.push("RETRANSMISSION".into());
    }
    if let Some(analysis) = s.analysis {
        units.extend(words(analysis.label()));
    }
    units.push(seg.flag_names());
    units.push(format!("seq {}", s.rel_seq));
    if seg.has(crate::timeline::flags::ACK) {
        units.push(format!("ack {}", s.rel_ack));
    }
    units.push(format!("win {}", seg.window));
    if seg.len > 0 {
        units.push(format!("len {}", seg.len));
    }
    let body = lane.saturating_sub(6);
    let mut lines = wrap(&units, body, body);
    if seg.len > 0 {
        let shown = &seg.payload[..seg.payload.len().min(style.preview)];
        let cut = seg.payload.len() > shown.len() || (seg.len as usize) > seg.payload.len();
        let last = lines.last_mut().expect("wrap gives a line");
        let room = body.saturating_sub(last.chars().count() + 1);
        // With fewer columns left, the preview would show hardly a byte: it gets a
        // line of its own instead.
        const LEAST: usize = 6;
        if room >= LEAST.min(preview_len(shown, cut)) {
            let _ = write!(last, " {}", preview(shown, cut, room));
        } else {
            lines.push(preview(shown, cut, body));
        }
    }

    let to_server = s.from == Role::Client;
    let color = if seg.has(crate::timeline::flags::RST) {
        ansi::RST
    } else if to_server {
        ansi::TO_SERVER
    } else {
        ansi::TO_CLIENT
    };
    lines
        .iter()
        .enumerate()
        .map(|(i, label)| {
            let fill = body.saturating_sub(label.chars().count());
            let text = match (i, to_server, s.lost) {
                (0, true, false) => format!("── {label} {}─▶", "─".repeat(fill)),
                (0, false, false) => format!("◀─ {label} {}──", "─".repeat(fill)),
                (0, true, true) => format!("── {label} {}─✕", "─".repeat(fill)),
                (0, false, true) => format!("✕─ {label} {}──", "─".repeat(fill)),
                _ => format!("   {label}{}", " ".repeat(lane - 3 - label.chars().count())),
            };
            Row {
                left: " ".repeat(SIDE_W),
                middle: paint(&text, color, style),
                right: String::new(),
            }
        })
        .collect()
}

/// Columns the quoted preview of `shown` takes uncut.
fn preview_len(shown: &[u8], cut: bool) -> usize {
    shown
        .iter()
        .map(|&b| escape(&[b]).chars().count())
        .sum::<usize>()
        + 2
        + usize::from(cut)
}

/// The payload preview in quotes, in at most `room` columns: `"hello\n"`, or cut at
/// a whole byte's escape and marked `"hel…"`.
fn preview(shown: &[u8], cut: bool, room: usize) -> String {
    let full = preview_len(shown, cut) <= room;
    let mut text = String::from("\"");
    let mut len = 1;
    for &b in shown {
        let e = escape(&[b]);
        let n = e.chars().count();
        if !full && len + n + 2 > room {
            break;
        }
        text.push_str(&e);
        len += n;
    }
    if cut || !full {
        text.push('…');
    }
    text.push('"');
    text
}

/// Bytes as text for a preview: printable ASCII, `\n \r \t`, else `\xNN`.
pub(crate) fn escape(bytes: &[u8]) -> String {
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
