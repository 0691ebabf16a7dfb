//! Socket owners: which process holds a socket, found by its inode in `/proc/*/fd`.

use std::collections::HashMap;
use std::fs;
use std::time::{Duration, Instant};

/// The process that owns a socket.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Owner {
    /// Process id.
    pub pid: u32,
    /// Command name (`/proc/PID/comm`).
    pub comm: String,
}

/// Maps socket inodes to owning processes by scanning `/proc/*/fd`, cached; a miss
/// rescans at most every `min_rescan`.
#[derive(Debug)]
pub struct Owners {
    by_inode: HashMap<u32, Owner>,
    last_scan: Option<Instant>,
    min_rescan: Duration,
}

impl Owners {
    /// An empty cache that rescans /proc at most every `min_rescan`.
    pub fn new(min_rescan: Duration) -> Owners {
        Owners {
            by_inode: HashMap::new(),
            last_scan: None,
            min_rescan,
        }
    }

    /// The owner of the socket with `inode` (0 = none: mini-socket or orphan).
    pub fn lookup(&mut self, inode: u32) -> Option<Owner> {
        if inode == 0 {
            return None;
        }
        if let Some(o) = self.by_inode.get(&inode) {
            return Some(o.clone());
        }
        if self
            .last_scan
            .is_some_and(|t| t.elapsed() < self.min_rescan)
        {
            return None;
        }
        self.rescan();
        self.by_inode.get(&inode).cloned()
    }

    fn rescan(&mut self) {
        self.last_scan = Some(Instant::now());
        self.by_inode.clear();
        let Ok(procs) = fs::read_dir("/proc") else {
            return;
        };
        for proc_entry in procs.flatten() {
            let Some(pid) = proc_entry
                .file_name()
                .to_str()
                .and_then(|s| s.parse::<u32>().ok())
            else {
                continue;
            };
            let Ok(fds) = fs::read_dir(proc_entry.path().join("fd")) else {
                continue;
            };
            let mut comm = None;
            for fd in fds.flatten() {
                let Ok(link) = fs::read_link(fd.path()) else {
                    continue;
                };
                let Some(inode) = link
                    .to_str()
                    .and_then(|l| l.strip_prefix("socket:["))
                    .and_then(|l| l.strip_suffix(']'))
                    .and_then(|l| l.parse::<u32>().ok())
                else {
                    continue;
                };
                let comm = comm
                    .get_or_insert_with(|| {
                        fs::read_to_string(proc_entry.path().join("comm"))
                            .map(|c| c.trim_end().to_string())
                            .unwrap_or_default()
                    })
                    .clone();
                self.by_inode.entry(inode).or_insert(Owner { pid, comm });
            }
        }
    }
}
