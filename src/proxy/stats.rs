//! The summary line of `--stats-every` and the once-a-minute note that connections are being
//! refused at a cap, both written from the loop counters by one sleeping thread.

use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use super::counters::{Direction, Refusal, Totals};
use super::shared::Shared;

/// The cap note is logged at most this often.
const CAP_NOTE_EVERY: Duration = Duration::from_secs(60);

/// Wakes every `every` (or each minute when off) to log the summary and the cap note.
pub fn run(shared: Arc<Shared>, every: Option<Duration>) {
    let tick = every.map_or(CAP_NOTE_EVERY, |every| every.min(CAP_NOTE_EVERY));
    let mut last_line = (Instant::now(), shared.metrics.totals());
    let mut last_note = last_line;
    loop {
        thread::sleep(tick);
        let now = (Instant::now(), shared.metrics.totals());
        if let Some(every) = every {
            if now.0 - last_line.0 >= every {
                eprintln!("{}", summary(&last_line.1, &now.1));
                last_line = now;
            }
        }
        if now.0 - last_note.0 >= CAP_NOTE_EVERY {
            if let Some(note) = cap_note(&last_note.1, &now.1) {
                eprintln!("{note}");
            }
            last_note = now;
        }
    }
}

/// `stats: 3 active connections; since the last line 5 genuine sessions, …`.
pub fn summary(before: &Totals, now: &Totals) -> String {
    let since = |now: u64, before: u64| now.saturating_sub(before);
    let moved = |direction| since(now.bytes(direction), before.bytes(direction));
    format!(
        "stats: {} active; since the last line {}, {}, {} from clients to DCs, {} from DCs \
         to clients, {}",
        plural(now.active, "connection"),
        plural(since(now.handshakes, before.handshakes), "genuine session"),
        plural(
            since(now.fronted_sum(), before.fronted_sum()),
            "fronted connection"
        ),
        byte_size(moved(Direction::ClientToDc)),
        byte_size(moved(Direction::DcToClient)),
        plural(
            since(now.dial_failures(), before.dial_failures()),
            "DC dial failure"
        ),
    )
}

/// A line when connections were closed at a cap since `before`, else None.
pub fn cap_note(before: &Totals, now: &Totals) -> Option<String> {
    let since = |why| now.refused(why).saturating_sub(before.refused(why));
    let (cap, per_ip) = (since(Refusal::Cap), since(Refusal::PerIp));
    let note = match (cap, per_ip) {
        (0, 0) => return None,
        (cap, 0) => format!("{} at --max-connections", plural(cap, "connection")),
        (0, per_ip) => format!("{} at the per-address cap", plural(per_ip, "connection")),
        (cap, per_ip) => format!(
            "{} at --max-connections and {per_ip} at the per-address cap",
            plural(cap, "connection")
        ),
    };
    Some(format!("feint: refused {note} in the last minute"))
}

/// `1 connection`, `2 connections`, `0 connections`.
pub fn plural(n: u64, noun: &str) -> String {
    match n {
        1 => format!("1 {noun}"),
        n => format!("{n} {noun}s"),
    }
}

/// `512 bytes`, `1 byte`, `3.4 KiB`, `12.0 MiB`, `1.5 GiB`.
pub fn byte_size(bytes: u64) -> String {
    const UNITS: [&str; 4] = ["KiB", "MiB", "GiB", "TiB"];
    if bytes < 1024 {
        return plural(bytes, "byte");
    }
    let mut value = bytes as f64 / 1024.0;
    let mut unit = UNITS[0];
    for next in &UNITS[1..] {
        if value < 1024.0 {
            break;
        }
        value /= 1024.0;
        unit = next;
    }
    format!("{value:.1} {unit}")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proto::hello::Rejection;
    use crate::proxy::counters::{DialResult, Metrics};

    #[test]
    fn summary_counts_since_the_last_line_with_plurals_right() {
        let metrics = Metrics::new(1);
        let counters = metrics.for_loop(0);
        counters.handshake();
        let before = metrics.totals();
        counters.set_active(1);
        counters.handshake();
        counters.fronted(Rejection::NotTls);
        counters.fronted(Rejection::Replayed);
        counters.bytes(Direction::ClientToDc, 1);
        counters.bytes(Direction::DcToClient, 3 << 20);
        counters.dial(2, DialResult::Timeout);
        counters.dial(2, DialResult::Ok);
        assert_eq!(
            summary(&before, &metrics.totals()),
            "stats: 1 connection active; since the last line 1 genuine session, \
             2 fronted connections, 1 byte from clients to DCs, 3.0 MiB from DCs to clients, \
             1 DC dial failure"
        );
        let now = metrics.totals();
        assert_eq!(
            summary(&now, &now),
            "stats: 1 connection active; since the last line 0 genuine sessions, \
             0 fronted connections, 0 bytes from clients to DCs, 0 bytes from DCs to clients, \
             0 DC dial failures"
        );
    }

    #[test]
    fn cap_note_speaks_only_of_refusals() {
        let metrics = Metrics::new(1);
        let before = metrics.totals();
        metrics.for_loop(0).refused(Refusal::Blocked);
        assert_eq!(cap_note(&before, &metrics.totals()), None);
        metrics.for_loop(0).refused(Refusal::Cap);
        assert_eq!(
            cap_note(&before, &metrics.totals()).as_deref(),
            Some("feint: refused 1 connection at --max-connections in the last minute")
        );
    }

    #[test]
    fn byte_sizes_pick_a_readable_unit() {
        assert_eq!(byte_size(0), "0 bytes");
        assert_eq!(byte_size(1023), "1023 bytes");
        assert_eq!(byte_size(1536), "1.5 KiB");
        assert_eq!(byte_size(5 << 30), "5.0 GiB");
        assert_eq!(byte_size(u64::MAX), "16777216.0 TiB");
    }
}
