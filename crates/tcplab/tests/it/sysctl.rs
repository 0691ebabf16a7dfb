//! `tcplab sysctl`.

use std::process::Command;

use crate::support;

#[test]
fn sysctl_json_lists_the_values_of_proc_sys() {
    let out = Command::new(support::tcplab_bin())
        .args(["sysctl", "--json"])
        .output()
        .unwrap();
    assert!(out.status.success());
    let values: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let values = values.as_array().unwrap();
    let fin = values
        .iter()
        .find(|v| v["name"] == "net.ipv4.tcp_fin_timeout")
        .expect("tcp_fin_timeout listed");
    let expected = std::fs::read_to_string("/proc/sys/net/ipv4/tcp_fin_timeout").unwrap();
    assert_eq!(fin["value"], expected.trim());
    assert_eq!(fin["topic"], "closing");
    assert!(fin["about"].as_str().unwrap().contains("FIN_WAIT2"));
    let somaxconn = values
        .iter()
        .find(|v| v["name"] == "net.core.somaxconn")
        .unwrap();
    assert!(somaxconn["value"].is_string());
}

#[test]
fn sysctl_text_groups_parameters_with_one_line_each() {
    let out = Command::new(support::tcplab_bin())
        .arg("sysctl")
        .output()
        .unwrap();
    assert!(out.status.success());
    let text = String::from_utf8(out.stdout).unwrap();
    for heading in ["opening", "closing", "keepalive", "retransmission"] {
        assert!(text.lines().any(|l| l == heading), "{heading} in\n{text}");
    }
    let line = text
        .lines()
        .find(|l| l.trim_start().starts_with("net.ipv4.tcp_keepalive_time "))
        .unwrap();
    assert!(line.contains("keepalive probe"), "{line}");
}
