//! The replicated state machine: an in-memory key-value map plus the per-client reply cache that
//! makes execution exactly-once.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use rustc_hash::FxHashMap;

use crate::membership::{Membership, ReconfigError};

/// Keys are arbitrary client bytes: they need a hash of real quality (FxHash collides badly on
/// keys that differ only in their last bytes, and probing then compares keys). A fixed seed keeps
/// runs reproducible.
fn hash_of(key: &[u8]) -> u64 {
    use std::hash::BuildHasher;
    foldhash::fast::FixedState::default().hash_one(key)
}

/// One shard: entries found by a hash computed once per operation (it also picks the shard).
type Shard = hashbrown::HashTable<(Key, Bytes)>;

/// How many shards the map is split into (a power of two).
const SHARDS: usize = 256;

/// The key-value map, split into shards that a copy shares rather than duplicates.
///
/// A durable snapshot copies the state in the event loop: with a plain map that copy was a deep
/// one, 8–30 ms per node for 100,000 keys, and all nodes took it at the same slot. Cloning this
/// map only counts references to its shards. A write to a shard that a copy still shares first
/// copies that one shard (1/256 of the map), so the cost of a snapshot is spread over the writes
/// that follow it and ends when the snapshot is dropped (once written, and replaced by the next).
#[derive(Clone)]
struct KeyMap {
    shards: Vec<Arc<Shard>>,
    len: usize,
}

impl Default for KeyMap {
    fn default() -> Self {
        KeyMap {
            // Every shard starts as the same empty table (one allocation for an empty map); the
            // first write to a shard gives it a table of its own, as for any shared shard.
            shards: vec![Arc::default(); SHARDS],
            len: 0,
        }
    }
}

impl KeyMap {
    /// The shard of a key's hash: bits that neither a shard's bucket index (the low bits) nor
    /// its control bytes (the top seven) use, so a shard's keys stay spread inside it.
    fn shard_of(hash: u64) -> usize {
        (hash >> 32) as usize & (SHARDS - 1)
    }

    fn get(&self, key: &[u8]) -> Option<&Bytes> {
        let hash = hash_of(key);
        self.shards[Self::shard_of(hash)]
            .find(hash, |(k, _)| k.as_slice() == key)
            .map(|(_, v)| v)
    }

    /// Stores `value` under `key`, copying the key only if it is new.
    fn put(&mut self, key: &[u8], value: Bytes) {
        let hash = hash_of(key);
        let shard = Arc::make_mut(&mut self.shards[Self::shard_of(hash)]);
        match shard.find_mut(hash, |(k, _)| k.as_slice() == key) {
            Some((_, stored)) => *stored = value,
            None => {
                shard.insert_unique(hash, (Key::copy_of(key), value), |(k, _)| {
                    hash_of(k.as_slice())
                });
                self.len += 1;
            }
        }
    }

    fn remove(&mut self, key: &[u8]) {
        let hash = hash_of(key);
        let shard = &mut self.shards[Self::shard_of(hash)];
        // Only a shard that holds the key is written (and so copied if shared).
        if shard.find(hash, |(k, _)| k.as_slice() == key).is_some() {
            let found = Arc::make_mut(shard).find_entry(hash, |(k, _)| k.as_slice() == key);
            if let Ok(entry) = found {
                entry.remove();
                self.len -= 1;
            }
        }
    }

    fn len(&self) -> usize {
        self.len
    }

    fn iter(&self) -> impl Iterator<Item = (&Key, &Bytes)> {
        self.shards
            .iter()
            .flat_map(|s| s.iter().map(|(k, v)| (k, v)))
    }
}

impl PartialEq for KeyMap {
    fn eq(&self, other: &KeyMap) -> bool {
        self.len == other.len && self.iter().all(|(k, v)| other.get(k.as_slice()) == Some(v))
    }
}

impl Eq for KeyMap {}

impl std::fmt::Debug for KeyMap {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_map().entries(self.iter()).finish()
    }
}

/// Keys up to this many bytes live inside the map's own table.
const INLINE_KEY: usize = 30;

/// A stored key. Short keys (the common case) are kept inline, so a lookup compares bytes that
/// sit in the table entry it already loaded; a heap key costs a second cache miss per lookup,
/// and with 100,000 keys that miss was a third of a node's time under load. The map hashes and
/// compares its bytes.
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

impl std::fmt::Debug for Key {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        std::fmt::Debug::fmt(&Bytes::copy_from_slice(self.as_slice()), f)
    }
}

use crate::command::{Command, Op, Outcome};
use crate::types::{ClientId, NodeId, RequestId, Slot, Time};

/// The key-value map and the reply cache. Every replica applies the same commands in the same
/// order, so every replica holds the same `KvState` at the same slot.
///
/// # Session expiry
///
/// A client session that has been silent for `session_timeout` is dropped, so a sweep that
/// starts new generators at every level holds memory flat. Expiry is decided from the log
/// alone, never from a replica's own clock: each batch carries its proposer's time
/// ([`crate::Batch::stamp`]), and the state machine's clock is the highest stamp executed so
/// far. Every replica therefore drops the same sessions at the same slot.
///
/// A request of a dropped session must never run again. The session's id carries the time it
/// was created ([`ClientId::created`]), and a session is only ever dropped once the clock has
/// passed `created + session_timeout` (its last activity is counted from no earlier than its
/// creation). So a request whose session is unknown is answered [`Outcome::Expired`] if its
/// session was created more than `session_timeout` before the clock, and starts a new session
/// otherwise: a session that was dropped can never be started again. This holds whatever the
/// clocks of clients and proposers say; a client whose clock runs more than `session_timeout`
/// behind the proposers' only ever hears `Expired`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KvState {
    map: KeyMap,
    sessions: FxHashMap<ClientId, Session>,
    /// How many replies each client session keeps (see [`crate::Config::reply_cache_per_client`]).
    cache_limit: usize,
    /// A session silent this long is dropped (see [`crate::Config::session_timeout`]).
    session_timeout: Duration,
    /// The highest batch stamp executed: the clock sessions expire by.
    clock: Time,
    /// When the clock next looks for sessions to drop (a quarter timeout after the last look).
    next_sweep: Time,
    /// The self-test's broken variant: unknown sessions always start afresh.
    resurrect: bool,
    /// Multi-Paxos: who votes for which slot, changed by `Op::Reconfigure`.
    membership: Option<Membership>,
}

impl Default for KvState {
    fn default() -> Self {
        KvState::new(1, DEFAULT_SESSION_TIMEOUT)
    }
}

/// The session timeout of [`KvState::default`] and [`crate::Config::default`].
pub const DEFAULT_SESSION_TIMEOUT: Duration = Duration::from_secs(60);

/// What one client session remembers: the replies of its most recent `cache_limit` request ids,
/// as a window `[base, base + replies.len())` indexed by request id, and when it was last
/// active on the state machine's clock. Clients number requests in increasing order, so the
/// window slides forward and lookups need no hashing. A request below the window was executed
/// (or abandoned) long ago and its reply is gone: it is answered [`Outcome::Expired`] and never
/// executed.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Session {
    /// The first request id the window covers.
    pub base: u64,
    /// Replies from `base` on (`None`: not executed).
    pub replies: VecDeque<Option<Outcome>>,
    /// The clock when the session last executed a command (never before its creation).
    pub last_active: Time,
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
    /// An empty map whose sessions keep `cache_limit` replies each and expire after
    /// `session_timeout` of silence.
    pub fn new(cache_limit: usize, session_timeout: Duration) -> Self {
        KvState {
            map: KeyMap::default(),
            sessions: FxHashMap::default(),
            cache_limit: cache_limit.max(1),
            session_timeout,
            clock: Time::ZERO,
            next_sweep: Time::ZERO,
            resurrect: false,
            membership: None,
        }
    }

    /// Who votes for which slot (Multi-Paxos), if this state tracks it.
    pub fn membership(&self) -> Option<&Membership> {
        self.membership.as_ref()
    }

    /// Starts tracking membership (a fresh Multi-Paxos state) or restores it (a snapshot).
    pub fn set_membership(&mut self, membership: Membership) {
        self.membership = Some(membership);
    }

    /// Forgets configurations that ended before `slot` (everything below it is executed).
    pub fn forget_membership_before(&mut self, slot: Slot) {
        if let Some(m) = &mut self.membership {
            m.forget_before(slot);
        }
    }

    /// The self-test's broken variant ([`crate::Bug::ResurrectExpiredSessions`]).
    #[doc(hidden)]
    pub fn resurrect_expired_sessions(&mut self) {
        self.resurrect = true;
    }

    /// Moves the clock to a batch's stamp (it never goes back) and, a quarter timeout after the
    /// last look, drops every session silent for longer than the timeout. Called before each
    /// batch executes, with the batch's stamp.
    pub fn tick(&mut self, stamp: Time) {
        self.clock = self.clock.max(stamp);
        if self.clock < self.next_sweep {
            return;
        }
        let (clock, timeout) = (self.clock, self.session_timeout);
        self.sessions
            .retain(|_, s| clock.0.saturating_sub(s.last_active.0) <= timeout.as_nanos() as u64);
        self.next_sweep = clock + (timeout / 4).max(Duration::from_millis(1));
    }

    /// Executes a command unless this `(client, request)` ran before (or belongs to an expired
    /// session).
    pub fn apply(&mut self, cmd: &Command) -> Applied {
        if let Some(previous) = self.cached(cmd.client, cmd.request) {
            return Applied::Duplicate(previous);
        }
        let outcome = match &cmd.op {
            Op::Reconfigure { .. } => Outcome::Refused(ReconfigError::Unsupported.to_string()),
            Op::Get { key } => Outcome::Value(self.map.get(&key[..]).cloned()),
            Op::Put { key, value } => {
                // Store copies (see `Key::copy_of`); an existing key keeps the copy it has.
                self.map.put(key, Bytes::copy_from_slice(value));
                Outcome::Done
            }
            Op::Delete { key } => {
                self.map.remove(key);
                Outcome::Done
            }
        };
        self.record(cmd, outcome)
    }

    /// Executes a membership change chosen in `slot`, unless it ran before: the voters change
    /// from `slot + effective_after` (the window; see [`crate::membership`]). `nodes` are the
    /// cluster's nodes, the only ones that may be added.
    pub fn reconfigure(
        &mut self,
        cmd: &Command,
        slot: Slot,
        nodes: &[NodeId],
        effective_after: u64,
    ) -> Applied {
        if let Some(previous) = self.cached(cmd.client, cmd.request) {
            return Applied::Duplicate(previous);
        }
        let Op::Reconfigure { add, remove } = &cmd.op else {
            return self.apply(cmd);
        };
        let outcome = match &mut self.membership {
            None => Outcome::Refused(ReconfigError::Unsupported.to_string()),
            Some(m) => match m.changed(nodes, add, remove) {
                Ok(voters) => {
                    m.change(slot, voters, effective_after);
                    Outcome::Done
                }
                Err(e) => Outcome::Refused(e.to_string()),
            },
        };
        self.record(cmd, outcome)
    }

    /// Caches a fresh command's outcome in its session.
    fn record(&mut self, cmd: &Command, outcome: Outcome) -> Applied {
        let (limit, clock) = (self.cache_limit, self.clock);
        let session = self.sessions.entry(cmd.client).or_default();
        // Counted from no earlier than its creation: that is what makes a dropped session
        // impossible to start again (see the type's docs).
        session.last_active = session.last_active.max(clock).max(cmd.client.created());
        session.record(cmd.request, outcome.clone(), limit);
        Applied::Fresh(outcome)
    }

    /// The reply of a request that was already executed, if any: `Expired` if it is older than
    /// the cache remembers, or if its session is unknown and was created more than the session
    /// timeout before the clock (it may have been dropped).
    pub fn cached(&self, client: ClientId, request: RequestId) -> Option<Outcome> {
        match self.sessions.get(&client) {
            Some(session) => session.lookup(request),
            None => {
                let expired = client
                    .created()
                    .0
                    .saturating_add(self.session_timeout.as_nanos() as u64)
                    < self.clock.0;
                (expired && !self.resurrect).then_some(Outcome::Expired)
            }
        }
    }

    /// The state machine's clock: the highest batch stamp executed.
    pub fn clock(&self) -> Time {
        self.clock
    }

    /// How many client sessions are kept.
    pub fn session_count(&self) -> usize {
        self.sessions.len()
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
        self.map.len() == 0
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

    /// How long a silent session is kept.
    pub fn session_timeout(&self) -> Duration {
        self.session_timeout
    }

    /// When the clock next looks for sessions to drop.
    pub fn next_sweep(&self) -> Time {
        self.next_sweep
    }

    /// Every client session, for encoding a snapshot.
    pub fn sessions(&self) -> impl Iterator<Item = (ClientId, &Session)> {
        self.sessions.iter().map(|(c, s)| (*c, s))
    }

    /// Rebuilds a state from its parts (the inverse of the accessors above, for decoding a
    /// snapshot).
    pub fn from_parts(
        limits: SessionLimits,
        entries: impl IntoIterator<Item = (Bytes, Bytes)>,
        sessions: impl IntoIterator<Item = (ClientId, Session)>,
    ) -> Self {
        KvState {
            map: {
                let mut map = KeyMap::default();
                for (k, v) in entries {
                    map.put(&k, v);
                }
                map
            },
            sessions: sessions.into_iter().collect(),
            cache_limit: limits.cache_limit.max(1),
            session_timeout: limits.session_timeout,
            clock: limits.clock,
            next_sweep: limits.next_sweep,
            resurrect: false,
            membership: None,
        }
    }

    /// The session settings and clocks of this state (for encoding a snapshot).
    pub fn limits(&self) -> SessionLimits {
        SessionLimits {
            cache_limit: self.cache_limit,
            session_timeout: self.session_timeout,
            clock: self.clock,
            next_sweep: self.next_sweep,
        }
    }
}

/// A state's session settings and clocks, as a snapshot carries them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SessionLimits {
    /// Replies kept per session.
    pub cache_limit: usize,
    /// A session silent this long is dropped.
    pub session_timeout: Duration,
    /// The highest batch stamp executed.
    pub clock: Time,
    /// When the clock next looks for sessions to drop.
    pub next_sweep: Time,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn put(client: u128, request: u64, key: &'static str, value: &'static str) -> Command {
        Command {
            client: ClientId(client),
            request: RequestId(request),
            op: Op::Put {
                key: Bytes::from_static(key.as_bytes()),
                value: Bytes::from_static(value.as_bytes()),
            },
        }
    }

    fn shared_shards(a: &KeyMap, b: &KeyMap) -> usize {
        a.shards
            .iter()
            .zip(&b.shards)
            .filter(|(x, y)| Arc::ptr_eq(x, y))
            .count()
    }

    #[test]
    fn a_copy_shares_every_shard_and_a_write_copies_only_its_own() {
        let mut map = KeyMap::default();
        for i in 0..10_000u32 {
            map.put(format!("key-{i}").as_bytes(), Bytes::from(i.to_string()));
        }
        let snapshot = map.clone();
        assert_eq!(shared_shards(&map, &snapshot), SHARDS);

        map.put(b"key-7", Bytes::from_static(b"new"));
        assert_eq!(shared_shards(&map, &snapshot), SHARDS - 1);
        // Removing a key that is not there writes nothing.
        map.remove(b"no such key");
        assert_eq!(shared_shards(&map, &snapshot), SHARDS - 1);
        map.remove(b"key-8");
        map.put(b"key-fresh", Bytes::from_static(b"v"));

        // The copy still holds the state it was taken at; the map holds every write.
        assert_eq!(snapshot.get(b"key-7").unwrap().as_ref(), b"7");
        assert_eq!(snapshot.get(b"key-8").unwrap().as_ref(), b"8");
        assert_eq!(snapshot.get(b"key-fresh"), None);
        assert_eq!(snapshot.len(), 10_000);
        assert_eq!(snapshot.iter().count(), 10_000);
        assert_eq!(map.get(b"key-7").unwrap().as_ref(), b"new");
        assert_eq!(map.get(b"key-8"), None);
        assert_eq!(map.get(b"key-fresh").unwrap().as_ref(), b"v");
        assert_eq!(map.len(), 10_000);
        assert_eq!(map.iter().count(), 10_000);
        assert_ne!(map, snapshot);
    }

    #[test]
    fn keys_spread_over_every_shard() {
        let mut map = KeyMap::default();
        for i in 0..100_000u32 {
            map.put(format!("key-{i:010}").as_bytes(), Bytes::new());
        }
        let sizes: Vec<usize> = map.shards.iter().map(|s| s.len()).collect();
        let (min, max) = (sizes.iter().min().unwrap(), sizes.iter().max().unwrap());
        // 390 keys per shard on average; a copy-on-write costs its shard's size.
        assert!(*min > 250 && *max < 550, "shard sizes {min}..{max}");
    }

    #[test]
    fn a_cloned_state_is_not_changed_by_later_commands() {
        let mut kv = KvState::new(8, DEFAULT_SESSION_TIMEOUT);
        kv.apply(&put(1, 1, "k", "a"));
        let snapshot = kv.clone();
        kv.apply(&put(1, 2, "k", "b"));
        assert_eq!(snapshot.get(b"k").unwrap().as_ref(), b"a");
        assert_eq!(kv.get(b"k").unwrap().as_ref(), b"b");
        assert_eq!(
            snapshot.cached(ClientId(1), RequestId(2)),
            None,
            "the copy's sessions are its own too"
        );
    }

    #[test]
    fn a_retried_request_is_not_executed_twice() {
        let mut kv = KvState::new(8, DEFAULT_SESSION_TIMEOUT);
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
        let mut kv = KvState::new(8, DEFAULT_SESSION_TIMEOUT);
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
            kv.limits(),
            kv.entries()
                .map(|(k, v)| (Bytes::copy_from_slice(k), v.clone())),
            kv.sessions().map(|(c, s)| (c, s.clone())),
        );
        assert_eq!(rebuilt, kv);
    }

    #[test]
    fn evicted_replies_are_expired_not_re_executed() {
        let mut kv = KvState::new(2, DEFAULT_SESSION_TIMEOUT);
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
        let mut kv = KvState::new(4, DEFAULT_SESSION_TIMEOUT);
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
            kv.sessions().all(|(_, s)| s.replies.len() <= 4),
            "the window never exceeds the limit"
        );
        let rebuilt = KvState::from_parts(
            kv.limits(),
            kv.entries()
                .map(|(k, v)| (Bytes::copy_from_slice(k), v.clone())),
            kv.sessions().map(|(c, s)| (c, s.clone())),
        );
        assert_eq!(rebuilt, kv);
    }

    const SECOND: u64 = 1_000_000_000;

    fn session(created_s: u64, nonce: u64) -> u128 {
        ClientId::new(Time(created_s * SECOND), nonce).0
    }

    #[test]
    fn a_silent_session_is_dropped_and_its_late_requests_are_expired_not_re_run() {
        let mut kv = KvState::new(8, Duration::from_secs(10));
        let (a, b) = (session(100, 1), session(100, 2));
        kv.tick(Time(100 * SECOND));
        assert_eq!(
            kv.apply(&put(a, 1, "k", "a1")),
            Applied::Fresh(Outcome::Done)
        );
        assert_eq!(
            kv.apply(&put(b, 1, "j", "b1")),
            Applied::Fresh(Outcome::Done)
        );
        // b stays active; a falls silent.
        for t in [104, 108, 112] {
            kv.tick(Time(t * SECOND));
            kv.apply(&put(b, t, "j", "b"));
        }
        assert_eq!(kv.session_count(), 1, "a was dropped after 10 s of silence");
        // A's retry of request 1, and a new request of a, are never executed.
        assert_eq!(
            kv.apply(&put(a, 1, "k", "again")),
            Applied::Duplicate(Outcome::Expired)
        );
        assert_eq!(
            kv.apply(&put(a, 2, "k", "new")),
            Applied::Duplicate(Outcome::Expired)
        );
        assert_eq!(kv.get(b"k").unwrap().as_ref(), b"a1");
        assert_eq!(
            kv.session_count(),
            1,
            "an expired session never starts again"
        );
        // A session created recently is welcome.
        let c = session(111, 3);
        assert_eq!(
            kv.apply(&put(c, 1, "k", "c1")),
            Applied::Fresh(Outcome::Done)
        );
    }

    #[test]
    fn a_session_whose_clock_runs_ahead_is_kept_until_the_log_passes_its_creation() {
        // Created at 200 s by its own clock while the proposers say 100 s: its activity counts
        // from 200 s, so it is dropped only after 210 s, and expired for ever after.
        let mut kv = KvState::new(8, Duration::from_secs(10));
        let ahead = session(200, 1);
        kv.tick(Time(100 * SECOND));
        assert_eq!(
            kv.apply(&put(ahead, 1, "k", "v")),
            Applied::Fresh(Outcome::Done)
        );
        kv.tick(Time(205 * SECOND));
        assert_eq!(kv.session_count(), 1);
        kv.tick(Time(211 * SECOND));
        kv.tick(Time(214 * SECOND));
        assert_eq!(kv.session_count(), 0);
        assert_eq!(
            kv.apply(&put(ahead, 1, "k", "x")),
            Applied::Duplicate(Outcome::Expired)
        );
        assert_eq!(
            kv.cached(ClientId(ahead), RequestId(9)),
            Some(Outcome::Expired)
        );
    }

    #[test]
    fn sessions_and_clocks_survive_a_snapshot() {
        let mut kv = KvState::new(4, Duration::from_secs(10));
        kv.tick(Time(50 * SECOND));
        kv.apply(&put(session(49, 1), 1, "k", "v"));
        let rebuilt = KvState::from_parts(
            kv.limits(),
            kv.entries()
                .map(|(k, v)| (Bytes::copy_from_slice(k), v.clone())),
            kv.sessions().map(|(c, s)| (c, s.clone())),
        );
        assert_eq!(rebuilt, kv);
        assert_eq!(rebuilt.clock(), Time(50 * SECOND));
    }
}
