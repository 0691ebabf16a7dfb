//! The impairable wire's I/O edge: a user-space forwarder between two TUN devices, one
//! in the client host's namespace and one in the server host's, driving the sans-IO
//! [`tcplab_core::impair::Wire`].
//!
//! Each device is born inside its namespace: a thread that entered the namespace opens
//! `/dev/net/tun` and does `TUNSETIFF` there (no `ip link set netns` needed). The device
//! lives exactly as long as its file descriptor, so it cannot outlive tcplab.
//!
//! The forwarder is one thread polling both descriptors, a stop pipe and the wire's next
//! timer (held or delayed packets). [`WireRun::stop`] ends it and returns every decision
//! the wire made, in order, for the timeline.

use std::fs::OpenOptions;
use std::io;
use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::os::unix::fs::OpenOptionsExt as _;
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

use tcplab_core::impair::{Direction, Rules, Wire, WireEvent};

use crate::clock;
use crate::netns::Netns;

/// Larger than any packet a TUN device without offloads hands over (its MTU is 1500 by
/// default; 64 KiB covers any MTU it can have).
const READ_BUFFER: usize = 65_536;

/// A TUN device (`IFF_TUN | IFF_NO_PI`: bare IP packets) open in non-blocking mode.
#[derive(Debug)]
pub struct Tun {
    fd: OwnedFd,
    name: String,
}

impl Tun {
    /// Creates TUN device `name` inside `ns` (the namespace of the device is that of the
    /// thread that creates it). Needs CAP_NET_ADMIN.
    pub fn create_in(ns: &Netns, name: &str) -> io::Result<Tun> {
        let owned = name.to_string();
        let fd = ns.run(move || open_tun(&owned))??;
        Ok(Tun {
            fd,
            name: name.to_string(),
        })
    }

    /// The device's name inside its namespace.
    pub fn name(&self) -> &str {
        &self.name
    }
}

/// Opens /dev/net/tun and attaches it to a new device `name` in the calling thread's
/// namespace.
fn open_tun(name: &str) -> io::Result<OwnedFd> {
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .custom_flags(libc::O_NONBLOCK | libc::O_CLOEXEC)
        .open("/dev/net/tun")
        .map_err(|e| io::Error::new(e.kind(), format!("open /dev/net/tun: {e}")))?;
    let mut req = crate::netns::ifreq(name)?;
    req.ifr_ifru.ifru_flags = (libc::IFF_TUN | libc::IFF_NO_PI) as libc::c_short;
    // SAFETY: TUNSETIFF reads (and fills in the name of) the ifreq we own; the fd is
    // open for the whole call.
    if unsafe { libc::ioctl(file.as_raw_fd(), libc::TUNSETIFF, &mut req) } < 0 {
        let e = io::Error::last_os_error();
        return Err(io::Error::new(e.kind(), format!("TUNSETIFF {name}: {e}")));
    }
    Ok(file.into())
}

/// A running forwarder. Dropping it stops it too (and throws the events away).
#[derive(Debug)]
pub struct WireRun {
    stop: Option<OwnedFd>,
    live: Arc<Mutex<Vec<WireEvent>>>,
    thread: Option<JoinHandle<io::Result<Vec<WireEvent>>>>,
}

/// Starts forwarding between the client host's device and the server host's, applying
/// `rules`.
pub fn start(client: Tun, server: Tun, rules: Rules) -> io::Result<WireRun> {
    let mut fds = [0 as RawFd; 2];
    // SAFETY: pipe2 writes two descriptors into the array we own; checked below.
    if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC | libc::O_NONBLOCK) } != 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: both descriptors are fresh from pipe2 and owned by nobody else.
    let (stop_rx, stop_tx) = unsafe {
        use std::os::fd::FromRawFd as _;
        (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1]))
    };
    let live = Arc::new(Mutex::new(Vec::new()));
    let published = Arc::clone(&live);
    let thread = std::thread::Builder::new()
        .name("tcplab-wire".into())
        .spawn(move || forward(&client, &server, &stop_rx, Wire::new(rules), &published))?;
    Ok(WireRun {
        stop: Some(stop_tx),
        live,
        thread: Some(thread),
    })
}

impl WireRun {
    /// The decisions made so far (a copy), while the wire runs: for a live view, or to
    /// wait until the wire holds a segment.
    pub fn events_so_far(&self) -> Vec<WireEvent> {
        self.live.lock().map(|v| v.clone()).unwrap_or_default()
    }

    /// Stops the forwarder and returns every decision of the wire, in order. Packets
    /// still held or delayed are recorded as discarded.
    pub fn stop(mut self) -> io::Result<Vec<WireEvent>> {
        self.stop_and_join()
    }

    fn stop_and_join(&mut self) -> io::Result<Vec<WireEvent>> {
        // Closing the write end makes the read end readable (EOF): the stop signal.
        drop(self.stop.take());
        match self.thread.take() {
            Some(t) => t
                .join()
                .map_err(|_| io::Error::other("the wire thread panicked"))?,
            None => Ok(Vec::new()),
        }
    }
}

impl Drop for WireRun {
    fn drop(&mut self) {
        let _ = self.stop_and_join();
    }
}

/// The forwarder's loop.
fn forward(
    client: &Tun,
    server: &Tun,
    stop: &OwnedFd,
    mut wire: Wire,
    live: &Mutex<Vec<WireEvent>>,
) -> io::Result<Vec<WireEvent>> {
    let mut buf = vec![0u8; READ_BUFFER];
    let devices = [
        (client, Direction::ClientToServer),
        (server, Direction::ServerToClient),
    ];
    loop {
        let mut pfds = [
            pollfd(client.fd.as_raw_fd()),
            pollfd(server.fd.as_raw_fd()),
            pollfd(stop.as_raw_fd()),
        ];
        let timeout = wire.next_timeout().map(|at| {
            let ns = at.saturating_sub(clock::mono_ns());
            libc::timespec {
                tv_sec: (ns / 1_000_000_000) as libc::time_t,
                tv_nsec: (ns % 1_000_000_000) as libc::c_long,
            }
        });
        let timeout_ptr = timeout
            .as_ref()
            .map_or(std::ptr::null(), |t| t as *const libc::timespec);
        // SAFETY: ppoll reads the pollfd array and timespec we own for the call's
        // duration; a null timeout means wait without limit; no signal mask is changed.
        let rc = unsafe {
            libc::ppoll(
                pfds.as_mut_ptr(),
                pfds.len() as libc::nfds_t,
                timeout_ptr,
                std::ptr::null(),
            )
        };
        if rc < 0 {
            let e = io::Error::last_os_error();
            if e.kind() == io::ErrorKind::Interrupted {
                continue;
            }
            return Err(e);
        }
        if pfds[2].revents != 0 {
            return Ok(wire.finish(clock::mono_ns()));
        }
        for (i, (tun, dir)) in devices.iter().enumerate() {
            if pfds[i].revents & (libc::POLLIN | libc::POLLERR | libc::POLLHUP) == 0 {
                continue;
            }
            // Drain the device: each read is one packet.
            loop {
                // SAFETY: read into the buffer we own, at most its length.
                let n =
                    unsafe { libc::read(tun.fd.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len()) };
                if n < 0 {
                    let e = io::Error::last_os_error();
                    match e.kind() {
                        io::ErrorKind::WouldBlock => break,
                        io::ErrorKind::Interrupted => continue,
                        _ => {
                            return Err(io::Error::new(e.kind(), format!("read {}: {e}", tun.name)))
                        }
                    }
                }
                wire.handle(clock::mono_ns(), *dir, &buf[..n as usize]);
            }
        }
        wire.handle_timeout(clock::mono_ns());
        while let Some(t) = wire.poll_transmit() {
            let to = match t.dir {
                Direction::ClientToServer => server,
                Direction::ServerToClient => client,
            };
            // SAFETY: write the packet we own to the device's descriptor.
            let n =
                unsafe { libc::write(to.fd.as_raw_fd(), t.bytes.as_ptr().cast(), t.bytes.len()) };
            // A full queue or a device going down loses the packet, as a real wire
            // would; the kernel's TCP recovers, and the event list shows the send.
            let _ = n;
        }
        publish(&wire, live);
    }
}

/// Copies the decisions not yet published to the shared list.
fn publish(wire: &Wire, live: &Mutex<Vec<WireEvent>>) {
    if let Ok(mut shown) = live.lock() {
        let new = wire.events().get(shown.len()..).unwrap_or_default();
        shown.extend_from_slice(new);
    }
}

fn pollfd(fd: RawFd) -> libc::pollfd {
    libc::pollfd {
        fd,
        events: libc::POLLIN,
        revents: 0,
    }
}
