//! A private network namespace for the half-open test, built with iproute2 only: a
//! listener on 192.0.2.1, and a raw socket that sends a SYN from 192.0.2.99. That
//! address is routed into a veth pair whose far end answers nobody, so the SYN,ACK goes
//! nowhere and the request socket stays in SYN_RECV. (A `blackhole` route does not do:
//! Linux looks up the SYN,ACK's route before it creates the request socket, and drops
//! the SYN when the lookup fails — TcpExtListenDrops.)

use std::net::{IpAddr, SocketAddr, TcpListener};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::process::Command;

/// The namespace; deleted on drop.
pub struct Netns {
    name: String,
}

fn ip(args: &[&str]) {
    let out = Command::new("ip").args(args).output().expect("run ip");
    assert!(
        out.status.success(),
        "ip {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

impl Netns {
    /// Creates `tcplab-watch-<pid>` with lo up, 192.0.2.1 on lo and 192.0.2.99 routed
    /// into a silent veth pair.
    pub fn create() -> Netns {
        let name = format!("tcplab-watch-{}", std::process::id());
        // A namespace of ours left by a killed earlier run of this very process id.
        let _ = Command::new("ip").args(["netns", "del", &name]).output();
        ip(&["netns", "add", &name]);
        let ns = Netns { name };
        ip(&["-n", &ns.name, "link", "set", "lo", "up"]);
        ip(&["-n", &ns.name, "addr", "add", "192.0.2.1/32", "dev", "lo"]);
        ip(&[
            "-n", &ns.name, "link", "add", "tw0", "type", "veth", "peer", "name", "tw1",
        ]);
        ip(&["-n", &ns.name, "link", "set", "tw0", "up"]);
        ip(&["-n", &ns.name, "link", "set", "tw1", "up"]);
        ip(&[
            "-n",
            &ns.name,
            "route",
            "add",
            "192.0.2.99/32",
            "dev",
            "tw0",
        ]);
        ns
    }

    /// Its name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// A listener on 192.0.2.1:0 and a raw IPv4 socket, both inside the namespace.
    pub fn sockets(&self) -> (TcpListener, OwnedFd) {
        let path = format!("/run/netns/{}", self.name);
        std::thread::spawn(move || {
            let ns = std::fs::File::open(&path).expect("open the netns file");
            // SAFETY: setns on a namespace fd we opened; it changes only this thread,
            // which ends right after creating the sockets.
            let rc = unsafe { libc::setns(ns.as_raw_fd(), libc::CLONE_NEWNET) };
            assert_eq!(rc, 0, "setns: {}", std::io::Error::last_os_error());
            let listener = TcpListener::bind("192.0.2.1:0").expect("listen in the netns");
            // SAFETY: plain socket(2); the result is checked.
            let raw = unsafe {
                libc::socket(
                    libc::AF_INET,
                    libc::SOCK_RAW | libc::SOCK_CLOEXEC,
                    libc::IPPROTO_RAW,
                )
            };
            assert!(raw >= 0, "raw socket: {}", std::io::Error::last_os_error());
            // SAFETY: a fresh fd we own.
            (listener, unsafe { OwnedFd::from_raw_fd(raw) })
        })
        .join()
        .expect("netns thread")
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = Command::new("ip")
            .args(["netns", "del", &self.name])
            .output();
    }
}

fn checksum(data: &[u8]) -> u16 {
    let mut sum: u32 = data
        .chunks(2)
        .map(|c| u32::from(u16::from_be_bytes([c[0], *c.get(1).unwrap_or(&0)])))
        .sum();
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

/// Sends one SYN from `src` to `dst` (both IPv4) through the raw socket.
pub fn send_syn(raw: &OwnedFd, src: SocketAddr, dst: SocketAddr) {
    let (IpAddr::V4(s), IpAddr::V4(d)) = (src.ip(), dst.ip()) else {
        panic!("IPv4 only");
    };
    let mut tcp = Vec::with_capacity(20);
    tcp.extend_from_slice(&src.port().to_be_bytes());
    tcp.extend_from_slice(&dst.port().to_be_bytes());
    tcp.extend_from_slice(&0x1234_5678u32.to_be_bytes()); // seq
    tcp.extend_from_slice(&0u32.to_be_bytes()); // ack
    tcp.extend_from_slice(&[5 << 4, 0x02]); // data offset 5 words, SYN
    tcp.extend_from_slice(&65535u16.to_be_bytes()); // window
    tcp.extend_from_slice(&[0, 0, 0, 0]); // checksum, urgent pointer
    let mut pseudo = Vec::new();
    pseudo.extend_from_slice(&s.octets());
    pseudo.extend_from_slice(&d.octets());
    pseudo.extend_from_slice(&[0, 6, 0, 20]);
    pseudo.extend_from_slice(&tcp);
    let sum = checksum(&pseudo);
    tcp[16..18].copy_from_slice(&sum.to_be_bytes());
    // IPv4 header: the kernel fills in the checksum and the id for IPPROTO_RAW.
    let mut pkt = vec![0x45, 0, 0, 40, 0, 0, 0x40, 0, 64, 6, 0, 0];
    pkt.extend_from_slice(&s.octets());
    pkt.extend_from_slice(&d.octets());
    pkt.extend_from_slice(&tcp);
    let to = libc::sockaddr_in {
        sin_family: libc::AF_INET as libc::sa_family_t,
        sin_port: 0,
        sin_addr: libc::in_addr {
            s_addr: u32::from_ne_bytes(d.octets()),
        },
        sin_zero: [0; 8],
    };
    // SAFETY: pkt and `to` are valid for the lengths given.
    let n = unsafe {
        libc::sendto(
            raw.as_raw_fd(),
            pkt.as_ptr().cast(),
            pkt.len(),
            0,
            (&to as *const libc::sockaddr_in).cast(),
            std::mem::size_of::<libc::sockaddr_in>() as libc::socklen_t,
        )
    };
    assert_eq!(
        n,
        pkt.len() as isize,
        "sendto: {}",
        std::io::Error::last_os_error()
    );
}
