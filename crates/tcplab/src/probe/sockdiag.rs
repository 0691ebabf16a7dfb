//! TCP sockets from netlink sock_diag (`NETLINK_SOCK_DIAG`, what `ss` uses).
//!
//! The tracepoints see full sockets only. sock_diag also shows the two kinds of
//! mini-socket Linux uses to save memory: the timewait socket (TIME_WAIT, and FIN_WAIT2
//! after an orphaning close) and the request socket (a half-open SYN_RECV). It gives
//! each socket's cookie (stable from request socket to child to timewait socket), the
//! inode that leads to the owning process, and the remaining timer, which dates a
//! timewait socket's start to the millisecond.
//!
//! The requests are built and the answers parsed by hand (no unsafe casts): a
//! `nlmsghdr` followed by `struct inet_diag_req_v2`, answered by `struct inet_diag_msg`
//! records (include/uapi/linux/inet_diag.h). Ports and addresses are big-endian.

use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

mod owners;
pub use owners::{Owner, Owners};

const SOCK_DIAG_BY_FAMILY: u16 = 20;
const NLM_F_REQUEST: u16 = 0x1;
const NLM_F_DUMP: u16 = 0x300;
const NLMSG_ERROR: u16 = 2;
const NLMSG_DONE: u16 = 3;
const NLMSG_HDRLEN: usize = 16;
const INET_DIAG_REQ_BYTECODE: u16 = 1;
const REQ_LEN: usize = 56;
const MSG_LEN: usize = 72;
/// The timer code sock_diag gives timewait mini-sockets.
const TIMER_TIMEWAIT: u8 = 3;

/// Bit mask of every Linux state (`1 << TCP_*`), including request sockets.
pub const ALL_STATES: u32 = 0x1ffe;
/// TIME_WAIT, FIN_WAIT2 (where timewait mini-sockets live) and SYN_RECV + NEW_SYN_RECV
/// (request sockets): what the tracepoint cannot see.
pub const MINI_STATES: u32 = (1 << 6) | (1 << 5) | (1 << 3) | (1 << 12);

/// One socket as sock_diag reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DiagSocket {
    /// Linux `TCP_*` state (a timewait socket gives its substate: FIN_WAIT2 or
    /// TIME_WAIT; a request socket gives SYN_RECV).
    pub state: u8,
    /// Local address.
    pub local: SocketAddr,
    /// Remote address.
    pub remote: SocketAddr,
    /// `SO_COOKIE`.
    pub cookie: u64,
    /// Inode of the socket file; 0 for mini-sockets and orphaned sockets.
    pub inode: u32,
    /// Pending timer (0 none, 1 retransmit, 2 keepalive, 3 TIME_WAIT, 4 zero window).
    pub timer: u8,
    /// Time until the timer fires, ms.
    pub expires_ms: u32,
    /// Retransmissions so far (for a request socket: of its SYN,ACK).
    pub retrans: u8,
}

impl DiagSocket {
    /// True for a timewait mini-socket (TIME_WAIT or FIN_WAIT2 after close).
    pub fn is_timewait(&self) -> bool {
        self.timer == TIMER_TIMEWAIT && self.inode == 0
    }
}

/// A netlink sock_diag socket.
#[derive(Debug)]
pub struct SockDiag {
    fd: OwnedFd,
    seq: u32,
    bytecode: Vec<u8>,
}

impl SockDiag {
    /// Opens the netlink socket. Needs no privilege.
    pub fn open() -> io::Result<SockDiag> {
        // SAFETY: plain socket(2) call; the result is checked.
        let fd = unsafe {
            libc::socket(
                libc::AF_NETLINK,
                libc::SOCK_DGRAM | libc::SOCK_CLOEXEC,
                libc::NETLINK_SOCK_DIAG,
            )
        };
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: fd is a fresh descriptor we own.
        let fd = unsafe { OwnedFd::from_raw_fd(fd) };
        Ok(SockDiag {
            fd,
            seq: 0,
            bytecode: Vec::new(),
        })
    }

    /// Makes the kernel return only sockets with one of `ports` as local or remote
    /// port (all sockets when empty). Returns false when there are too many ports for
    /// the kernel filter; the caller must then filter itself (it should anyway for
    /// addresses).
    pub fn filter_ports(&mut self, ports: &[u16]) -> bool {
        match port_bytecode(ports) {
            Some(bc) => {
                self.bytecode = bc;
                true
            }
            None => {
                self.bytecode.clear();
                false
            }
        }
    }

    /// All TCP sockets (IPv4 and IPv6) whose state is in `states` (`1 << TCP_*` bits).
    pub fn dump(&mut self, states: u32) -> io::Result<Vec<DiagSocket>> {
        self.dump_families(&[libc::AF_INET as u8, libc::AF_INET6 as u8], states)
    }

    /// The TCP sockets of these address families (`AF_INET`, `AF_INET6`) whose state is
    /// in `states`. Each family is one walk of the whole established hash table.
    pub fn dump_families(&mut self, families: &[u8], states: u32) -> io::Result<Vec<DiagSocket>> {
        let mut out = Vec::new();
        for family in families {
            self.dump_family(*family, states, &mut out)?;
        }
        Ok(out)
    }

    fn dump_family(
        &mut self,
        family: u8,
        states: u32,
        out: &mut Vec<DiagSocket>,
    ) -> io::Result<()> {
        self.seq = self.seq.wrapping_add(1);
        let (req, seq) = (request(family, states, self.seq, &self.bytecode), self.seq);
        let mut buf = vec![0u8; 1 << 16];
        self.exchange(&req, &mut buf, |reply| {
            match parse_messages(reply, seq, out) {
                Parsed::More => None,
                Parsed::Done => Some(Ok(())),
                Parsed::Error(errno) => Some(Err(io::Error::from_raw_os_error(errno))),
            }
        })
    }

    /// Sends `req`, then hands each datagram of the answer to `on_reply` until it
    /// returns a result.
    fn exchange<T>(
        &mut self,
        req: &[u8],
        buf: &mut [u8],
        mut on_reply: impl FnMut(&[u8]) -> Option<io::Result<T>>,
    ) -> io::Result<T> {
        // SAFETY: req is a valid buffer of req.len() bytes; fd is a netlink socket.
        let sent = unsafe { libc::send(self.fd.as_raw_fd(), req.as_ptr().cast(), req.len(), 0) };
        if sent < 0 {
            return Err(io::Error::last_os_error());
        }
        loop {
            // SAFETY: buf is valid for buf.len() bytes of writes.
            let n =
                unsafe { libc::recv(self.fd.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len(), 0) };
            if n < 0 {
                let err = io::Error::last_os_error();
                if err.kind() == io::ErrorKind::Interrupted {
                    continue;
                }
                return Err(err);
            }
            if let Some(result) = on_reply(&buf[..n as usize]) {
                return result;
            }
        }
    }
}

/// `INET_DIAG_NOCOOKIE`: a lookup that does not check the cookie.
const NO_COOKIE: u32 = !0;

impl SockDiag {
    /// The socket with exactly this tuple (full, timewait or request socket), if any.
    /// One hash lookup in the kernel (`inet_diag_find_one_icsk`), where a dump walks
    /// the whole established hash table (262,144 buckets here, ~1.7 ms per family
    /// whatever the filter): what keeps polling a few known sockets nearly free.
    pub fn lookup(
        &mut self,
        local: SocketAddr,
        remote: SocketAddr,
    ) -> io::Result<Option<DiagSocket>> {
        self.seq = self.seq.wrapping_add(1);
        let (req, seq) = (lookup_request(local, remote, self.seq), self.seq);
        let mut buf = [0u8; 4096];
        self.exchange(&req, &mut buf, |reply| {
            let mut out = Vec::new();
            match parse_messages(reply, seq, &mut out) {
                // Answers of an earlier, abandoned request carry another seq: skip them.
                Parsed::More if out.is_empty() => return None,
                Parsed::More | Parsed::Done => {}
                Parsed::Error(errno) if errno == libc::ENOENT => return Some(Ok(None)),
                Parsed::Error(errno) => return Some(Err(io::Error::from_raw_os_error(errno))),
            }
            // Without an exact match the kernel falls back to a listener on the port.
            Some(Ok(out.into_iter().find(|s| {
                same_addr(s.local, local) && same_addr(s.remote, remote)
            })))
        })
    }
}

/// Equal addresses, an IPv4-mapped IPv6 address being its IPv4 address.
fn same_addr(a: SocketAddr, b: SocketAddr) -> bool {
    a.port() == b.port() && a.ip().to_canonical() == b.ip().to_canonical()
}

/// The bytes of a request for the one socket with this tuple (`NLM_F_REQUEST` only,
/// the tuple in `inet_diag_sockid`, no cookie check).
fn lookup_request(local: SocketAddr, remote: SocketAddr, seq: u32) -> Vec<u8> {
    let v4 = |a: SocketAddr| match a.ip() {
        IpAddr::V4(ip) => Some(ip),
        IpAddr::V6(ip) => ip.to_ipv4_mapped(),
    };
    let (family, src, dst) = match (v4(local), v4(remote)) {
        (Some(l), Some(r)) => {
            let mut src = [0u8; 16];
            let mut dst = [0u8; 16];
            src[..4].copy_from_slice(&l.octets());
            dst[..4].copy_from_slice(&r.octets());
            (libc::AF_INET as u8, src, dst)
        }
        _ => {
            let v6 = |a: SocketAddr| match a.ip() {
                IpAddr::V4(ip) => ip.to_ipv6_mapped().octets(),
                IpAddr::V6(ip) => ip.octets(),
            };
            (libc::AF_INET6 as u8, v6(local), v6(remote))
        }
    };
    let total = NLMSG_HDRLEN + REQ_LEN;
    let mut req = Vec::with_capacity(total);
    req.extend_from_slice(&(total as u32).to_ne_bytes());
    req.extend_from_slice(&SOCK_DIAG_BY_FAMILY.to_ne_bytes());
    req.extend_from_slice(&NLM_F_REQUEST.to_ne_bytes());
    req.extend_from_slice(&seq.to_ne_bytes());
    req.extend_from_slice(&0u32.to_ne_bytes());
    req.extend_from_slice(&[family, libc::IPPROTO_TCP as u8, 0, 0]);
    req.extend_from_slice(&ALL_STATES.to_ne_bytes());
    req.extend_from_slice(&local.port().to_be_bytes());
    req.extend_from_slice(&remote.port().to_be_bytes());
    req.extend_from_slice(&src);
    req.extend_from_slice(&dst);
    req.extend_from_slice(&0u32.to_ne_bytes());
    req.extend_from_slice(&NO_COOKIE.to_ne_bytes());
    req.extend_from_slice(&NO_COOKIE.to_ne_bytes());
    req
}

/// The bytes of one dump request; `bytecode` (may be empty) filters in the kernel.
fn request(family: u8, states: u32, seq: u32, bytecode: &[u8]) -> Vec<u8> {
    let attr_len = if bytecode.is_empty() {
        0
    } else {
        4 + bytecode.len()
    };
    let total = NLMSG_HDRLEN + REQ_LEN + attr_len;
    let mut req = Vec::with_capacity(total);
    req.extend_from_slice(&(total as u32).to_ne_bytes());
    req.extend_from_slice(&SOCK_DIAG_BY_FAMILY.to_ne_bytes());
    req.extend_from_slice(&(NLM_F_REQUEST | NLM_F_DUMP).to_ne_bytes());
    req.extend_from_slice(&seq.to_ne_bytes());
    req.extend_from_slice(&0u32.to_ne_bytes());
    // inet_diag_req_v2: family, protocol, ext, pad, states, then a zeroed sockid.
    req.extend_from_slice(&[family, libc::IPPROTO_TCP as u8, 0, 0]);
    req.extend_from_slice(&states.to_ne_bytes());
    req.resize(NLMSG_HDRLEN + REQ_LEN, 0);
    if !bytecode.is_empty() {
        req.extend_from_slice(&(attr_len as u16).to_ne_bytes());
        req.extend_from_slice(&INET_DIAG_REQ_BYTECODE.to_ne_bytes());
        req.extend_from_slice(bytecode);
    }
    req
}

/// inet_diag bytecode accepting sockets whose local or remote port is in `ports`
/// (include/uapi/linux/inet_diag.h, net/ipv4/inet_diag.c). An op is `{code, yes, no}`;
/// the program runs by jumping `yes` or `no` bytes, accepts on landing exactly at the
/// end and rejects past it. The kernel's audit follows the `yes` chain and wants every
/// `no` target on it, so each test is laid out as
/// `[S_EQ|D_EQ port: yes 8, no 12] [JMP: yes 4, no -> end]`: a match falls into the
/// JMP, which always takes `no` to the end (accept); a miss skips it to the next test;
/// the last test's miss jumps past the end (reject). `None` for more than 64 ports.
pub fn port_bytecode(ports: &[u16]) -> Option<Vec<u8>> {
    const JMP: u8 = 1;
    const S_EQ: u8 = 11;
    const D_EQ: u8 = 12;
    if ports.is_empty() {
        return Some(Vec::new());
    }
    if ports.len() > 64 {
        return None;
    }
    let len = ports.len() * 2 * 12;
    let mut bc = Vec::with_capacity(len);
    let op = |bc: &mut Vec<u8>, code: u8, yes: u8, no: usize| {
        bc.push(code);
        bc.push(yes);
        bc.extend_from_slice(&(no as u16).to_ne_bytes());
    };
    for port in ports {
        for code in [S_EQ, D_EQ] {
            let at = bc.len();
            let last = at + 12 == len;
            op(&mut bc, code, 8, if last { len - at + 4 } else { 12 });
            // The port, in the `no` field of a second op.
            op(&mut bc, 0, 0, usize::from(*port));
            op(&mut bc, JMP, 4, len - (at + 8));
        }
    }
    Some(bc)
}

/// What one datagram of a dump said.
#[derive(Debug, PartialEq, Eq)]
enum Parsed {
    More,
    Done,
    Error(i32),
}

fn u32_at(b: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_ne_bytes(b.get(at..at + 4)?.try_into().ok()?))
}

/// Parses the netlink messages in one datagram into `out`. Never panics.
fn parse_messages(mut buf: &[u8], seq: u32, out: &mut Vec<DiagSocket>) -> Parsed {
    while buf.len() >= NLMSG_HDRLEN {
        let len = u32_at(buf, 0).unwrap_or(0) as usize;
        let kind = u16::from_ne_bytes([buf[4], buf[5]]);
        let msg_seq = u32_at(buf, 8).unwrap_or(0);
        if len < NLMSG_HDRLEN || len > buf.len() {
            return Parsed::Error(libc::EBADMSG);
        }
        let payload = &buf[NLMSG_HDRLEN..len];
        if msg_seq == seq {
            match kind {
                NLMSG_DONE => return Parsed::Done,
                NLMSG_ERROR => {
                    let errno = u32_at(payload, 0).map_or(libc::EBADMSG, |e| -(e as i32));
                    return if errno == 0 {
                        Parsed::Done
                    } else {
                        Parsed::Error(errno)
                    };
                }
                SOCK_DIAG_BY_FAMILY => {
                    if let Some(s) = parse_msg(payload) {
                        out.push(s);
                    }
                }
                _ => {}
            }
        }
        let aligned = (len + 3) & !3;
        buf = buf.get(aligned..).unwrap_or(&[]);
    }
    Parsed::More
}

/// Parses one `struct inet_diag_msg`.
fn parse_msg(p: &[u8]) -> Option<DiagSocket> {
    if p.len() < MSG_LEN {
        return None;
    }
    let family = p[0];
    let sport = u16::from_be_bytes([p[4], p[5]]);
    let dport = u16::from_be_bytes([p[6], p[7]]);
    let addr = |at: usize| -> Option<IpAddr> {
        let bytes: [u8; 16] = p.get(at..at + 16)?.try_into().ok()?;
        Some(if family == libc::AF_INET as u8 {
            IpAddr::V4(Ipv4Addr::new(bytes[0], bytes[1], bytes[2], bytes[3]))
        } else {
            IpAddr::V6(Ipv6Addr::from(bytes))
        })
    };
    let cookie = u64::from(u32_at(p, 44)?) | (u64::from(u32_at(p, 48)?) << 32);
    Some(DiagSocket {
        state: p[1],
        timer: p[2],
        local: SocketAddr::new(addr(8)?, sport),
        remote: SocketAddr::new(addr(24)?, dport),
        cookie,
        expires_ms: u32_at(p, 52)?,
        inode: u32_at(p, 68)?,
        retrans: p[3],
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn msg(family: u8, state: u8, timer: u8, inode: u32) -> Vec<u8> {
        let mut p = vec![family, state, timer, 0];
        p.extend_from_slice(&40000u16.to_be_bytes());
        p.extend_from_slice(&54321u16.to_be_bytes());
        let mut src = [0u8; 16];
        src[..4].copy_from_slice(&[127, 0, 0, 1]);
        p.extend_from_slice(&src);
        p.extend_from_slice(&src);
        p.extend_from_slice(&0u32.to_ne_bytes());
        p.extend_from_slice(&7u32.to_ne_bytes());
        p.extend_from_slice(&1u32.to_ne_bytes());
        p.extend_from_slice(&59_000u32.to_ne_bytes());
        p.extend_from_slice(&[0; 12]);
        p.extend_from_slice(&inode.to_ne_bytes());
        p
    }

    fn frame(kind: u16, seq: u32, payload: &[u8]) -> Vec<u8> {
        let mut f = Vec::new();
        f.extend_from_slice(&((NLMSG_HDRLEN + payload.len()) as u32).to_ne_bytes());
        f.extend_from_slice(&kind.to_ne_bytes());
        f.extend_from_slice(&0u16.to_ne_bytes());
        f.extend_from_slice(&seq.to_ne_bytes());
        f.extend_from_slice(&0u32.to_ne_bytes());
        f.extend_from_slice(payload);
        f
    }

    #[test]
    fn parses_a_timewait_record_then_done() {
        let mut dgram = frame(SOCK_DIAG_BY_FAMILY, 9, &msg(libc::AF_INET as u8, 6, 3, 0));
        dgram.extend(frame(NLMSG_DONE, 9, &[0; 4]));
        let mut out = Vec::new();
        assert_eq!(parse_messages(&dgram, 9, &mut out), Parsed::Done);
        assert_eq!(
            out,
            vec![DiagSocket {
                state: 6,
                local: "127.0.0.1:40000".parse().unwrap(),
                remote: "127.0.0.1:54321".parse().unwrap(),
                cookie: (1 << 32) | 7,
                inode: 0,
                timer: 3,
                expires_ms: 59_000,
                retrans: 0,
            }]
        );
        assert!(out[0].is_timewait());
    }

    #[test]
    fn request_has_the_kernel_layout() {
        let req = request(libc::AF_INET6 as u8, MINI_STATES, 5, &[]);
        assert_eq!(req.len(), 72);
        assert_eq!(u32_at(&req, 0), Some(72));
        assert_eq!(req[16], libc::AF_INET6 as u8);
        assert_eq!(req[17], 6);
        assert_eq!(u32_at(&req, 20), Some(MINI_STATES));
    }

    #[test]
    fn kernel_port_filter_keeps_only_our_ports() {
        let a = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let b = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let (pa, pb) = (
            a.local_addr().unwrap().port(),
            b.local_addr().unwrap().port(),
        );
        let _client = std::net::TcpStream::connect(a.local_addr().unwrap()).unwrap();
        let mut diag = SockDiag::open().unwrap();
        assert!(diag.filter_ports(&[pa, 1]));
        let got = diag.dump(ALL_STATES).unwrap();
        assert!(
            got.iter()
                .all(|s| s.local.port() == pa || s.remote.port() == pa),
            "{got:?}"
        );
        // The listener, the client and the accepted (queued) child.
        assert_eq!(got.len(), 3, "{got:?}");
        assert!(!got.iter().any(|s| s.local.port() == pb));
        assert!(port_bytecode(&[1; 65]).is_none());
    }

    #[test]
    fn lookup_finds_exactly_the_tuple_never_the_listener() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let server = listener.local_addr().unwrap();
        let client = std::net::TcpStream::connect(server).unwrap();
        let local = client.local_addr().unwrap();
        let mut diag = SockDiag::open().unwrap();
        let mine = diag
            .lookup(local, server)
            .unwrap()
            .expect("the client socket");
        assert_eq!((mine.local, mine.remote, mine.state), (local, server, 1));
        // The accepted child, seen from the server side, and as IPv4-mapped IPv6.
        let child = diag.lookup(server, local).unwrap().expect("the child");
        assert_eq!(child.state, 1);
        let mapped = |a: SocketAddr| match a.ip() {
            IpAddr::V4(ip) => SocketAddr::new(IpAddr::V6(ip.to_ipv6_mapped()), a.port()),
            IpAddr::V6(_) => a,
        };
        assert!(diag
            .lookup(mapped(server), mapped(local))
            .unwrap()
            .is_some());
        // No such connection: the kernel would answer with the listener; we say none.
        let other: SocketAddr = "127.0.0.1:1".parse().unwrap();
        assert_eq!(diag.lookup(server, other).unwrap(), None);
        assert_eq!(diag.lookup(other, server).unwrap(), None);
    }

    #[test]
    fn truncated_or_bogus_datagrams_never_panic() {
        let good = frame(SOCK_DIAG_BY_FAMILY, 1, &msg(10, 1, 0, 5));
        for cut in 0..good.len() {
            let _ = parse_messages(&good[..cut], 1, &mut Vec::new());
        }
        let mut bogus = good.clone();
        bogus[0] = 3;
        assert_eq!(
            parse_messages(&bogus, 1, &mut Vec::new()),
            Parsed::Error(libc::EBADMSG)
        );
    }

    #[test]
    fn live_dump_finds_a_listener_and_its_owner() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let sockets = SockDiag::open().unwrap().dump(1 << 10).unwrap();
        let mine = sockets
            .iter()
            .find(|s| s.local.port() == port)
            .expect("our listener in the dump");
        assert_eq!(mine.state, 10);
        assert_ne!(mine.inode, 0);
        let owner = Owners::new(Duration::ZERO).lookup(mine.inode);
        assert_eq!(owner.map(|o| o.pid), Some(std::process::id()));
    }
}
