//! The replicated state machine: an in-memory key-value map plus the per-client reply cache that
//! makes execution exactly-once.

use std::collections::VecDeque;

use bytes::Bytes;
use rustc_hash::FxHashMap;

/// Keys are arbitrary client bytes: they need a hash of real quality (FxHash collides badly on
/// keys that differ only in their last bytes, and probing then compares keys). A fixed seed keeps
/// runs reproducible.
type KeyMap = std::collections::HashMap<Key, Bytes, foldhash::fast::FixedState>;

/// Keys up to this many bytes live inside the map's own table.
const INLINE_KEY: usize = 30;

/// A stored key. Short keys (the common case) are kept inline, so a lookup compares bytes that
/// sit in the table entry it already loaded; a heap key costs a second cache miss per lookup,
/// and with 100,000 keys that miss was a third of a node's time under load. Its hash and
/// equality are those of its bytes, so the map is searched with a plain `&[u8]`.
#[derive(Clone)]
enum Key {
    Inline { len: u8, bytes: [u8; INLINE_KEY] },
    Heap(Box<[u8]>),
}

impl Key {
    /// A copy of `key`: a decoded key is a slice of a whole network read buffer, and keeping
    /// the slice would keep that buffer alive as long as the key lives.
    fn copy_of(key: &[u8]) -> Key {
        if key.len() <= INLINE_KEY {
            let mut bytes = [0; INLINE_KEY];
            bytes[..key.len()].copy_from_slice(key);
            Key::Inline {
                len: key.len() as u8,
                bytes,
            }
        } else {
            Key::Heap(key.into())
        }
    }

    fn as_slice(&self) -> &[u8] {
        match self {
            Key::Inline { len, bytes } => &bytes[..*len as usize],
            Key::Heap(b) => b,
        }
    }
}

impl std::borrow::Borrow<[u8]> for Key {
    fn borrow(&self) -> &[u8] {
        self.as_slice()
    }
}

impl std::hash::Hash for Key {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        // Must hash exactly as `[u8]` does, since lookups go through `Borrow<[u8]>`.
        self.as_slice().hash(state)
    }
}

impl PartialEq for Key {
    fn eq(&self, other: &Key) -> bool {
        self.as_slice() == other.as_slice()
    }
}

impl Eq for Key {}

impl std::fmt::Debug for Key {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        std::fmt::Debug::fmt(&Bytes::copy_from_slice(self.as_slice()), f)
    }
}

use crate::command::{Command, Op, Outcome};
use crate::types::{ClientId, RequestId};

/// The key-value map and the reply cache. Every replica applies the same commands in the same
/// order, so every replica holds the same `KvState` at the same slot.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct KvState {
    map: KeyMap,
    sessions: FxHashMap<ClientId, Session>,
    /// How many replies each client session keeps (see [`crate::Config::reply_cache_per_client`]).
    cache_limit: usize,
}

/// What one client session remembers: the replies of its most recent `cache_limit` request ids,
/// as a window `[base, base + replies.len())` indexed by request id. Clients number requests in
/// increasing order, so the window slides forward and lookups need no hashing. A request below
/// the window was executed (or abandoned) long ago and its reply is gone: it is answered
/// [`Outcome::Expired`] and never executed.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
struct Session {
    base: u64,
    replies: VecDeque<Option<Outcome>>,
}

impl Session {
    fn lookup(&self, request: RequestId) -> Option<Outcome> {
        if request.0 < self.base {
            return Some(Outcome::Expired);
        }
        let index = usize::try_from(request.0 - self.base).ok()?;
        self.replies.get(index).cloned().flatten()
    }

    fn record(&mut self, request: RequestId, outcome: Outcome, limit: usize) {
        debug_assert!(
            request.0 >= self.base,
            "requests below the window are never executed"
        );
        let limit = limit as u64;
        if request.0 - self.base >= limit + self.replies.len() as u64 {
            // A jump far ahead: everything cached falls out of the window at once.
            self.replies.clear();
            self.base = request.0 + 1 - limit;
        }
        let mut index = (request.0 - self.base) as usize;
        while index >= self.replies.len() {
            self.replies.push_back(None);
        }
        while self.replies.len() as u64 > limit {
            self.replies.pop_front();
            self.base += 1;
            index -= 1;
        }
        self.replies[index] = Some(outcome);
    }
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
            map: KeyMap::default(),
            sessions: FxHashMap::default(),
            cache_limit: cache_limit.max(1),
        }
    }

    /// Executes a command unless this `(client, request)` ran before.
    pub fn apply(&mut self, cmd: &Command) -> Applied {
        if let Some(previous) = self.cached(cmd.client, cmd.request) {
            return Applied::Duplicate(previous);
        }
        let outcome = match &cmd.op {
            Op::Get { key } => Outcome::Value(self.map.get(&key[..]).cloned()),
            Op::Put { key, value } => {
                // Store copies (see `Key::copy_of`); an existing key keeps the copy it has.
                let value = Bytes::copy_from_slice(value);
                match self.map.get_mut(&key[..]) {
                    Some(stored) => *stored = value,
                    None => {
                        self.map.insert(Key::copy_of(key), value);
                    }
                }
                Outcome::Done
            }
            Op::Delete { key } => {
                self.map.remove(&key[..]);
                Outcome::Done
            }
        };
        let limit = self.cache_limit;
        self.sessions
            .entry(cmd.client)
            .or_default()
            .record(cmd.request, outcome.clone(), limit);
        Applied::Fresh(outcome)
    }

    /// The reply of a request that was already executed, if any (`Expired` if it is older than
    /// the cache remembers).
    pub fn cached(&self, client: ClientId, request: RequestId) -> Option<Outcome> {
        self.sessions.get(&client)?.lookup(request)
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
        self.map
            .iter()
            .map(|(k, v)| k.as_slice().len() + v.len())
            .sum()
    }

    /// Every key and value, in no particular order (for encoding a snapshot).
    pub fn entries(&self) -> impl Iterator<Item = (&[u8], &Bytes)> {
        self.map.iter().map(|(k, v)| (k.as_slice(), v))
    }

    /// The reply cache limit per client session.
    pub fn cache_limit(&self) -> usize {
        self.cache_limit
    }

    /// Every client session: the first request id its window covers and the cached replies
    /// from there on (`None` for ids not executed), for encoding a snapshot.
    pub fn sessions(
        &self,
    ) -> impl Iterator<Item = (ClientId, RequestId, &VecDeque<Option<Outcome>>)> {
        self.sessions
            .iter()
            .map(|(c, s)| (*c, RequestId(s.base), &s.replies))
    }

    /// Rebuilds a state from its parts (the inverse of [`KvState::entries`] and
    /// [`KvState::sessions`], for decoding a snapshot).
    pub fn from_parts(
        cache_limit: usize,
        entries: impl IntoIterator<Item = (Bytes, Bytes)>,
        sessions: impl IntoIterator<Item = (ClientId, RequestId, VecDeque<Option<Outcome>>)>,
    ) -> Self {
        KvState {
            map: entries
                .into_iter()
                .map(|(k, v)| (Key::copy_of(&k), v))
                .collect(),
            sessions: sessions
                .into_iter()
                .map(|(c, base, replies)| {
                    (
                        c,
                        Session {
                            base: base.0,
                            replies,
                        },
                    )
                })
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
    fn short_and_long_keys_are_stored_and_found_alike() {
        let mut kv = KvState::new(8);
        let keys: Vec<Bytes> = [0, 1, INLINE_KEY - 1, INLINE_KEY, INLINE_KEY + 1, 300]
            .iter()
            .map(|&n| Bytes::from(vec![b'k'; n]))
            .collect();
        for (i, key) in keys.iter().enumerate() {
            let op = Op::Put {
                key: key.clone(),
                value: Bytes::from(vec![i as u8; 3]),
            };
            kv.apply(&Command {
                client: ClientId(1),
                request: RequestId(i as u64 + 1),
                op,
            });
        }
        assert_eq!(
            kv.len(),
            keys.len(),
            "keys that share a prefix stay distinct"
        );
        for (i, key) in keys.iter().enumerate() {
            assert_eq!(
                kv.get(key).map(|v| v[0]),
                Some(i as u8),
                "key of {} bytes",
                key.len()
            );
        }
        let rebuilt = KvState::from_parts(
            8,
            kv.entries()
                .map(|(k, v)| (Bytes::copy_from_slice(k), v.clone())),
            kv.sessions().map(|(c, b, w)| (c, b, w.clone())),
        );
        assert_eq!(rebuilt, kv);
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

    #[test]
    fn out_of_order_ids_inside_the_window_are_remembered_and_jumps_stay_bounded() {
        let mut kv = KvState::new(4);
        kv.apply(&put(1, 5, "k", "a"));
        kv.apply(&put(1, 3, "k", "b"));
        assert_eq!(kv.cached(ClientId(1), RequestId(3)), Some(Outcome::Done));
        assert_eq!(
            kv.cached(ClientId(1), RequestId(4)),
            None,
            "4 was never executed"
        );
        kv.apply(&put(1, 1_000_000, "k", "c"));
        assert_eq!(kv.cached(ClientId(1), RequestId(5)), Some(Outcome::Expired));
        assert_eq!(
            kv.cached(ClientId(1), RequestId(1_000_000)),
            Some(Outcome::Done)
        );
        assert!(
            kv.sessions().all(|(_, _, w)| w.len() <= 4),
            "the window never exceeds the limit"
        );
        let rebuilt = KvState::from_parts(
            4,
            kv.entries()
                .map(|(k, v)| (Bytes::copy_from_slice(k), v.clone())),
            kv.sessions().map(|(c, b, w)| (c, b, w.clone())),
        );
        assert_eq!(rebuilt, kv);
    }
}
