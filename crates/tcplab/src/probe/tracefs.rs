//! Kernel TCP events from tracepoints, through a private tracefs instance.
//!
//! An instance (`instances/tcplab-<pid>-<starttime>`) has its own ring buffer, clock,
//! filters and enabled events, so we never disturb the global trace or another tool.
//! We enable `sock:inet_sock_set_state`, `tcp:tcp_send_reset`, `tcp:tcp_receive_reset`
//! and `tcp:tcp_retransmit_skb`, with `trace_clock` set to `mono` (CLOCK_MONOTONIC, so
//! sock_diag polls and the tracepoints share one time line).
//!
//! # Why `trace_pipe` (text) and not the per-CPU `trace_pipe_raw` (binary)
//!
//! The transitions of one socket happen on several CPUs (connect() in process context
//! on one, the SYN,ACK in softirq on another), and what matters most is their order.
//! `trace_pipe` merges the per-CPU buffers in timestamp order inside the kernel; with
//! `trace_pipe_raw` we would read one file per CPU and re-merge with a reorder window,
//! trading latency against correctness. The text carries the full IPv4 and IPv6
//! addresses and the RST reason, and its µs timestamps are finer than the gap between
//! two transitions of one socket on loopback (≥ 5 µs measured). What text loses is the
//! socket address of `inet_sock_set_state` (its print format omits `skaddr`); sockets
//! are therefore identified by their 4-tuple, which is unique among live sockets (a
//! tuple a new connect() recycles is a new life of it: the correlator ends the old one
//! at the new open). Lost events are reported both ways the kernel tells:
//! `[LOST n EVENTS]` lines in the pipe and the per-CPU `overrun` / `dropped events`
//! counters (they count the same events: the larger is reported).
//!
//! # Keeping up with churn: measured, and why text is still enough
//!
//! Under sustained churn (`tcplab bench --mode conn --conns 50`: ~7,000 connections/s,
//! ~70,000 events/s, on 2 shared cores) the old reader lost up to 900,000 events in
//! 10 s. The profile did not blame the text: the watcher spent its time in sock_diag
//! dumps (each walks the whole established hash table) and in linear searches of the
//! held changes per event. With those gone (exact lookups, indexed state, a B-tree of
//! held changes) the kernel's text formatting and our parsing are ~30% of what remains,
//! and the reader keeps up on average; a burst it cannot follow at once waits in the
//! ring, which is therefore 32 MB per CPU ([`BUFFER_KB`]; ~400,000 events each, freed
//! with the instance). Measured: 10 s of that churn, 0 events lost, the watcher 3-7 s
//! behind at the end. `trace_pipe_raw` would save the formatting (and give `skaddr` and
//! ns times) at the price of a per-CPU merge; it is the next step if a faster churn
//! must be followed live, not needed for completeness.
//!
//! The instance is removed when [`Instance`] drops: on return, on panic (unwinding), and
//! on SIGINT/SIGTERM (the caller turns those into a normal return). A `tcplab` killed by
//! SIGKILL leaves its instance behind; [`Instance::create`] removes such stale ones: the
//! name holds the pid and the process start time, so a live process reusing the pid is
//! never mistaken for the dead owner.

use std::ffi::CString;
use std::fs;
use std::io::{self, Read};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use anyhow::Context;

mod parse;
pub use parse::{parse_line, TraceEvent};

/// Where tracefs lives when mounted the modern way.
const TRACEFS: &str = "/sys/kernel/tracing";
/// Where it lives under an old-style debugfs mount.
const DEBUGFS_TRACING: &str = "/sys/kernel/debug/tracing";
/// Prefix of our instance names.
const PREFIX: &str = "tcplab-";
/// Ring buffer size per CPU, KiB: an event takes ~90 bytes in the ring, so this holds
/// ~400,000 events per CPU, what a reader lagging behind ~7,000 connections/s for
/// several seconds needs (4 MB overran within a second there).
const BUFFER_KB: u32 = 32768;

/// The tracepoints we enable, as `system/event`.
pub const EVENTS: [&str; 4] = [
    "sock/inet_sock_set_state",
    "tcp/tcp_send_reset",
    "tcp/tcp_receive_reset",
    "tcp/tcp_retransmit_skb",
];

/// What to trace: ports filtered in the kernel (addresses are filtered by the caller:
/// the tracepoints keep addresses in byte arrays, which tracefs filters cannot compare).
#[derive(Debug, Clone, Default)]
pub struct Filter {
    /// Local or remote port must be one of these; empty = all ports.
    pub ports: Vec<u16>,
}

impl Filter {
    /// The filter expression for an event with `sport`/`dport` fields.
    fn port_expr(&self) -> Option<String> {
        if self.ports.is_empty() {
            return None;
        }
        let terms: Vec<String> = self
            .ports
            .iter()
            .map(|p| format!("sport == {p} || dport == {p}"))
            .collect();
        Some(format!("({})", terms.join(" || ")))
    }
}

/// A private tracefs instance, armed. Removing it is its `Drop`.
#[derive(Debug)]
pub struct Instance {
    dir: PathBuf,
    pipe: Option<fs::File>,
    /// Bytes of a line cut by a read boundary.
    partial: Vec<u8>,
    /// Whether the last [`Instance::read_lines`] emptied the ring (its last read would
    /// have blocked), rather than stopping at its bound.
    drained: bool,
    /// Stale instances removed when this one was created.
    pub removed_stale: Vec<String>,
}

impl Instance {
    /// Mounts tracefs if needed, removes stale instances of dead `tcplab`s, creates ours,
    /// filters and enables the events and opens `trace_pipe`. An error here most often
    /// means a missing privilege (CAP_SYS_ADMIN, or write access to tracefs).
    pub fn create(filter: &Filter) -> anyhow::Result<Instance> {
        let root = tracefs_root()?;
        let instances = root.join("instances");
        let removed_stale = remove_stale(&instances);
        let name = format!("{PREFIX}{}-{}", std::process::id(), own_start_time()?);
        let dir = instances.join(&name);
        fs::create_dir(&dir).with_context(|| format!("creating {}", dir.display()))?;
        // From here on Drop removes the directory, whatever fails next.
        let mut inst = Instance {
            dir,
            pipe: None,
            partial: Vec::new(),
            drained: false,
            removed_stale,
        };
        inst.write("trace_clock", "mono")?;
        inst.write("buffer_size_kb", &BUFFER_KB.to_string())?;
        // Wake the reader on any data rather than when the buffer is half full.
        let _ = inst.write("buffer_percent", "0");
        let ports = filter.port_expr();
        let set_state = match &ports {
            Some(p) => format!("protocol == 6 && {p}"),
            None => "protocol == 6".to_string(),
        };
        inst.write("events/sock/inet_sock_set_state/filter", &set_state)?;
        if let Some(p) = &ports {
            inst.write("events/tcp/tcp_receive_reset/filter", p)?;
            inst.write("events/tcp/tcp_retransmit_skb/filter", p)?;
        }
        for event in EVENTS {
            inst.write(&format!("events/{event}/enable"), "1")?;
        }
        inst.write("tracing_on", "1")?;
        let pipe = fs::OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_NONBLOCK | libc::O_CLOEXEC)
            .open(inst.dir.join("trace_pipe"))
            .context("opening trace_pipe")?;
        inst.pipe = Some(pipe);
        Ok(inst)
    }

    /// The instance's name.
    pub fn name(&self) -> String {
        self.dir
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default()
    }

    fn write(&self, file: &str, value: &str) -> anyhow::Result<()> {
        let path = self.dir.join(file);
        fs::write(&path, value).with_context(|| format!("writing {value:?} to {}", path.display()))
    }

    /// Waits up to `timeout_ms` for events, then returns the complete lines available
    /// (possibly none), as one text to iterate with `.lines()` (no allocation per
    /// line). EINTR returns early with what is there.
    pub fn read_lines(&mut self, timeout_ms: i32) -> io::Result<String> {
        let Some(pipe) = self.pipe.as_mut() else {
            self.drained = true;
            return Ok(String::new());
        };
        self.drained = false;
        let mut pfd = libc::pollfd {
            fd: std::os::fd::AsRawFd::as_raw_fd(pipe),
            events: libc::POLLIN,
            revents: 0,
        };
        // SAFETY: pfd is a valid pollfd for the duration of the call; nfds is 1.
        let n = unsafe { libc::poll(&mut pfd, 1, timeout_ms) };
        if n < 0 {
            let err = io::Error::last_os_error();
            return if err.kind() == io::ErrorKind::Interrupted {
                Ok(String::new())
            } else {
                Err(err)
            };
        }
        let mut buf = [0u8; 65536];
        loop {
            match pipe.read(&mut buf) {
                Ok(0) => {
                    self.drained = true;
                    break;
                }
                Ok(n) => {
                    self.partial.extend_from_slice(&buf[..n]);
                    if self.partial.len() > (1 << 20) {
                        // Drain in bounded chunks so one burst cannot grow us without bound.
                        break;
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    self.drained = true;
                    break;
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => break,
                Err(e) => return Err(e),
            }
        }
        let Some(last_nl) = self.partial.iter().rposition(|b| *b == b'\n') else {
            return Ok(String::new());
        };
        let rest = self.partial.split_off(last_nl + 1);
        let complete = std::mem::replace(&mut self.partial, rest);
        Ok(String::from_utf8(complete)
            .unwrap_or_else(|e| String::from_utf8_lossy(e.as_bytes()).into_owned()))
    }

    /// Reads, without waiting, until every event traced up to `until_ns` (trace clock)
    /// has been read: the ring is empty, or an event newer than that was read (the
    /// per-CPU buffers are merged in time order). Each event goes to `on_event`.
    ///
    /// A sock_diag poll at `until_ns` sees the sockets as they are then; what it saw
    /// is understood only after the events that led there, which a reader lagging
    /// behind a busy kernel has not read yet.
    pub fn catch_up(
        &mut self,
        until_ns: u64,
        mut on_event: impl FnMut(TraceEvent),
    ) -> io::Result<()> {
        loop {
            let mut past = false;
            for line in self.read_lines(0)?.lines() {
                if let Some(ev) = parse_line(line) {
                    past |= ev.ts_ns().is_some_and(|ts| ts > until_ns);
                    on_event(ev);
                }
            }
            if past || self.drained {
                return Ok(());
            }
        }
    }

    /// Events the kernel lost in this instance so far: the sum over CPUs of
    /// `overrun` and `dropped events` in `per_cpu/cpuN/stats`.
    pub fn lost_events(&self) -> u64 {
        let Ok(cpus) = fs::read_dir(self.dir.join("per_cpu")) else {
            return 0;
        };
        cpus.flatten()
            .filter_map(|cpu| fs::read_to_string(cpu.path().join("stats")).ok())
            .map(|stats| parse_stats_loss(&stats))
            .sum()
    }
}

/// `overrun` + `dropped events` from a `per_cpu/cpuN/stats` file.
pub fn parse_stats_loss(stats: &str) -> u64 {
    stats
        .lines()
        .filter_map(|line| {
            let (key, value) = line.split_once(':')?;
            matches!(key.trim(), "overrun" | "dropped events")
                .then(|| value.trim().parse::<u64>().ok())
                .flatten()
        })
        .sum()
}

impl Drop for Instance {
    fn drop(&mut self) {
        // The instance cannot be removed while a file in it is open.
        self.pipe = None;
        for event in EVENTS {
            let _ = fs::write(self.dir.join(format!("events/{event}/enable")), "0");
        }
        if let Err(e) = fs::remove_dir(&self.dir) {
            eprintln!(
                "tcplab: removing tracefs instance {}: {e} (remove it with: rmdir {})",
                self.dir.display(),
                self.dir.display()
            );
        }
    }
}

/// The tracefs directory, mounting tracefs at /sys/kernel/tracing if it is not mounted
/// (a fresh machine has it unmounted; `ip netns exec` gives a fresh /sys too).
fn tracefs_root() -> anyhow::Result<PathBuf> {
    for dir in [TRACEFS, DEBUGFS_TRACING] {
        if Path::new(dir).join("instances").is_dir() {
            return Ok(PathBuf::from(dir));
        }
    }
    // Mounted but closed to us (tracefs is root-only, mode 0700): say so, not "mount".
    if let Err(e) = fs::read_dir(TRACEFS) {
        if e.kind() == io::ErrorKind::PermissionDenied {
            return Err(e).context(format!("reading {TRACEFS}"));
        }
    }
    let target = CString::new(TRACEFS).expect("no NUL in a constant");
    let fstype = CString::new("tracefs").expect("no NUL in a constant");
    // SAFETY: all pointers are valid NUL-terminated strings; data may be NULL.
    let rc = unsafe {
        libc::mount(
            fstype.as_ptr(),
            target.as_ptr(),
            fstype.as_ptr(),
            0,
            std::ptr::null(),
        )
    };
    if rc != 0 {
        return Err(io::Error::last_os_error()).context(format!("mounting tracefs on {TRACEFS}"));
    }
    Ok(PathBuf::from(TRACEFS))
}

/// This process's start time in clock ticks since boot (`/proc/self/stat` field 22).
fn own_start_time() -> anyhow::Result<u64> {
    start_time(std::process::id()).context("reading /proc/self/stat")
}

fn start_time(pid: u32) -> Option<u64> {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name may hold spaces and parentheses: fields resume after the last ')'.
    let after = &stat[stat.rfind(')')? + 1..];
    after.split_whitespace().nth(19)?.parse().ok()
}

/// Whether an instance named `name` belongs to a `tcplab` that is gone.
fn is_stale(name: &str) -> bool {
    let Some(rest) = name.strip_prefix(PREFIX) else {
        return false;
    };
    let Some((pid, start)) = rest.split_once('-') else {
        return false;
    };
    let (Ok(pid), Ok(start)) = (pid.parse::<u32>(), start.parse::<u64>()) else {
        return false;
    };
    start_time(pid) != Some(start)
}

/// Removes instances of `tcplab`s that no longer run. Returns their names.
fn remove_stale(instances: &Path) -> Vec<String> {
    let Ok(entries) = fs::read_dir(instances) else {
        return Vec::new();
    };
    let mut removed = Vec::new();
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        if is_stale(&name) {
            match fs::remove_dir(entry.path()) {
                Ok(()) => removed.push(name),
                Err(e) => eprintln!("tcplab: removing stale tracefs instance {name}: {e}"),
            }
        }
    }
    removed
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stats_loss_sums_overrun_and_dropped() {
        let stats = "entries: 3\noverrun: 2\ncommit overrun: 9\nbytes: 1\ndropped events: 5\nread events: 7\n";
        assert_eq!(parse_stats_loss(stats), 7);
    }

    #[test]
    fn stale_detection_spares_live_and_foreign_instances() {
        let me = std::process::id();
        let start = start_time(me).unwrap();
        assert!(!is_stale(&format!("tcplab-{me}-{start}")));
        assert!(is_stale(&format!("tcplab-{me}-{}", start + 1)));
        assert!(!is_stale("someone-else"));
        assert!(!is_stale("tcplab-notapid-1"));
    }

    #[test]
    fn port_filter_expression() {
        let f = Filter {
            ports: vec![80, 443],
        };
        assert_eq!(
            f.port_expr().unwrap(),
            "(sport == 80 || dport == 80 || sport == 443 || dport == 443)"
        );
        assert_eq!(Filter::default().port_expr(), None);
    }
}
