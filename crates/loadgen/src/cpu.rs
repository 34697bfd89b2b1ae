//! The generator's own CPU time over the measured window ([`GeneratorCpu`]), so that a run says
//! what its load cost the machine it shares with the nodes.
//!
//! It is read with `getrusage` when the driver's loop first runs at or after the start of the
//! measured window and again at or after its end, and divided by the requests sent (first
//! sends, not redirect re-sends) between the two readings. What is read depends on
//! [`CpuScope`]:
//!
//! - [`CpuScope::Thread`] (the default): `RUSAGE_THREAD` of the thread that runs the driver. On
//!   a current-thread tokio runtime that thread also runs the connection tasks and the QUIC
//!   connections (or TCP streams) the generator opened and, if the client endpoint was made on
//!   that runtime too, the endpoint's receive loop: all of the generator's work, and nothing
//!   else in the process (the nodes of an in-process cluster, the runner's other threads) is
//!   counted. `paxbench run` runs its generator like that. On a multi-thread runtime
//!   the generator's tasks move between workers, one thread's clock would miss part of them, and
//!   no figure is given (`None`).
//! - [`CpuScope::Process`]: `RUSAGE_SELF`, every thread of the process; for a process that is
//!   only a generator (`paxbench load`, which `paxbench run` starts on a generator host).
//!
//! Beside user and system time it keeps the voluntary context switches (`ru_nvcsw`: each is the
//! thread blocking in `epoll_wait` with nothing to do, so it counts the wake-ups) and the
//! involuntary ones (`ru_nivcsw`: preempted by another runnable thread, e.g. a node). Linux
//! only; elsewhere no figure is given.

use std::time::Duration;

/// Whose CPU time [`GeneratorCpu`] counts.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CpuScope {
    /// The thread running the generator (valid on a current-thread runtime only).
    #[default]
    Thread,
    /// The whole process (a process that is only a generator).
    Process,
}

/// The generator's CPU use over the measured window.
#[derive(Clone, Copy, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GeneratorCpu {
    /// What was read.
    pub scope: CpuScope,
    /// User CPU time (s).
    pub user_s: f64,
    /// System (kernel) CPU time (s).
    pub system_s: f64,
    /// Voluntary context switches: how often the generator blocked, i.e. its wake-ups.
    pub voluntary_switches: u64,
    /// Involuntary context switches: how often it was preempted.
    pub involuntary_switches: u64,
    /// Requests sent between the two readings (first sends only).
    pub requests: u64,
}

impl GeneratorCpu {
    /// CPU µs (user plus system) per request; `None` without requests.
    pub fn us_per_request(&self) -> Option<f64> {
        (self.requests > 0).then(|| (self.user_s + self.system_s) * 1e6 / self.requests as f64)
    }

    /// The CPU of generators that ran side by side: times, switches and requests summed (the
    /// scope is the first one's).
    pub fn sum(parts: impl IntoIterator<Item = GeneratorCpu>) -> Option<GeneratorCpu> {
        parts.into_iter().reduce(|a, b| GeneratorCpu {
            scope: a.scope,
            user_s: a.user_s + b.user_s,
            system_s: a.system_s + b.system_s,
            voluntary_switches: a.voluntary_switches + b.voluntary_switches,
            involuntary_switches: a.involuntary_switches + b.involuntary_switches,
            requests: a.requests + b.requests,
        })
    }
}

/// One `getrusage` reading.
#[derive(Clone, Copy, Debug)]
pub(crate) struct CpuSample {
    user: Duration,
    system: Duration,
    voluntary: u64,
    involuntary: u64,
    /// The thread it was read on (a thread reading must be the same thread both times).
    thread: std::thread::ThreadId,
}

impl CpuSample {
    /// Reads `scope` now; `None` where it cannot be read or would not be the generator's own
    /// (a thread clock on a multi-thread runtime, or outside a runtime).
    pub(crate) fn read(scope: CpuScope) -> Option<CpuSample> {
        if scope == CpuScope::Thread {
            let flavor = tokio::runtime::Handle::try_current().ok()?.runtime_flavor();
            if flavor != tokio::runtime::RuntimeFlavor::CurrentThread {
                return None;
            }
        }
        imp::read(scope)
    }

    /// The use from `self` to `later`, for `requests` sent in between; `None` if a thread
    /// reading moved threads.
    pub(crate) fn until(
        &self,
        later: &CpuSample,
        scope: CpuScope,
        requests: u64,
    ) -> Option<GeneratorCpu> {
        if scope == CpuScope::Thread && self.thread != later.thread {
            return None;
        }
        Some(GeneratorCpu {
            scope,
            user_s: later.user.saturating_sub(self.user).as_secs_f64(),
            system_s: later.system.saturating_sub(self.system).as_secs_f64(),
            voluntary_switches: later.voluntary.saturating_sub(self.voluntary),
            involuntary_switches: later.involuntary.saturating_sub(self.involuntary),
            requests,
        })
    }
}

#[cfg(target_os = "linux")]
mod imp {
    use super::{CpuSample, CpuScope};
    use std::time::Duration;

    pub(super) fn read(scope: CpuScope) -> Option<CpuSample> {
        let who = match scope {
            CpuScope::Thread => libc::RUSAGE_THREAD,
            CpuScope::Process => libc::RUSAGE_SELF,
        };
        // SAFETY: an all-zero rusage is a valid value of the plain C struct.
        let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
        // SAFETY: `ru` is a valid, writable rusage.
        if unsafe { libc::getrusage(who, &mut ru) } != 0 {
            return None;
        }
        let time = |t: libc::timeval| {
            Duration::from_secs(t.tv_sec as u64) + Duration::from_micros(t.tv_usec as u64)
        };
        Some(CpuSample {
            user: time(ru.ru_utime),
            system: time(ru.ru_stime),
            voluntary: ru.ru_nvcsw as u64,
            involuntary: ru.ru_nivcsw as u64,
            thread: std::thread::current().id(),
        })
    }
}

#[cfg(not(target_os = "linux"))]
mod imp {
    use super::{CpuSample, CpuScope};

    pub(super) fn read(_scope: CpuScope) -> Option<CpuSample> {
        None
    }
}

#[cfg(all(test, target_os = "linux"))]
mod tests {
    use super::*;

    /// This thread's CPU time by another clock than getrusage's.
    fn thread_clock() -> Duration {
        let mut ts = libc::timespec {
            tv_sec: 0,
            tv_nsec: 0,
        };
        // SAFETY: `ts` is a valid, writable timespec.
        assert_eq!(
            unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) },
            0
        );
        Duration::new(ts.tv_sec as u64, ts.tv_nsec as u32)
    }

    /// Spins this thread until it has used `d` more CPU time (however busy the machine is).
    fn burn(d: Duration) -> u64 {
        let start = thread_clock();
        let mut x = 0u64;
        while thread_clock() - start < d {
            for i in 0..10_000u64 {
                x = std::hint::black_box(x.wrapping_mul(31).wrapping_add(i));
            }
        }
        x
    }

    /// A thread reading counts this thread's work and not another thread's; a process reading
    /// counts both. A current-thread runtime is what makes a thread reading valid; a
    /// multi-thread one gives none.
    #[test]
    fn a_thread_reading_counts_this_thread_only_and_a_process_reading_every_thread() {
        let rt = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        let _in_runtime = rt.enter();
        let t0 = CpuSample::read(CpuScope::Thread).expect("current-thread runtime");
        let p0 = CpuSample::read(CpuScope::Process).unwrap();
        let c0 = thread_clock();
        burn(Duration::from_millis(100));
        let t1 = CpuSample::read(CpuScope::Thread).unwrap();
        let by_clock = (thread_clock() - c0).as_secs_f64();
        let mine = t0.until(&t1, CpuScope::Thread, 1000).unwrap();
        let own = mine.user_s + mine.system_s;
        // The same time as the thread's CPU clock says (getrusage rounds to µs and splits user
        // and system by sampling, not the total).
        assert!(
            own >= 0.099 && (own - by_clock).abs() < 0.01,
            "{mine:?} vs {by_clock} s"
        );
        assert!(mine.user_s > 0.05, "a spin is user time: {mine:?}");
        assert_eq!(mine.requests, 1000);
        let per = mine.us_per_request().unwrap();
        assert!((per - own * 1e3).abs() < 1e-6, "{per} µs per request");

        // Another thread spins while this one waits for it: not this thread's, but the process's.
        let other = std::thread::spawn(|| burn(Duration::from_millis(100)));
        let t2 = CpuSample::read(CpuScope::Thread).unwrap();
        let _ = other.join();
        let t3 = CpuSample::read(CpuScope::Thread).unwrap();
        let p3 = CpuSample::read(CpuScope::Process).unwrap();
        let idle = t2.until(&t3, CpuScope::Thread, 0).unwrap();
        assert!(idle.user_s + idle.system_s < 0.03, "{idle:?}");
        assert!(idle.voluntary_switches >= 1, "join blocks: {idle:?}");
        assert_eq!(idle.us_per_request(), None);
        let all = p0.until(&p3, CpuScope::Process, 1).unwrap();
        assert!(
            all.user_s + all.system_s >= own + 0.09,
            "both spins: {all:?}"
        );

        let multi = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .build()
            .unwrap();
        let _in_multi = multi.enter();
        assert!(CpuSample::read(CpuScope::Thread).is_none());
        assert!(CpuSample::read(CpuScope::Process).is_some());
    }

    #[test]
    fn summed_generators_add_up() {
        let part = |u: f64, n: u64| GeneratorCpu {
            scope: CpuScope::Process,
            user_s: u,
            system_s: u / 2.0,
            voluntary_switches: 10,
            involuntary_switches: 1,
            requests: n,
        };
        let s = GeneratorCpu::sum([part(0.3, 100_000), part(0.6, 100_000)]).unwrap();
        assert_eq!((s.voluntary_switches, s.requests), (20, 200_000));
        assert!((s.us_per_request().unwrap() - 6.75).abs() < 1e-9, "{s:?}");
        assert!(GeneratorCpu::sum([]).is_none());
    }
}
