//! Helpers shared by integration tests. Each test binary that includes this module uses only
//! some of them.
#![allow(dead_code)]

pub mod nodes;
pub mod testbed;
