//! The paxbench runtime (in progress).
