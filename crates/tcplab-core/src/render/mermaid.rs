//! A Mermaid `sequenceDiagram` of a timeline: renders on GitHub, GitLab and in many
//! editors. Segments are messages, state changes are notes over their endpoint, calls
//! are notes beside it, a lost segment is a message that ends in a cross.

use std::fmt::Write as _;

use crate::timeline::{flags, Connection, Item, Role};

/// Writes `conn` as a Mermaid sequence diagram.
pub fn render(conn: &Connection) -> String {
    let mut out = String::from("sequenceDiagram\n");
    let _ = writeln!(
        out,
        "    participant C as client {}",
        text(&conn.client.to_string())
    );
    let _ = writeln!(
        out,
        "    participant S as server {}",
        text(&conn.server.to_string())
    );
    let id = |r: Role| if r == Role::Client { "C" } else { "S" };
    for e in &conn.entries {
        match &e.item {
            Item::Segment(s) => {
                let seg = &s.segment;
                let mut label = format!("{} seq={}", seg.flag_names(), s.rel_seq);
                if seg.has(flags::ACK) {
                    let _ = write!(label, " ack={}", s.rel_ack);
                }
                if seg.len > 0 {
                    let _ = write!(label, " len={}", seg.len);
                }
                if let Some(analysis) = s.analysis {
                    label.insert_str(0, &format!("{}: ", analysis.label().to_lowercase()));
                }
                if s.retransmission {
                    label.insert_str(0, "retransmission: ");
                }
                let arrow = if s.lost { "-x" } else { "->>" };
                let _ = writeln!(
                    out,
                    "    {}{arrow}{}: {}",
                    id(s.from),
                    id(s.from.peer()),
                    text(&label)
                );
            }
            Item::State(s) => {
                let mark = if s.inferred { " (inferred)" } else { "" };
                let reason = s
                    .rst_reason
                    .as_ref()
                    .map(|r| format!(" ({r})"))
                    .unwrap_or_default();
                let _ = writeln!(
                    out,
                    "    Note over {}: {}{mark}<br/>{}",
                    id(s.role),
                    s.to,
                    text(&format!("{}{reason}", s.cause.explain()))
                );
            }
            Item::Call(c) => {
                let place = if c.role == Role::Client {
                    "left of"
                } else {
                    "right of"
                };
                let _ = writeln!(out, "    Note {place} {}: {}", id(c.role), text(&c.call));
            }
        }
    }
    out
}

/// Makes text safe inside a Mermaid message: `#` and `;` become entity codes, and
/// characters that end a statement or open markup are replaced.
fn text(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '#' => out.push_str("#35;"),
            ';' => out.push_str("#59;"),
            '<' => out.push_str("#lt;"),
            '>' => out.push_str("#gt;"),
            '\n' | '\r' => out.push(' '),
            c => out.push(c),
        }
    }
    out
}
