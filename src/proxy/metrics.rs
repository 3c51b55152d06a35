//! `--metrics ADDR:PORT`: one thread with a blocking listener that answers `GET /metrics` in the
//! Prometheus text format 0.0.4, one connection at a time, and 404 to anything else. It only
//! reads the counters; a slow or oversized request is closed and cannot stall the proxy.

use std::fmt::Write as _;
use std::io::{self, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::counters::{Totals, DC_LABELS, DIAL_LABELS, DIRECTION_LABELS};
use super::counters::{FRONTED_LABELS, REFUSAL_LABELS};
use super::shared::Shared;

/// A request head larger than this is closed unanswered.
pub const MAX_REQUEST_LEN: usize = 4096;
/// Time a scraper has to send its request head.
pub const REQUEST_DEADLINE: Duration = Duration::from_secs(3);
const WRITE_TIMEOUT: Duration = Duration::from_secs(5);

/// What a scrape reports besides the loop counters.
pub struct Gauges {
    pub replay_entries: u64,
    pub started_unix: f64,
}

/// Serves scrapes on `listener` until the process ends; errors of one scraper are ignored.
pub fn serve(listener: TcpListener, shared: Arc<Shared>) {
    for stream in listener.incoming() {
        let Ok(stream) = stream else {
            // Out of descriptors or similar: do not spin.
            std::thread::sleep(Duration::from_millis(100));
            continue;
        };
        let _ = answer(stream, &shared);
    }
}

fn answer(mut stream: TcpStream, shared: &Shared) -> io::Result<()> {
    stream.set_write_timeout(Some(WRITE_TIMEOUT))?;
    let mut head = [0u8; MAX_REQUEST_LEN];
    let Some(len) = read_head(&mut stream, &mut head)? else {
        return Ok(());
    };
    let response = if is_metrics_request(head.get(..len).unwrap_or_default()) {
        let gauges = Gauges {
            replay_entries: shared.replay_entries() as u64,
            started_unix: shared.metrics.started_unix,
        };
        let mut body = String::with_capacity(8192);
        render(&shared.metrics.totals(), &gauges, &mut body);
        format!(
            "HTTP/1.1 200 OK\r\nContent-Type: text/plain; version=0.0.4; charset=utf-8\r\n\
             Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        )
    } else {
        "HTTP/1.1 404 Not Found\r\nContent-Type: text/plain\r\nContent-Length: 10\r\n\
         Connection: close\r\n\r\nnot found\n"
            .to_owned()
    };
    stream.write_all(response.as_bytes())?;
    stream.flush()
}

/// Reads up to the blank line that ends a request head. `None` when the peer closes first,
/// takes longer than `REQUEST_DEADLINE`, or sends more than `MAX_REQUEST_LEN` bytes.
fn read_head(stream: &mut TcpStream, head: &mut [u8]) -> io::Result<Option<usize>> {
    let deadline = Instant::now() + REQUEST_DEADLINE;
    let mut len = 0;
    // Each read takes at least one byte, so the loop ends within head.len() rounds.
    for _ in 0..head.len() {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Ok(None);
        }
        stream.set_read_timeout(Some(left))?;
        let Some(free) = head.get_mut(len..).filter(|free| !free.is_empty()) else {
            return Ok(None);
        };
        let n = match stream.read(free) {
            Ok(0) => return Ok(None),
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) if is_timeout(&e) => return Ok(None),
            Err(e) => return Err(e),
        };
        len += n;
        let read = head.get(..len).unwrap_or_default();
        if read.windows(4).any(|w| w == b"\r\n\r\n") || read.windows(2).any(|w| w == b"\n\n") {
            return Ok(Some(len));
        }
    }
    Ok(None)
}

fn is_timeout(error: &io::Error) -> bool {
    matches!(
        error.kind(),
        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
    )
}

/// True for `GET /metrics` (a query string is allowed) over HTTP/1.x.
fn is_metrics_request(head: &[u8]) -> bool {
    let line = head.split(|&b| b == b'\n').next().unwrap_or_default();
    let line = line.strip_suffix(b"\r").unwrap_or(line);
    let mut words = line.split(|&b| b == b' ');
    let (Some(method), Some(target), Some(version), None) =
        (words.next(), words.next(), words.next(), words.next())
    else {
        return false;
    };
    let path = target.split(|&b| b == b'?').next().unwrap_or_default();
    method == b"GET" && path == b"/metrics" && version.starts_with(b"HTTP/1.")
}

/// Writes every metric in the Prometheus text format 0.0.4.
pub fn render(totals: &Totals, gauges: &Gauges, out: &mut String) {
    // Writing to a String cannot fail.
    let _ = render_into(totals, gauges, out);
}

fn render_into(totals: &Totals, gauges: &Gauges, out: &mut String) -> std::fmt::Result {
    family(
        out,
        "feint_connections_accepted_total",
        "counter",
        "Connections given a session slot.",
    )?;
    writeln!(out, "feint_connections_accepted_total {}", totals.accepted)?;
    family(
        out,
        "feint_connections_active",
        "gauge",
        "Connections open now.",
    )?;
    writeln!(out, "feint_connections_active {}", totals.active)?;
    family(
        out,
        "feint_handshakes_total",
        "counter",
        "Genuine clients served: the hello and the obfs2 frame passed.",
    )?;
    writeln!(out, "feint_handshakes_total {}", totals.handshakes)?;
    family(
        out,
        "feint_fronted_total",
        "counter",
        "Connections relayed to the front, by why the hello failed.",
    )?;
    for (label, value) in FRONTED_LABELS.iter().zip(totals.fronted) {
        writeln!(out, "feint_fronted_total{{reason=\"{label}\"}} {value}")?;
    }
    family(
        out,
        "feint_dc_dials_total",
        "counter",
        "Dials of DC addresses, by DC and result.",
    )?;
    for (dc, row) in DC_LABELS.iter().zip(totals.dials) {
        for (result, value) in DIAL_LABELS.iter().zip(row) {
            writeln!(
                out,
                "feint_dc_dials_total{{dc=\"{dc}\",result=\"{result}\"}} {value}"
            )?;
        }
    }
    family(
        out,
        "feint_bytes_total",
        "counter",
        "Bytes relayed, by direction.",
    )?;
    for (direction, value) in DIRECTION_LABELS.iter().zip(totals.bytes) {
        writeln!(
            out,
            "feint_bytes_total{{direction=\"{direction}\"}} {value}"
        )?;
    }
    family(
        out,
        "feint_replay_table_entries",
        "gauge",
        "Hellos the replay table remembers now.",
    )?;
    writeln!(out, "feint_replay_table_entries {}", gauges.replay_entries)?;
    family(
        out,
        "feint_buffers_in_use",
        "gauge",
        "I/O buffers lent to connections now.",
    )?;
    writeln!(out, "feint_buffers_in_use {}", totals.buffers_in_use)?;
    family(
        out,
        "feint_refused_total",
        "counter",
        "Connections closed at a cap or fronted because of the address lists.",
    )?;
    for (why, value) in REFUSAL_LABELS.iter().zip(totals.refused) {
        writeln!(out, "feint_refused_total{{why=\"{why}\"}} {value}")?;
    }
    family(
        out,
        "process_start_time_seconds",
        "gauge",
        "Start time of the process since the Unix epoch in seconds.",
    )?;
    writeln!(out, "process_start_time_seconds {:.3}", gauges.started_unix)
}

/// The HELP and TYPE lines that open a metric family.
fn family(out: &mut String, name: &str, kind: &str, help: &str) -> std::fmt::Result {
    writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proto::hello::Rejection;
    use crate::proxy::counters::{DialResult, Direction, Metrics};

    fn rendered() -> String {
        let metrics = Metrics::new(2);
        metrics.for_loop(0).accepted();
        metrics.for_loop(1).accepted();
        metrics.for_loop(1).fronted(Rejection::WrongDomain);
        metrics.for_loop(0).dial(-4, DialResult::Refused);
        metrics.for_loop(0).bytes(Direction::FrontedOut, 1234);
        let gauges = Gauges {
            replay_entries: 17,
            started_unix: 1_700_000_000.25,
        };
        let mut out = String::new();
        render(&metrics.totals(), &gauges, &mut out);
        out
    }

    #[test]
    fn renders_summed_values_with_labels() {
        let text = rendered();
        for line in [
            "feint_connections_accepted_total 2",
            "feint_fronted_total{reason=\"bad_sni\"} 1",
            "feint_fronted_total{reason=\"timeout\"} 0",
            "feint_dc_dials_total{dc=\"-4\",result=\"refused\"} 1",
            "feint_dc_dials_total{dc=\"other\",result=\"unreachable\"} 0",
            "feint_bytes_total{direction=\"fronted_out\"} 1234",
            "feint_replay_table_entries 17",
            "feint_refused_total{why=\"per_ip\"} 0",
            "process_start_time_seconds 1700000000.250",
        ] {
            assert!(text.lines().any(|l| l == line), "{line} missing in\n{text}");
        }
    }

    #[test]
    fn every_sample_follows_its_help_and_type() {
        let text = rendered();
        let mut typed = Vec::new();
        for line in text.lines() {
            if let Some(rest) = line.strip_prefix("# TYPE ") {
                let (name, kind) = rest.split_once(' ').expect("TYPE name kind");
                assert!(kind == "counter" || kind == "gauge");
                typed.push(name.to_owned());
                continue;
            }
            if line.starts_with("# HELP ") {
                continue;
            }
            let name = line.split(['{', ' ']).next().expect("a metric name");
            assert_eq!(typed.last(), Some(&name.to_owned()), "{line}");
            let value = line.rsplit(' ').next().expect("a value");
            assert!(value.parse::<f64>().is_ok(), "{line}");
        }
        assert_eq!(typed.len(), 10, "{typed:?}");
        assert!(text.ends_with('\n'));
    }

    #[test]
    fn only_get_metrics_is_a_metrics_request() {
        assert!(is_metrics_request(
            b"GET /metrics HTTP/1.1\r\nHost: a\r\n\r\n"
        ));
        assert!(is_metrics_request(b"GET /metrics?x=1 HTTP/1.0\n\n"));
        for head in [
            &b"POST /metrics HTTP/1.1\r\n\r\n"[..],
            b"HEAD /metrics HTTP/1.1\r\n\r\n",
            b"GET / HTTP/1.1\r\n\r\n",
            b"GET /metricsx HTTP/1.1\r\n\r\n",
            b"GET /metrics\r\n\r\n",
            b"GET /metrics HTTP/1.1 extra\r\n\r\n",
            b"\r\n\r\n",
            b"",
        ] {
            assert!(!is_metrics_request(head), "{head:?}");
        }
    }
}
