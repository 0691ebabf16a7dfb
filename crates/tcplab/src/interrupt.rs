//! SIGINT and SIGTERM as a flag. Commands that hold kernel state (a tracefs instance, a
//! network namespace) or write a file stop their loops when it is set and return
//! normally, so that their drop guards run and their files are complete, instead of
//! dying where they stand.

use std::sync::atomic::{AtomicBool, Ordering};

static STOP: AtomicBool = AtomicBool::new(false);

extern "C" fn on_signal(_: libc::c_int) {
    STOP.store(true, Ordering::SeqCst);
}

/// Makes SIGINT and SIGTERM set the flag. No SA_RESTART: a blocked `poll()` returns
/// EINTR at once, so a loop notices without waiting for its timeout.
pub fn install() {
    for sig in [libc::SIGINT, libc::SIGTERM] {
        // SAFETY: the handler only stores to an atomic (async-signal-safe); sigaction is
        // given a zeroed, then filled, struct.
        unsafe {
            let mut sa: libc::sigaction = std::mem::zeroed();
            sa.sa_sigaction = on_signal as extern "C" fn(libc::c_int) as usize;
            libc::sigemptyset(&mut sa.sa_mask);
            libc::sigaction(sig, &sa, std::ptr::null_mut());
        }
    }
}

/// True once SIGINT or SIGTERM came (after [`install`]).
pub fn requested() -> bool {
    STOP.load(Ordering::SeqCst)
}
