//! Which async thread serves a client.
//!
//! The async side is one current-thread runtime per core (no cross-thread wakeup per
//! round trip), so a connection stays on the thread that took it, and how many each
//! thread holds is decided at accept: every armed accept loop races for each new client,
//! and the lanes hand their quiet clients over. Left alone that is uneven (measured at
//! 100 connections: 31% / 69% in one run, 50% / 50% in the next, 100% / 0% at 10): the
//! thread with fewer clients runs out of work and sleeps in epoll_wait, which cost 0.27
//! context switches per round trip on it against tokio's 0.04 with work stealing, and
//! the busier one becomes the bottleneck.
//!
//! So each thread counts its clients, and a client goes where it was accepted unless that
//! thread holds noticeably more than the least loaded one; then it moves there: its
//! registration with this thread's reactor is dropped and the target thread registers
//! it (two epoll_ctl calls and a wakeup, once per moved client, never per round trip).

use std::cell::Cell;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use std::net::SocketAddr;

use tokio::net::TcpStream;
use tokio::runtime::Handle;
use tokio::task::JoinSet;

use super::{conn, Shared};

/// One async thread: where to spawn on it, and how many clients it holds.
#[derive(Debug)]
pub(super) struct Slot {
    /// Its runtime.
    pub(super) handle: Handle,
    /// Clients placed on it and not yet finished.
    open: AtomicUsize,
}

impl Slot {
    /// A slot for the runtime behind `handle`.
    pub(super) fn new(handle: Handle) -> Slot {
        Slot {
            handle,
            open: AtomicUsize::new(0),
        }
    }

    /// Clients placed on this thread and not yet finished.
    pub(super) fn open(&self) -> usize {
        self.open.load(Ordering::SeqCst)
    }
}

thread_local! {
    /// The slot of the async thread this code runs on (0: the thread of `server::run`,
    /// also for any thread that is not an async thread of ours).
    static HERE: Cell<usize> = const { Cell::new(0) };
}

/// Marks the current thread as the async thread of slot `i`.
pub(super) fn set_here(i: usize) {
    HERE.set(i);
}

/// The slot of the current thread.
pub(super) fn here() -> usize {
    HERE.get()
}

/// A client's place on an async thread; frees it when dropped (with the connection's
/// task, also if that task never ran).
#[derive(Debug)]
pub(super) struct Seat {
    shared: Arc<Shared>,
    slot: usize,
}

impl Seat {
    /// The slot this seat is on.
    pub(super) fn slot(&self) -> usize {
        self.slot
    }
}

impl Drop for Seat {
    fn drop(&mut self) {
        if let Some(slot) = self.shared.slots.get(self.slot) {
            slot.open.fetch_sub(1, Ordering::SeqCst);
        }
    }
}

/// Picks the async thread for a new client: `preferred` (the accepting thread) unless it
/// holds more than the least loaded thread plus a margin, or the least loaded one when
/// there is no preference (a lane's client). Once the server halted, only slot 0: the
/// other threads may be finishing, and slot 0 lives until `run` returns.
///
/// Ordering: a worker thread finishes once it saw `halted` and then found its slot
/// empty; here the slot is counted first and `halted` read after (both `SeqCst`), so
/// either the worker sees the count and waits for the client, or this sees `halted`.
pub(super) fn seat(shared: &Arc<Shared>, preferred: Option<usize>) -> Seat {
    let slots = &shared.slots;
    let least = (0..slots.len())
        .min_by_key(|&i| slots[i].open())
        .unwrap_or(0);
    let chosen = match preferred {
        Some(p) if p < slots.len() => {
            let min = slots[least].open();
            // A margin, so that an even race for clients moves none of them.
            if slots[p].open() <= min + 2 + min / 4 {
                p
            } else {
                least
            }
        }
        _ => least,
    };
    let mut seat = Seat {
        shared: Arc::clone(shared),
        slot: chosen,
    };
    if let Some(slot) = slots.get(chosen) {
        slot.open.fetch_add(1, Ordering::SeqCst);
        if chosen != 0 && shared.halted.load(Ordering::SeqCst) {
            drop(seat);
            seat = Seat {
                shared: Arc::clone(shared),
                slot: 0,
            };
            if let Some(first) = slots.first() {
                first.open.fetch_add(1, Ordering::SeqCst);
            }
        }
    }
    seat
}

/// Serves a client just accepted by an async accept loop on this thread or, if this
/// thread holds too many, on the least loaded one.
pub(super) fn place(
    shared: &Arc<Shared>,
    tasks: &mut JoinSet<()>,
    stream: TcpStream,
    peer: SocketAddr,
) {
    let seat = seat(shared, Some(here()));
    let target = shared
        .slots
        .get(seat.slot())
        .filter(|_| seat.slot() != here());
    let Some(target) = target else {
        tasks.spawn(conn::serve_conn(stream, peer, Arc::clone(shared), seat));
        return;
    };
    // Deregistered from this thread's reactor, registered with the target's.
    match stream.into_std() {
        Ok(stream) => {
            target
                .handle
                .spawn(conn::adopt(stream, peer, Arc::clone(shared), seat, None));
        }
        Err(err) => {
            shared.config.log.conn(peer, format_args!("error: {err}"));
            conn::finish(shared, peer, conn::End::Error);
        }
    }
}
