//! New connections per second from `clients` threads for a fixed time. Each connection is a
//! whole client life: connect, (FakeTLS hello, reply check, CCS, obfs2 header), a command and one
//! byte, and that byte echoed back by the DC (deciphered and compared). The time to that byte
//! is the latency. The DC closes its side right after the echo and the client closes with RST,
//! so no TIME_WAIT piles up on client or proxy ports (the DC's TIME_WAITs are on its
//! listening port, which blocks no one). The client does not wait for the DC's FIN to travel
//! back: how fast a proxy passes on a close is not what this measures.

use std::io;
use std::time::{Duration, Instant};

use super::{Session, Target};
use crate::command::{Command, COMMAND_LEN};
use crate::stats::Latencies;

pub struct Outcome {
    pub connections: u64,
    pub elapsed: Duration,
    pub failures: u64,
    pub first_byte: Latencies,
}

impl Outcome {
    pub fn per_second(&self) -> f64 {
        self.connections as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }
}

/// Iterations per thread stop at this count even if time remains.
const MAX_PER_CLIENT: u64 = 1_000_000;

pub fn run(target: &Target, clients: usize, duration: Duration) -> io::Result<Outcome> {
    let start = Instant::now();
    let deadline = start + duration;
    let results: Vec<(u64, u64, Vec<u32>, Option<io::Error>)> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..clients)
            .map(|_| {
                scope.spawn(|| {
                    let mut done = 0u64;
                    let mut failures = 0u64;
                    let mut samples = Vec::with_capacity(64 * 1024);
                    let mut last_error = None;
                    for round in 0..MAX_PER_CLIENT {
                        if Instant::now() >= deadline {
                            break;
                        }
                        match once(target, round as u8) {
                            Ok(latency) => {
                                done += 1;
                                samples.push(latency.as_nanos().min(u32::MAX as u128) as u32);
                            }
                            Err(e) => {
                                failures += 1;
                                last_error = Some(e);
                                if failures > 100 {
                                    break;
                                }
                            }
                        }
                    }
                    (done, failures, samples, last_error)
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().expect("a handshake thread panicked"))
            .collect()
    });
    let elapsed = start.elapsed();
    let mut first_byte = Latencies::default();
    let mut connections = 0;
    let mut failures = 0;
    let mut last_error = None;
    for (done, failed, samples, error) in results {
        connections += done;
        failures += failed;
        first_byte.extend(samples);
        last_error = last_error.or(error);
    }
    if connections == 0 {
        return Err(last_error.unwrap_or_else(|| io::Error::other("no connection completed")));
    }
    if let Some(error) = last_error {
        eprintln!("  {failures} handshake(s) failed, e.g.: {error}");
    }
    Ok(Outcome {
        connections,
        elapsed,
        failures,
        first_byte,
    })
}

fn once(target: &Target, byte: u8) -> io::Result<Duration> {
    let start = Instant::now();
    let mut first = [0u8; COMMAND_LEN + 1];
    first[..COMMAND_LEN].copy_from_slice(&Command::Echo { close_after: 1 }.encode());
    first[COMMAND_LEN] = byte;
    let mut session = Session::open(target, &first)?;
    let mut echoed = [0u8; 1];
    session.receive_exact(&mut echoed)?;
    let latency = start.elapsed();
    if echoed[0] != byte {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            "the echoed byte differs from the one sent",
        ));
    }
    crate::sys::set_linger_zero(&session.stream)?;
    Ok(latency)
}
