//! The hosts file: the machines a run uses over ssh, how to reach each, and what each is for.
//!
//! ```toml
//! nodes_per_host = 1         # optional: how many nodes one node host may run (default 1)
//!
//! [ssh]                      # applies to every host; each key optional
//! user = "ubuntu"            # for hosts whose `ssh` names no user@
//! identity = "~/.ssh/bench"  # passed as -i
//! port = 22                  # passed as -o Port= (overrides the ssh config file's)
//! jump = "bastion.example"   # passed as -J
//! options = ["StrictHostKeyChecking=accept-new"]   # each passed as -o
//! config = "ssh_config"      # passed as -F (instead of ~/.ssh/config)
//!
//! [[host]]
//! name = "n1"                # how results and logs name it (unique; letters, digits, - and _)
//! ssh = "bench-n1"           # the ssh target: host, user@host or a Host alias of the config
//! addr = "192.0.2.11"        # the IP address its node binds and its peers dial
//! roles = ["node"]           # "node", "client" or both
//! region = "eu"              # optional, for WAN emulation
//! ```
//!
//! Paths (`identity`, `config`) are relative to the hosts file's directory; a leading `~` is
//! this machine's home. Unknown keys and bad values are errors naming the file, the line and
//! the key.

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::ops::Range;
use std::path::{Path, PathBuf};

use serde::Deserialize;
use toml::Spanned;

/// What is wrong with a hosts file.
#[derive(Debug, thiserror::Error)]
pub enum HostsError {
    /// The file could not be read.
    #[error("cannot read {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// A key is unknown, a value malformed or invalid.
    #[error("{path}:{line}: `{key}`: {why}")]
    Invalid {
        /// The file.
        path: PathBuf,
        /// The 1-based line (0 if unknown).
        line: usize,
        /// The key.
        key: String,
        /// What is wrong.
        why: String,
    },
    /// The TOML itself is malformed, or something is missing where no key can be named.
    #[error("{path}:{line}: {why}")]
    Syntax {
        /// The file.
        path: PathBuf,
        /// The 1-based line (0 if unknown).
        line: usize,
        /// What the parser said.
        why: String,
    },
    /// More nodes than the node hosts can take.
    #[error(
        "{path}: {nodes} node(s) need {needed} node host(s) at nodes_per_host = {nodes_per_host}, \
         but the file has {node_hosts} host(s) with roles including \"node\""
    )]
    TooFewNodeHosts {
        /// The file.
        path: PathBuf,
        /// Nodes asked for.
        nodes: usize,
        /// Node hosts needed.
        needed: usize,
        /// Node hosts in the file.
        node_hosts: usize,
        /// The file's `nodes_per_host`.
        nodes_per_host: u32,
    },
}

/// What a host is for.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Runs `paxbench node`.
    Node,
    /// Runs load generators.
    Client,
}

impl std::fmt::Display for Role {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Role::Node => "node",
            Role::Client => "client",
        })
    }
}

/// `[ssh]`: how every host is reached. Paths are resolved.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SshSettings {
    /// The login name for targets that name none (`-o User=`).
    pub user: Option<String>,
    /// An identity file (`-i`).
    pub identity: Option<PathBuf>,
    /// The port (`-o Port=`).
    pub port: Option<u16>,
    /// Jump host(s) (`-J`).
    pub jump: Option<String>,
    /// Extra options, each passed as `-o`.
    pub options: Vec<String>,
    /// An ssh config file (`-F`), read instead of `~/.ssh/config`.
    pub config: Option<PathBuf>,
}

/// One `[[host]]`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Host {
    /// Unique name, used in results and logs.
    pub name: String,
    /// The ssh destination.
    pub ssh: String,
    /// The address its node binds and its peers dial.
    pub addr: IpAddr,
    /// What it is for (no duplicates, in file order).
    pub roles: Vec<Role>,
    /// A region, for WAN emulation.
    pub region: Option<String>,
}

impl Host {
    /// Whether it runs nodes.
    pub fn is_node(&self) -> bool {
        self.roles.contains(&Role::Node)
    }

    /// Whether it runs load generators.
    pub fn is_client(&self) -> bool {
        self.roles.contains(&Role::Client)
    }
}

/// A parsed, validated hosts file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Hosts {
    /// The file it came from.
    pub path: PathBuf,
    /// How every host is reached.
    pub ssh: SshSettings,
    /// How many nodes one node host may run.
    pub nodes_per_host: u32,
    /// Every host, in file order.
    pub hosts: Vec<Host>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawFile {
    nodes_per_host: Option<Spanned<i64>>,
    #[serde(default)]
    ssh: RawSsh,
    #[serde(default)]
    host: Vec<RawHost>,
}

#[derive(Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSsh {
    user: Option<Spanned<String>>,
    identity: Option<Spanned<String>>,
    port: Option<Spanned<i64>>,
    jump: Option<Spanned<String>>,
    #[serde(default)]
    options: Vec<Spanned<String>>,
    config: Option<Spanned<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawHost {
    name: Spanned<String>,
    ssh: Spanned<String>,
    addr: Spanned<String>,
    roles: Spanned<Vec<Role>>,
    region: Option<Spanned<String>>,
}

impl Hosts {
    /// Reads and validates a hosts file.
    pub fn load(path: &Path) -> Result<Hosts, HostsError> {
        let text = std::fs::read_to_string(path).map_err(|source| HostsError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        Self::parse(path, &text)
    }

    /// Parses and validates hosts-file text; `path` names it in errors and anchors relative
    /// paths.
    pub fn parse(path: &Path, text: &str) -> Result<Hosts, HostsError> {
        let raw: RawFile = toml::from_str(text).map_err(|e| {
            let line = e.span().map_or(0, |s| line_at(text, s.start));
            let why = e.message().trim_end().to_string();
            match key_for_line(text, line) {
                Some(key) => HostsError::Invalid {
                    path: path.to_path_buf(),
                    line,
                    key,
                    why,
                },
                None => HostsError::Syntax {
                    path: path.to_path_buf(),
                    line,
                    why,
                },
            }
        })?;
        let invalid = |key: &str, span: Range<usize>, why: String| HostsError::Invalid {
            path: path.to_path_buf(),
            line: line_at(text, span.start),
            key: key.to_string(),
            why,
        };
        let base = path.parent().unwrap_or(Path::new(""));

        let nodes_per_host = match raw.nodes_per_host {
            None => 1,
            Some(n) => u32::try_from(*n.get_ref())
                .ok()
                .filter(|n| *n >= 1)
                .ok_or_else(|| {
                    invalid(
                        "nodes_per_host",
                        n.span(),
                        format!("{} must be at least 1", n.get_ref()),
                    )
                })?,
        };

        let s = raw.ssh;
        let word = |key: &str, v: &Spanned<String>| -> Result<String, HostsError> {
            check_word(v.get_ref())
                .map(|()| v.get_ref().clone())
                .map_err(|why| invalid(key, v.span(), why))
        };
        let file_path = |key: &str, v: &Spanned<String>| -> Result<PathBuf, HostsError> {
            let p = resolve(base, v.get_ref()).map_err(|why| invalid(key, v.span(), why))?;
            if !p.is_file() {
                return Err(invalid(
                    key,
                    v.span(),
                    format!("{} is not a file", p.display()),
                ));
            }
            Ok(p)
        };
        let ssh = SshSettings {
            user: s.user.as_ref().map(|u| word("user", u)).transpose()?,
            identity: s
                .identity
                .as_ref()
                .map(|p| file_path("identity", p))
                .transpose()?,
            port: s
                .port
                .as_ref()
                .map(|p| {
                    u16::try_from(*p.get_ref())
                        .ok()
                        .filter(|p| *p != 0)
                        .ok_or_else(|| {
                            invalid("port", p.span(), format!("{} is not a port", p.get_ref()))
                        })
                })
                .transpose()?,
            jump: s.jump.as_ref().map(|j| word("jump", j)).transpose()?,
            options: s
                .options
                .iter()
                .map(|o| {
                    check_option(o.get_ref())
                        .map(|()| o.get_ref().clone())
                        .map_err(|why| invalid("options", o.span(), why))
                })
                .collect::<Result<_, _>>()?,
            config: s
                .config
                .as_ref()
                .map(|p| file_path("config", p))
                .transpose()?,
        };

        let mut hosts = Vec::new();
        let mut names: BTreeMap<String, usize> = BTreeMap::new();
        let mut addrs: BTreeMap<IpAddr, String> = BTreeMap::new();
        for h in raw.host {
            let name = h.name.get_ref();
            check_name(name).map_err(|why| invalid("name", h.name.span(), why))?;
            if let Some(line) = names.get(name) {
                return Err(invalid(
                    "name",
                    h.name.span(),
                    format!("{name:?} already names the host on line {line}"),
                ));
            }
            names.insert(name.clone(), line_at(text, h.name.span().start));
            let target = h.ssh.get_ref();
            check_word(target).map_err(|why| invalid("ssh", h.ssh.span(), why))?;
            if target.starts_with("ssh://") {
                return Err(invalid(
                    "ssh",
                    h.ssh.span(),
                    "ssh:// targets are not supported: name a Host alias of the `config` file \
                     (which may set its Port)"
                        .into(),
                ));
            }
            let addr: IpAddr = h.addr.get_ref().parse().map_err(|_| {
                invalid(
                    "addr",
                    h.addr.span(),
                    format!("{:?} is not an IP address", h.addr.get_ref()),
                )
            })?;
            if addr.is_unspecified() || addr.is_multicast() {
                return Err(invalid(
                    "addr",
                    h.addr.span(),
                    format!("{addr} cannot be a host's address"),
                ));
            }
            if let Some(other) = addrs.get(&addr) {
                return Err(invalid(
                    "addr",
                    h.addr.span(),
                    format!("{addr} is also host {other}'s address"),
                ));
            }
            addrs.insert(addr, name.clone());
            let mut roles = Vec::new();
            for r in h.roles.get_ref() {
                if !roles.contains(r) {
                    roles.push(*r);
                }
            }
            if roles.is_empty() {
                return Err(invalid(
                    "roles",
                    h.roles.span(),
                    "give at least one of \"node\", \"client\"".into(),
                ));
            }
            let region = match &h.region {
                None => None,
                Some(r) => {
                    check_name(r.get_ref()).map_err(|why| invalid("region", r.span(), why))?;
                    Some(r.get_ref().clone())
                }
            };
            hosts.push(Host {
                name: name.clone(),
                ssh: target.clone(),
                addr,
                roles,
                region,
            });
        }
        if hosts.is_empty() {
            return Err(HostsError::Syntax {
                path: path.to_path_buf(),
                line: 0,
                why: "no [[host]] tables".into(),
            });
        }
        Ok(Hosts {
            path: path.to_path_buf(),
            ssh,
            nodes_per_host,
            hosts,
        })
    }

    /// The hosts with role "node", in file order.
    pub fn node_hosts(&self) -> Vec<&Host> {
        self.hosts.iter().filter(|h| h.is_node()).collect()
    }

    /// The hosts with role "client", in file order.
    pub fn client_hosts(&self) -> Vec<&Host> {
        self.hosts.iter().filter(|h| h.is_client()).collect()
    }

    /// The host named `name`.
    pub fn get(&self, name: &str) -> Option<&Host> {
        self.hosts.iter().find(|h| h.name == name)
    }

    /// Where each of `count` nodes runs: node i on the i-th node host, wrapping around to put
    /// further nodes next to the first ones (node i on node host i mod H) while
    /// `nodes_per_host` allows. Too few node hosts is an error naming the file and the count.
    pub fn assign_nodes(&self, count: usize) -> Result<Vec<&Host>, HostsError> {
        let nodes = self.node_hosts();
        let per = self.nodes_per_host as usize;
        if nodes.is_empty() || count > nodes.len() * per {
            return Err(HostsError::TooFewNodeHosts {
                path: self.path.clone(),
                nodes: count,
                needed: count.div_ceil(per),
                node_hosts: nodes.len(),
                nodes_per_host: self.nodes_per_host,
            });
        }
        Ok((0..count).map(|i| nodes[i % nodes.len()]).collect())
    }
}

/// A name: letters, digits, `-` and `_`, 1 to 64 of them.
fn check_name(s: &str) -> Result<(), String> {
    if s.is_empty()
        || s.len() > 64
        || !s
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
    {
        return Err(format!("{s:?} must be 1 to 64 letters, digits, - or _"));
    }
    Ok(())
}

/// One word of an ssh command line: non-empty, no blanks or control characters, and not an
/// option (a leading `-` would be read as one).
fn check_word(s: &str) -> Result<(), String> {
    if s.is_empty() {
        return Err("must not be empty".into());
    }
    if s.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(format!(
            "{s:?} must not contain blanks or control characters"
        ));
    }
    if s.starts_with('-') {
        return Err(format!("{s:?} must not start with -"));
    }
    Ok(())
}

/// An `-o` option: `Key=value` or `Key value`, on one line.
fn check_option(s: &str) -> Result<(), String> {
    let key_len = s.find(['=', ' ']).unwrap_or(0);
    if key_len == 0
        || !s[..key_len].chars().all(|c| c.is_ascii_alphanumeric())
        || s.chars().any(|c| c.is_control())
    {
        return Err(format!(
            "{s:?} is not an ssh option (Key=value, as ssh -o takes)"
        ));
    }
    Ok(())
}

/// `~` or `~/...` against this machine's home; anything relative against `base`.
fn resolve(base: &Path, p: &str) -> Result<PathBuf, String> {
    if p.is_empty() {
        return Err("must not be empty".into());
    }
    let expanded = if p == "~" || p.starts_with("~/") {
        let home = std::env::var_os("HOME")
            .filter(|h| !h.is_empty())
            .ok_or_else(|| format!("{p:?} starts with ~ but HOME is not set"))?;
        PathBuf::from(home).join(p.trim_start_matches('~').trim_start_matches('/'))
    } else if p.starts_with('~') {
        return Err(format!("{p:?}: only ~ and ~/ are expanded, not ~user"));
    } else {
        PathBuf::from(p)
    };
    Ok(if expanded.is_absolute() {
        expanded
    } else {
        base.join(expanded)
    })
}

/// The 1-based line of byte offset `at`.
fn line_at(text: &str, at: usize) -> usize {
    text[..at.min(text.len())].matches('\n').count() + 1
}

/// The key assigned on `line`, or on the nearest line above it within the same table (a
/// value that spans lines), if any.
fn key_for_line(text: &str, line: usize) -> Option<String> {
    let lines: Vec<&str> = text.lines().collect();
    for l in lines.get(..line.min(lines.len()))?.iter().rev() {
        let l = l.trim_start();
        if l.starts_with('[') {
            return None;
        }
        if let Some((key, _)) = l.split_once('=') {
            let key = key.trim();
            if !key.is_empty()
                && key
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
            {
                return Some(key.to_string());
            }
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = r#"
[ssh]
user = "ubuntu"
port = 2222
options = ["StrictHostKeyChecking=accept-new", "Compression no"]

[[host]]
name = "n1"
ssh = "bench-n1"
addr = "192.0.2.11"
roles = ["node"]
region = "eu"

[[host]]
name = "n2"
ssh = "admin@192.0.2.12"
addr = "192.0.2.12"
roles = ["node", "client"]

[[host]]
name = "c1"
ssh = "bench-c1"
addr = "2001:db8::1"
roles = ["client"]
"#;

    fn parse(text: &str) -> Result<Hosts, String> {
        Hosts::parse(Path::new("/etc/px/hosts.toml"), text).map_err(|e| e.to_string())
    }

    #[test]
    fn a_good_file_parses_into_typed_hosts() {
        let h = parse(GOOD).unwrap();
        assert_eq!(h.ssh.user.as_deref(), Some("ubuntu"));
        assert_eq!(h.ssh.port, Some(2222));
        assert_eq!(h.ssh.options.len(), 2);
        assert_eq!(h.nodes_per_host, 1);
        assert_eq!(h.hosts.len(), 3);
        assert_eq!(h.hosts[0].addr, "192.0.2.11".parse::<IpAddr>().unwrap());
        assert_eq!(h.hosts[0].region.as_deref(), Some("eu"));
        assert_eq!(h.hosts[1].roles, vec![Role::Node, Role::Client]);
        let names = |v: Vec<&Host>| v.iter().map(|h| h.name.clone()).collect::<Vec<_>>();
        assert_eq!(names(h.node_hosts()), ["n1", "n2"]);
        assert_eq!(names(h.client_hosts()), ["n2", "c1"]);
        assert_eq!(h.get("c1").unwrap().ssh, "bench-c1");
    }

    #[test]
    fn paths_are_resolved_against_the_file_and_home() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("ssh_config"), "").unwrap();
        std::fs::write(dir.path().join("key"), "").unwrap();
        let text = "[ssh]\nconfig = \"ssh_config\"\nidentity = \"key\"\n\n[[host]]\nname = \"a\"\nssh = \"a\"\naddr = \"192.0.2.1\"\nroles = [\"node\"]\n";
        let h = Hosts::parse(&dir.path().join("hosts.toml"), text).unwrap();
        assert_eq!(h.ssh.config, Some(dir.path().join("ssh_config")));
        assert_eq!(h.ssh.identity, Some(dir.path().join("key")));

        let home = std::env::var("HOME").unwrap();
        assert_eq!(
            resolve(Path::new("/x"), "~/.ssh/bench").unwrap(),
            Path::new(&home).join(".ssh/bench")
        );
        assert_eq!(resolve(Path::new("/x"), "/abs").unwrap(), Path::new("/abs"));
        assert!(resolve(Path::new("/x"), "~bob/k").is_err());
        // A path that is not there is named with its line.
        let e = parse(&GOOD.replace("port = 2222", "identity = \"nokey\"")).unwrap_err();
        assert!(
            e.starts_with("/etc/px/hosts.toml:4: `identity`: /etc/px/nokey is not a file"),
            "{e}"
        );
    }

    #[test]
    fn unknown_keys_name_file_line_and_key() {
        let e = parse(&GOOD.replace("user = \"ubuntu\"", "usr = \"ubuntu\"")).unwrap_err();
        assert!(
            e.starts_with("/etc/px/hosts.toml:3: `usr`: unknown field `usr`"),
            "{e}"
        );
        let e = parse(&GOOD.replace("region = \"eu\"", "zone = \"eu\"")).unwrap_err();
        assert!(e.starts_with("/etc/px/hosts.toml:12: `zone`"), "{e}");
        let e = parse(&GOOD.replace("[ssh]", "[sssh]")).unwrap_err();
        assert!(e.contains(":2:") && e.contains("sssh"), "{e}");
    }

    #[test]
    fn bad_values_name_file_line_and_key() {
        let cases = [
            (
                "roles = [\"node\"]",
                "roles = [\"nod\"]",
                11,
                "roles",
                "nod",
            ),
            (
                "roles = [\"node\"]",
                "roles = []",
                11,
                "roles",
                "at least one",
            ),
            (
                "addr = \"192.0.2.11\"",
                "addr = \"bench-n1\"",
                10,
                "addr",
                "not an IP",
            ),
            (
                "addr = \"192.0.2.11\"",
                "addr = \"0.0.0.0\"",
                10,
                "addr",
                "cannot be",
            ),
            (
                "addr = \"192.0.2.12\"",
                "addr = \"192.0.2.11\"",
                17,
                "addr",
                "also host n1",
            ),
            ("name = \"n2\"", "name = \"n1\"", 15, "name", "line 8"),
            ("name = \"n2\"", "name = \"n 2\"", 15, "name", "letters"),
            (
                "ssh = \"bench-n1\"",
                "ssh = \"-oProxyCommand=x\"",
                9,
                "ssh",
                "-",
            ),
            (
                "ssh = \"bench-n1\"",
                "ssh = \"ssh://h:22\"",
                9,
                "ssh",
                "alias",
            ),
            ("port = 2222", "port = 70000", 4, "port", "not a port"),
            ("port = 2222", "port = \"22\"", 4, "port", "invalid type"),
            (
                "options = [\"StrictHostKeyChecking=accept-new\", \"Compression no\"]",
                "options = [\"-v\"]",
                5,
                "options",
                "not an ssh option",
            ),
            (
                "region = \"eu\"",
                "region = \"eu west\"",
                12,
                "region",
                "letters",
            ),
            (
                "[ssh]",
                "nodes_per_host = 0\n[ssh]",
                2,
                "nodes_per_host",
                "at least",
            ),
        ];
        for (from, to, line, key, what) in cases {
            let text = GOOD.replacen(from, to, 1);
            assert_ne!(text, GOOD, "{from}");
            let e = parse(&text).unwrap_err();
            let head = format!("/etc/px/hosts.toml:{line}: `{key}`: ");
            assert!(e.starts_with(&head) && e.contains(what), "{to}: {e}");
        }
    }

    #[test]
    fn missing_keys_and_hosts_are_errors() {
        let e = parse(&GOOD.replace("addr = \"2001:db8::1\"\n", "")).unwrap_err();
        assert!(e.contains("hosts.toml:") && e.contains("addr"), "{e}");
        let e = parse("[ssh]\nuser = \"u\"\n").unwrap_err();
        assert!(e.contains("no [[host]]"), "{e}");
    }

    #[test]
    fn nodes_go_one_per_node_host_unless_more_are_allowed() {
        let h = parse(GOOD).unwrap();
        let names = |v: Vec<&Host>| v.iter().map(|h| h.name.clone()).collect::<Vec<_>>();
        assert_eq!(names(h.assign_nodes(2).unwrap()), ["n1", "n2"]);
        assert_eq!(names(h.assign_nodes(1).unwrap()), ["n1"]);
        let e = h.assign_nodes(3).unwrap_err().to_string();
        assert!(
            e.contains("hosts.toml") && e.contains("3 node(s)") && e.contains("has 2 host(s)"),
            "{e}"
        );
        let h = parse(&format!("nodes_per_host = 2\n{GOOD}")).unwrap();
        assert_eq!(names(h.assign_nodes(4).unwrap()), ["n1", "n2", "n1", "n2"]);
        assert!(h.assign_nodes(5).is_err());
        let clients_only = parse(&GOOD.replace("[\"node\"", "[\"client\"")).unwrap();
        assert!(clients_only.assign_nodes(1).is_err());
    }
}
