//! One load generator's part of one point, as a typed value: `paxbench run` builds it from the
//! experiment, runs it in-process for a local generator, or writes it as `plan.toml` for
//! `paxbench load --plan` on a client host. Both read it through [`LoadPlan::config`], so a
//! remote generator runs exactly what a local one would.

use std::time::Duration;

use loadgen::{Arrivals, LoadConfig, Mode};
use paxos::Protocol;
use serde::{Deserialize, Serialize};

use crate::experiment::WorkloadSpec;

/// The load of one generator at one level.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct LoadPlan {
    /// The cluster's protocol (Basic Paxos has no leader to target).
    pub protocol: Protocol,
    /// Open loop at a rate or closed loop with clients.
    pub level: PlanLevel,
    /// Keys, values, reads and where requests go.
    pub workload: WorkloadSpec,
    /// Which load level of the point this is; varies the workload's seed.
    pub level_index: usize,
    /// Discarded warm-up, seconds.
    pub warmup_s: f64,
    /// Measured window, seconds.
    pub duration_s: f64,
    /// Per-request timeout, milliseconds.
    pub timeout_ms: u64,
    /// Open loop: the generator wakes at most this often.
    pub pacing_us: u64,
    /// The first client session id (generators of one point must not share sessions: the
    /// nodes deduplicate by session and request id). `None`: derived from clock and pid.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub session_base: Option<u64>,
    /// Record the clients' history, at most this many operations
    /// (`loadgen::LoadConfig::history`); the generator then writes `history.jsonl`. `None`:
    /// no history.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub history: Option<usize>,
}

/// A generator's load level.
#[derive(Clone, Copy, Debug, Deserialize, Serialize, PartialEq)]
#[serde(rename_all = "lowercase", deny_unknown_fields)]
pub enum PlanLevel {
    /// Requests per second on a fixed schedule.
    Open {
        /// Requests per second.
        rate: f64,
        /// Poisson gaps instead of constant ones.
        poisson: bool,
    },
    /// Sessions with requests outstanding each.
    Closed {
        /// Sessions.
        clients: u32,
        /// Requests outstanding per session.
        depth: u32,
    },
}

impl LoadPlan {
    /// The load generator's configuration against `cluster`, through an endpoint presenting
    /// `certs`. Under `reads = "learner"` the Gets go to the cluster's learners
    /// ([`node::config::ClusterConfig::learner_readers`]: **not linearizable**), the rest to
    /// the target. Must be called inside a tokio runtime.
    pub fn config(
        &self,
        cluster: &node::config::ClusterConfig,
        certs: &node::ClientCerts,
    ) -> anyhow::Result<LoadConfig> {
        let (endpoint, nodes) = cluster.client_endpoint(certs)?;
        let mode = match self.level {
            PlanLevel::Open { rate, poisson } => Mode::Open {
                rate,
                arrivals: if poisson {
                    Arrivals::Poisson
                } else {
                    Arrivals::Constant
                },
            },
            PlanLevel::Closed { clients, depth } => Mode::Closed {
                clients: clients as usize,
                depth: depth as usize,
            },
        };
        let seconds = |what: &str, s: f64| {
            Duration::try_from_secs_f64(s)
                .map_err(|_| anyhow::anyhow!("{what} {s} s is not a duration"))
        };
        let mut config = LoadConfig::new(endpoint, nodes, mode);
        config.workload = self.workload.resolve(self.level_index);
        config.target = self.workload.target.resolve(self.protocol);
        config.read_nodes = cluster.learner_readers();
        config.warmup = seconds("warm-up", self.warmup_s)?;
        config.duration = seconds("duration", self.duration_s)?;
        config.timeout = Duration::from_millis(self.timeout_ms);
        config.pacing = Duration::from_micros(self.pacing_us);
        if let Some(base) = self.session_base {
            config.session_base = base;
        }
        config.history = self.history;
        config.self_test_retry_fresh_id = self.workload.self_test_bug
            == Some(crate::experiment::ClientSelfTestBug::RetryWithFreshId);
        Ok(config)
    }

    /// This plan split over `n` generators, the `i`-th share: the rate (or the clients) divided
    /// as evenly as it goes, its own sessions and its own workload seed. Each records its own
    /// history with the whole cap (a merged history is truncated if any part is).
    pub fn share(&self, i: usize, n: usize, session_base: u64) -> LoadPlan {
        let mut part = self.clone();
        part.level = match self.level {
            PlanLevel::Open { rate, poisson } => PlanLevel::Open {
                rate: rate / n as f64,
                poisson,
            },
            PlanLevel::Closed { clients, depth } => PlanLevel::Closed {
                // The first `clients % n` generators take one more.
                clients: clients / n as u32 + u32::from((i as u32) < clients % n as u32),
                depth,
            },
        };
        // 2^16 sessions per generator.
        part.session_base = Some(session_base + ((i as u64) << 16));
        part.workload.seed = self.workload.seed.wrapping_add(1_000_003 * i as u64);
        part
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn plan(level: PlanLevel) -> LoadPlan {
        LoadPlan {
            protocol: Protocol::MultiPaxos,
            level,
            workload: WorkloadSpec::default(),
            level_index: 0,
            warmup_s: 1.0,
            duration_s: 2.0,
            timeout_ms: 2000,
            pacing_us: 200,
            session_base: None,
            history: None,
        }
    }

    #[test]
    fn shares_add_up_and_never_share_sessions() {
        let open = plan(PlanLevel::Open {
            rate: 9000.0,
            poisson: false,
        });
        let parts: Vec<_> = (0..3).map(|i| open.share(i, 3, 1 << 32)).collect();
        for p in &parts {
            assert_eq!(
                p.level,
                PlanLevel::Open {
                    rate: 3000.0,
                    poisson: false
                }
            );
        }
        assert_ne!(parts[0].session_base, parts[1].session_base);
        assert_ne!(parts[0].workload.seed, parts[1].workload.seed);
        let closed = plan(PlanLevel::Closed {
            clients: 7,
            depth: 2,
        });
        let clients: Vec<u32> = (0..3)
            .map(|i| match closed.share(i, 3, 0).level {
                PlanLevel::Closed { clients, .. } => clients,
                open => panic!("{open:?}"),
            })
            .collect();
        assert_eq!(clients, vec![3, 2, 2]);
    }

    #[test]
    fn a_plan_reads_back_as_written() {
        let p = plan(PlanLevel::Closed {
            clients: 4,
            depth: 8,
        })
        .share(1, 2, 77);
        let text = toml::to_string(&p).unwrap();
        assert!(!text.contains("history"), "{text}");
        assert_eq!(toml::from_str::<LoadPlan>(&text).unwrap(), p);
        let with = LoadPlan {
            history: Some(5_000),
            ..p.clone()
        };
        let text = toml::to_string(&with).unwrap();
        assert_eq!(toml::from_str::<LoadPlan>(&text).unwrap(), with);
        let bad = text.replace("depth = 8", "depth = \"deep\"");
        assert!(toml::from_str::<LoadPlan>(&bad).is_err());
    }
}
