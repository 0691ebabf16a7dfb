//! Helpers shared by the integration tests.
#![allow(dead_code)]

use std::path::PathBuf;

/// Path of the `tcplab` binary built for these tests.
pub fn tcplab_bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_tcplab"))
}

/// Runs `tcplab SUBCOMMAND ARGS...` to completion and returns its output.
pub fn tcplab(subcommand: &str, args: &[&str]) -> std::process::Output {
    std::process::Command::new(tcplab_bin())
        .arg(subcommand)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("run tcplab {subcommand}: {e}"))
}

/// The client's path when it closes first.
pub const ACTIVE_CLIENT: [&str; 6] = [
    "CLOSED",
    "SYN_SENT",
    "ESTABLISHED",
    "FIN_WAIT1",
    "FIN_WAIT2",
    "TIME_WAIT",
];

/// The server's (accepted socket's) path when it closes first.
pub const ACTIVE_SERVER: [&str; 6] = [
    "LISTEN",
    "SYN_RECV",
    "ESTABLISHED",
    "FIN_WAIT1",
    "FIN_WAIT2",
    "TIME_WAIT",
];

/// The server's (accepted socket's) path when the client closes first.
pub const PASSIVE_SERVER: [&str; 6] = [
    "LISTEN",
    "SYN_RECV",
    "ESTABLISHED",
    "CLOSE_WAIT",
    "LAST_ACK",
    "CLOSED",
];

/// Whether a privileged test may run. Root: yes. Otherwise the test fails loudly,
/// unless `TCPLAB_SKIP_PRIVILEGED=1`, in which case it says "skipped" and returns false.
#[track_caller]
pub fn privileged(test: &str) -> bool {
    // SAFETY: geteuid has no preconditions and cannot fail.
    if unsafe { libc::geteuid() } == 0 {
        return true;
    }
    if std::env::var("TCPLAB_SKIP_PRIVILEGED").as_deref() == Ok("1") {
        eprintln!("skipped {test}: needs root (TCPLAB_SKIP_PRIVILEGED=1)");
        return false;
    }
    panic!(
        "{test} needs root (CAP_NET_ADMIN, CAP_NET_RAW, CAP_SYS_ADMIN): run the tests as root, \
         or set TCPLAB_SKIP_PRIVILEGED=1 to skip the privileged ones"
    );
}

/// A `tcplab serve` child process on an ephemeral loopback port. Killed (by its PID,
/// which we started) when dropped, so a failing test leaves nothing running.
pub struct Server {
    pub child: std::process::Child,
    pub addr: std::net::SocketAddr,
}

impl Server {
    /// Starts `tcplab serve --listen 127.0.0.1:0 --quiet ARGS` and waits for its
    /// `listening on` line.
    pub fn start(args: &[&str]) -> Server {
        Server::start_with(&["--listen", "127.0.0.1:0", "--quiet"], args)
    }

    /// Starts `tcplab serve BASE ARGS` with stderr discarded.
    pub fn start_with(base: &[&str], args: &[&str]) -> Server {
        use std::io::BufRead as _;
        use std::process::{Command, Stdio};
        let mut child = Command::new(tcplab_bin())
            .arg("serve")
            .args(base)
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("start tcplab serve");
        let stdout = child.stdout.take().expect("stdout");
        let mut first = String::new();
        std::io::BufReader::new(stdout)
            .read_line(&mut first)
            .expect("read the listening line");
        let addr = first
            .trim()
            .strip_prefix("listening on ")
            .unwrap_or_else(|| panic!("unexpected first line {first:?}"))
            .parse()
            .expect("address in the listening line");
        Server { child, addr }
    }

    /// Waits for the server to exit, at most `limit`; returns its exit status.
    pub fn wait_exit(&mut self, limit: std::time::Duration) -> std::process::ExitStatus {
        let deadline = std::time::Instant::now() + limit;
        loop {
            if let Some(status) = self.child.try_wait().expect("try_wait") {
                return status;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "server did not exit within {limit:?}"
            );
            std::thread::park_timeout(std::time::Duration::from_millis(5));
        }
    }

    /// Resident memory of the server process in KiB (VmRSS).
    pub fn rss_kib(&self) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id()))
            .expect("read /proc/PID/status");
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .expect("VmRSS")
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The kernel's TCP sockets with local port `port`, from /proc/net/tcp and tcp6:
/// (remote port, state code as in include/net/tcp_states.h).
pub fn sockets_on_port(port: u16) -> Vec<(u16, u8)> {
    let mut found = Vec::new();
    for file in ["/proc/net/tcp", "/proc/net/tcp6"] {
        let Ok(text) = std::fs::read_to_string(file) else {
            continue;
        };
        for line in text.lines().skip(1) {
            let fields: Vec<&str> = line.split_whitespace().collect();
            let port_of = |f: &str| {
                f.rsplit(':')
                    .next()
                    .and_then(|p| u16::from_str_radix(p, 16).ok())
            };
            let (Some(local), Some(remote), Some(state)) = (
                fields.get(1).and_then(|f| port_of(f)),
                fields.get(2).and_then(|f| port_of(f)),
                fields.get(3).and_then(|s| u8::from_str_radix(s, 16).ok()),
            ) else {
                continue;
            };
            if local == port {
                found.push((remote, state));
            }
        }
    }
    found
}

/// include/net/tcp_states.h
pub const TCP_CLOSE_WAIT: u8 = 8;
pub const TCP_LAST_ACK: u8 = 9;

/// Removes a directory (and what is in it) when dropped, also when the test fails.
pub struct RemoveDir(pub PathBuf);

impl Drop for RemoveDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// The states of `role` in a `--json` timeline connection, in order: the first `from`
/// (when known), then every `to`.
pub fn timeline_path(conn: &serde_json::Value, role: &str) -> Vec<String> {
    let mut path = Vec::new();
    for e in conn["entries"].as_array().expect("entries") {
        if e["type"] == "state" && e["role"] == role {
            if path.is_empty() {
                if let Some(from) = e["from"].as_str() {
                    path.push(from.to_string());
                }
            }
            path.push(e["to"].as_str().expect("to").to_string());
        }
    }
    path
}
