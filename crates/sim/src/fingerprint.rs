//! A run's fingerprint: one 64-bit hash of everything the nodes put out, in order.
//!
//! The simulator feeds it every action every node emits (who, when, and the action's full
//! contents: each message, reply and record), every slot a node executes, and at the end the
//! run's counters and client history. Two runs with the same fingerprint almost surely saw the
//! same messages in the same order. A refactoring of the core that must not change behaviour
//! keeps every seed's fingerprint; `RunReport::fingerprint` carries it.
//!
//! The hash is FNV-1a over the values' `Debug` text, so it depends only on the values (the core
//! keeps no randomly seeded hash maps) and is the same on every machine and every run.

use std::fmt::{self, Debug, Write};

/// An FNV-1a hasher fed with `Debug` text.
#[derive(Clone, Debug)]
pub struct Fingerprint(u64);

impl Default for Fingerprint {
    fn default() -> Self {
        Fingerprint(0xcbf2_9ce4_8422_2325)
    }
}

impl Fingerprint {
    /// Folds in `value`'s `Debug` text, then a separator (so `"ab","c"` differs from `"a","bc"`).
    pub fn add(&mut self, value: &impl Debug) {
        write!(self, "{value:?}").expect("hashing never fails");
        self.bytes(&[0xff]);
    }

    /// The hash so far.
    pub fn value(&self) -> u64 {
        self.0
    }

    fn bytes(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 ^= u64::from(b);
            self.0 = self.0.wrapping_mul(0x0100_0000_01b3);
        }
    }
}

impl Write for Fingerprint {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        self.bytes(s.as_bytes());
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::Fingerprint;

    fn of(parts: &[&str]) -> u64 {
        let mut f = Fingerprint::default();
        for p in parts {
            f.add(p);
        }
        f.value()
    }

    #[test]
    fn equal_inputs_hash_equal_and_different_ones_differ() {
        assert_eq!(of(&["a", "bc"]), of(&["a", "bc"]));
        assert_ne!(of(&["a", "bc"]), of(&["ab", "c"]));
        assert_ne!(of(&["a", "bc"]), of(&["bc", "a"]));
        assert_ne!(of(&[]), of(&[""]));
    }
}
