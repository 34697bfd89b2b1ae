//! The replicated state machine: an in-memory key-value map plus the per-client reply cache that
//! makes execution exactly-once.

use std::collections::{BTreeMap, HashMap};

use bytes::Bytes;

use crate::command::{Command, Op, Outcome};
use crate::types::{ClientId, RequestId};

/// The key-value map and the reply cache. Every replica applies the same commands in the same
/// order, so every replica holds the same `KvState` at the same slot.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct KvState {
    map: HashMap<Bytes, Bytes>,
    sessions: HashMap<ClientId, Session>,
    /// How many replies each client session keeps (see [`crate::Config::reply_cache_per_client`]).
    cache_limit: usize,
}

/// What one client session remembers: the replies of its most recent requests, and a floor below
/// which replies were evicted. A request at or below the floor that is not cached was executed
/// before and its reply is gone ([`Outcome::Expired`]).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
struct Session {
    replies: BTreeMap<RequestId, Outcome>,
    floor: Option<RequestId>,
}

/// Whether [`KvState::apply`] executed a command or found it executed before.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Applied {
    /// Executed now, for the first time.
    Fresh(Outcome),
    /// Executed before: this is the cached reply (or `Expired`). State did not change.
    Duplicate(Outcome),
}

impl KvState {
    /// An empty map whose sessions keep `cache_limit` replies each.
    pub fn new(cache_limit: usize) -> Self {
        KvState {
            map: HashMap::new(),
            sessions: HashMap::new(),
            cache_limit: cache_limit.max(1),
        }
    }

    /// Executes a command unless this `(client, request)` ran before.
    pub fn apply(&mut self, cmd: &Command) -> Applied {
        if let Some(previous) = self.cached(cmd.client, cmd.request) {
            return Applied::Duplicate(previous);
        }
        let outcome = match &cmd.op {
            Op::Get { key } => Outcome::Value(self.map.get(key).cloned()),
            Op::Put { key, value } => {
                self.map.insert(key.clone(), value.clone());
                Outcome::Done
            }
            Op::Delete { key } => {
                self.map.remove(key);
                Outcome::Done
            }
        };
        let session = self.sessions.entry(cmd.client).or_default();
        session.replies.insert(cmd.request, outcome.clone());
        while session.replies.len() > self.cache_limit {
            if let Some((evicted, _)) = session.replies.pop_first() {
                session.floor = Some(session.floor.map_or(evicted, |f| f.max(evicted)));
            }
        }
        Applied::Fresh(outcome)
    }

    /// The reply of a request that was already executed, if any (`Expired` if it is older than
    /// the cache remembers).
    pub fn cached(&self, client: ClientId, request: RequestId) -> Option<Outcome> {
        let session = self.sessions.get(&client)?;
        if let Some(outcome) = session.replies.get(&request) {
            return Some(outcome.clone());
        }
        match session.floor {
            Some(floor) if request <= floor => Some(Outcome::Expired),
            _ => None,
        }
    }

    /// Reads a key directly (for tests and checkers; clients read through the log).
    pub fn get(&self, key: &[u8]) -> Option<&Bytes> {
        self.map.get(key)
    }

    /// Number of keys stored.
    pub fn len(&self) -> usize {
        self.map.len()
    }

    /// Whether no key is stored.
    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }

    /// Approximate bytes held by keys and values (for snapshot sizing).
    pub fn payload_bytes(&self) -> usize {
        self.map.iter().map(|(k, v)| k.len() + v.len()).sum()
    }

    /// Every key and value, in no particular order (for encoding a snapshot).
    pub fn entries(&self) -> impl Iterator<Item = (&Bytes, &Bytes)> {
        self.map.iter()
    }

    /// The reply cache limit per client session.
    pub fn cache_limit(&self) -> usize {
        self.cache_limit
    }

    /// Every client session: its cached replies and its eviction floor (for encoding a snapshot).
    pub fn sessions(
        &self,
    ) -> impl Iterator<Item = (ClientId, Option<RequestId>, &BTreeMap<RequestId, Outcome>)> {
        self.sessions.iter().map(|(c, s)| (*c, s.floor, &s.replies))
    }

    /// Rebuilds a state from its parts (the inverse of [`KvState::entries`] and
    /// [`KvState::sessions`], for decoding a snapshot).
    pub fn from_parts(
        cache_limit: usize,
        entries: impl IntoIterator<Item = (Bytes, Bytes)>,
        sessions: impl IntoIterator<Item = (ClientId, Option<RequestId>, BTreeMap<RequestId, Outcome>)>,
    ) -> Self {
        KvState {
            map: entries.into_iter().collect(),
            sessions: sessions
                .into_iter()
                .map(|(c, floor, replies)| (c, Session { replies, floor }))
                .collect(),
            cache_limit: cache_limit.max(1),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn put(client: u64, request: u64, key: &'static str, value: &'static str) -> Command {
        Command {
            client: ClientId(client),
            request: RequestId(request),
            op: Op::Put {
                key: Bytes::from_static(key.as_bytes()),
                value: Bytes::from_static(value.as_bytes()),
            },
        }
    }

    #[test]
    fn a_retried_request_is_not_executed_twice() {
        let mut kv = KvState::new(8);
        assert_eq!(
            kv.apply(&put(1, 1, "k", "a")),
            Applied::Fresh(Outcome::Done)
        );
        assert_eq!(
            kv.apply(&put(1, 2, "k", "b")),
            Applied::Fresh(Outcome::Done)
        );
        // A retry of request 1 must not overwrite "b" with "a".
        assert_eq!(
            kv.apply(&put(1, 1, "k", "a")),
            Applied::Duplicate(Outcome::Done)
        );
        assert_eq!(kv.get(b"k").unwrap().as_ref(), b"b");
    }

    #[test]
    fn evicted_replies_are_expired_not_re_executed() {
        let mut kv = KvState::new(2);
        for r in 1..=3 {
            kv.apply(&put(7, r, "k", "v"));
        }
        assert_eq!(kv.cached(ClientId(7), RequestId(1)), Some(Outcome::Expired));
        assert_eq!(kv.cached(ClientId(7), RequestId(3)), Some(Outcome::Done));
        assert_eq!(kv.cached(ClientId(7), RequestId(4)), None);
        assert_eq!(
            kv.apply(&put(7, 1, "k", "old")),
            Applied::Duplicate(Outcome::Expired)
        );
        assert_eq!(kv.get(b"k").unwrap().as_ref(), b"v");
    }
}
