//! SVG pictures: the ladder diagram, and the RFC 9293 state diagram with each
//! endpoint's actual path drawn over it. Plain SVG 1.1, no scripts, no fonts to fetch:
//! it opens offline in any browser and embeds in the HTML page.

use std::fmt::Write as _;

use crate::state::{self, TcpState, ALL_STATES};
use crate::timeline::{flags, Cause, Connection, Item, Role};

const ROW: f64 = 24.0;
const TOP: f64 = 70.0;
const WIDTH: f64 = 1100.0;
const CLIENT_X: f64 = 380.0;
const SERVER_X: f64 = 800.0;
const CLIENT_COLOR: &str = "#1f6fd1";
const SERVER_COLOR: &str = "#d1661f";

/// Escapes text for SVG/XML content and attributes.
pub fn xml(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c if (c as u32) < 0x20 && c != '\n' && c != '\t' => out.push('\u{fffd}'),
            c => out.push(c),
        }
    }
    out
}

fn role_color(role: Role) -> &'static str {
    match role {
        Role::Client => CLIENT_COLOR,
        Role::Server => SERVER_COLOR,
    }
}

/// Characters of 12 px monospace text that fit in the lane between the two endpoints.
const LANE_CHARS: usize = ((SERVER_X - CLIENT_X - 40.0) / 7.3) as usize;

/// `text` cut to `max` characters, ending in `…` when cut.
fn fit(text: &str, max: usize) -> String {
    if text.chars().count() <= max {
        return text.to_string();
    }
    let mut out: String = text.chars().take(max.saturating_sub(1)).collect();
    out.push('…');
    out
}

/// The ladder diagram of one connection as an SVG document.
pub fn ladder(conn: &Connection) -> String {
    let rows = conn.entries.len() as f64;
    let height = TOP + rows * ROW + 40.0;
    let start = conn.entries.first().map_or(0, |e| e.ts_ns);
    let mut s = String::new();
    let _ = write!(
        s,
        r##"<svg xmlns="http://www.w3.org/2000/svg" class="ladder" width="{WIDTH}" height="{height}" viewBox="0 0 {WIDTH} {height}" font-family="ui-monospace, Menlo, Consolas, monospace" font-size="12">
<defs>
<marker id="arrow" viewBox="0 0 10 10" refX="10" refY="5" markerWidth="8" markerHeight="8" orient="auto-start-reverse"><path d="M0,0 L10,5 L0,10 z" fill="context-stroke"/></marker>
</defs>
<rect width="100%" height="100%" fill="#ffffff"/>
<text x="{CLIENT_X}" y="24" text-anchor="middle" font-weight="bold" fill="{CLIENT_COLOR}">client {client}</text>
<text x="{SERVER_X}" y="24" text-anchor="middle" font-weight="bold" fill="{SERVER_COLOR}">server {server}</text>
<text x="10" y="24" fill="#666">time (ms)</text>
<line x1="{CLIENT_X}" y1="40" x2="{CLIENT_X}" y2="{bottom}" stroke="#333" stroke-width="2"/>
<line x1="{SERVER_X}" y1="40" x2="{SERVER_X}" y2="{bottom}" stroke="#333" stroke-width="2"/>
"##,
        client = xml(&conn.client.to_string()),
        server = xml(&conn.server.to_string()),
        bottom = height - 20.0,
    );
    let mut any_inferred = false;
    for (i, e) in conn.entries.iter().enumerate() {
        let y = TOP + i as f64 * ROW;
        let ms = e.ts_ns.saturating_sub(start) as f64 / 1e6;
        let _ = writeln!(s, r##"<text x="10" y="{y}" fill="#666">{ms:.3}</text>"##);
        match &e.item {
            Item::Segment(seg) => {
                let sg = &seg.segment;
                let (x1, x2) = if seg.from == Role::Client {
                    (CLIENT_X, SERVER_X)
                } else {
                    (SERVER_X, CLIENT_X)
                };
                let color = if sg.has(flags::RST) {
                    "#c00000"
                } else {
                    role_color(seg.from)
                };
                let mut label = format!("{} seq={}", sg.flag_names(), seg.rel_seq);
                if sg.has(flags::ACK) {
                    let _ = write!(label, " ack={}", seg.rel_ack);
                }
                if sg.len > 0 {
                    let _ = write!(label, " len={}", sg.len);
                }
                if let Some(analysis) = seg.analysis {
                    label.insert_str(0, &format!("{} ", analysis.label().to_lowercase()));
                }
                if seg.retransmission {
                    label.insert_str(0, "retransmission ");
                }
                let dash = if seg.lost {
                    r#" stroke-dasharray="6 4""#
                } else {
                    ""
                };
                let x_end = if seg.lost { (x1 + x2) / 2.0 } else { x2 };
                let _ = write!(label, " win={}", sg.window);
                // Escaped as in the terminal ladder: `\r\n` stay readable.
                let preview = super::ladder::escape(&sg.payload);
                let title = if preview.is_empty() {
                    label.clone()
                } else {
                    format!("{label} \"{preview}\"")
                };
                // As much of the payload as the lane has room for, as the terminal ladder
                // shows it; all of it in the tooltip.
                let room = LANE_CHARS.saturating_sub(label.chars().count() + 3);
                if !preview.is_empty() && room >= 4 {
                    let _ = write!(label, " \"{}\"", fit(&preview, room));
                }
                let _ = writeln!(
                    s,
                    r##"<g><title>{title}</title><line x1="{x1}" y1="{y1}" x2="{x_end}" y2="{y}" stroke="{color}" stroke-width="1.6"{dash} marker-end="url(#arrow)"/><text x="{mid}" y="{ty}" text-anchor="middle" fill="{color}">{label}</text></g>"##,
                    title = xml(&title),
                    y1 = y - ROW * 0.6,
                    mid = (CLIENT_X + SERVER_X) / 2.0,
                    ty = y - ROW * 0.3 - 5.0,
                    label = xml(&label),
                );
                if seg.lost {
                    let _ = writeln!(
                        s,
                        r##"<text x="{x_end}" y="{y}" fill="#c00000" font-weight="bold">✕ lost</text>"##
                    );
                }
            }
            Item::State(st) => {
                // The name outside the endpoint's line, the cause beside it in the lane,
                // as the terminal ladder writes them.
                let (x, anchor, cause_x, cause_anchor) = match st.role {
                    Role::Client => (CLIENT_X - 10.0, "end", CLIENT_X + 10.0, "start"),
                    Role::Server => (SERVER_X + 10.0, "start", SERVER_X - 10.0, "end"),
                };
                let mark = if st.inferred { "*" } else { "" };
                let mut cause = match &st.cause {
                    Cause::Timer { explain } => format!("timer: {explain}"),
                    c => c.explain().to_string(),
                };
                if let Some(reason) = &st.rst_reason {
                    let _ = write!(cause, " ({reason})");
                }
                any_inferred |= st.inferred;
                let _ = writeln!(
                    s,
                    r##"<g><title>{title}</title><text x="{x}" y="{y}" text-anchor="{anchor}" font-weight="bold" fill="{color}">{name}{mark}</text><text x="{cause_x}" y="{y}" text-anchor="{cause_anchor}" font-size="11" fill="#555">{shown}</text></g>"##,
                    shown = xml(&fit(&cause, LANE_CHARS)),
                    title = xml(&format!(
                        "{} → {}: {cause}{}",
                        st.from.map_or("?", TcpState::name),
                        st.to,
                        st.linux
                            .as_ref()
                            .map(|l| format!(" ({l})"))
                            .unwrap_or_default()
                    )),
                    color = role_color(st.role),
                    name = st.to,
                );
            }
            Item::Call(c) => {
                let (x, anchor) = match c.role {
                    Role::Client => (CLIENT_X - 100.0, "end"),
                    Role::Server => (SERVER_X + 100.0, "start"),
                };
                let _ = writeln!(
                    s,
                    r##"<text x="{x}" y="{y}" text-anchor="{anchor}" fill="#2a7a2a">{}</text>"##,
                    xml(&c.call)
                );
            }
        }
    }
    if any_inferred {
        let _ = writeln!(
            s,
            r##"<text x="10" y="{}" fill="#666">* inferred from the segments by the RFC 9293 rules (no kernel event)</text>"##,
            height - 4.0
        );
    }
    s.push_str("</svg>\n");
    s
}

/// One SVG picture of both: the ladder, and beside it the RFC 9293 state diagram with
/// both endpoints' paths (what `--svg FILE` writes).
pub fn ladder_and_states(conn: &Connection) -> String {
    let ladder = ladder(conn);
    let states = state_diagram(conn);
    let height = (TOP + conn.entries.len() as f64 * ROW + 40.0).max(580.0);
    format!(
        r##"<svg xmlns="http://www.w3.org/2000/svg" width="{w}" height="{height}" viewBox="0 0 {w} {height}">
<rect width="100%" height="100%" fill="#ffffff"/>
<g>{ladder}</g>
<g transform="translate({WIDTH} 0)">{states}</g>
</svg>
"##,
        w = WIDTH + 700.0,
    )
}

/// Where each state sits in the diagram, after RFC 9293 Figure 5.
fn position(state: TcpState) -> (f64, f64) {
    use TcpState::*;
    match state {
        Closed => (330.0, 40.0),
        Listen => (330.0, 120.0),
        SynRecv => (130.0, 200.0),
        SynSent => (530.0, 200.0),
        Established => (330.0, 280.0),
        FinWait1 => (130.0, 360.0),
        CloseWait => (530.0, 360.0),
        FinWait2 => (130.0, 440.0),
        Closing => (330.0, 440.0),
        LastAck => (530.0, 440.0),
        TimeWait => (330.0, 520.0),
    }
}

/// The RFC 9293 state diagram with the paths of both endpoints drawn over it.
pub fn state_diagram(conn: &Connection) -> String {
    let paths = [
        (Role::Client, conn.path(Role::Client)),
        (Role::Server, conn.path(Role::Server)),
    ];
    let mut s = String::from(
        r##"<svg xmlns="http://www.w3.org/2000/svg" class="states" width="680" height="580" viewBox="0 0 680 580" font-family="ui-sans-serif, Helvetica, Arial, sans-serif" font-size="12">
<defs><marker id="tip" viewBox="0 0 10 10" refX="10" refY="5" markerWidth="7" markerHeight="7" orient="auto"><path d="M0,0 L10,5 L0,10 z" fill="context-stroke"/></marker></defs>
<rect width="100%" height="100%" fill="#ffffff"/>
"##,
    );
    // Every legal transition, thin and grey.
    for from in ALL_STATES {
        for to in ALL_STATES {
            if let Some(t) = state::transition(from, to) {
                let _ = writeln!(
                    s,
                    r##"<g><title>{} → {}: {}</title>{}</g>"##,
                    from,
                    to,
                    xml(t.cause),
                    edge(from, to, "#bbbbbb", 1.0, 0.0)
                );
            }
        }
    }
    // Each endpoint's path, numbered, offset so that both stay visible.
    for (role, path) in &paths {
        let offset = if *role == Role::Client { -4.0 } else { 4.0 };
        for (step, pair) in path.windows(2).enumerate() {
            let _ = writeln!(
                s,
                r##"<g><title>{} step {}: {} → {}</title>{}</g>"##,
                role.name(),
                step + 1,
                pair[0],
                pair[1],
                edge(pair[0], pair[1], role_color(*role), 3.0, offset)
            );
        }
    }
    for st in ALL_STATES {
        let (x, y) = position(st);
        let visited: Vec<Role> = paths
            .iter()
            .filter(|(_, p)| p.contains(&st))
            .map(|(r, _)| *r)
            .collect();
        let stroke = match visited.as_slice() {
            [] => "#888888",
            [r] => role_color(*r),
            _ => "#6a3d9a",
        };
        let width = if visited.is_empty() { 1.0 } else { 2.5 };
        let _ = writeln!(
            s,
            r##"<g><rect x="{rx}" y="{ry}" width="120" height="28" rx="6" fill="#f8f8f8" stroke="{stroke}" stroke-width="{width}"/><text x="{x}" y="{ty}" text-anchor="middle" font-weight="bold">{name}</text></g>"##,
            rx = x - 60.0,
            ry = y - 14.0,
            ty = y + 4.0,
            name = st.rfc_name(),
        );
    }
    let _ = writeln!(
        s,
        r##"<text x="10" y="570" fill="{CLIENT_COLOR}">━ client</text><text x="90" y="570" fill="{SERVER_COLOR}">━ server</text><text x="170" y="570" fill="#888">(grey: every transition RFC 9293 allows)</text>"##
    );
    s.push_str("</svg>\n");
    s
}

/// One edge between two states' boxes; a self-loop or an edge back up to CLOSED is
/// drawn as a curve so it does not cross the boxes.
fn edge(from: TcpState, to: TcpState, color: &str, width: f64, offset: f64) -> String {
    let (x1, y1) = position(from);
    let (x2, y2) = position(to);
    let (x1, y1, x2, y2) = (x1 + offset, y1 + offset, x2 + offset, y2 + offset);
    // Stop at the box edge: shorten the segment by the box's half-height along y
    // and half-width along x, whichever is hit first.
    let (dx, dy) = (x2 - x1, y2 - y1);
    let len = (dx * dx + dy * dy).sqrt().max(1.0);
    let t = ((60.0 / dx.abs().max(1e-9)).min(14.0 / dy.abs().max(1e-9)) * len).min(len / 2.0);
    let (ux, uy) = (dx / len, dy / len);
    let (sx, sy) = (x1 + ux * t, y1 + uy * t);
    let (ex, ey) = (x2 - ux * t, y2 - uy * t);
    if to == TcpState::Closed && from != TcpState::Listen {
        // Back to the top: a curve around the outside.
        let side = if x1 < 330.0 { 20.0 } else { 640.0 };
        return format!(
            r#"<path d="M{sx:.1},{sy:.1} C{side},{y1:.1} {side},{y2:.1} {ex:.1},{ey:.1}" fill="none" stroke="{color}" stroke-width="{width}" marker-end="url(#tip)"/>"#
        );
    }
    format!(
        r#"<line x1="{sx:.1}" y1="{sy:.1}" x2="{ex:.1}" y2="{ey:.1}" stroke="{color}" stroke-width="{width}" marker-end="url(#tip)"/>"#
    )
}
