//! What `feint run` prints and refuses at start: the links for each public address, the hint
//! when it has none, and a port that another process already holds.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use feint_testkit::{feint, Feint, Secret};

const DOMAIN: &str = "www.example.com";
const WAIT: Duration = Duration::from_secs(10);

fn bin() -> PathBuf {
    feint::binary(env!("CARGO_BIN_EXE_feint"))
}

fn args(list: &[&str]) -> Vec<String> {
    list.iter().map(|arg| arg.to_string()).collect()
}

/// Waits (bounded) until feint has printed a line containing `needle`; returns all its output.
fn wait_for(feint: &Feint, needle: &str) -> String {
    let deadline = Instant::now() + WAIT;
    for _ in 0..1000 {
        let output = feint.output();
        if output.contains(needle) || Instant::now() >= deadline {
            return output;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    feint.output()
}

#[test]
fn loopback_listener_without_public_prints_the_hint_and_no_link() {
    let secret = Secret::random(DOMAIN);
    let feint = Feint::start(bin(), &secret, &[]).unwrap();
    let output = wait_for(&feint, "pass --public");
    assert!(output.contains("pass --public ADDR[:PORT]"), "{output}");
    assert!(!output.contains("tg://"), "{output}");
}

#[test]
fn every_public_address_gets_links_with_the_bound_port() {
    let secret = Secret::random(DOMAIN);
    let feint = Feint::start(
        bin(),
        &secret,
        &args(&["--public", "203.0.113.7", "--public", "[2001:db8::1]:8443"]),
    )
    .unwrap();
    let output = wait_for(&feint, "https://t.me/proxy?server=2001");
    let port = feint.addr().port();
    let hex = secret.to_hex();
    for link in [
        format!("tg://proxy?server=203.0.113.7&port={port}&secret={hex}"),
        format!("https://t.me/proxy?server=203.0.113.7&port={port}&secret={hex}"),
        format!("tg://proxy?server=2001%3Adb8%3A%3A1&port=8443&secret={hex}"),
        format!("https://t.me/proxy?server=2001%3Adb8%3A%3A1&port=8443&secret={hex}"),
    ] {
        assert!(output.lines().any(|line| line == link), "{link}\n{output}");
    }
    assert!(!output.contains("pass --public"), "{output}");
}

#[test]
fn start_up_lines_count_in_the_singular_and_the_plural() {
    let secret = Secret::random(DOMAIN);
    let one = Feint::start(
        bin(),
        &secret,
        &args(&["--threads", "1", "--max-connections", "1"]),
    )
    .unwrap();
    let output = wait_for(&one, "memory: ");
    assert!(output.contains("(1 loop; "), "{output}");
    assert!(output.contains(" for 1 connection, "), "{output}");
    let two = Feint::start(
        bin(),
        &secret,
        &args(&["--threads", "2", "--max-connections", "2"]),
    )
    .unwrap();
    let output = wait_for(&two, "memory: ");
    assert!(output.contains("(2 loops; "), "{output}");
    assert!(output.contains(" for 2 connections, "), "{output}");
}

#[test]
fn more_threads_than_connections_are_capped_and_said() {
    let secret = Secret::random(DOMAIN);
    let feint = Feint::start(
        bin(),
        &secret,
        &args(&[
            "--threads",
            "1000",
            "--max-connections",
            "3",
            "--buffers",
            "4",
        ]),
    )
    .unwrap();
    let output = wait_for(&feint, "memory: ");
    assert!(
        output.contains("feint: running 3 event loops instead of 1000: each loop needs at least one of the 3 connections"),
        "{output}"
    );
    assert!(
        output
            .contains("feint: --buffers 4 raised to 6: each of the 3 event loops needs at least 2"),
        "{output}"
    );
    assert!(output.contains("(3 loops; "), "{output}");
    assert!(output.contains(" for 3 connections, "), "{output}");
}
