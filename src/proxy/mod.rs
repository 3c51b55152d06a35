//! The I/O edge: sockets, event loops, clocks and randomness. Drives `proto` state machines.

use crate::cli::Config;

/// Binds every listener, prints `listening on ADDR` per address and the links, and runs the
/// event loops until SIGINT or SIGTERM. Errors are for bind failures and other startup faults.
pub fn run(config: Config) -> std::io::Result<()> {
    todo!()
}
