//! AF_PACKET capture through libc: no libpcap on the machine.
//!
//! **Ring: TPACKET_V3.** V3 packs packets of any size densely into large blocks, so a
//! 262144-byte snap length costs nothing for small packets, and a 64 MiB ring holds
//! hundreds of thousands of them: that is what lets a 1,000,000-packet burst on `lo`
//! be captured without drops. V2 would need a fixed 256 KiB slot per packet for the
//! same snap length (a 64 MiB ring = 256 packets). V3's drawback is that a block is
//! handed over only when full or when its timer retires it, so the timer is set low
//! ([`BLOCK_TIMEOUT_MS`]): a live view lags by at most that much.
//!
//! - `lo` shows every packet twice (outgoing, then incoming): `PACKET_IGNORE_OUTGOING`
//!   keeps one copy, and the direction is left unknown (every loopback packet is both).
//! - `any` uses a cooked (`SOCK_DGRAM`) socket; each packet gets a Linux cooked v2
//!   (SLL2) header built here from its `sockaddr_ll`, as libpcap does. The filter
//!   program drops the outgoing copy of loopback packets there too.
//! - The filter runs in the kernel (`SO_ATTACH_FILTER`); its accept value is the snap
//!   length. The socket is bound only after the filter is attached, so no unfiltered
//!   packet slips in. A filter too large for the socket's option memory (ENOMEM) runs
//!   here instead, on each packet of the ring, as libpcap does; the kernel's
//!   `received` count then includes the packets it rejects.
//! - `PACKET_STATISTICS` counters reset on every read; [`Capture::stats`] accumulates.
//!
//! This module only produces `(timestamp, bytes, direction)`; parsing is the core's.

use std::ffi::CString;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::ptr;
use std::sync::atomic::{fence, Ordering};
use std::time::Duration;

use tcplab_core::filter::{Ancillary, CompileOptions, Expr, Program};
use tcplab_core::pcap::PacketDirection;
use tcplab_core::wire::{LINKTYPE_ETHERNET, LINKTYPE_LINUX_SLL2};

/// Snap length: enough for loopback's 64 KiB packets and GSO/GRO super-frames on veth.
pub const SNAPLEN: u32 = 262_144;
/// Each ring block; must hold the largest frame (snap length plus headers).
const BLOCK_SIZE: u32 = 1 << 20;
/// Blocks in the ring (64 MiB).
const BLOCK_COUNT: u32 = 64;
/// A partly filled block is handed to us after this long.
pub const BLOCK_TIMEOUT_MS: u32 = 10;
/// Length of the SLL2 header built for `any`.
const SLL2_LEN: usize = 20;
const ARPHRD_ETHER: u16 = 1;
const ARPHRD_LOOPBACK: u16 = 772;

/// Why a capture could not start.
#[derive(Debug, thiserror::Error)]
pub enum OpenError {
    /// Opening a packet socket needs CAP_NET_RAW.
    #[error("opening a packet socket needs CAP_NET_RAW")]
    Privilege,
    /// No interface by that name.
    #[error("no interface named {name:?}; interfaces here: {}", available.join(", "))]
    NoSuchInterface {
        /// The name asked for.
        name: String,
        /// Interfaces that exist (and `any`).
        available: Vec<String>,
    },
    /// Anything else, with the step that failed.
    ///
    /// The message holds the OS error, so it is not also given as the `source()`:
    /// anyhow prints every source after the message, and the reason came out twice
    /// (`compiling the filter: at column 1: ...: at column 1: ...`). The message is
    /// complete on its own because some callers show only `to_string()`.
    #[error("{step}: {cause}")]
    Io {
        /// What was being done.
        step: &'static str,
        /// The OS error.
        cause: io::Error,
    },
}

fn os(step: &'static str) -> OpenError {
    OpenError::Io {
        step,
        cause: io::Error::last_os_error(),
    }
}

/// One captured packet, borrowed from the ring until the next call.
#[derive(Debug, Clone, Copy)]
pub struct Packet<'a> {
    /// Nanoseconds since the Unix epoch (kernel timestamp).
    pub ts_ns: u64,
    /// Captured bytes (with the link header of [`Capture::linktype`]).
    pub data: &'a [u8],
    /// Length on the wire (link header included).
    pub orig_len: u32,
    /// Direction, when meaningful (not on `lo`).
    pub direction: Option<PacketDirection>,
}

/// Kernel counters since the capture started.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Stats {
    /// Packets that passed the filter.
    pub received: u64,
    /// Packets dropped because the ring was full.
    pub dropped: u64,
}

/// Lists interface names (from /sys/class/net) with their indexes.
pub fn interfaces() -> Vec<(u32, String)> {
    let mut out = Vec::new();
    if let Ok(dir) = std::fs::read_dir("/sys/class/net") {
        for entry in dir.flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            let index = std::fs::read_to_string(entry.path().join("ifindex"))
                .ok()
                .and_then(|s| s.trim().parse().ok());
            if let Some(i) = index {
                out.push((i, name));
            }
        }
    }
    out.sort();
    out
}

fn arphrd(name: &str) -> Option<u16> {
    std::fs::read_to_string(format!("/sys/class/net/{name}/type"))
        .ok()?
        .trim()
        .parse()
        .ok()
}

fn setsockopt<T>(fd: &OwnedFd, level: i32, name: i32, value: &T) -> io::Result<()> {
    // SAFETY: `value` points to a live T of the size passed; the kernel copies it.
    let rc = unsafe {
        libc::setsockopt(
            fd.as_raw_fd(),
            level,
            name,
            ptr::from_ref(value).cast(),
            size_of::<T>() as libc::socklen_t,
        )
    };
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// Attaches `program` to the socket (`SO_ATTACH_FILTER`).
fn attach(fd: &OwnedFd, program: &Program) -> io::Result<()> {
    let mut insns: Vec<libc::sock_filter> = program
        .insns
        .iter()
        .map(|i| libc::sock_filter {
            code: i.code,
            jt: i.jt,
            jf: i.jf,
            k: i.k,
        })
        .collect();
    let fprog = libc::sock_fprog {
        // Program::compile keeps programs within BPF_MAXINSNS (4096).
        len: insns.len() as u16,
        filter: insns.as_mut_ptr(),
    };
    setsockopt(fd, libc::SOL_SOCKET, libc::SO_ATTACH_FILTER, &fprog)
}

/// A running capture on one interface (or `any`).
#[derive(Debug)]
pub struct Capture {
    fd: OwnedFd,
    ring: *mut u8,
    ring_len: usize,
    block: usize,
    linktype: u32,
    cooked: bool,
    loopback: bool,
    stats: Stats,
    scratch: Vec<u8>,
    /// The filter, when the kernel would not take it and it runs here instead.
    userland: Option<Program>,
}

// SAFETY: the ring mapping is owned by this value alone and only touched through
// `&mut self`; moving it to another thread is fine.
unsafe impl Send for Capture {}

impl Capture {
    /// Opens a capture on `iface` (`any` for all) with an optional filter.
    pub fn open(iface: &str, filter: Option<&Expr>) -> Result<Capture, OpenError> {
        let known = interfaces();
        let (ifindex, hatype) = if iface == "any" {
            (0, 0)
        } else {
            match known.iter().find(|(_, n)| n == iface) {
                Some((i, _)) => (*i, arphrd(iface).unwrap_or(0)),
                None => {
                    let mut available: Vec<String> = known.into_iter().map(|(_, n)| n).collect();
                    available.push("any".into());
                    return Err(OpenError::NoSuchInterface {
                        name: iface.into(),
                        available,
                    });
                }
            }
        };
        let loopback = hatype == ARPHRD_LOOPBACK;
        // Ethernet framing (lo has it too) is captured raw; anything else cooked.
        let cooked = !(hatype == ARPHRD_ETHER || loopback);
        let kind = if cooked {
            libc::SOCK_DGRAM
        } else {
            libc::SOCK_RAW
        };
        // Protocol 0: receive nothing until bind(), after the filter is in place.
        // SAFETY: plain syscall; the result is checked.
        let raw = unsafe { libc::socket(libc::AF_PACKET, kind | libc::SOCK_CLOEXEC, 0) };
        if raw < 0 {
            let err = io::Error::last_os_error();
            return Err(match err.raw_os_error() {
                Some(libc::EPERM | libc::EACCES) => OpenError::Privilege,
                _ => OpenError::Io {
                    step: "opening a packet socket",
                    cause: err,
                },
            });
        }
        // SAFETY: `raw` is a fresh descriptor that nothing else owns.
        let fd = unsafe { OwnedFd::from_raw_fd(raw) };

        let version = libc::tpacket_versions::TPACKET_V3 as libc::c_int;
        setsockopt(&fd, libc::SOL_PACKET, libc::PACKET_VERSION, &version)
            .map_err(|e| io_err("selecting TPACKET_V3", e))?;
        if loopback {
            let one: libc::c_int = 1;
            setsockopt(&fd, libc::SOL_PACKET, libc::PACKET_IGNORE_OUTGOING, &one)
                .map_err(|e| io_err("ignoring outgoing copies on loopback", e))?;
        }
        let lo_index = known
            .iter()
            .find(|(_, n)| n == "lo")
            .map(|(i, _)| *i)
            .unwrap_or(1);
        let compile = |filter: Option<&Expr>| {
            Program::compile(
                filter,
                CompileOptions {
                    net_offset: if cooked { 0 } else { 14 },
                    drop_outgoing_on: (iface == "any").then_some(lo_index),
                    snaplen: SNAPLEN,
                },
            )
            .map_err(|e| OpenError::Io {
                step: "compiling the filter",
                cause: io::Error::other(e.to_string()),
            })
        };
        let program = compile(filter)?;
        let mut userland = None;
        if let Err(e) = attach(&fd, &program) {
            // The kernel charges the program (translated to eBPF, several times
            // larger) to the socket's option memory (net.core.optmem_max): a long
            // filter that fits BPF_MAXINSNS can still get ENOMEM. libpcap then
            // filters in user space; so do we, keeping in the kernel only what
            // needs no room (the `any` loopback de-duplication and the snap length).
            if e.raw_os_error() != Some(libc::ENOMEM) || filter.is_none() {
                return Err(io_err("attaching the filter (SO_ATTACH_FILTER)", e));
            }
            attach(&fd, &compile(None)?)
                .map_err(|e| io_err("attaching the filter (SO_ATTACH_FILTER)", e))?;
            userland = Some(program);
        }

        let req = libc::tpacket_req3 {
            tp_block_size: BLOCK_SIZE,
            tp_block_nr: BLOCK_COUNT,
            tp_frame_size: 2048,
            tp_frame_nr: BLOCK_SIZE / 2048 * BLOCK_COUNT,
            tp_retire_blk_tov: BLOCK_TIMEOUT_MS,
            tp_sizeof_priv: 0,
            tp_feature_req_word: 0,
        };
        setsockopt(&fd, libc::SOL_PACKET, libc::PACKET_RX_RING, &req)
            .map_err(|e| io_err("setting up the TPACKET_V3 ring", e))?;
        let ring_len = (BLOCK_SIZE * BLOCK_COUNT) as usize;
        // SAFETY: maps the ring the kernel just allocated for this socket; checked below.
        let ring = unsafe {
            libc::mmap(
                ptr::null_mut(),
                ring_len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_SHARED,
                fd.as_raw_fd(),
                0,
            )
        };
        if ring == libc::MAP_FAILED {
            return Err(os("mapping the ring"));
        }
        let mut cap = Capture {
            fd,
            ring: ring.cast(),
            ring_len,
            block: 0,
            linktype: if cooked {
                LINKTYPE_LINUX_SLL2
            } else {
                LINKTYPE_ETHERNET
            },
            cooked,
            loopback,
            stats: Stats::default(),
            scratch: Vec::with_capacity(SNAPLEN as usize + SLL2_LEN),
            userland,
        };
        // SAFETY: sockaddr_ll is plain data; all-zero is a valid value to start from.
        let mut sll: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
        sll.sll_family = libc::AF_PACKET as u16;
        sll.sll_protocol = (libc::ETH_P_ALL as u16).to_be();
        sll.sll_ifindex = ifindex as i32;
        // SAFETY: `sll` is a valid sockaddr_ll and the length matches it.
        let rc = unsafe {
            libc::bind(
                cap.fd.as_raw_fd(),
                ptr::from_ref(&sll).cast(),
                size_of::<libc::sockaddr_ll>() as libc::socklen_t,
            )
        };
        if rc != 0 {
            return Err(os("binding the packet socket to the interface"));
        }
        // Counters so far include nothing we want; start from zero.
        let _ = cap.read_kernel_stats();
        cap.stats = Stats::default();
        Ok(cap)
    }

    /// pcap link type of the packets delivered.
    pub fn linktype(&self) -> u32 {
        self.linktype
    }

    /// Whether the filter runs here rather than in the kernel (too large for the
    /// socket's option memory).
    pub fn filters_in_userland(&self) -> bool {
        self.userland.is_some()
    }

    /// True on a loopback device.
    pub fn is_loopback(&self) -> bool {
        self.loopback
    }

    fn read_kernel_stats(&mut self) -> io::Result<()> {
        let mut s = libc::tpacket_stats_v3 {
            tp_packets: 0,
            tp_drops: 0,
            tp_freeze_q_cnt: 0,
        };
        let mut len = size_of::<libc::tpacket_stats_v3>() as libc::socklen_t;
        // SAFETY: `s` and `len` are valid for the kernel to write.
        let rc = unsafe {
            libc::getsockopt(
                self.fd.as_raw_fd(),
                libc::SOL_PACKET,
                libc::PACKET_STATISTICS,
                ptr::from_mut(&mut s).cast(),
                &mut len,
            )
        };
        if rc != 0 {
            return Err(io::Error::last_os_error());
        }
        // tp_packets counts every packet that passed the filter, drops included.
        self.stats.received += u64::from(s.tp_packets);
        self.stats.dropped += u64::from(s.tp_drops);
        Ok(())
    }

    /// Kernel counters since the capture started.
    pub fn stats(&mut self) -> io::Result<Stats> {
        self.read_kernel_stats()?;
        Ok(self.stats)
    }

    /// Waits up to `timeout` for a block of packets and hands each to `f`. Returns the
    /// number of packets (0 on timeout or when a signal interrupted the wait).
    pub fn next_block(
        &mut self,
        timeout: Duration,
        mut f: impl FnMut(Packet<'_>) -> io::Result<()>,
    ) -> io::Result<usize> {
        let block_size = BLOCK_SIZE as usize;
        // SAFETY: `self.block < BLOCK_COUNT`, so the block lies inside the mapping.
        let block = unsafe { self.ring.add(self.block * block_size) };
        let desc = block.cast::<libc::tpacket_block_desc>();
        // SAFETY: the block descriptor is at the block start; the kernel writes
        // `block_status` concurrently, hence the volatile read and the fence.
        let status = |d: *mut libc::tpacket_block_desc| unsafe {
            ptr::read_volatile(ptr::addr_of!((*d).hdr.bh1.block_status))
        };
        if status(desc) & libc::TP_STATUS_USER == 0 {
            let mut pfd = libc::pollfd {
                fd: self.fd.as_raw_fd(),
                events: libc::POLLIN | libc::POLLERR,
                revents: 0,
            };
            let ms = timeout.as_millis().min(i32::MAX as u128) as i32;
            // SAFETY: one valid pollfd.
            let rc = unsafe { libc::poll(&mut pfd, 1, ms) };
            if rc < 0 {
                let e = io::Error::last_os_error();
                if e.kind() == io::ErrorKind::Interrupted {
                    return Ok(0);
                }
                return Err(e);
            }
            if status(desc) & libc::TP_STATUS_USER == 0 {
                return Ok(0);
            }
        }
        fence(Ordering::Acquire);
        // SAFETY: the kernel handed this block to us (TP_STATUS_USER); its header
        // fields are stable until we give it back.
        let (num, first) = unsafe {
            let h = ptr::addr_of!((*desc).hdr.bh1);
            ((*h).num_pkts as usize, (*h).offset_to_first_pkt as usize)
        };
        let mut off = first;
        let mut result = Ok(());
        let sll_at = (size_of::<libc::tpacket3_hdr>() + 15) & !15;
        for _ in 0..num {
            if off + sll_at + size_of::<libc::sockaddr_ll>() > block_size {
                break;
            }
            // SAFETY: `off` stays inside the block (checked above and below); the
            // kernel wrote a tpacket3_hdr followed by a sockaddr_ll there.
            let (hdr, sll) = unsafe {
                let p = block.add(off);
                (
                    ptr::read_unaligned(p.cast::<libc::tpacket3_hdr>()),
                    ptr::read_unaligned(p.add(sll_at).cast::<libc::sockaddr_ll>()),
                )
            };
            let mac = hdr.tp_mac as usize;
            let caplen = hdr.tp_snaplen as usize;
            if off + mac + caplen > block_size {
                break;
            }
            // SAFETY: bounds checked just above.
            let data = unsafe { std::slice::from_raw_parts(block.add(off + mac), caplen) };
            // The program sees what the socket's filter would: the same bytes, and
            // the metadata from the packet's sockaddr_ll.
            let rejected = self.userland.as_ref().is_some_and(|p| {
                let anc = Ancillary {
                    protocol: u16::from_be(sll.sll_protocol),
                    pkttype: sll.sll_pkttype,
                    ifindex: sll.sll_ifindex as u32,
                };
                p.run(data, anc) == 0
            });
            if rejected {
                if hdr.tp_next_offset == 0 {
                    break;
                }
                off += hdr.tp_next_offset as usize;
                continue;
            }
            let direction = if self.loopback {
                None
            } else if sll.sll_pkttype == libc::PACKET_OUTGOING {
                Some(PacketDirection::Outbound)
            } else {
                Some(PacketDirection::Inbound)
            };
            let ts_ns = u64::from(hdr.tp_sec) * 1_000_000_000 + u64::from(hdr.tp_nsec);
            let pkt = if self.cooked {
                // Linux cooked v2 header, all fields big-endian (LINKTYPE_LINUX_SLL2).
                let s = &mut self.scratch;
                s.clear();
                s.extend_from_slice(&sll.sll_protocol.to_ne_bytes());
                s.extend_from_slice(&[0, 0]);
                s.extend_from_slice(&(sll.sll_ifindex as u32).to_be_bytes());
                s.extend_from_slice(&sll.sll_hatype.to_be_bytes());
                s.push(sll.sll_pkttype);
                s.push(sll.sll_halen);
                s.extend_from_slice(&sll.sll_addr);
                s.extend_from_slice(data);
                Packet {
                    ts_ns,
                    data: &self.scratch[..],
                    orig_len: hdr.tp_len + SLL2_LEN as u32,
                    direction,
                }
            } else {
                Packet {
                    ts_ns,
                    data,
                    orig_len: hdr.tp_len,
                    direction,
                }
            };
            if let Err(e) = f(pkt) {
                result = Err(e);
                break;
            }
            if hdr.tp_next_offset == 0 {
                break;
            }
            off += hdr.tp_next_offset as usize;
        }
        fence(Ordering::Release);
        // SAFETY: give the block back to the kernel.
        unsafe {
            ptr::write_volatile(
                ptr::addr_of_mut!((*desc).hdr.bh1.block_status),
                libc::TP_STATUS_KERNEL,
            );
        }
        self.block = (self.block + 1) % BLOCK_COUNT as usize;
        result.map(|()| num)
    }
}

fn io_err(step: &'static str, cause: io::Error) -> OpenError {
    OpenError::Io { step, cause }
}

impl Drop for Capture {
    fn drop(&mut self) {
        // SAFETY: unmapping the mapping made in `open`, exactly once.
        unsafe {
            libc::munmap(self.ring.cast(), self.ring_len);
        }
    }
}

/// Interface name to index, for callers that need it.
pub fn ifindex(name: &str) -> Option<u32> {
    let c = CString::new(name).ok()?;
    // SAFETY: `c` is a valid NUL-terminated string.
    let i = unsafe { libc::if_nametoindex(c.as_ptr()) };
    (i != 0).then_some(i)
}
