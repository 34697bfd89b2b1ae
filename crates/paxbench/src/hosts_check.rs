//! Whether every host of a hosts file can take part in a run, checked over ssh before anything
//! is written anywhere: `paxbench hosts check` prints [`CheckReport::table`], and `paxbench run`
//! can call [`check`] first and print the same.
//!
//! Per host: ssh reachable (`BatchMode`, so no prompt can hang it); operating system and
//! architecture against the binary that would be deployed; a POSIX login shell; free disk in
//! the remote home; whether the node ports are free there, as the host sees them: UDP ports
//! (`/proc/net/udp`, `udp6`) for QUIC nodes, listening TCP ports (`/proc/net/tcp`, `tcp6`) for
//! TCP nodes; the clock offset to this machine with its error bound; root
//! or passwordless sudo; `tc`, and whether a netem qdisc can really be added (on a dummy link,
//! or a veth pair where the kernel has no dummy links, made and deleted for the purpose) or,
//! without the rights to try, what the kernel shows.
//! Missing netem or sudo fails a host only when [`CheckRequest::require_netem`] says so.

use std::fmt::Write as _;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::path::PathBuf;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use node::Transport;

use crate::hosts::{Host, Hosts, Role};
use crate::shell::quote;
use crate::ssh::{Ssh, SshError};

/// What to check.
#[derive(Clone, Debug)]
pub struct CheckRequest {
    /// Ports every node host must have free (empty: not checked).
    pub ports: Vec<u16>,
    /// The transports the nodes will use: `quic` binds the ports over UDP, `tcp` listens on
    /// them over TCP, so each is checked against its own socket table.
    pub transports: Vec<Transport>,
    /// Nodes the run will start: the node hosts must be able to take them.
    pub nodes: Option<usize>,
    /// Fail hosts on which netem cannot be used (WAN emulation needs it).
    pub require_netem: bool,
    /// Fail hosts with less free disk than this in the remote home.
    pub min_free_bytes: u64,
    /// Clock samples per host (the best is reported).
    pub clock_samples: u32,
    /// The platform of the binary that would be deployed.
    pub platform: Platform,
}

impl Default for CheckRequest {
    fn default() -> Self {
        CheckRequest {
            ports: Vec::new(),
            transports: vec![Transport::Quic],
            nodes: None,
            require_netem: false,
            min_free_bytes: 1 << 30,
            clock_samples: 7,
            platform: Platform::local(),
        }
    }
}

/// An operating system and architecture, in Rust's names (`std::env::consts`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Platform {
    /// `linux`, `macos`, `freebsd`, ...
    pub os: String,
    /// `x86_64`, `aarch64`, ...
    pub arch: String,
}

impl Platform {
    /// This binary's.
    pub fn local() -> Platform {
        Platform {
            os: std::env::consts::OS.into(),
            arch: std::env::consts::ARCH.into(),
        }
    }

    /// From `uname -s` and `uname -m`.
    pub fn from_uname(system: &str, machine: &str) -> Platform {
        let os = match system {
            "Linux" => "linux",
            "Darwin" => "macos",
            "FreeBSD" => "freebsd",
            "OpenBSD" => "openbsd",
            "NetBSD" => "netbsd",
            other => return Self::raw(other, machine),
        };
        let arch = match machine {
            "x86_64" | "amd64" => "x86_64",
            "aarch64" | "arm64" => "aarch64",
            "i386" | "i486" | "i586" | "i686" => "x86",
            "riscv64" => "riscv64",
            "ppc64" | "ppc64le" => "powerpc64",
            "s390x" => "s390x",
            "loongarch64" => "loongarch64",
            m if m.starts_with("armv") => "arm",
            m => m,
        };
        Platform {
            os: os.into(),
            arch: arch.into(),
        }
    }

    fn raw(system: &str, machine: &str) -> Platform {
        Platform {
            os: system.to_lowercase(),
            arch: machine.into(),
        }
    }

    /// The Rust target to build for it, where there is an obvious one.
    pub fn target_triple(&self) -> Option<&'static str> {
        Some(match (self.os.as_str(), self.arch.as_str()) {
            ("linux", "x86_64") => "x86_64-unknown-linux-gnu",
            ("linux", "aarch64") => "aarch64-unknown-linux-gnu",
            ("linux", "arm") => "armv7-unknown-linux-gnueabihf",
            ("linux", "x86") => "i686-unknown-linux-gnu",
            ("linux", "riscv64") => "riscv64gc-unknown-linux-gnu",
            ("linux", "s390x") => "s390x-unknown-linux-gnu",
            ("linux", "powerpc64") => "powerpc64le-unknown-linux-gnu",
            ("macos", "aarch64") => "aarch64-apple-darwin",
            ("macos", "x86_64") => "x86_64-apple-darwin",
            ("freebsd", "x86_64") => "x86_64-unknown-freebsd",
            _ => return None,
        })
    }
}

impl std::fmt::Display for Platform {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {}", self.os, self.arch)
    }
}

/// What the remote user may do as root.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Privilege {
    /// It is root.
    Root,
    /// `sudo -n` works (passwordless).
    Sudo,
    /// Neither.
    None,
}

/// Yes, no, or cannot tell.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Tri {
    /// Yes.
    Yes,
    /// No.
    No,
    /// Cannot tell.
    Unknown,
}

/// Whether netem can be used, and how that was found.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Netem {
    /// The answer.
    pub usable: Tri,
    /// Why.
    pub why: String,
}

/// The node ports on a host.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Ports {
    /// Not asked for, or not a node host.
    NotChecked,
    /// All free.
    Free(Vec<u16>),
    /// These are taken: (port, the address bound to it).
    Busy(Vec<(u16, IpAddr)>),
    /// /proc/net/udp could not be read.
    Unknown(String),
}

/// This machine's clock against a host's: `offset_ns` = remote − local, within ± `error_ns`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ClockOffset {
    /// Remote minus local, nanoseconds.
    pub offset_ns: i64,
    /// The bound on the error: half the round trip of the best sample.
    pub error_ns: u64,
}

/// One host's results.
#[derive(Clone, Debug)]
pub struct HostReport {
    /// The host's name.
    pub name: String,
    /// Its roles.
    pub roles: Vec<Role>,
    /// Whether ssh reached it.
    pub reachable: bool,
    /// Its platform.
    pub platform: Option<Platform>,
    /// Free bytes in the remote home.
    pub free_bytes: Option<u64>,
    /// The node ports over UDP (QUIC nodes).
    pub ports: Ports,
    /// The node ports over TCP (TCP nodes): only listening sockets count.
    pub tcp_ports: Ports,
    /// The clock offset, or why it is unknown.
    pub clock: Result<ClockOffset, String>,
    /// Root, sudo or neither.
    pub privilege: Option<Privilege>,
    /// Where `tc` is.
    pub tc: Option<String>,
    /// Whether netem can be used.
    pub netem: Option<Netem>,
    /// Why the host cannot take part (empty: it can).
    pub failures: Vec<String>,
    /// Things worth knowing that do not stop a run.
    pub notes: Vec<String>,
}

impl HostReport {
    /// Whether it can take part.
    pub fn ok(&self) -> bool {
        self.failures.is_empty()
    }
}

/// Every host's results, and what is wrong with the file as a whole.
#[derive(Clone, Debug)]
pub struct CheckReport {
    /// The hosts file.
    pub hosts_file: PathBuf,
    /// The binary's platform, checked against.
    pub platform: Platform,
    /// One per host, in file order.
    pub hosts: Vec<HostReport>,
    /// Problems not of one host (e.g. too few node hosts for the nodes asked for).
    pub problems: Vec<String>,
}

impl CheckReport {
    /// Whether every host, and the file, passed.
    pub fn ok(&self) -> bool {
        self.problems.is_empty() && self.hosts.iter().all(HostReport::ok)
    }

    /// Every failure as one line: `host NAME: reason`, then the file's problems.
    pub fn failures(&self) -> Vec<String> {
        let mut out: Vec<String> = self
            .hosts
            .iter()
            .flat_map(|h| {
                h.failures
                    .iter()
                    .map(move |f| format!("host {}: {f}", h.name))
            })
            .collect();
        out.extend(self.problems.iter().cloned());
        out
    }

    /// The table, one row per host, followed by the failures and notes.
    pub fn table(&self) -> String {
        let header = [
            "host",
            "roles",
            "ssh",
            "platform",
            "free disk",
            "udp ports",
            "clock offset",
            "root",
            "netem",
            "result",
        ];
        let rows: Vec<Vec<String>> = self.hosts.iter().map(|h| self.row(h)).collect();
        let mut widths: Vec<usize> = header.iter().map(|h| h.chars().count()).collect();
        for r in &rows {
            for (w, c) in widths.iter_mut().zip(r) {
                *w = (*w).max(c.chars().count());
            }
        }
        let mut out = String::new();
        let mut line = |cells: &[String]| {
            let mut l = String::new();
            for (i, (c, w)) in cells.iter().zip(&widths).enumerate() {
                if i + 1 == cells.len() {
                    l.push_str(c);
                } else {
                    let _ = write!(l, "{c:<w$}  ");
                }
            }
            out.push_str(l.trim_end());
            out.push('\n');
        };
        line(&header.map(String::from));
        for r in &rows {
            line(r);
        }
        for h in &self.hosts {
            for f in &h.failures {
                let _ = writeln!(out, "FAIL host {}: {f}", h.name);
            }
            for n in &h.notes {
                let _ = writeln!(out, "note host {}: {n}", h.name);
            }
        }
        for p in &self.problems {
            let _ = writeln!(out, "FAIL {p}");
        }
        let bad = self.hosts.iter().filter(|h| !h.ok()).count();
        let _ = writeln!(
            out,
            "{} of {} host(s) ready{}",
            self.hosts.len() - bad,
            self.hosts.len(),
            if self.ok() { "" } else { "; the check failed" }
        );
        out
    }

    fn row(&self, h: &HostReport) -> Vec<String> {
        let dash = || "-".to_string();
        let roles = h
            .roles
            .iter()
            .map(Role::to_string)
            .collect::<Vec<_>>()
            .join(",");
        if !h.reachable {
            let mut r = vec![h.name.clone(), roles, "unreachable".into()];
            r.extend((0..6).map(|_| dash()));
            r.push("FAIL".into());
            return r;
        }
        let platform = match &h.platform {
            Some(p) if *p == self.platform => format!("{p} (matches)"),
            Some(p) => format!("{p} (binary: {})", self.platform),
            None => "unknown".into(),
        };
        let disk = h.free_bytes.map_or_else(dash, |b| {
            format!("{:.1} GiB free", b as f64 / (1u64 << 30) as f64)
        });
        let cell = |ports: &Ports| match ports {
            Ports::NotChecked => None,
            Ports::Free(p) => Some(format!("{} free", port_list(p))),
            Ports::Busy(b) => Some(format!(
                "busy: {}",
                port_list(&b.iter().map(|(p, _)| *p).collect::<Vec<_>>())
            )),
            Ports::Unknown(_) => Some("unknown".into()),
        };
        let ports = match (cell(&h.ports), cell(&h.tcp_ports)) {
            (None, None) => dash(),
            (Some(udp), None) => udp,
            (None, Some(tcp)) => format!("tcp {tcp}"),
            (Some(udp), Some(tcp)) => format!("udp {udp}; tcp {tcp}"),
        };
        let clock = match &h.clock {
            Ok(c) => format!(
                "{:+.3} ms ± {:.3} ms",
                c.offset_ns as f64 / 1e6,
                c.error_ns as f64 / 1e6
            ),
            Err(_) => "unknown".into(),
        };
        let root = match h.privilege {
            Some(Privilege::Root) => "root",
            Some(Privilege::Sudo) => "sudo",
            Some(Privilege::None) => "no",
            None => "unknown",
        }
        .to_string();
        let netem = match &h.netem {
            Some(n) => format!(
                "{}: {}",
                match n.usable {
                    Tri::Yes => "yes",
                    Tri::No => "no",
                    Tri::Unknown => "unknown",
                },
                n.why
            ),
            None => "unknown".into(),
        };
        let result = if h.ok() { "ok" } else { "FAIL" }.to_string();
        vec![
            h.name.clone(),
            roles,
            "reachable".into(),
            platform,
            disk,
            ports,
            clock,
            root,
            netem,
            result,
        ]
    }
}

/// `7000-7002`, or `7000,7005`.
fn port_list(ports: &[u16]) -> String {
    let mut sorted = ports.to_vec();
    sorted.sort_unstable();
    sorted.dedup();
    let contiguous = sorted.windows(2).all(|w| w[1] == w[0] + 1);
    match sorted.as_slice() {
        [] => "-".into(),
        [one] => one.to_string(),
        [first, .., last] if contiguous => format!("{first}-{last}"),
        all => all.iter().map(u16::to_string).collect::<Vec<_>>().join(","),
    }
}

/// Checks every host of `hosts` (in parallel) through `ssh`.
pub fn check(hosts: &Hosts, ssh: &Ssh, req: &CheckRequest) -> CheckReport {
    let mut problems = Vec::new();
    if let Some(n) = req.nodes {
        if let Err(e) = hosts.assign_nodes(n) {
            problems.push(e.to_string());
        }
    }
    let reports = std::thread::scope(|s| {
        let handles: Vec<_> = hosts
            .hosts
            .iter()
            .map(|h| s.spawn(move || check_host(h, ssh, req)))
            .collect();
        handles
            .into_iter()
            .map(|j| j.join().expect("a host check panicked"))
            .collect()
    });
    CheckReport {
        hosts_file: hosts.path.clone(),
        platform: req.platform.clone(),
        hosts: reports,
        problems,
    }
}

/// The remote side of the check, one round trip: a POSIX sh script printing `@@key value`
/// lines, then /proc/net/udp, udp6, tcp and tcp6 between markers.
fn probe_script() -> String {
    let quoting = quote(QUOTING_SAMPLE);
    format!(
        r#"printf '@@uname %s %s\n' "$(uname -s)" "$(uname -m)"
printf '@@quote %s\n' {quoting}
printf '@@glibc %s\n' "$(getconf GNU_LIBC_VERSION 2>/dev/null)"
printf '@@df %s\n' "$(df -Pk "$HOME" 2>/dev/null | tail -n 1)"
if [ "$(id -u)" = 0 ]; then s=; priv=root
elif command -v sudo >/dev/null 2>&1 && sudo -n true >/dev/null 2>&1; then s='sudo -n'; priv=sudo
else s=; priv=none; fi
printf '@@priv %s\n' "$priv"
find_tool() {{ command -v "$1" 2>/dev/null || for p in /usr/sbin/$1 /sbin/$1 /usr/bin/$1 /bin/$1; do if [ -x "$p" ]; then echo "$p"; break; fi; done; }}
tc=$(find_tool tc); ip=$(find_tool ip)
printf '@@tc %s\n' "$tc"
k=$(uname -r)
if [ -d /sys/module/sch_netem ]; then m='sch_netem is loaded'
elif ls "/lib/modules/$k/kernel/net/sched/" 2>/dev/null | grep -q '^sch_netem\.ko'; then m="sch_netem is in /lib/modules/$k"
elif [ -r /proc/config.gz ] && zcat /proc/config.gz 2>/dev/null | grep -q '^CONFIG_NET_SCH_NETEM=[ym]'; then m='the kernel config has CONFIG_NET_SCH_NETEM'
elif [ -r "/boot/config-$k" ] && grep -q '^CONFIG_NET_SCH_NETEM=[ym]' "/boot/config-$k"; then m='the kernel config has CONFIG_NET_SCH_NETEM'
else m=; fi
printf '@@netem-kernel %s\n' "$m"
if [ "$priv" != none ] && [ -n "$tc" ] && [ -n "$ip" ]; then
  d=pxn$$
  if e=$($s "$ip" link add "$d" type dummy 2>&1) || e=$($s "$ip" link add "$d" type veth peer name "${{d}}p" 2>&1); then
    if e=$($s "$tc" qdisc add dev "$d" root netem delay 1ms 2>&1); then r=yes; else r="no $e"; fi
    $s "$ip" link del "$d" >/dev/null 2>&1
  else r="unknown $e"; fi
  printf '@@netem-try %s\n' "$(printf %s "$r" | tr '\n' ' ')"
fi
echo @@udp; cat /proc/net/udp 2>/dev/null
echo @@udp6; cat /proc/net/udp6 2>/dev/null
echo @@tcp; cat /proc/net/tcp 2>/dev/null
echo @@tcp6; cat /proc/net/tcp6 2>/dev/null
echo @@end
"#
    )
}

/// Printed back exactly only by a shell that quotes as POSIX says.
const QUOTING_SAMPLE: &str = "a'b \"c\" $x \\ `d` ~";

fn check_host(host: &Host, ssh: &Ssh, req: &CheckRequest) -> HostReport {
    let mut r = HostReport {
        name: host.name.clone(),
        roles: host.roles.clone(),
        reachable: false,
        platform: None,
        free_bytes: None,
        ports: Ports::NotChecked,
        tcp_ports: Ports::NotChecked,
        clock: Err("not measured".into()),
        privilege: None,
        tc: None,
        netem: None,
        failures: Vec::new(),
        notes: Vec::new(),
    };
    if let Err(e) = ssh.connect(host) {
        r.failures
            .push(format!("unreachable: {}", without_host(&e)));
        return r;
    }
    r.reachable = true;
    let out = match ssh.probe(host, &probe_script()).and_then(|o| o.check()) {
        Ok(o) => o.stdout,
        Err(e) => {
            r.failures
                .push(format!("the probe script failed: {}", without_host(&e)));
            return r;
        }
    };
    let probe = Probe::parse(&out);

    // Platform.
    match probe.get("uname").and_then(|u| u.split_once(' ')) {
        Some((system, machine)) => {
            let p = Platform::from_uname(system, machine);
            if p != req.platform {
                r.failures.push(wrong_platform(&req.platform, &p));
            }
            r.platform = Some(p);
        }
        None => r.failures.push("`uname -sm` printed nothing".into()),
    }
    if probe.get("quote") != Some(QUOTING_SAMPLE) {
        r.failures.push(format!(
            "the login shell does not quote as POSIX sh does (sent {QUOTING_SAMPLE:?}, got {:?}); \
             make the remote user's shell sh, bash, dash, ksh or zsh",
            probe.get("quote").unwrap_or("")
        ));
    }
    if let (Some(remote), Some(local)) = (probe.get("glibc"), local_glibc()) {
        if let (Some(rv), Some(lv)) = (glibc_version(remote), glibc_version(&local)) {
            if rv < lv {
                r.notes.push(format!(
                    "it has {remote}, older than the glibc {local} the binary was linked against \
                     here: the binary may not start there (build on a host like it, or for \
                     x86_64-unknown-linux-musl)"
                ));
            }
        }
    }

    // Disk.
    r.free_bytes = probe.get("df").and_then(df_available);
    match r.free_bytes {
        Some(b) if b < req.min_free_bytes => r.failures.push(format!(
            "only {:.2} GiB free in the remote home (at least {:.2} GiB wanted)",
            b as f64 / (1u64 << 30) as f64,
            req.min_free_bytes as f64 / (1u64 << 30) as f64
        )),
        Some(_) => {}
        None => r.failures.push("`df -Pk $HOME` gave no free space".into()),
    }

    // Ports: each transport against its own socket table.
    if host.is_node() && !req.ports.is_empty() {
        let big_endian = r
            .platform
            .as_ref()
            .is_some_and(|p| matches!(p.arch.as_str(), "s390x" | "sparc64" | "mips" | "mips64"));
        for transport in [Transport::Quic, Transport::Tcp] {
            if !req.transports.contains(&transport) {
                continue;
            }
            let (proto, v4, v6, listening_only) = match transport {
                Transport::Quic => ("udp", "udp", "udp6", false),
                Transport::Tcp => ("tcp", "tcp", "tcp6", true),
            };
            let state = match (probe.section(v4), probe.section(v6)) {
                (None, None) => Ports::Unknown(format!("/proc/net/{proto} could not be read")),
                (a, b) => {
                    let mut bound = Vec::new();
                    for text in [a, b].into_iter().flatten() {
                        bound.extend(parse_proc_net_sockets(text, big_endian, listening_only));
                    }
                    ports_state(host.addr, &req.ports, &bound)
                }
            };
            match &state {
                Ports::Busy(b) => r.failures.push(format!(
                    "{} port(s) in use: {}",
                    proto.to_uppercase(),
                    b.iter()
                        .map(|(p, a)| format!("{p} (bound to {a})"))
                        .collect::<Vec<_>>()
                        .join(", ")
                )),
                Ports::Unknown(why) => r.failures.push(why.clone()),
                _ => {}
            }
            match transport {
                Transport::Quic => r.ports = state,
                Transport::Tcp => r.tcp_ports = state,
            }
        }
    }

    // Privilege and netem.
    r.privilege = match probe.get("priv") {
        Some("root") => Some(Privilege::Root),
        Some("sudo") => Some(Privilege::Sudo),
        Some("none") => Some(Privilege::None),
        _ => None,
    };
    r.tc = probe.get("tc").filter(|t| !t.is_empty()).map(String::from);
    let netem = netem_verdict(
        r.privilege,
        r.tc.as_deref(),
        probe.get("netem-kernel").filter(|k| !k.is_empty()),
        probe.get("netem-try"),
    );
    if req.require_netem && netem.usable != Tri::Yes {
        r.failures
            .push(format!("netem is required and not usable: {}", netem.why));
    }
    r.netem = Some(netem);

    // Clock.
    r.clock = clock_offset(ssh, host, req.clock_samples.max(1));
    r
}

/// An error's message without its leading `host NAME: ` (the row names the host).
fn without_host(e: &SshError) -> String {
    let s = e.to_string();
    let prefix = format!("host {}: ", e.host());
    s.strip_prefix(&prefix).map(String::from).unwrap_or(s)
}

fn wrong_platform(binary: &Platform, host: &Platform) -> String {
    let how = match host.target_triple() {
        Some(t) => format!(
            "build a binary for it: on a {host} machine, `cargo build --release -p paxbench`; or \
             here, `rustup target add {t} && cargo build --release -p paxbench --target {t}` \
             (with a linker for {t})"
        ),
        None => format!("build a binary for it on a {host} machine"),
    };
    format!("it is {host}, the binary is {binary}: {how}")
}

/// The `@@key value` lines and the sections of the probe's output.
struct Probe<'a> {
    text: &'a str,
}

impl<'a> Probe<'a> {
    fn parse(text: &'a str) -> Probe<'a> {
        Probe { text }
    }

    fn get(&self, key: &str) -> Option<&'a str> {
        let tag = format!("@@{key}");
        self.text.lines().find_map(|l| {
            let rest = l.strip_prefix(&tag)?;
            if rest.is_empty() {
                Some("")
            } else {
                rest.strip_prefix(' ')
            }
        })
    }

    /// The lines between `@@name` and the next `@@` line.
    fn section(&self, name: &str) -> Option<&'a str> {
        let tag = format!("\n@@{name}\n");
        let start = self.text.find(&tag)? + tag.len();
        let rest = &self.text[start..];
        if rest.starts_with("@@") {
            return None;
        }
        let end = rest.find("\n@@").map_or(rest.len(), |e| e + 1);
        let body = &rest[..end];
        (!body.trim().is_empty()).then_some(body)
    }
}

/// Available bytes from the last line of `df -Pk` (1024-byte blocks, fourth column).
fn df_available(line: &str) -> Option<u64> {
    let kb: u64 = line.split_whitespace().nth(3)?.parse().ok()?;
    Some(kb * 1024)
}

/// The (address, port) of every socket in /proc/net/udp, udp6, tcp or tcp6 (with
/// `listening_only`, only sockets in the TCP LISTEN state, `0A`: a connection's local port
/// does not stop a listener from binding). The kernel prints each address as 32-bit words in
/// the host's byte order.
fn parse_proc_net_sockets(
    text: &str,
    big_endian: bool,
    listening_only: bool,
) -> Vec<(IpAddr, u16)> {
    let word = |hex: &str| -> Option<[u8; 4]> {
        let v = u32::from_str_radix(hex, 16).ok()?;
        Some(if big_endian {
            v.to_be_bytes()
        } else {
            v.to_le_bytes()
        })
    };
    text.lines()
        .filter_map(|l| {
            let mut fields = l.split_whitespace();
            let local = fields.nth(1)?;
            if listening_only && fields.nth(1) != Some("0A") {
                return None;
            }
            let (addr, port) = local.split_once(':')?;
            let port = u16::from_str_radix(port, 16).ok()?;
            let ip = match addr.len() {
                8 => IpAddr::V4(Ipv4Addr::from(word(addr)?)),
                32 => {
                    let mut b = [0u8; 16];
                    for i in 0..4 {
                        b[i * 4..i * 4 + 4].copy_from_slice(&word(&addr[i * 8..i * 8 + 8])?);
                    }
                    IpAddr::V6(Ipv6Addr::from(b))
                }
                _ => return None,
            };
            Some((ip, port))
        })
        .collect()
}

/// Which of `ports` a node binding `addr` would find taken: by a socket on that address, on
/// the wildcard address, or on the IPv4-mapped form of it.
fn ports_state(addr: IpAddr, ports: &[u16], bound: &[(IpAddr, u16)]) -> Ports {
    let clashes = |a: &IpAddr| {
        a.is_unspecified()
            || *a == addr
            || match (a, addr) {
                (IpAddr::V6(v6), IpAddr::V4(v4)) => v6.to_ipv4_mapped() == Some(v4),
                _ => false,
            }
    };
    let mut busy: Vec<(u16, IpAddr)> = Vec::new();
    for &p in ports {
        if let Some((a, _)) = bound.iter().find(|(a, bp)| *bp == p && clashes(a)) {
            busy.push((p, *a));
        }
    }
    if busy.is_empty() {
        Ports::Free(ports.to_vec())
    } else {
        Ports::Busy(busy)
    }
}

fn netem_verdict(
    privilege: Option<Privilege>,
    tc: Option<&str>,
    kernel: Option<&str>,
    tried: Option<&str>,
) -> Netem {
    let netem = |usable, why: String| Netem { usable, why };
    match tried {
        Some("yes") => {
            return netem(
                Tri::Yes,
                "a netem qdisc was added to a link made to try".into(),
            )
        }
        Some(t) if t.starts_with("no") => {
            return netem(
                Tri::No,
                format!("adding a netem qdisc failed: {}", t[2..].trim()),
            )
        }
        Some(t) => {
            let t = t.strip_prefix("unknown").unwrap_or(t).trim();
            return netem(
                Tri::Unknown,
                format!(
                    "could not make a dummy link or veth pair to try ({t}); {}",
                    kernel.unwrap_or("no sign of sch_netem in the kernel")
                ),
            );
        }
        None => {}
    }
    if tc.is_none() {
        return netem(Tri::No, "no tc (install iproute2)".into());
    }
    match privilege {
        Some(Privilege::None) | None => netem(
            Tri::Unknown,
            format!(
                "neither root nor passwordless sudo to try; {}",
                kernel.unwrap_or("no sign of sch_netem in the kernel")
            ),
        ),
        Some(_) => netem(Tri::Unknown, "no ip command to make a dummy link".into()),
    }
}

/// The best of `samples` round trips of `date +%s%N` over one long-lived session.
fn clock_offset(ssh: &Ssh, host: &Host, samples: u32) -> Result<ClockOffset, String> {
    let script = "while read -r _; do date +%s%N; done";
    let mut p = ssh
        .spawn(host, &format!("sh -c {}", quote(script)))
        .map_err(|e| without_host(&e))?;
    let now = || {
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos() as i128)
    };
    let mut best: Option<ClockOffset> = None;
    for _ in 0..samples {
        let t0 = now();
        p.write_line("").map_err(|e| format!("clock probe: {e}"))?;
        let line = p
            .read_line(Duration::from_secs(10))
            .ok_or("clock probe: no answer from `date` within 10 s")?;
        let t1 = now();
        let remote: i128 = line
            .trim()
            .parse()
            .map_err(|_| format!("`date +%s%N` printed {line:?} (no nanoseconds there?)"))?;
        let sample = ClockOffset {
            offset_ns: (remote - (t0 + t1) / 2) as i64,
            error_ns: ((t1 - t0) / 2).max(0) as u64,
        };
        if best.is_none_or(|b| sample.error_ns < b.error_ns) {
            best = Some(sample);
        }
    }
    best.ok_or_else(|| "no samples".into())
}

/// This process's glibc version, e.g. "2.36".
fn local_glibc() -> Option<String> {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        // SAFETY: returns a pointer to a static NUL-terminated string.
        let v = unsafe { std::ffi::CStr::from_ptr(libc::gnu_get_libc_version()) };
        Some(v.to_string_lossy().into_owned())
    }
    #[cfg(not(all(target_os = "linux", target_env = "gnu")))]
    {
        None
    }
}

/// (major, minor) from "glibc 2.36" or "2.36".
fn glibc_version(s: &str) -> Option<(u32, u32)> {
    let v = s.trim().rsplit(' ').next()?;
    let mut it = v.split('.');
    Some((it.next()?.parse().ok()?, it.next()?.parse().ok()?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uname_maps_to_rust_names() {
        assert_eq!(
            Platform::from_uname("Linux", "x86_64"),
            Platform {
                os: "linux".into(),
                arch: "x86_64".into()
            }
        );
        assert_eq!(
            Platform::from_uname("Darwin", "arm64").to_string(),
            "macos aarch64"
        );
        assert_eq!(Platform::from_uname("Linux", "armv7l").arch, "arm");
        assert_eq!(Platform::from_uname("Plan9", "386").os, "plan9");
        assert_eq!(
            Platform::from_uname("Linux", "aarch64").target_triple(),
            Some("aarch64-unknown-linux-gnu")
        );
        let local = Platform::local();
        assert_eq!(local.os, std::env::consts::OS);
    }

    #[test]
    fn a_wrong_platform_says_how_to_build_for_it() {
        let msg = wrong_platform(
            &Platform::from_uname("Linux", "x86_64"),
            &Platform::from_uname("Linux", "aarch64"),
        );
        assert!(
            msg.contains("linux aarch64")
                && msg.contains("--target aarch64-unknown-linux-gnu")
                && msg.contains("on a linux aarch64 machine"),
            "{msg}"
        );
    }

    const UDP: &str = "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode ref pointer drops
  101: 00000000:1B58 00000000:0000 07 00000000:00000000 00:00000000 00000000     0        0 1001 2 0000000000000000 0
  102: 0100007F:1B59 00000000:0000 07 00000000:00000000 00:00000000 00000000     0        0 1002 2 0000000000000000 0
  103: 0B0012C6:1B5A 00000000:0000 07 00000000:00000000 00:00000000 00000000     0        0 1003 2 0000000000000000 0
";
    const UDP6: &str = "  sl  local_address                         remote_address                        st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode ref pointer drops
  201: 00000000000000000000000000000000:1B5B 00000000000000000000000000000000:0000 07 00000000:00000000 00:00000000 00000000     0        0 2001 2 0000000000000000 0
  202: 0000000000000000FFFF00000C0012C6:1B5C 00000000000000000000000000000000:0000 07 00000000:00000000 00:00000000 00000000     0        0 2002 2 0000000000000000 0
";

    #[test]
    fn proc_net_udp_is_decoded() {
        let v4 = parse_proc_net_sockets(UDP, false, false);
        assert_eq!(
            v4,
            vec![
                ("0.0.0.0".parse().unwrap(), 7000),
                ("127.0.0.1".parse().unwrap(), 7001),
                ("198.18.0.11".parse().unwrap(), 7002),
            ]
        );
        let v6 = parse_proc_net_sockets(UDP6, false, false);
        assert_eq!(
            v6,
            vec![
                ("::".parse().unwrap(), 7003),
                ("::ffff:198.18.0.12".parse().unwrap(), 7004),
            ]
        );
        assert_eq!(
            parse_proc_net_sockets(
                "  1: 7F000001:0050 00000000:0000 07 0 0 0 0 0 0 0",
                true,
                false
            ),
            vec![("127.0.0.1".parse().unwrap(), 80)]
        );
    }

    const TCP: &str = "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode
   0: 00000000:1B58 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 3001 1 0000000000000000 100 0 0 10 0
   1: 0100007F:1B59 0100007F:D431 01 00000000:00000000 00:00000000 00000000     0        0 3002 1 0000000000000000 20 4 30 10 -1
   2: 0B0012C6:1B5A 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 3003 1 0000000000000000 100 0 0 10 0
   3: 0B0012C6:1B5B 0C0012C6:1B58 06 00000000:00000000 03:00000F9B 00000000     0        0 0 3 0000000000000000
";

    #[test]
    fn only_listening_tcp_sockets_hold_a_port() {
        // 7000 listens on 0.0.0.0 and 7002 on 198.18.0.11; 7001 is an established connection's
        // local port and 7003 one in TIME_WAIT, neither of which stops a listener.
        assert_eq!(
            parse_proc_net_sockets(TCP, false, true),
            vec![
                ("0.0.0.0".parse().unwrap(), 7000),
                ("198.18.0.11".parse().unwrap(), 7002),
            ]
        );
        assert_eq!(parse_proc_net_sockets(TCP, false, false).len(), 4);
        let a11: IpAddr = "198.18.0.11".parse().unwrap();
        assert_eq!(
            ports_state(
                a11,
                &[7000, 7001, 7002, 7003],
                &parse_proc_net_sockets(TCP, false, true)
            ),
            Ports::Busy(vec![(7000, "0.0.0.0".parse().unwrap()), (7002, a11)])
        );
    }

    #[test]
    fn a_port_is_busy_on_the_address_the_wildcard_or_its_mapped_form() {
        let mut bound = parse_proc_net_sockets(UDP, false, false);
        bound.extend(parse_proc_net_sockets(UDP6, false, false));
        let a11: IpAddr = "198.18.0.11".parse().unwrap();
        let a12: IpAddr = "198.18.0.12".parse().unwrap();
        // 7000 on 0.0.0.0 blocks every address; 7001 on loopback blocks nobody else.
        assert_eq!(
            ports_state(a11, &[7000, 7001, 7002, 7003, 7004, 7005], &bound),
            Ports::Busy(vec![
                (7000, "0.0.0.0".parse().unwrap()),
                (7002, a11),
                (7003, "::".parse().unwrap()),
            ])
        );
        assert_eq!(
            ports_state(a12, &[7004], &bound),
            Ports::Busy(vec![(7004, "::ffff:198.18.0.12".parse().unwrap())])
        );
        assert_eq!(
            ports_state(a12, &[7001, 7002], &bound),
            Ports::Free(vec![7001, 7002])
        );
    }

    #[test]
    fn the_probe_output_is_read_by_key_and_section() {
        let out = format!(
            "@@uname Linux x86_64\n@@quote {QUOTING_SAMPLE}\n@@tc \n@@udp\n{UDP}@@udp6\n@@end\n"
        );
        let p = Probe::parse(&out);
        assert_eq!(p.get("uname"), Some("Linux x86_64"));
        assert_eq!(p.get("quote"), Some(QUOTING_SAMPLE));
        assert_eq!(p.get("tc"), Some(""));
        assert_eq!(p.get("nope"), None);
        assert_eq!(p.section("udp"), Some(UDP));
        assert_eq!(p.section("udp6"), None);
    }

    /// The probe runs under a local sh and reports this machine sensibly.
    #[test]
    fn the_probe_script_runs_under_sh() {
        let out = std::process::Command::new("sh")
            .arg("-c")
            .arg(probe_script())
            .output()
            .unwrap();
        assert!(out.status.success(), "{out:?}");
        let text = String::from_utf8(out.stdout).unwrap();
        let p = Probe::parse(&text);
        let (s, m) = p.get("uname").unwrap().split_once(' ').unwrap();
        assert_eq!(Platform::from_uname(s, m), Platform::local());
        assert_eq!(p.get("quote"), Some(QUOTING_SAMPLE));
        assert!(df_available(p.get("df").unwrap()).unwrap() > 0);
        assert!(p.section("udp").is_some(), "{text}");
        assert!(p.section("tcp").is_some(), "{text}");
        assert!(p.get("priv").is_some());
    }

    #[test]
    fn netem_verdicts_say_why() {
        let v = netem_verdict(Some(Privilege::Root), Some("/sbin/tc"), None, Some("yes"));
        assert_eq!(v.usable, Tri::Yes);
        let v = netem_verdict(
            Some(Privilege::Root),
            Some("/sbin/tc"),
            None,
            Some("no Error: Specified qdisc kind is unknown."),
        );
        assert_eq!(v.usable, Tri::No);
        assert!(v.why.contains("qdisc kind is unknown"), "{}", v.why);
        let v = netem_verdict(
            Some(Privilege::None),
            Some("/sbin/tc"),
            Some("sch_netem is loaded"),
            None,
        );
        assert_eq!(v.usable, Tri::Unknown);
        assert!(
            v.why.contains("sudo") && v.why.contains("loaded"),
            "{}",
            v.why
        );
        let v = netem_verdict(Some(Privilege::Root), None, None, None);
        assert_eq!(v.usable, Tri::No);
    }

    #[test]
    fn ports_and_versions_print_compactly() {
        assert_eq!(port_list(&[7002, 7000, 7001]), "7000-7002");
        assert_eq!(port_list(&[7000, 7005]), "7000,7005");
        assert_eq!(port_list(&[7000]), "7000");
        assert_eq!(glibc_version("glibc 2.36"), Some((2, 36)));
        assert_eq!(glibc_version("2.31"), Some((2, 31)));
        assert_eq!(df_available("/dev/vda 100 50 1234 5% /"), Some(1234 * 1024));
    }
}
