//! The parts of paxbench that reach other machines, as a library so that the `paxbench`
//! binary, its tests and later launchers share them:
//!
//! - [`hosts`]: the hosts file (which machines, how to reach them, what each is for);
//! - [`ssh`]: commands, copies and long-running processes on those hosts through the system's
//!   OpenSSH client, one multiplexed connection per host;
//! - [`hosts_check`]: what `paxbench hosts check` verifies before a run touches anything;
//! - [`shell`]: quoting for the remote shell.

pub mod hosts;
pub mod hosts_check;
pub mod shell;
pub mod ssh;
