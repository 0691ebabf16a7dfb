//! One self-contained HTML page: the ladder and the state diagram as inline SVG, the
//! paths in words, and the terminal ladder as text. No script, no stylesheet or font
//! from the network: it works offline and can be mailed or attached to a ticket.

use std::fmt::Write as _;

use super::{ladder, svg};
use crate::timeline::{Connection, Role};

/// The page for one connection, titled `title`.
pub fn render(title: &str, conn: &Connection) -> String {
    let mut s = String::new();
    let _ = write!(
        s,
        r##"<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{title}</title>
<style>
body {{ font-family: ui-sans-serif, Helvetica, Arial, sans-serif; margin: 24px; color: #222; }}
h1 {{ font-size: 20px; }}
h2 {{ font-size: 16px; margin-top: 28px; }}
.paths td {{ padding: 2px 10px 2px 0; font-family: ui-monospace, Menlo, Consolas, monospace; }}
.client {{ color: #1f6fd1; font-weight: bold; }}
.server {{ color: #d1661f; font-weight: bold; }}
.row {{ display: flex; flex-wrap: wrap; gap: 24px; align-items: flex-start; }}
svg {{ border: 1px solid #ddd; max-width: 100%; height: auto; }}
pre {{ font-size: 12px; background: #f6f6f6; padding: 12px; overflow-x: auto; }}
</style>
</head>
<body>
<h1>{title}</h1>
<table class="paths">
"##,
        title = svg::xml(title)
    );
    for role in [Role::Client, Role::Server] {
        let path: Vec<&str> = conn.path(role).iter().map(|st| st.name()).collect();
        let _ = writeln!(
            s,
            r#"<tr><td class="{name}">{name} {addr}</td><td>{path}</td></tr>"#,
            name = role.name(),
            addr = svg::xml(&conn.addr(role).to_string()),
            path = if path.is_empty() {
                "(no states)".to_string()
            } else {
                path.join(" → ")
            }
        );
    }
    s.push_str("</table>\n<div class=\"row\">\n<div>\n<h2>Ladder</h2>\n");
    s.push_str(&svg::ladder(conn));
    s.push_str("</div>\n<div>\n<h2>RFC 9293 state diagram, with the paths taken</h2>\n");
    s.push_str(&svg::state_diagram(conn));
    s.push_str("</div>\n</div>\n<h2>As text</h2>\n<pre>");
    s.push_str(&svg::xml(&ladder::render(conn, ladder::Style::default())));
    s.push_str("</pre>\n<p>Made by tcplab. Hover over an arrow or a state for details.</p>\n</body>\n</html>\n");
    s
}
