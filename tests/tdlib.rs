//! TDLib, the real client, through feint (tests/tdlib/run.py): `testProxy` for DC 1..5, each
//! routed to its own fake DC, which answers `resPQ` with an unknown key fingerprint. The script
//! runs inside a network namespace with nothing but loopback, so TDLib cannot reach Telegram.
//!
//! Needs `<repo>/.venv/bin/python` (or `FEINT_PYTHON`) with `tdjson` and `cryptography`, root
//! for `unshare --net`, and `ip`: all from scripts/install-test-deps. Without them the tests are
//! skipped, except under CI=true, where they fail.

use std::path::{Path, PathBuf};
use std::time::Duration;

use feint_testkit::feint::{binary, run_to_exit};

const SCRIPT_TIMEOUT: Duration = Duration::from_secs(240);

fn in_ci() -> bool {
    std::env::var("CI").is_ok_and(|v| v == "true" || v == "1")
}

/// The venv python, or `None` (and a note) when the test should be skipped.
fn python() -> Option<PathBuf> {
    let repo = Path::new(env!("CARGO_MANIFEST_DIR"));
    let python = std::env::var_os("FEINT_PYTHON")
        .map(PathBuf::from)
        .unwrap_or_else(|| repo.join(".venv/bin/python"));
    let missing = if !python.exists() {
        Some(format!("{} not found", python.display()))
    } else if Path::new("/usr/bin/unshare").exists() || Path::new("/bin/unshare").exists() {
        // SAFETY: geteuid has no preconditions.
        if unsafe { libc::geteuid() } != 0 {
            Some("unshare --net needs root".to_string())
        } else {
            None
        }
    } else {
        Some("unshare not found".to_string())
    };
    match missing {
        None => Some(python),
        Some(why) if in_ci() => panic!("{why}: run scripts/install-test-deps"),
        Some(why) => {
            eprintln!("skipping the TDLib test: {why} (run scripts/install-test-deps)");
            None
        }
    }
}

/// Runs run.py with `args` in a fresh network namespace; returns its output on success.
fn run_script(python: &Path, args: &[&str]) -> String {
    let repo = Path::new(env!("CARGO_MANIFEST_DIR"));
    let script = repo.join("tests/tdlib/run.py");
    // `$0` and `$@` carry the paths, so nothing is re-parsed by the shell.
    let mut argv: Vec<String> = [
        "--net",
        "--",
        "sh",
        "-c",
        "ip link set lo up && exec \"$0\" \"$@\"",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    argv.push(python.display().to_string());
    argv.push(script.display().to_string());
    argv.extend(args.iter().map(|s| s.to_string()));
    let (status, output) = run_to_exit("unshare", &argv, SCRIPT_TIMEOUT).expect("run unshare");
    eprintln!("{output}");
    assert!(
        status.is_some_and(|s| s.success()),
        "run.py {args:?} failed ({status:?}); output above"
    );
    output
}

/// The harness itself, without feint: each fake DC acts as a `dd` proxy. If this fails, the
/// TDLib setup is broken, not feint.
#[test]
fn tdlib_reaches_the_fake_dcs_directly() {
    let Some(python) = python() else { return };
    let output = run_script(&python, &["--direct"]);
    assert!(output.contains("tdlib: 5 passed, 0 failed"));
}

#[test]
fn tdlib_talks_to_every_dc_through_feint() {
    let Some(python) = python() else { return };
    let feint = binary(env!("CARGO_BIN_EXE_feint"));
    let feint = feint.display().to_string();
    let output = run_script(&python, &["--feint", &feint]);
    assert!(output.contains("tdlib: 5 passed, 0 failed"));
}

/// The front answers in X25519MLKEM768, and TDLib offers it: feint's reply carries a 1120-byte
/// hybrid key share, and TDLib still accepts it.
#[test]
fn tdlib_accepts_a_reply_in_x25519mlkem768() {
    let Some(python) = python() else { return };
    let feint = binary(env!("CARGO_BIN_EXE_feint"));
    let feint = feint.display().to_string();
    let output = run_script(&python, &["--feint", &feint, "--hybrid-front"]);
    assert!(output.contains("tdlib: 5 passed, 0 failed"));
    assert!(output.contains("group x25519mlkem768 (1120-byte share)"));
}
