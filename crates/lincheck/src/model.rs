//! The sequential specification: one register per key, absent until the first `Put`.
//!
//! [`Register`] is the specification as a reader would write it, on byte values. The search
//! runs on an interned copy of it ([`Effect`], [`step`]): every distinct value of a key's
//! sub-history gets a small number, so a step and a cache key cost an integer comparison and no
//! allocation. Interning is by content, so two writes of equal bytes are one value to the model:
//! nothing here assumes that values are unique per write.

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};

use crate::{Call, Operation, Ret};

/// One key's register, as the sequential specification the history is checked against.
///
/// ```
/// use lincheck::{Call, Register, Ret};
/// let mut r = Register::default();
/// assert_eq!(r.apply(&Call::Get), Ret::Read(None));
/// assert_eq!(r.apply(&Call::Put(b"v".to_vec())), Ret::Done);
/// assert_eq!(r.apply(&Call::Get), Ret::Read(Some(b"v".to_vec())));
/// assert_eq!(r.apply(&Call::Delete), Ret::Done);
/// assert_eq!(r.apply(&Call::Get), Ret::Read(None));
/// ```
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash)]
pub struct Register(pub Option<Vec<u8>>);

impl Register {
    /// Applies `call` and returns what a correct, unreplicated store would answer.
    pub fn apply(&mut self, call: &Call) -> Ret {
        match call {
            Call::Put(v) => {
                self.0 = Some(v.clone());
                Ret::Done
            }
            Call::Delete => {
                self.0 = None;
                Ret::Done
            }
            Call::Get => Ret::Read(self.0.clone()),
        }
    }
}

/// An interned value: [`ABSENT`] or the number of a distinct byte string of one key.
pub(crate) type Value = u32;

/// The register holds nothing (initially, and after a `Delete`).
pub(crate) const ABSENT: Value = 0;

/// A state no read still to be linearized can observe (see `search`); never a real value.
pub(crate) const DEAD: Value = Value::MAX;

/// What one operation does to its key's register, with values interned.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Effect {
    /// A `Put` (or, with [`ABSENT`], a `Delete`): sets the register.
    Write(Value),
    /// A completed `Get` that returned this value.
    Read(Value),
}

/// Applies `effect` to `state`: the new state, or `None` if a read disagrees with the register.
#[inline]
pub(crate) fn step(state: Value, effect: Effect) -> Option<Value> {
    match effect {
        Effect::Write(v) => Some(v),
        Effect::Read(v) => (v == state).then_some(state),
    }
}

/// Numbers the distinct values of one key's sub-history.
#[derive(Default)]
pub(crate) struct Interner<'a> {
    ids: HashMap<&'a [u8], Value, BuildHasherDefault<WordHasher>>,
}

impl<'a> Interner<'a> {
    /// The number of `value` (`None` is [`ABSENT`]), allocating one on first sight.
    pub(crate) fn intern(&mut self, value: Option<&'a [u8]>) -> Value {
        let Some(bytes) = value else {
            return ABSENT;
        };
        let next = Value::try_from(self.ids.len() + 1).unwrap_or(DEAD - 1);
        *self.ids.entry(bytes).or_insert(next)
    }

    /// How many numbers are in use, [`ABSENT`] included.
    pub(crate) fn len(&self) -> usize {
        self.ids.len() + 1
    }
}

/// The effect of `op` on the model, or `None` for an operation that says nothing: a `Get`
/// whose result is unknown. The history must have been validated (`Ret::Done` only on
/// writes, `Ret::Read` only on `Get`).
pub(crate) fn effect<'a>(op: &'a Operation, values: &mut Interner<'a>) -> Option<Effect> {
    match (&op.call, &op.ret) {
        (Call::Get, Ret::Read(v)) => Some(Effect::Read(values.intern(v.as_deref()))),
        (Call::Get, _) => None,
        (Call::Put(v), _) => Some(Effect::Write(values.intern(Some(v)))),
        (Call::Delete, _) => Some(Effect::Write(ABSENT)),
    }
}

/// A fast, non-cryptographic hasher for short byte strings (the multiply-rotate scheme of
/// rustc's FxHasher, with a final mix): interning is on the hot path of every key, and the keys of this table are
/// values from the history, not chosen against it.
#[derive(Default)]
pub(crate) struct WordHasher(u64);

impl WordHasher {
    #[inline]
    fn add(&mut self, word: u64) {
        self.0 = (self.0.rotate_left(5) ^ word).wrapping_mul(0x51_7C_C1_B7_27_22_0A_95);
    }
}

impl Hasher for WordHasher {
    #[inline]
    fn finish(&self) -> u64 {
        // The multiply carries low bits up only: without this final mix (MurmurHash3's), values
        // sharing a prefix would share the low bits the table indexes by.
        let mut z = self.0;
        z = (z ^ (z >> 33)).wrapping_mul(0xFF51_AFD7_ED55_8CCD);
        z = (z ^ (z >> 33)).wrapping_mul(0xC4CE_B9FE_1A85_EC53);
        z ^ (z >> 33)
    }

    #[inline]
    fn write(&mut self, bytes: &[u8]) {
        let mut chunks = bytes.chunks_exact(8);
        for chunk in &mut chunks {
            let mut word = [0u8; 8];
            word.copy_from_slice(chunk);
            self.add(u64::from_le_bytes(word));
        }
        let rest = chunks.remainder();
        if !rest.is_empty() {
            let mut word = [0u8; 8];
            word[..rest.len()].copy_from_slice(rest);
            self.add(u64::from_le_bytes(word));
        }
    }

    #[inline]
    fn write_usize(&mut self, n: usize) {
        self.add(n as u64);
    }
}
