//! The harness of the watch tests: a `tcplab watch --json` child whose lines are read
//! as they come, waited on with deadlines, and stopped with SIGINT.

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc::{self, Receiver};
use std::sync::RwLock;
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::support;

/// Watchers take it shared; the stale-instance test takes it exclusively, so that no
/// other watcher removes the instance it wants the next watcher to remove.
pub static WATCHERS: RwLock<()> = RwLock::new(());

pub const INSTANCES: &str = "/sys/kernel/tracing/instances";

/// A running `tcplab watch --json`, stopped with SIGINT (killed if it hangs) on drop.
pub struct Watcher {
    /// The process.
    pub child: Child,
    lines: Receiver<String>,
    errs: Receiver<String>,
    /// Everything read from stdout so far, parsed.
    pub seen: Vec<Value>,
    /// Everything read from stderr so far.
    pub stderr: Vec<String>,
}

impl Watcher {
    /// Starts `[prefix...] tcplab watch --json ARGS` and waits for its `armed` line.
    pub fn start(prefix: &[&str], args: &[&str]) -> Watcher {
        let bin = support::tcplab_bin();
        let mut cmd = match prefix.split_first() {
            Some((first, rest)) => {
                let mut c = Command::new(first);
                c.args(rest).arg(&bin);
                c
            }
            None => Command::new(&bin),
        };
        let mut child = cmd
            .arg("watch")
            .arg("--json")
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start tcplab watch");
        let lines = pump(child.stdout.take().expect("stdout"));
        let errs = pump(child.stderr.take().expect("stderr"));
        let mut w = Watcher {
            child,
            lines,
            errs,
            seen: Vec::new(),
            stderr: Vec::new(),
        };
        let deadline = Instant::now() + Duration::from_secs(20);
        while !w.stderr.iter().any(|l| l.contains("armed")) {
            assert!(
                Instant::now() < deadline,
                "watch never armed: {:?}",
                w.stderr
            );
            if let Ok(l) = w.errs.recv_timeout(Duration::from_millis(50)) {
                w.stderr.push(l);
            }
            if let Some(status) = w.child.try_wait().unwrap() {
                panic!("watch exited with {status} before arming: {:?}", w.stderr);
            }
        }
        w
    }

    /// The tracefs instance named in the `armed` line.
    pub fn instance(&self) -> Option<String> {
        self.stderr
            .iter()
            .find_map(|l| l.split("tracefs instance ").nth(1))
            .map(|n| n.trim_end_matches(')').to_string())
    }

    /// Takes in what the pumps have read so far.
    pub fn drain(&mut self) {
        while let Ok(l) = self.lines.try_recv() {
            self.seen.push(
                serde_json::from_str(&l).unwrap_or_else(|e| panic!("bad JSON line {l:?}: {e}")),
            );
        }
        while let Ok(l) = self.errs.try_recv() {
            self.stderr.push(l);
        }
    }

    /// Waits until a line satisfies `pred`, at most `limit`; returns it.
    #[track_caller]
    pub fn wait_for(
        &mut self,
        limit: Duration,
        what: &str,
        pred: impl Fn(&Value) -> bool,
    ) -> Value {
        let deadline = Instant::now() + limit;
        loop {
            self.drain();
            if let Some(v) = self.seen.iter().find(|v| pred(v)) {
                return v.clone();
            }
            assert!(
                Instant::now() < deadline,
                "no {what} within {limit:?}; seen:\n{}\nstderr: {:?}",
                self.seen
                    .iter()
                    .map(Value::to_string)
                    .collect::<Vec<_>>()
                    .join("\n"),
                self.stderr
            );
            if let Ok(l) = self.lines.recv_timeout(Duration::from_millis(50)) {
                self.seen.push(serde_json::from_str(&l).expect("JSON line"));
            }
        }
    }

    /// SIGINT, wait for a clean exit, collect everything; checks the instance is gone.
    pub fn stop(mut self) -> Watcher {
        let instance = self.instance();
        signal(self.child.id(), libc::SIGINT);
        let deadline = Instant::now() + Duration::from_secs(10);
        let status = loop {
            if let Some(s) = self.child.try_wait().unwrap() {
                break s;
            }
            assert!(Instant::now() < deadline, "watch did not exit on SIGINT");
            std::thread::park_timeout(Duration::from_millis(10));
        };
        // The pumps end at EOF: collect everything.
        for l in self.lines.iter() {
            self.seen.push(serde_json::from_str(&l).expect("JSON line"));
        }
        self.stderr.extend(self.errs.iter());
        assert!(status.success(), "watch exit {status}: {:?}", self.stderr);
        if let Some(name) = instance {
            assert!(
                !Path::new(INSTANCES).join(&name).exists(),
                "instance {name} left behind"
            );
        }
        self
    }

    /// The transitions of the socket (local, remote), as `FROM>TO`.
    pub fn sequence(&self, local: SocketAddr, remote: SocketAddr) -> Vec<String> {
        self.transitions()
            .filter(|v| v["local"] == local.to_string() && v["remote"] == remote.to_string())
            .map(|v| {
                format!(
                    "{}>{}",
                    v["from"].as_str().unwrap_or("-"),
                    v["to"].as_str().unwrap_or("?")
                )
            })
            .collect()
    }

    /// All transition lines.
    pub fn transitions(&self) -> impl Iterator<Item = &Value> {
        self.seen.iter().filter(|v| v["kind"] == "transition")
    }
}

impl Drop for Watcher {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            signal(self.child.id(), libc::SIGTERM);
            let deadline = Instant::now() + Duration::from_secs(5);
            while Instant::now() < deadline {
                if let Ok(Some(_)) = self.child.try_wait() {
                    return;
                }
                std::thread::park_timeout(Duration::from_millis(10));
            }
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

fn signal(pid: u32, sig: libc::c_int) {
    // SAFETY: kill(2) on a child we started and have not reaped.
    unsafe { libc::kill(pid as libc::pid_t, sig) };
}

fn pump(r: impl std::io::Read + Send + 'static) -> Receiver<String> {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(r).lines() {
            let Ok(line) = line else { break };
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    rx
}

/// A kernel counter from /proc/net/snmp or /proc/net/netstat, e.g. ("TcpExt:",
/// "TCPTimeWaitOverflow") or ("Tcp:", "OutRsts").
pub fn tcp_ext(section: &str, name: &str) -> u64 {
    let file = if section == "Tcp:" {
        "/proc/net/snmp"
    } else {
        "/proc/net/netstat"
    };
    let text = std::fs::read_to_string(file).expect("read the kernel's counters");
    let mut lines = text.lines().filter(|l| l.starts_with(section));
    let (Some(names), Some(values)) = (lines.next(), lines.next()) else {
        panic!("no {section} lines in {file}");
    };
    names
        .split_whitespace()
        .zip(values.split_whitespace())
        .find(|(n, _)| *n == name)
        .and_then(|(_, v)| v.parse().ok())
        .unwrap_or_else(|| panic!("{name} in {file}"))
}
