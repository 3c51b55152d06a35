//! `feint doctor` end to end (issue 10): the real binary against a real nginx front, a running
//! feint and fake DCs on loopback. One run where every check passes or warns, then one
//! deliberately broken setup per check, each of which must FAIL that check and exit 1.
//! The secret's domain is `localhost`, so the DNS check resolves it from /etc/hosts.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener};
use std::path::PathBuf;
use std::time::Duration;

use feint_testkit::dc::routes;
use feint_testkit::feint::{self, run_to_exit, NOWHERE};
use feint_testkit::{DcMode, FakeDc, Feint, Nginx, Secret};

const DOMAIN: &str = "localhost";
/// Every doctor check is bounded by a few seconds; this is the whole run's limit.
const DOCTOR_TIMEOUT: Duration = Duration::from_secs(40);

fn bin() -> PathBuf {
    feint::binary(env!("CARGO_BIN_EXE_feint"))
}

/// nginx as the front and five fake DCs whose clocks are `clock_offset` seconds off.
struct Rig {
    secret: Secret,
    nginx: Nginx,
    dcs: Vec<FakeDc>,
}

impl Rig {
    fn start(clock_offset: i64) -> Rig {
        let dcs = (0..5)
            .map(|_| FakeDc::start(DcMode::AnswerReqPq { clock_offset }).expect("fake DC"))
            .collect();
        Rig {
            secret: Secret::random(DOMAIN),
            nginx: Nginx::start(DOMAIN).expect("nginx starts"),
            dcs,
        }
    }

    /// `run`'s options for this rig, listening on `bind`.
    fn options(&self, bind: SocketAddr) -> Vec<String> {
        let mut options: Vec<String> = ["--bind", &bind.to_string(), "--front"]
            .map(String::from)
            .to_vec();
        options.push(self.nginx.tls_addr.to_string());
        options.extend(routes(&self.dcs));
        options.extend(["--public", "localhost", "--max-connections", "100"].map(String::from));
        options
    }

    /// A feint with `secret` serving this rig on a free loopback port.
    fn feint(&self, secret: &Secret) -> Feint {
        let mut options = self.options("127.0.0.1:0".parse().unwrap());
        options.drain(..2);
        options.extend(["--bind", "127.0.0.1:0"].map(String::from));
        Feint::start(bin(), secret, &options).expect("feint starts")
    }
}

/// The table doctor printed and its exit code.
struct Outcome {
    code: Option<i32>,
    table: Vec<String>,
    output: String,
}

impl Outcome {
    fn line(&self, status: &str, check: &str) -> Option<&String> {
        let start = format!("{status:<5} {check} ");
        self.table.iter().find(|line| line.starts_with(&start))
    }

    fn assert_line(&self, status: &str, check: &str, containing: &str) {
        let start = format!("{status:<5} {check} ");
        assert!(
            self.table
                .iter()
                .any(|line| line.starts_with(&start) && line.contains(containing)),
            "no `{status} {check}` line with {containing:?}:\n{}",
            self.output
        );
    }
}

fn doctor(options: &[String], secret: &Secret) -> Outcome {
    let mut args = vec!["doctor".to_string()];
    args.extend(options.iter().cloned());
    args.push(secret.to_hex());
    let (status, output) = run_to_exit(bin(), &args, DOCTOR_TIMEOUT).expect("doctor runs");
    let table = output
        .lines()
        .filter_map(|line| line.strip_prefix("stdout: "))
        .map(String::from)
        .collect();
    Outcome {
        code: status.and_then(|s| s.code()),
        table,
        output,
    }
}

/// A loopback address nothing listens on: bound, read and closed.
fn free_address() -> SocketAddr {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
}

#[test]
fn a_ready_machine_passes_every_check() {
    let rig = Rig::start(0);
    let feint = rig.feint(&rig.secret);
    let options = rig.options(feint.addr());
    let outcome = doctor(&options, &rig.secret);
    println!(
        "feint doctor {} SECRET\n{}",
        options.join(" "),
        outcome.table.join("\n")
    );
    assert_eq!(outcome.code, Some(0), "{}", outcome.output);
    assert!(
        !outcome.table.iter().any(|line| line.starts_with("FAIL")),
        "{}",
        outcome.output
    );
    outcome.assert_line("OK", "clock", "DC 1's");
    outcome.assert_line("OK", "dns", "localhost is 127.0.0.1");
    outcome.assert_line("OK", "listen", "held by a running feint");
    outcome.assert_line("OK", "files", "--max-connections 100");
    for dc in 1..=5 {
        outcome.assert_line("OK", &format!("DC {dc}"), "127.0.0.1:");
    }
    for probe in ["plain HTTP", "random digest", "an hour ago", "genuine"] {
        outcome.assert_line("OK", "itself", probe);
    }
    let front = outcome
        .line("OK", "front")
        .or_else(|| outcome.line("WARN", "front"))
        .expect("a front line");
    assert!(front.contains("TLS 1.3"), "{front}");
}

#[test]
fn a_clock_an_hour_off_fails_the_clock_check() {
    let rig = Rig::start(3600);
    let outcome = doctor(&rig.options(free_address()), &rig.secret);
    assert_eq!(outcome.code, Some(1), "{}", outcome.output);
    outcome.assert_line("FAIL", "clock", "behind DC 1's");
    outcome.assert_line("WARN", "itself", "nothing listens");
    assert!(outcome.output.contains("feint: 1 check failed"));
}

#[test]
fn a_front_that_is_not_tls_fails_the_front_check() {
    let rig = Rig::start(0);
    let mut options = rig.options(free_address());
    let front = options.iter().position(|o| o == "--front").unwrap() + 1;
    options[front] = rig.nginx.http_addr.to_string();
    let outcome = doctor(&options, &rig.secret);
    assert_eq!(outcome.code, Some(1), "{}", outcome.output);
    outcome.assert_line("FAIL", "front", "no TLS 1.3 answer");
}

#[test]
fn a_dc_route_to_a_closed_port_fails_the_dc_check() {
    let rig = Rig::start(0);
    let mut options = rig.options(free_address());
    let route = options.iter().position(|o| o.starts_with("3=")).unwrap();
    options[route] = format!("3={NOWHERE}");
    let outcome = doctor(&options, &rig.secret);
    assert_eq!(outcome.code, Some(1), "{}", outcome.output);
    outcome.assert_line("FAIL", "DC 3", "no address answers");
    outcome.assert_line("OK", "DC 2", "127.0.0.1:");
}

#[test]
fn a_port_held_by_another_server_fails_the_listener_check() {
    let rig = Rig::start(0);
    let squatter = TcpListener::bind("127.0.0.1:0").unwrap();
    let outcome = doctor(&rig.options(squatter.local_addr().unwrap()), &rig.secret);
    assert_eq!(outcome.code, Some(1), "{}", outcome.output);
    outcome.assert_line("FAIL", "listen", "not a feint with this secret");
}

#[test]
fn a_feint_with_another_secret_fails_the_itself_check() {
    let rig = Rig::start(0);
    let other = rig.feint(&Secret::random(DOMAIN));
    let outcome = doctor(&rig.options(other.addr()), &rig.secret);
    assert_eq!(outcome.code, Some(1), "{}", outcome.output);
    outcome.assert_line(
        "FAIL",
        "itself",
        "genuine hello gets no reply that verifies",
    );
    // Without the secret it looks like the front, as any feint should.
    outcome.assert_line("OK", "itself", "plain HTTP");
}

#[test]
fn an_echo_server_on_the_port_fails_the_itself_check() {
    let rig = Rig::start(0);
    let echo = TcpListener::bind("127.0.0.1:0").unwrap();
    let address = echo.local_addr().unwrap();
    std::thread::spawn(move || {
        for stream in echo.incoming().take(16) {
            let Ok(mut stream) = stream else { continue };
            std::thread::spawn(move || {
                let _ = stream.set_read_timeout(Some(Duration::from_secs(10)));
                let mut buf = [0; 4096];
                for _ in 0..100 {
                    match stream.read(&mut buf) {
                        Ok(0) | Err(_) => break,
                        Ok(n) => {
                            let _ = stream.write_all(&buf[..n]);
                        }
                    }
                }
            });
        }
    });
    let outcome = doctor(&rig.options(address), &rig.secret);
    assert_eq!(outcome.code, Some(1), "{}", outcome.output);
    outcome.assert_line("FAIL", "itself", "plain HTTP");
    outcome.assert_line("FAIL", "itself", "random digest");
}
