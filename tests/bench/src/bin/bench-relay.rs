//! The plain relay baseline for scripts/bench.
//! `bench-relay --bind ADDR --upstream ADDR [--threads N] [--crypto none|two-passes]
//! [--lifetime SECONDS]` prints
//! `listening on ADDR` on stdout once bound, then relays until the lifetime ends or its parent
//! dies.

use std::io::Write;
use std::net::SocketAddr;
use std::process::ExitCode;
use std::time::Duration;

use feint_bench::relay::{self, Crypto};
use feint_bench::sys::{die_with_parent, raise_open_file_limit};

fn main() -> ExitCode {
    die_with_parent();
    let mut bind: Option<SocketAddr> = None;
    let mut upstream: Option<SocketAddr> = None;
    let mut threads = 1usize;
    let mut crypto = Crypto::None;
    let mut lifetime = Duration::from_secs(900);
    let mut args = std::env::args().skip(1);
    while let Some(flag) = args.next() {
        let value = args.next().unwrap_or_default();
        let ok = match flag.as_str() {
            "--bind" => value.parse().map(|a| bind = Some(a)).is_ok(),
            "--upstream" => value.parse().map(|a| upstream = Some(a)).is_ok(),
            "--threads" => value.parse().map(|n| threads = n).is_ok(),
            "--crypto" => match value.as_str() {
                "none" => {
                    crypto = Crypto::None;
                    true
                }
                "two-passes" => {
                    crypto = Crypto::TwoPasses;
                    true
                }
                _ => false,
            },
            "--lifetime" => value
                .parse()
                .map(|s| lifetime = Duration::from_secs(s))
                .is_ok(),
            _ => false,
        };
        if !ok {
            eprintln!("bench-relay: bad flag {flag:?} {value:?}\nusage: bench-relay --bind ADDR --upstream ADDR [--threads N] [--crypto none|two-passes] [--lifetime SECONDS]");
            return ExitCode::from(2);
        }
    }
    let (Some(bind), Some(upstream)) = (bind, upstream) else {
        eprintln!("bench-relay: --bind and --upstream are required");
        return ExitCode::from(2);
    };
    if let Err(e) = raise_open_file_limit() {
        eprintln!("bench-relay: cannot raise the open-file limit: {e}");
    }
    let (bound, handles) = match relay::start(bind, upstream, threads, crypto, lifetime) {
        Ok(started) => started,
        Err(e) => {
            eprintln!("bench-relay: {e}");
            return ExitCode::FAILURE;
        }
    };
    println!("listening on {bound}");
    let _ = std::io::stdout().flush();
    for handle in handles {
        match handle.join() {
            Ok(Ok(())) => {}
            Ok(Err(e)) => {
                eprintln!("bench-relay: {e}");
                return ExitCode::FAILURE;
            }
            Err(_) => return ExitCode::FAILURE,
        }
    }
    ExitCode::SUCCESS
}
