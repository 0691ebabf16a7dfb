//! Helpers shared by the integration tests.
#![allow(dead_code)]

use std::path::PathBuf;

/// Path of the `tcplab` binary built for these tests.
pub fn tcplab_bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_tcplab"))
}

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
