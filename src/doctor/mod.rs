//! `feint doctor` (issue 10): before the links are shared, checks that this machine can serve a
//! secret with `run`'s settings: the clock, the front, the DCs, the listener, and a running
//! feint as a censor sees it. Blocking std sockets, every wait and read bounded; it talks only
//! to the front, the DCs and the local listener.

mod clock;
mod dcs;
mod exchange;
mod front;
mod itself;
mod listener;

use std::fmt;
use std::io::{self, Write};
use std::thread;

use crate::settings::Config;

/// How a check came out.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Status {
    Ok,
    /// Works, but a client or a censor could notice, or it could not be checked.
    Warn,
    /// Clients would not be served, or a censor would see a proxy.
    Fail,
}

impl fmt::Display for Status {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // pad, not write_str: the table sets a width.
        f.pad(match self {
            Status::Ok => "OK",
            Status::Warn => "WARN",
            Status::Fail => "FAIL",
        })
    }
}

/// One line of the table: a check, its outcome, what was found and, unless OK, the fix.
#[derive(Debug)]
pub struct Finding {
    pub check: String,
    pub status: Status,
    pub finding: String,
    pub fix: Option<String>,
}

impl Finding {
    fn ok(check: impl Into<String>, finding: impl Into<String>) -> Finding {
        Finding {
            check: check.into(),
            status: Status::Ok,
            finding: finding.into(),
            fix: None,
        }
    }

    fn warn(check: impl Into<String>, finding: impl Into<String>, fix: &str) -> Finding {
        Finding {
            status: Status::Warn,
            fix: Some(fix.to_owned()),
            ..Finding::ok(check, finding)
        }
    }

    fn fail(check: impl Into<String>, finding: impl Into<String>, fix: &str) -> Finding {
        Finding {
            status: Status::Fail,
            ..Finding::warn(check, finding, fix)
        }
    }
}

/// Every finding, in the order the table prints them.
pub struct Report {
    pub findings: Vec<Finding>,
}

impl Report {
    pub fn failures(&self) -> usize {
        self.findings
            .iter()
            .filter(|f| f.status == Status::Fail)
            .count()
    }

    /// The table: `STATUS CHECK FINDING`, and under each problem its fix.
    pub fn write(&self, out: &mut impl Write) -> io::Result<()> {
        for finding in &self.findings {
            writeln!(
                out,
                "{:<5} {:<7} {}",
                finding.status, finding.check, finding.finding
            )?;
            if let Some(fix) = &finding.fix {
                writeln!(out, "{:14}fix: {fix}", "")?;
            }
        }
        out.flush()
    }
}

/// Runs every check, the slow ones in parallel; takes about as long as the slowest (seconds).
pub fn examine(config: &Config) -> Report {
    let running = listener::running_address(&config.binds);
    let findings = thread::scope(|scope| {
        let clock = scope.spawn(|| vec![clock::check(config)]);
        let front = scope.spawn(|| front::check(config));
        let dcs = scope.spawn(|| dcs::check(config));
        let listener = scope.spawn(|| listener::check(config));
        let itself = scope.spawn(|| itself::check(config, running));
        [
            ("clock", clock),
            ("front", front),
            ("DCs", dcs),
            ("listen", listener),
            ("itself", itself),
        ]
        .into_iter()
        .flat_map(|(check, handle)| {
            handle.join().unwrap_or_else(|_| {
                vec![Finding::fail(
                    check,
                    "the check stopped with an internal error",
                    "report this as a bug in feint",
                )]
            })
        })
        .collect()
    });
    Report { findings }
}

/// `1 s`, `150 ms`: a duration in the unit that reads best.
fn human(duration: std::time::Duration) -> String {
    if duration.as_millis() < 1000 {
        format!("{} ms", duration.as_millis())
    } else {
        format!("{:.1} s", duration.as_secs_f64())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_table_puts_each_fix_under_its_finding_and_counts_failures() {
        let report = Report {
            findings: vec![
                Finding::ok("clock", "fine"),
                Finding::fail("DC 3", "no address answers", "open the firewall"),
            ],
        };
        let mut out = Vec::new();
        report.write(&mut out).unwrap();
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "OK    clock   fine\n\
             FAIL  DC 3    no address answers\n\
             \x20             fix: open the firewall\n"
        );
        assert_eq!(report.failures(), 1);
    }
}
