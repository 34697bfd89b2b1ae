//! A one-shot wake-up at an exact instant, for the driver's open-loop sends, timeouts and retries.
//!
//! Tokio's timer wheel has 1 ms granularity, which would add up to 1 ms to every open-loop
//! latency (they are measured from the intended send time). On Linux this is a `timerfd`
//! (CLOCK_MONOTONIC, an absolute deadline) registered with the runtime's own epoll through
//! [`AsyncFd`](tokio::io::unix::AsyncFd): the kernel's hrtimer fires within a few µs of the
//! deadline (timerfd, unlike `epoll_wait` timeouts, gets no timer slack) and no extra thread is
//! involved. Elsewhere it falls back to tokio's sleep (about 1 ms late).
//!
//! Setting the timer is not cheap: on a VM a `timerfd_settime` cancels and starts a kernel
//! hrtimer, reprogramming the (virtualized) timer device each time, and a profile of an
//! open-loop run at 100,000 ops/s found half of the generator's CPU samples there. So besides
//! one-shot instants ([`Pacer::arm`]) the pacer takes a grid ([`Pacer::arm_grid`]): a periodic
//! timer, set once, that fires at every `first + k * period`; the open-loop driver's coalesced
//! sends fall on such a grid, and re-arming for the next point of the grid it is already on is
//! free.

use std::time::Instant;

pub(crate) use imp::Pacer;

#[cfg(target_os = "linux")]
mod imp {
    use std::io;
    use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
    use std::time::{Duration, Instant};

    use tokio::io::unix::AsyncFd;
    use tokio::io::Interest;

    /// A timerfd armed for one instant, or for every point of a grid.
    pub(crate) struct Pacer {
        fd: AsyncFd<OwnedFd>,
        /// `Instant` and CLOCK_MONOTONIC read next to each other: `std::time::Instant` is
        /// CLOCK_MONOTONIC on Linux, but opaque, so deadlines are converted through this pair.
        base: Instant,
        base_ns: u128,
        /// The next instant the timer fires at, not yet waited for (re-arming for the same
        /// instant is skipped).
        armed: Option<Instant>,
        /// The grid's period when the timer is periodic (`arm_grid`).
        period: Option<Duration>,
    }

    fn monotonic_ns() -> u128 {
        let mut ts = libc::timespec {
            tv_sec: 0,
            tv_nsec: 0,
        };
        // SAFETY: `ts` is a valid, writable timespec; CLOCK_MONOTONIC always exists.
        let r = unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
        assert_eq!(r, 0, "clock_gettime(CLOCK_MONOTONIC)");
        ts.tv_sec as u128 * 1_000_000_000 + ts.tv_nsec as u128
    }

    impl Pacer {
        /// A disarmed timer. Must be called inside a tokio runtime with I/O enabled.
        pub(crate) fn new() -> io::Result<Pacer> {
            // SAFETY: plain syscall; the result is checked before use.
            let raw = unsafe {
                libc::timerfd_create(
                    libc::CLOCK_MONOTONIC,
                    libc::TFD_NONBLOCK | libc::TFD_CLOEXEC,
                )
            };
            if raw < 0 {
                return Err(io::Error::last_os_error());
            }
            // SAFETY: `raw` is a freshly created descriptor that nothing else owns.
            let fd = unsafe { OwnedFd::from_raw_fd(raw) };
            // Take the pair with the clock read between two `Instant`s and use their midpoint,
            // so the conversion error is at most half the (tens of ns) gap between them.
            let before = Instant::now();
            let base_ns = monotonic_ns();
            let after = Instant::now();
            let base = before + (after - before) / 2;
            // SAFETY: the `OwnedFd` is moved into the `AsyncFd`, which keeps it open (and
            // `as_raw_fd` returning the same descriptor) until the `AsyncFd` is dropped.
            let fd = unsafe { AsyncFd::register_with_interest(fd, Interest::READABLE) }?;
            Ok(Pacer {
                fd,
                base,
                base_ns,
                armed: None,
                period: None,
            })
        }

        /// Arms the timer to fire at `first` and then every `period` (not zero), unless it is
        /// already on that grid: armed with the same period, for an instant at or before
        /// `first` that `first` is a whole number of periods after. Then nothing is done (no
        /// system call); an expiry of the grid that already passed fires at once, and the
        /// caller just finds nothing due.
        pub(crate) fn arm_grid(&mut self, first: Instant, period: Duration) {
            debug_assert!(!period.is_zero());
            if let (Some(next), Some(p)) = (self.armed, self.period) {
                if p == period
                    && first
                        .checked_duration_since(next)
                        .is_some_and(|d| d.as_nanos() % p.as_nanos() == 0)
                {
                    return;
                }
            }
            self.set(first, period);
            self.period = Some(period);
        }

        /// Arms the timer for `at` (replacing any earlier setting). An instant in the past fires
        /// at once.
        pub(crate) fn arm(&mut self, at: Instant) {
            if self.armed == Some(at) && self.period.is_none() {
                return;
            }
            self.set(at, Duration::ZERO);
            self.period = None;
        }

        /// The next instant the timer fires at (tests).
        #[cfg(test)]
        pub(crate) fn next_expiry(&self) -> Option<Instant> {
            self.armed
        }

        /// Sets the timerfd: first expiry `at`, then every `period` (zero: once).
        fn set(&mut self, at: Instant, period: Duration) {
            let ns = match at.checked_duration_since(self.base) {
                Some(d) => self.base_ns + d.as_nanos(),
                None => self
                    .base_ns
                    .saturating_sub(self.base.duration_since(at).as_nanos()),
            }
            // 0 would disarm the timer; 1 ns is long past, so it fires at once.
            .max(1);
            let spec = libc::itimerspec {
                it_interval: libc::timespec {
                    tv_sec: period.as_secs() as libc::time_t,
                    tv_nsec: period.subsec_nanos() as libc::c_long,
                },
                it_value: libc::timespec {
                    tv_sec: (ns / 1_000_000_000) as libc::time_t,
                    tv_nsec: (ns % 1_000_000_000) as libc::c_long,
                },
            };
            // SAFETY: valid descriptor and itimerspec; the old value is not asked for.
            let r = unsafe {
                libc::timerfd_settime(
                    self.fd.as_raw_fd(),
                    libc::TFD_TIMER_ABSTIME,
                    &spec,
                    std::ptr::null_mut(),
                )
            };
            assert_eq!(r, 0, "timerfd_settime: {}", io::Error::last_os_error());
            self.armed = Some(at);
        }

        /// Completes once the armed instant has passed; never, if nothing is armed. Cancel-safe:
        /// dropping it loses no expiry.
        pub(crate) async fn wait(&mut self) {
            if self.armed.is_none() {
                return std::future::pending().await;
            }
            loop {
                let Ok(mut guard) = self.fd.readable().await else {
                    // The runtime is shutting down; nothing will need waking.
                    return std::future::pending().await;
                };
                let mut expirations = [0u8; 8];
                // SAFETY: reads at most 8 bytes into an 8-byte buffer.
                let n = unsafe {
                    libc::read(
                        guard.get_inner().as_raw_fd(),
                        expirations.as_mut_ptr().cast(),
                        8,
                    )
                };
                // Nothing more can become readable until the timer is re-armed, which only
                // happens after this returns, so readiness can be cleared either way (tokio
                // keeps any newer edge).
                guard.clear_ready();
                if n == 8 {
                    // A grid's next expiry is as many periods on as have passed; a one-shot
                    // timer is spent.
                    let count = u32::try_from(u64::from_ne_bytes(expirations)).unwrap_or(u32::MAX);
                    self.armed = match (self.armed, self.period) {
                        (Some(at), Some(p)) => p.checked_mul(count).and_then(|d| at.checked_add(d)),
                        _ => None,
                    };
                    if self.armed.is_none() {
                        self.period = None;
                    }
                    return;
                }
                let e = io::Error::last_os_error();
                if e.kind() != io::ErrorKind::WouldBlock && e.kind() != io::ErrorKind::Interrupted {
                    // Should not happen; do not spin on it, fall back to a coarse sleep.
                    tracing::warn!(error = %e, "reading the pacer's timerfd failed");
                    tokio::time::sleep(Duration::from_millis(1)).await;
                    self.armed = None;
                    self.period = None;
                    return;
                }
            }
        }
    }
}

#[cfg(not(target_os = "linux"))]
mod imp {
    use std::io;
    use std::time::Instant;

    /// Portable fallback: tokio's sleep, about 1 ms coarse.
    pub(crate) struct Pacer {
        armed: Option<Instant>,
    }

    impl Pacer {
        pub(crate) fn new() -> io::Result<Pacer> {
            Ok(Pacer { armed: None })
        }

        pub(crate) fn arm(&mut self, at: Instant) {
            self.armed = Some(at);
        }

        /// No periodic timer here: the grid's next point, once.
        pub(crate) fn arm_grid(&mut self, first: Instant, _period: std::time::Duration) {
            self.armed = Some(first);
        }

        pub(crate) async fn wait(&mut self) {
            match self.armed {
                Some(at) => {
                    tokio::time::sleep_until(at.into()).await;
                    self.armed = None;
                }
                None => std::future::pending().await,
            }
        }
    }
}

/// The earliest of some optional instants.
pub(crate) fn earliest(times: impl IntoIterator<Item = Option<Instant>>) -> Option<Instant> {
    times.into_iter().flatten().min()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    /// The pacer wakes after its instant, and on Linux far closer to it than tokio's 1 ms timer
    /// could: the median over 200 wake-ups 200 µs apart must be under 500 µs late (a tokio
    /// sleep is typically ~1 ms late, so the bound is only checked where the timerfd is used).
    /// 500 µs leaves a wide margin for a loaded machine; a shared 2-core VM measures ~60 µs.
    #[tokio::test(flavor = "current_thread")]
    async fn wakes_soon_after_its_instant() {
        let mut p = Pacer::new().unwrap();
        let mut late = Vec::new();
        let mut at = Instant::now();
        for _ in 0..200 {
            at += Duration::from_micros(200);
            p.arm(at);
            p.wait().await;
            let now = Instant::now();
            assert!(now >= at, "woke {:?} early", at - now);
            late.push(now - at);
            at = at.max(now);
        }
        late.sort();
        let median = late[late.len() / 2];
        if cfg!(target_os = "linux") {
            assert!(
                median < Duration::from_micros(500),
                "median lateness {median:?}"
            );
        }
        // Re-arming replaces the old instant: an earlier one fires first, a past one at once.
        p.arm(Instant::now() + Duration::from_secs(3600));
        let soon = Instant::now() + Duration::from_millis(2);
        p.arm(soon);
        tokio::time::timeout(Duration::from_secs(10), p.wait())
            .await
            .expect("re-armed earlier");
        assert!(Instant::now() >= soon);
        p.arm(Instant::now() - Duration::from_millis(5));
        tokio::time::timeout(Duration::from_secs(10), p.wait())
            .await
            .expect("a past instant fires at once");
    }

    /// A grid fires at each of its points, set once: after a wake the pacer knows the next
    /// point (as many periods on as passed), re-arming for a later point of the same grid
    /// keeps it, and an instant off the grid replaces it.
    #[cfg(target_os = "linux")]
    #[tokio::test(flavor = "current_thread")]
    async fn a_grid_fires_at_its_points_and_stays_set() {
        let mut p = Pacer::new().unwrap();
        let period = Duration::from_millis(2);
        let first = Instant::now() + period;
        p.arm_grid(first, period);
        let mut expected = first;
        for _ in 0..5 {
            tokio::time::timeout(Duration::from_secs(10), p.wait())
                .await
                .expect("the grid fires");
            let now = Instant::now();
            assert!(now >= expected, "woke {:?} early", expected - now);
            let next = p.next_expiry().expect("still armed");
            // The next point is on the grid, after the one that fired and after now.
            assert!(
                next > expected && next > now - Duration::from_micros(1),
                "{next:?}"
            );
            assert_eq!((next - first).as_nanos() % period.as_nanos(), 0);
            // Re-arming for a later point of the same grid changes nothing.
            p.arm_grid(next + period * 3, period);
            assert_eq!(p.next_expiry(), Some(next));
            expected = next;
        }
        let off = expected + Duration::from_micros(700);
        p.arm_grid(off, period);
        assert_eq!(
            p.next_expiry(),
            Some(off),
            "an instant off the grid re-arms it"
        );
        p.arm(off);
        assert_eq!(p.next_expiry(), Some(off));
        tokio::time::timeout(Duration::from_secs(10), p.wait())
            .await
            .expect("the one-shot fires");
        assert!(Instant::now() >= off);
        assert_eq!(p.next_expiry(), None, "a one-shot is spent");
    }
}
