//! Running out of file descriptors: accept fails with EMFILE, feint pauses accepting instead of
//! spinning on the error, and serves again once descriptors are free.

use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

use feint_testkit::dc::DcMode;
use feint_testkit::obfs2::frame_padded;
use feint_testkit::{client, feint, ClientOptions, FakeDc, FakeTlsClient, Feint, Secret};

const WAIT: Duration = Duration::from_secs(10);

fn bin() -> PathBuf {
    feint::binary(env!("CARGO_BIN_EXE_feint"))
}

/// user + system CPU seconds of a process, from /proc.
fn cpu_seconds(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let after_name = stat.rsplit(')').next().unwrap_or("");
    let fields: Vec<&str> = after_name.split_whitespace().collect();
    // Fields 14 and 15 of stat(5), counted after the name: utime and stime in clock ticks.
    let ticks: u64 = fields
        .get(11..13)
        .map(|f| f.iter().filter_map(|v| v.parse::<u64>().ok()).sum())
        .unwrap_or(0);
    ticks as f64 / 100.0
}

#[test]
fn out_of_descriptors_pauses_accepts_and_recovers() {
    let secret = Secret::random("www.example.com");
    let dc = FakeDc::start(DcMode::Echo).unwrap();
    let args = [
        "--threads",
        "1",
        "--front",
        "127.0.0.1:9",
        "--dc",
        &format!("2={}", dc.addr()),
    ]
    .map(String::from);
    let feint = Feint::start(bin(), &secret, &args).unwrap();
    let limit = Command::new("prlimit")
        .args(["--pid", &feint.pid().to_string(), "--nofile=32:32"])
        .status()
        .expect("prlimit (util-linux) runs");
    assert!(limit.success(), "prlimit failed");

    let held: Vec<_> = (0..48)
        .filter_map(|_| client::connect(feint.addr(), WAIT).ok())
        .collect();
    let deadline = Instant::now() + WAIT;
    while !feint.output().contains("pausing accepts") && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(
        feint.output().contains("pausing accepts"),
        "no EMFILE seen:\n{}",
        feint.output()
    );
    let before = cpu_seconds(feint.pid());
    std::thread::sleep(Duration::from_secs(1));
    let spent = cpu_seconds(feint.pid()) - before;
    // Printed, not asserted (tests make no timing claims): a spinning accept shows ~1 s here.
    eprintln!("feint used {spent:.2} s of CPU in 1 s while out of descriptors");
    drop(held);

    // Descriptors come back as the held connections close; a valid client is served again.
    let deadline = Instant::now() + WAIT;
    let served = loop {
        let attempt = FakeTlsClient::connect(feint.addr(), &secret, &ClientOptions::default())
            .and_then(|mut c| {
                let data = frame_padded(b"after the drought");
                c.send(&data)?;
                Ok(c.recv_exact(data.len())? == data)
            });
        if matches!(attempt, Ok(true)) || Instant::now() >= deadline {
            break matches!(attempt, Ok(true));
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    assert!(served, "feint did not recover:\n{}", feint.output());
}
