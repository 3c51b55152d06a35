//! The pieces of `scripts/bench`: a load client, a fake DC and a plain relay that speak
//! docs/PROTOCOL.md from the other side (client and DC), and the code that measures and reports.
//! Loopback only; every loop has a count or a deadline.

pub mod command;
pub mod crypto;
pub mod dc;
pub mod faketls;
pub mod load;
pub mod obfs2;
pub mod perf;
pub mod procfs;
pub mod relay;
pub mod report;
pub mod stats;
pub mod sys;
