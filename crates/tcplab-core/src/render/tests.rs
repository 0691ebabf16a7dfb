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

#[test]
fn ladder_fits_the_width() {
    for width in [60, 80, 100, 160] {
        let style = ladder::Style {
            width,
            ..ladder::Style::default()
        };
        let text = ladder::render(&traced(), style);
        for line in text.lines().filter(|l| l.contains('│')) {
            assert!(
                line.chars().count() <= width + 14,
                "{width}: {line} ({} columns)",
                line.chars().count()
            );
        }
    }
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
    assert!(svg.contains("&lt;script&gt;&amp;&quot;&#39;"));
}

#[test]
fn state_diagram_highlights_both_paths() {
    let svg = svg::state_diagram(&traced());
    assert!(svg.contains("client step 1: CLOSED → SYN_SENT"));
    assert!(svg.contains("server step 5: FIN_WAIT2 → TIME_WAIT"));
    insta::assert_snapshot!(svg);
}
