//! Runs the built binary with fixed command lines and checks stdout, stderr and the exit code.
//! `run` is only tried with command lines that fail to parse: the listeners are tested elsewhere.

use std::process::{Command, Output};

use feint::secret::Secret;
use feint_testkit::qr;

const SECRET_HEX: &str = "ee000102030405060708090a0b0c0d0e0f6578616d706c652e636f6d";

fn feint(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_feint"))
        .args(args)
        .output()
        .expect("the feint binary runs")
}

fn stdout(output: &Output) -> String {
    String::from_utf8(output.stdout.clone()).expect("stdout is UTF-8")
}

fn stderr(output: &Output) -> String {
    String::from_utf8(output.stderr.clone()).expect("stderr is UTF-8")
}

/// Checks that `args` fail with exit 2, nothing on stdout and one `feint: ` line on stderr
/// that contains `expected`.
fn assert_usage_error(args: &[&str], expected: &str) {
    let output = feint(args);
    let stderr = stderr(&output);
    assert_eq!(output.status.code(), Some(2), "{args:?}: {stderr}");
    assert!(output.stdout.is_empty(), "{args:?} printed to stdout");
    assert_eq!(stderr.lines().count(), 1, "{args:?}: {stderr:?}");
    assert!(stderr.starts_with("feint: "), "{args:?}: {stderr:?}");
    assert!(
        stderr.contains(expected),
        "{args:?}: {stderr:?} lacks {expected:?}"
    );
}

#[test]
fn help_is_printed_for_every_spelling() {
    for args in [&["--help"][..], &["-h"], &["help"]] {
        let output = feint(args);
        assert!(output.status.success(), "{args:?}");
        let text = stdout(&output);
        assert!(text.contains("feint run [OPTIONS] SECRET"), "{args:?}");
        assert!(text.contains("generate-secret"));
        assert!(output.stderr.is_empty());
    }
    for args in [&["run", "--help"][..], &["help", "run"], &["run", "-h"]] {
        let output = feint(args);
        assert!(output.status.success(), "{args:?}");
        let text = stdout(&output);
        for flag in [
            "--bind",
            "--dc",
            "--front",
            "--public",
            "--qr",
            "--replay-cache",
            "--verbose",
        ] {
            assert!(text.contains(flag), "{args:?} lacks {flag}");
        }
    }
    let output = feint(&["generate-secret", "--help"]);
    assert!(output.status.success());
    assert!(stdout(&output).contains("--base64"));
    let output = feint(&["access", "--help"]);
    assert!(output.status.success());
    assert!(stdout(&output).contains("Usage: feint access [--qr] --public ADDR[:PORT] SECRET"));
}

#[test]
fn version_prints_name_and_version() {
    for flag in ["--version", "-V"] {
        let output = feint(&[flag]);
        assert!(output.status.success());
        assert_eq!(
            stdout(&output),
            format!("feint {}\n", env!("CARGO_PKG_VERSION"))
        );
    }
}

#[test]
fn generate_secret_prints_a_fresh_hex_secret() {
    let first = feint(&["generate-secret", "Example.COM"]);
    assert!(first.status.success(), "{}", stderr(&first));
    let text = stdout(&first);
    let line = text.strip_suffix('\n').expect("one line");
    assert!(
        line.starts_with("ee") && line.ends_with("6578616d706c652e636f6d"),
        "{line}"
    );
    assert_eq!(line.len(), 2 + 32 + 2 * "example.com".len());
    let secret = Secret::parse(line).expect("the output parses");
    assert_eq!(secret.domain, "example.com");
    let second = stdout(&feint(&["generate-secret", "example.com"]));
    assert_ne!(text, second, "two secrets share a key");
}

#[test]
fn generate_secret_base64_is_accepted_by_access() {
    let output = feint(&["generate-secret", "--base64", "example.com"]);
    assert!(output.status.success());
    let text = stdout(&output);
    let base64 = text.trim_end();
    assert!(base64.starts_with('7') && !base64.contains('='), "{base64}");
    let secret = Secret::parse(base64).expect("the output parses");

    let output = feint(&["access", "--public", "203.0.113.7", base64]);
    assert!(output.status.success(), "{}", stderr(&output));
    let query = format!("server=203.0.113.7&port=443&secret={}", secret.to_hex());
    assert_eq!(
        stdout(&output),
        format!("tg://proxy?{query}\nhttps://t.me/proxy?{query}\n")
    );
}

#[test]
fn access_prints_links_with_the_public_port() {
    let output = feint(&["access", "--public", "[2001:db8::1]:8443", SECRET_HEX]);
    assert!(output.status.success(), "{}", stderr(&output));
    let text = stdout(&output);
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(
        lines,
        [
            format!("tg://proxy?server=2001%3Adb8%3A%3A1&port=8443&secret={SECRET_HEX}"),
            format!("https://t.me/proxy?server=2001%3Adb8%3A%3A1&port=8443&secret={SECRET_HEX}"),
        ]
    );
}

#[test]
fn access_prints_links_for_every_public_address() {
    let output = feint(&[
        "access",
        "--public",
        "203.0.113.7",
        "--public",
        "[2001:db8::1]",
        SECRET_HEX,
    ]);
    assert!(output.status.success(), "{}", stderr(&output));
    let servers: Vec<String> = stdout(&output)
        .lines()
        .map(|line| line.split('&').next().unwrap_or("").to_owned())
        .collect();
    assert_eq!(
        servers,
        [
            "tg://proxy?server=203.0.113.7",
            "https://t.me/proxy?server=203.0.113.7",
            "tg://proxy?server=2001%3Adb8%3A%3A1",
            "https://t.me/proxy?server=2001%3Adb8%3A%3A1",
        ]
    );
}

#[test]
fn access_qr_draws_each_tg_link_as_a_code_that_scans() {
    let output = feint(&[
        "access",
        "--qr",
        "--public",
        "203.0.113.7",
        "--public",
        "[2001:db8::1]:8443",
        SECRET_HEX,
    ]);
    assert!(output.status.success(), "{}", stderr(&output));
    let text = stdout(&output);
    let tg_links: Vec<String> = text
        .lines()
        .filter(|line| line.starts_with("tg://"))
        .map(str::to_owned)
        .collect();
    assert_eq!(tg_links.len(), 2, "{text}");
    assert_eq!(qr::decode_all(&text), tg_links, "{text}");
    assert!(!text.contains('\x1b'), "escape codes on a pipe");

    let plain = stdout(&feint(&["access", "--public", "203.0.113.7", SECRET_HEX]));
    assert!(qr::decode_all(&plain).is_empty());
    assert_eq!(plain.lines().count(), 2);
}

#[test]
fn access_without_public_says_to_pass_it() {
    assert_usage_error(&["access", SECRET_HEX], "access: pass --public");
}

#[test]
fn addresses_no_client_can_dial_are_refused() {
    for address in ["0.0.0.0", "[::]", "127.0.0.1:443", "[::1]"] {
        for command in ["access", "run"] {
            assert_usage_error(
                &[command, "--public", address, SECRET_HEX],
                "is not an address a client can dial",
            );
        }
    }
}

#[test]
fn urls_are_refused_with_the_expected_form() {
    assert_usage_error(
        &["access", "--public", "http://x.y", SECRET_HEX],
        "--public: \"http://x.y\": give HOST[:PORT] without a scheme or path, such as example.com:443",
    );
    assert_usage_error(
        &["run", "--front", "https://example.com/", SECRET_HEX],
        "--front: \"https://example.com/\": give HOST[:PORT] without a scheme or path",
    );
    assert_usage_error(
        &["run", "--front", "example.com:https", SECRET_HEX],
        "--front: \"example.com:https\" is not HOST[:PORT]: \"https\" is not a port",
    );
}

#[test]
fn bad_command_lines_exit_2_with_one_line() {
    let cases: &[(&[&str], &str)] = &[
        (&[], "missing command"),
        (&["serve"], "unknown command"),
        (&["--frobnicate"], "unknown option '--frobnicate'"),
        (&["run"], "missing SECRET"),
        (&["doctor"], "doctor: missing SECRET"),
        (
            &["doctor", "--frobnicate", SECRET_HEX],
            "see `feint doctor --help`",
        ),
        (
            &["run", "--frobnicate", SECRET_HEX],
            "unknown option '--frobnicate'",
        ),
        (
            &["run", "dd000102030405060708090a0b0c0d0e0f"],
            "feint only speaks FakeTLS",
        ),
        (
            &["run", "000102030405060708090a0b0c0d0e0f"],
            "feint generate-secret DOMAIN",
        ),
        (&["run", "ee0g"], "neither hex nor base64"),
        (&["run", "ee000102030405060708090a0b0c0d0e0f"], "too short"),
        (
            &["run", "ee000102030405060708090a0b0c0d0e0f414243442e636f6d"],
            "domain",
        ),
        (&["run", "--bind", "0.0.0.0", SECRET_HEX], "--bind"),
        (&["run", "--dc", "9=127.0.0.1:443", SECRET_HEX], "--dc"),
        (&["run", "--front", "::1:443", SECRET_HEX], "--front"),
        (&["run", "--time-skew", "0s", SECRET_HEX], "--time-skew"),
        (
            &["run", "--replay-cache", "1KiB", SECRET_HEX],
            "--replay-cache",
        ),
        (
            &["run", "--max-connections", "0", SECRET_HEX],
            "--max-connections",
        ),
        (
            &["run", "--idle-timeout", "forever", SECRET_HEX],
            "--idle-timeout",
        ),
        (&["run", "--prefer-ip", "ipv6", SECRET_HEX], "--prefer-ip"),
        (
            &["run", "--time-skew", "500ms", SECRET_HEX],
            "--time-skew: 500ms is not whole seconds, as a hello's time is; the smallest is 1s",
        ),
        (
            &["run", "--handshake-timeout", "1ms", SECRET_HEX],
            "--handshake-timeout: 1ms is shorter than the timer's tick; the smallest is 100ms",
        ),
        (
            &["run", "--idle-timeout", "50ms", SECRET_HEX],
            "--idle-timeout: 50ms is shorter than the timer's tick; the smallest is 100ms",
        ),
        (&["run", SECRET_HEX, "--bind"], "--bind needs a value"),
        (&["generate-secret"], "missing DOMAIN"),
        (&["generate-secret", "abc"], "not a DNS name"),
        (&["generate-secret", "under_score.com"], "not a DNS name"),
        (&["access"], "missing SECRET"),
        (&["access", "--public", "a b", SECRET_HEX], "--public"),
        (&["help", "serve"], "unknown command"),
    ];
    for (args, expected) in cases {
        assert_usage_error(args, expected);
    }
}

#[test]
fn errors_never_print_the_key() {
    let output = feint(&["run", "--bind", "nowhere", SECRET_HEX]);
    assert_eq!(output.status.code(), Some(2));
    assert!(!stderr(&output).contains("000102030405060708090a0b0c0d0e0f"));
}

/// The README quotes every command's help, so a flag change must update it too.
#[test]
fn readme_quotes_the_current_help() {
    let readme = include_str!("../README.md");
    for args in [
        &["--help"][..],
        &["run", "--help"],
        &["generate-secret", "--help"],
        &["access", "--help"],
        &["doctor", "--help"],
    ] {
        let help = stdout(&feint(args));
        assert!(
            readme.contains(&help),
            "README.md does not quote `feint {}`",
            args.join(" ")
        );
    }
}

#[test]
fn proxy_protocol_and_upstream_flags_are_documented_and_checked() {
    let help = stdout(&feint(&["run", "--help"]));
    for flag in [
        "--proxy-protocol",
        "--front-proxy-protocol",
        "--upstream socks5://",
        "--front-via-upstream",
    ] {
        assert!(help.contains(flag), "run --help lacks {flag}");
    }
    let cases: &[(&[&str], &str)] = &[
        (
            &["run", "--upstream", "127.0.0.1:1080", SECRET_HEX],
            "--upstream: not a socks5://",
        ),
        (
            &[
                "run",
                "--upstream",
                "socks5://u:@127.0.0.1:1080",
                SECRET_HEX,
            ],
            "--upstream: PASS must be 1 to 255 bytes",
        ),
        (
            &["run", "--upstream", "socks5://127.0.0.1:0", SECRET_HEX],
            "--upstream:",
        ),
        (
            &["run", SECRET_HEX, "--upstream"],
            "--upstream needs a value",
        ),
        (
            &["run", "--front-via-upstream", SECRET_HEX],
            "--front-via-upstream needs --upstream",
        ),
        (
            &["run", "--proxy-protocol=yes", SECRET_HEX],
            "--proxy-protocol takes no value",
        ),
        (
            &["run", "--front-proxy-protocol=v2", SECRET_HEX],
            "--front-proxy-protocol takes no value",
        ),
    ];
    for (args, expected) in cases {
        assert_usage_error(args, expected);
    }
}
