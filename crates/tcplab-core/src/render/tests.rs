use super::*;
use crate::timeline::fixtures::*;
use crate::timeline::{build, infer};

fn traced() -> Connection {
    build(&echo_segments(), &echo_changes(), &echo_calls()).remove(0)
}

#[test]
fn ladder_of_a_traced_echo_run() {
    insta::assert_snapshot!(ladder::render(&traced(), ladder::Style::default()));
}

#[test]
fn ladder_of_an_inferred_echo_run_marks_inferred_states() {
    let conn = infer(&echo_segments()).remove(0);
    let text = ladder::render(&conn, ladder::Style::default());
    assert!(text.contains("SYN_SENT*"));
    assert!(text.contains("* inferred from the segments"));
    insta::assert_snapshot!(text);
}

fn reset() -> Connection {
    build(&reset_segments(), &reset_changes(), &reset_calls()).remove(0)
}

#[test]
fn ladder_of_a_reset_after_a_retransmission() {
    let text = ladder::render(&reset(), ladder::Style::default());
    assert!(
        text.contains("RETRANSMISSION PSH,ACK seq 1 ack 100"),
        "{text}"
    );
    assert!(text.contains("(TCP_ABORT_ON_CLOSE)"), "{text}");
    insta::assert_snapshot!(text);
}

#[test]
fn ladder_of_an_inferred_reset_after_a_retransmission() {
    let text = ladder::render(
        &infer(&reset_segments()).remove(0),
        ladder::Style::default(),
    );
    assert!(text.contains("CLOSED*"), "{text}");
    insta::assert_snapshot!(text);
}

#[test]
fn ladder_at_the_narrowest_width_wraps_instead_of_cutting() {
    let style = ladder::Style {
        width: ladder::MIN_WIDTH,
        ..ladder::Style::default()
    };
    insta::assert_snapshot!(ladder::render(&reset(), style));
}

/// The richest timelines there are: traced and inferred, long calls on both sides,
/// RST reasons, retransmissions, Linux footnotes, and long IPv6 addresses.
fn rich_timelines() -> Vec<Connection> {
    let mut v6 = reset();
    v6.client = "[2001:db8:ffff:ffff:ffff:ffff:ffff:1]:65535"
        .parse()
        .unwrap();
    v6.server = "[2001:db8:ffff:ffff:ffff:ffff:ffff:2]:54321"
        .parse()
        .unwrap();
    vec![
        traced(),
        infer(&echo_segments()).remove(0),
        reset(),
        infer(&reset_segments()).remove(0),
        v6,
    ]
}

#[test]
fn ladder_fits_the_width() {
    for conn in rich_timelines() {
        for width in [ladder::MIN_WIDTH, 61, 72, 80, 100, 120, 160] {
            for color in [false, true] {
                let style = ladder::Style {
                    width,
                    color,
                    ..ladder::Style::default()
                };
                let text = ladder::render(&conn, style);
                // Colour codes take no columns.
                let plain = strip_ansi(&text);
                for line in plain.lines() {
                    assert!(
                        line.chars().count() <= width,
                        "{width}: {line} ({} columns)",
                        line.chars().count()
                    );
                }
            }
        }
    }
}

#[test]
fn ladder_of_a_long_capture_shows_seconds_in_the_time_column() {
    // A replayed file can span hours: the time column stays 11 columns wide.
    let mut conn = reset();
    let last = conn.entries.len() - 1;
    conn.entries[last].ts_ns += 7_200 * 1_000_000_000;
    let text = ladder::render(&conn, ladder::Style::default());
    let line = text.lines().find(|l| l.contains("ECONNRESET")).unwrap();
    assert!(
        line.starts_with(" 7200.001 s             │ read()"),
        "{line}"
    );
    for line in text.lines() {
        assert!(line.chars().count() <= 100, "{line}");
    }
}

#[test]
fn ladder_narrower_than_the_minimum_is_drawn_at_the_minimum() {
    let narrow = ladder::Style {
        width: 20,
        ..ladder::Style::default()
    };
    let least = ladder::Style {
        width: ladder::MIN_WIDTH,
        ..ladder::Style::default()
    };
    assert_eq!(
        ladder::render(&reset(), narrow),
        ladder::render(&reset(), least)
    );
}

#[test]
fn ladder_wraps_rather_than_loses_text() {
    // Every word of every label, call, cause, path and footnote is still there at the
    // narrowest width, if need be broken across lines (payload previews left out: they
    // are the one thing that may be cut).
    let boxes = |c: char| c.is_whitespace() || "│─▶◀✕".contains(c);
    for conn in rich_timelines() {
        let style = ladder::Style {
            preview: 0,
            ..ladder::Style::default()
        };
        let wide = ladder::render(&conn, style);
        let narrow = ladder::render(
            &conn,
            ladder::Style {
                width: ladder::MIN_WIDTH,
                ..style
            },
        );
        let joined: String = narrow.chars().filter(|&c| !boxes(c)).collect();
        for word in wide.split(boxes).filter(|w| !w.is_empty()) {
            assert!(joined.contains(word), "{word} is lost:\n{narrow}");
        }
    }
}

#[test]
fn paragraph_wraps_prose_to_the_width_with_an_indent() {
    let title = "tcplab lab time-wait-rebind: the server closes first and keeps TIME_WAIT on \
                 its port: a new listener's bind() fails with EADDRINUSE";
    let text = ladder::paragraph(title, 60, 4);
    assert_eq!(
        text,
        "tcplab lab time-wait-rebind: the server closes first and\n    \
         keeps TIME_WAIT on its port: a new listener's bind()\n    \
         fails with EADDRINUSE\n"
    );
    assert_eq!(ladder::paragraph("short", 80, 4), "short\n");
}

fn strip_ansi(text: &str) -> String {
    let mut out = String::new();
    let mut chars = text.chars();
    while let Some(c) = chars.next() {
        if c == '\x1b' {
            for c in chars.by_ref() {
                if c == 'm' {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}

#[test]
fn ladder_has_no_colour_codes_unless_asked() {
    let plain = ladder::render(&traced(), ladder::Style::default());
    assert!(!plain.contains('\x1b'));
    let color = ladder::Style {
        color: true,
        ..ladder::Style::default()
    };
    assert!(ladder::render(&traced(), color).contains("\x1b[1;33m"));
}

#[test]
fn mermaid_of_a_traced_echo_run() {
    insta::assert_snapshot!(mermaid::render(&traced()));
}

#[test]
fn mermaid_of_a_reset_after_a_retransmission() {
    let text = mermaid::render(&reset());
    assert!(text.contains("rcv RST (TCP_ABORT_ON_CLOSE)"), "{text}");
    insta::assert_snapshot!(text);
}

#[test]
fn json_document_has_version_and_connections() {
    let value: serde_json::Value = serde_json::from_str(&json(&[traced()])).unwrap();
    assert_eq!(value["version"], 1);
    assert_eq!(value["connections"][0]["client"], C);
    let first_state = value["connections"][0]["entries"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["type"] == "state")
        .unwrap();
    assert_eq!(first_state["to"], "SYN_SENT");
    assert_eq!(first_state["cause"]["kind"], "sent");
}

#[test]
fn html_is_one_self_contained_page() {
    let page = html::render("tcplab lab echo", &traced());
    assert!(page.starts_with("<!DOCTYPE html>"));
    assert!(page.contains("<svg") && page.contains("class=\"states\""));
    assert!(page.contains("CLOSED → SYN_SENT → ESTABLISHED → CLOSE_WAIT → LAST_ACK → CLOSED"));
    // Offline: nothing is fetched.
    for fetch in ["src=", "href=", "@import", "url(http"] {
        assert!(!page.contains(fetch), "page fetches something: {fetch}");
    }
    assert!(!page.contains("<script"));
}

#[test]
fn svg_escapes_payload_text() {
    let mut conn = traced();
    for e in &mut conn.entries {
        if let crate::timeline::Item::Segment(s) = &mut e.item {
            s.segment.payload = b"<script>&\"'".to_vec();
        }
    }
    let svg = svg::ladder(&conn);
    assert!(!svg.contains("<script>"));
    // Escaped as the ladder's preview (`\"`), then for XML.
    assert!(svg.contains("&lt;script&gt;&amp;\\&quot;&#39;"), "{svg}");
}

#[test]
fn state_diagram_highlights_both_paths() {
    let svg = svg::state_diagram(&traced());
    assert!(svg.contains("client step 1: CLOSED → SYN_SENT"));
    assert!(svg.contains("server step 5: FIN_WAIT2 → TIME_WAIT"));
    insta::assert_snapshot!(svg);
}

#[test]
fn svg_ladder_of_a_traced_echo_run() {
    insta::assert_snapshot!(svg::ladder(&traced()));
}

#[test]
fn svg_ladder_of_a_reset_after_a_retransmission() {
    let svg = svg::ladder(&reset());
    assert!(svg.contains("retransmission PSH,ACK"));
    insta::assert_snapshot!(svg);
}

#[test]
fn svg_ladder_and_states_of_a_traced_echo_run() {
    insta::assert_snapshot!(svg::ladder_and_states(&traced()));
}

#[test]
fn html_of_a_traced_echo_run() {
    insta::assert_snapshot!(html::render("tcplab lab echo", &traced()));
}

#[test]
fn json_of_a_traced_echo_run() {
    insta::assert_snapshot!(json(&[traced()]));
}

#[test]
fn json_of_a_reset_after_a_retransmission() {
    insta::assert_snapshot!(json(&[reset()]));
}

/// The comments of the annotated pcapng, one line per commented segment.
fn comments(conn: &Connection) -> String {
    conn.segment_comments()
        .iter()
        .map(|((ts, seq, flags), text)| format!("{ts} seq {seq} flags {flags:#05x}: {text}\n"))
        .collect()
}

#[test]
fn pcapng_comments_of_a_traced_echo_run() {
    insta::assert_snapshot!(comments(&traced()));
}

#[test]
fn pcapng_comments_of_an_inferred_reset() {
    insta::assert_snapshot!(comments(&infer(&reset_segments()).remove(0)));
}

#[test]
fn pcapng_comments_of_a_traced_reset() {
    insta::assert_snapshot!(comments(&reset()));
}
