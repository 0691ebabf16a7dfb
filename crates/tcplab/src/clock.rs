//! The one clock the timeline uses: CLOCK_MONOTONIC in ns, the same clock as the
//! tracefs `mono` trace clock, so kernel events, packets and socket calls line up.

/// Reads a clock by id.
fn read(clock: libc::clockid_t) -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime writes one timespec into the valid pointer we pass; both
    // clock ids used here exist on every Linux.
    let rc = unsafe { libc::clock_gettime(clock, &mut ts) };
    debug_assert_eq!(rc, 0);
    (ts.tv_sec as u64) * 1_000_000_000 + ts.tv_nsec as u64
}

/// Now, in ns of CLOCK_MONOTONIC.
pub fn mono_ns() -> u64 {
    read(libc::CLOCK_MONOTONIC)
}

/// Now, in ns of CLOCK_REALTIME (ns since the Unix epoch).
pub fn realtime_ns() -> u64 {
    read(libc::CLOCK_REALTIME)
}

/// CLOCK_REALTIME minus CLOCK_MONOTONIC, measured now: add it to a monotonic time to get
/// wall-clock time, subtract it from a packet's wall-clock timestamp to get monotonic.
pub fn realtime_offset_ns() -> i128 {
    // Read the monotonic clock on both sides and take the middle, so the offset is
    // good to well under a microsecond.
    let before = mono_ns();
    let real = realtime_ns();
    let after = mono_ns();
    i128::from(real) - i128::from(before + (after - before) / 2)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn monotonic_never_goes_back() {
        let a = mono_ns();
        let b = mono_ns();
        assert!(b >= a);
    }

    #[test]
    fn offset_maps_monotonic_to_wall_clock() {
        let offset = realtime_offset_ns();
        let wall = i128::from(mono_ns()) + offset;
        let real = i128::from(realtime_ns());
        assert!((real - wall).abs() < 1_000_000_000, "{real} vs {wall}");
    }
}
