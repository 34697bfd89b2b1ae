//! A linearizability checker for histories of a key-value store, as its clients saw them.
//!
//! A history is a list of [`Operation`]s: what a client asked ([`Call`]), when it asked, and
//! what it was told ([`Ret`]) and when. An operation whose outcome the client never learned (a
//! timeout, an ambiguous error) is [`Ret::Unknown`]: it may or may not have taken effect, at
//! any instant after its invocation. The model is one register per key (absent until the first
//! `Put`), and registers are independent, so the history is checked key by key.

use serde::{Deserialize, Serialize};

/// What a client asked of one key.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Call {
    /// Store this value (values are unique per write, so a read can be attributed).
    Put(Vec<u8>),
    /// Read the key.
    Get,
    /// Remove the key.
    Delete,
}

/// What the client was told.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Ret {
    /// A `Put` or `Delete` took effect.
    Done,
    /// A `Get` returned this value (`None`: the key was absent).
    Read(Option<Vec<u8>>),
    /// No definite answer: the operation may or may not have taken effect.
    Unknown,
}

/// One operation of a history.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Operation {
    /// The client (session) that issued it; one client has at most one operation per instant.
    pub client: u64,
    /// The key it touched.
    pub key: Vec<u8>,
    /// What was asked.
    pub call: Call,
    /// When it was invoked, in nanoseconds on the history's clock.
    pub invoked_ns: u64,
    /// When the client learned its outcome (`None` with [`Ret::Unknown`]: never).
    pub returned_ns: Option<u64>,
    /// What it was told.
    pub ret: Ret,
}
