//! The DCs check: a TCP connect to every address of DCs 1 to 5 that `--prefer-ip` allows, all
//! at once, each within exchange::TIMEOUT.

use std::net::{SocketAddr, TcpStream};
use std::thread;
use std::time::{Duration, Instant};

use super::exchange::TIMEOUT;
use super::{human, Finding};
use crate::proxy::dc_address;
use crate::settings::Config;

/// Slower than this to connect, a DC slows every client's first message.
const SLOW: Duration = Duration::from_secs(1);

/// The addresses feint dials for DC `id`, in the order it tries them: the `--dc` route alone,
/// or the production table ordered by `--prefer-ip`. The proxy's own function decides, so the
/// two cannot drift.
pub fn addresses(config: &Config, id: i16) -> Vec<SocketAddr> {
    (0..)
        .map_while(|attempt| dc_address(&config.dc_overrides, config.prefer_ip, id, attempt))
        .collect()
}

/// One line per DC.
pub fn check(config: &Config) -> Vec<Finding> {
    let per_dc: Vec<(i16, Vec<SocketAddr>)> =
        (1..=5).map(|id| (id, addresses(config, id))).collect();
    let timings: Vec<Vec<(SocketAddr, Result<Duration, String>)>> = thread::scope(|scope| {
        let handles: Vec<Vec<_>> = per_dc
            .iter()
            .map(|(_, addresses)| {
                addresses
                    .iter()
                    .map(|&address| (address, scope.spawn(move || connect_time(address))))
                    .collect()
            })
            .collect();
        handles
            .into_iter()
            .map(|dc| {
                dc.into_iter()
                    .map(|(address, handle)| {
                        let result = handle
                            .join()
                            .unwrap_or_else(|_| Err("internal error".into()));
                        (address, result)
                    })
                    .collect()
            })
            .collect()
    });
    per_dc
        .iter()
        .zip(timings)
        .map(|((id, _), results)| judge(config, *id, &results))
        .collect()
}

fn connect_time(address: SocketAddr) -> Result<Duration, String> {
    let start = Instant::now();
    TcpStream::connect_timeout(&address, TIMEOUT)
        .map(|_| start.elapsed())
        .map_err(|e| match e.kind() {
            std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut => {
                format!("no answer in {}", human(TIMEOUT))
            }
            _ => e.to_string(),
        })
}

fn judge(config: &Config, id: i16, results: &[(SocketAddr, Result<Duration, String>)]) -> Finding {
    let check = format!("DC {id}");
    let described: Vec<String> = results
        .iter()
        .map(|(address, result)| match result {
            Ok(time) => format!("{address} {}", human(*time)),
            Err(e) => format!("{address} {e}"),
        })
        .collect();
    let finding = described.join(", ");
    let answered = results.iter().filter(|(_, r)| r.is_ok()).count();
    let routed = config.dc_overrides.iter().any(|(dc, _)| *dc == id);
    if results.is_empty() {
        return Finding::fail(
            check,
            "no address to dial",
            "--prefer-ip leaves this DC no address; use prefer-ipv4",
        );
    }
    if answered == 0 {
        let fix = if routed {
            "nothing answers at the --dc route: fix the address or drop the route"
        } else {
            "clients cannot reach this DC through feint: allow outgoing TCP to port 443, \
             or use a machine that can reach Telegram"
        };
        return Finding::fail(check, format!("no address answers: {finding}"), fix);
    }
    if answered < results.len() {
        let only_ipv6_fails = results
            .iter()
            .all(|(address, r)| r.is_ok() || address.is_ipv6());
        let fix = if only_ipv6_fails {
            "this machine seems to have no IPv6 route: --prefer-ip only-ipv4 skips those \
             addresses"
        } else {
            "feint falls back to the next address, which delays clients: check outgoing \
             firewall rules"
        };
        return Finding::warn(check, format!("partly unreachable: {finding}"), fix);
    }
    let slow = results
        .iter()
        .any(|(_, r)| matches!(r, Ok(time) if *time > SLOW));
    if slow {
        return Finding::warn(
            check,
            format!("slow: {finding}"),
            "a slow route to Telegram slows every client; a server nearer the DCs (Europe) \
             connects in tens of milliseconds",
        );
    }
    Finding::ok(check, finding)
}
