//! Operations features of the real binary: `--metrics` scraped with curl (format, 404, limits,
//! the loopback warning, nothing listening without it), and `--allow`/`--block` files at start
//! and on SIGHUP. Tests that need the connection core to call the counters are ignored for now.

use std::fs;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use feint_testkit::dc::DcMode;
use feint_testkit::front::FrontMode;
use feint_testkit::obfs2::frame_padded;
use feint_testkit::tempdir::TempDir;
use feint_testkit::{client, feint, ClientOptions, FakeDc, FakeTlsClient, Feint};
use feint_testkit::{RecordingFront, Secret};

const DOMAIN: &str = "www.example.com";
const WAIT: Duration = Duration::from_secs(10);

fn bin() -> PathBuf {
    feint::binary(env!("CARGO_BIN_EXE_feint"))
}

fn start(args: &[&str]) -> Feint {
    let args: Vec<String> = args.iter().map(|s| s.to_string()).collect();
    Feint::start(bin(), &Secret::random(DOMAIN), &args).expect("feint starts")
}

/// Waits (bounded) until feint has printed a line containing `text`; returns that line.
fn wait_for_line(feint: &Feint, text: &str) -> String {
    let end = Instant::now() + WAIT;
    for _ in 0..1000 {
        let output = feint.output();
        if let Some(line) = output.lines().find(|line| line.contains(text)) {
            return line.to_owned();
        }
        if Instant::now() >= end {
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    panic!("no line with {text:?} in:\n{}", feint.output());
}

/// The address from `metrics on http://ADDR/metrics`.
fn metrics_addr(feint: &Feint) -> SocketAddr {
    let line = wait_for_line(feint, "metrics on http://");
    let rest = line.split("http://").nth(1).expect("a URL");
    rest.trim_end_matches("/metrics")
        .parse()
        .expect("an address")
}

/// Runs curl against `url` with `extra` arguments; returns its stdout.
fn curl(extra: &[&str], url: &str) -> String {
    let output = Command::new("curl")
        .args(["--silent", "--show-error", "--max-time", "5"])
        .args(extra)
        .arg(url)
        .output()
        .expect("curl runs (scripts/install-test-deps installs it)");
    String::from_utf8(output.stdout).expect("UTF-8 from curl")
}

fn status(address: SocketAddr, path: &str, method: &str) -> String {
    curl(
        &[
            "--output",
            "/dev/null",
            "--write-out",
            "%{http_code}",
            "--request",
            method,
        ],
        &format!("http://{address}{path}"),
    )
}

/// The body of a scrape, checked line by line against the text format 0.0.4.
fn scrape(address: SocketAddr) -> String {
    let response = curl(&["--include"], &format!("http://{address}/metrics"));
    let (head, body) = response.split_once("\r\n\r\n").expect("a head and a body");
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    assert!(
        head.lines()
            .any(|l| l == "Content-Type: text/plain; version=0.0.4; charset=utf-8"),
        "{head}"
    );
    let mut families = Vec::new();
    for line in body.lines() {
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            families.push(rest.split(' ').next().expect("a name").to_owned());
        } else if !line.starts_with("# HELP ") {
            let name = line.split(['{', ' ']).next().expect("a name");
            assert_eq!(families.last().map(String::as_str), Some(name), "{line}");
            let value = line.rsplit(' ').next().expect("a value");
            assert!(value.parse::<f64>().is_ok(), "{line}");
        }
    }
    body.to_owned()
}

/// The value of the sample `series` (name and labels exactly as rendered).
fn sample(body: &str, series: &str) -> f64 {
    body.lines()
        .find_map(|line| line.strip_prefix(series)?.strip_prefix(' '))
        .unwrap_or_else(|| panic!("{series} missing in\n{body}"))
        .parse()
        .expect("a number")
}

/// Sockets of process `pid` in the LISTEN state, read from /proc.
fn listening_sockets(pid: u32) -> usize {
    let mut inodes = Vec::new();
    for entry in fs::read_dir(format!("/proc/{pid}/fd")).expect("/proc fd") {
        let Ok(target) = fs::read_link(entry.expect("an fd").path()) else {
            continue;
        };
        let target = target.to_string_lossy().into_owned();
        if let Some(inode) = target
            .strip_prefix("socket:[")
            .and_then(|t| t.strip_suffix(']'))
        {
            inodes.push(inode.to_owned());
        }
    }
    let mut count = 0;
    for table in ["/proc/net/tcp", "/proc/net/tcp6"] {
        let text = fs::read_to_string(table).unwrap_or_default();
        for line in text.lines().skip(1) {
            let fields: Vec<&str> = line.split_whitespace().collect();
            if fields.get(3) == Some(&"0A")
                && fields
                    .get(9)
                    .is_some_and(|i| inodes.contains(&i.to_string()))
            {
                count += 1;
            }
        }
    }
    count
}

#[test]
fn nothing_but_the_proxy_listens_without_metrics() {
    let plain = start(&["--threads", "1"]);
    assert_eq!(listening_sockets(plain.pid()), 1, "{}", plain.output());
    assert!(!plain.output().contains("metrics on"));
    let scraped = start(&["--threads", "1", "--metrics", "127.0.0.1:0"]);
    metrics_addr(&scraped);
    assert_eq!(listening_sockets(scraped.pid()), 2, "{}", scraped.output());
}

#[test]
fn metrics_are_served_to_curl_in_the_text_format() {
    let feint = start(&["--threads", "2", "--metrics", "127.0.0.1:0"]);
    let address = metrics_addr(&feint);
    let body = scrape(address);
    for family in [
        "feint_connections_accepted_total",
        "feint_connections_active",
        "feint_handshakes_total",
        "feint_fronted_total",
        "feint_dc_dials_total",
        "feint_bytes_total",
        "feint_replay_table_entries",
        "feint_buffers_in_use",
        "feint_refused_total",
        "process_start_time_seconds",
    ] {
        assert!(body.contains(&format!("# TYPE {family} ")), "{family}");
        assert!(body.contains(&format!("# HELP {family} ")), "{family}");
    }
    assert_eq!(
        sample(&body, "feint_fronted_total{reason=\"bad_digest\"}"),
        0.0
    );
    assert_eq!(
        sample(&body, "feint_dc_dials_total{dc=\"-3\",result=\"timeout\"}"),
        0.0
    );
    let started = sample(&body, "process_start_time_seconds");
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("after 1970")
        .as_secs_f64();
    assert!(
        started <= now && now - started < 600.0,
        "{started} vs {now}"
    );
    assert!(!feint.output().contains("not a loopback address"));
}

#[test]
fn other_paths_and_methods_get_404() {
    let feint = start(&["--metrics", "127.0.0.1:0"]);
    let address = metrics_addr(&feint);
    assert_eq!(status(address, "/metrics", "GET"), "200");
    assert_eq!(status(address, "/", "GET"), "404");
    assert_eq!(status(address, "/metrics/x", "GET"), "404");
    assert_eq!(status(address, "/metrics", "POST"), "404");
    assert_eq!(status(address, "/metrics", "DELETE"), "404");
}

/// Reads until EOF or reset within the deadline; the bytes read, or None if still open.
fn read_until_closed(stream: &mut TcpStream) -> Option<Vec<u8>> {
    stream.set_read_timeout(Some(WAIT)).expect("timeout");
    let mut received = Vec::new();
    let mut chunk = [0u8; 4096];
    for _ in 0..1000 {
        match stream.read(&mut chunk) {
            Ok(0) => return Some(received),
            Ok(n) => received.extend_from_slice(&chunk[..n]),
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => return Some(received),
            Err(_) => return None,
        }
    }
    None
}

#[test]
fn oversized_and_slow_requests_are_closed_unanswered() {
    let feint = start(&["--metrics", "127.0.0.1:0"]);
    let address = metrics_addr(&feint);

    let mut oversized = client::connect(address, WAIT).expect("connects");
    let mut request = b"GET /metrics HTTP/1.1\r\nX-Filler: ".to_vec();
    request.resize(8192, b'a');
    // The server may close before taking it all; what matters is the answer.
    let _ = oversized.write_all(&request);
    let answer = read_until_closed(&mut oversized).expect("closed within the deadline");
    assert!(answer.is_empty(), "{:?}", String::from_utf8_lossy(&answer));

    let mut slow = client::connect(address, WAIT).expect("connects");
    slow.write_all(b"GET /metrics HTTP/1.1\r\n")
        .expect("written");
    let answer = read_until_closed(&mut slow).expect("closed within the deadline");
    assert!(answer.is_empty(), "{:?}", String::from_utf8_lossy(&answer));

    scrape(address);
}

#[test]
fn a_metrics_address_off_loopback_is_warned_about() {
    let feint = start(&["--metrics", "0.0.0.0:0"]);
    let line = wait_for_line(&feint, "not a loopback address");
    assert!(line.contains("--metrics 0.0.0.0:0"), "{line}");
    let port = metrics_addr(&feint).port();
    scrape(SocketAddr::from(([127, 0, 0, 1], port)));
}

#[test]
fn a_bad_list_file_stops_the_start_with_its_line() {
    let dir = TempDir::new("feint-lists").expect("temp dir");
    let path = dir.path().join("block.netset");
    fs::write(&path, "# header\n192.0.2.0/24\n192.0.2.0/40\n").expect("written");
    let secret = Secret::random(DOMAIN).to_hex();
    let args: Vec<String> = [
        "run",
        "--bind",
        "127.0.0.1:0",
        "--front",
        feint::NOWHERE,
        "--block",
        path.to_str().expect("UTF-8 path"),
        &secret,
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    let (status, output) = feint::run_to_exit(bin(), &args, WAIT).expect("runs");
    assert_eq!(status.and_then(|s| s.code()), Some(2), "{output}");
    let expected = format!("{} line 3: ", path.display());
    assert!(output.contains(&expected), "{output}");
    assert!(output.contains("prefix length"), "{output}");
    assert!(!output.contains("listening on"), "{output}");
}

fn sighup(feint: &Feint) {
    // SAFETY: kill with the pid of our own child and a valid signal number.
    let result = unsafe { libc::kill(feint.pid() as libc::pid_t, libc::SIGHUP) };
    assert_eq!(result, 0);
}

/// Waits until `text` has been printed `count` times in all.
fn wait_for_count(feint: &Feint, text: &str, count: usize) {
    let end = Instant::now() + WAIT;
    for _ in 0..1000 {
        if feint.output().matches(text).count() >= count {
            return;
        }
        if Instant::now() >= end {
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    panic!("{text:?} not printed {count} times:\n{}", feint.output());
}

#[test]
fn sighup_reloads_the_lists_and_keeps_them_through_a_bad_file() {
    let dir = TempDir::new("feint-lists").expect("temp dir");
    let block = dir.path().join("block.txt");
    fs::write(&block, "198.51.100.0/24\n").expect("written");
    let mut feint = start(&["--block", block.to_str().expect("UTF-8 path")]);
    wait_for_line(&feint, "address lists: blocking 1 range");

    fs::write(&block, "198.51.100.0/24\nnot-an-address\n").expect("written");
    sighup(&feint);
    let line = wait_for_line(&feint, "keeping the old address lists");
    assert!(line.contains("block.txt line 2: "), "{line}");

    fs::write(&block, "198.51.100.0/24\n2001:db8::/32\n198.51.100.0/25\n").expect("written");
    sighup(&feint);
    wait_for_count(&feint, "address lists reloaded: blocking 2 ranges", 1);
    assert!(feint.is_running());
}

#[test]
fn sighup_without_lists_changes_nothing() {
    let mut feint = start(&[]);
    sighup(&feint);
    wait_for_line(&feint, "no --allow or --block file to reload");
    assert!(feint.is_running());
}

#[test]
fn the_summary_line_comes_every_interval() {
    let quiet = start(&["--stats-every", "0"]);
    let feint = start(&["--stats-every", "1s"]);
    wait_for_count(
        &feint,
        "stats: 0 connections active; since the last line 0 genuine",
        2,
    );
    let line = wait_for_line(&feint, "stats: ");
    assert!(
        line.ends_with("0 bytes from DCs to clients, 0 DC dial failures"),
        "{line}"
    );
    // Two intervals have passed for `quiet` too.
    assert!(!quiet.output().contains("stats: "), "{}", quiet.output());
}

/// A genuine client sends one frame through `feint` at `address` and gets it back.
fn echo_through(address: SocketAddr, secret: &Secret) -> std::io::Result<FakeTlsClient> {
    let mut client = FakeTlsClient::connect(address, secret, &ClientOptions::default())?;
    let data = frame_padded(b"metrics, please");
    client.send(&data)?;
    assert_eq!(client.recv_exact(data.len())?, data);
    Ok(client)
}

fn start_with_dc(secret: &Secret, dc: &FakeDc, front: &RecordingFront, extra: &[&str]) -> Feint {
    let mut args = vec![
        "--front".to_string(),
        front.addr().to_string(),
        "--dc".to_string(),
        format!("2={}", dc.addr()),
    ];
    args.extend(extra.iter().map(|s| s.to_string()));
    Feint::start(bin(), secret, &args).expect("feint starts")
}

#[test]
fn counters_move_with_a_genuine_session_and_a_fronted_probe() {
    let secret = Secret::random(DOMAIN);
    let dc = FakeDc::start(DcMode::Echo).expect("a fake DC");
    let front = RecordingFront::start(FrontMode::Record).expect("a front");
    let feint = start_with_dc(&secret, &dc, &front, &["--metrics", "127.0.0.1:0"]);
    let address = metrics_addr(&feint);

    let session = echo_through(feint.addr(), &secret).expect("a genuine session");
    let mut probe = client::connect(feint.addr(), WAIT).expect("connects");
    probe
        .write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        .expect("written");
    front.wait_until(WAIT, |connections| {
        connections
            .iter()
            .any(|c| c.received.starts_with(b"GET / "))
    });

    let body = scrape(address);
    assert_eq!(sample(&body, "feint_connections_accepted_total"), 2.0);
    assert_eq!(sample(&body, "feint_connections_active"), 2.0);
    assert_eq!(sample(&body, "feint_handshakes_total"), 1.0);
    assert_eq!(
        sample(&body, "feint_fronted_total{reason=\"not_tls\"}"),
        1.0
    );
    assert_eq!(
        sample(&body, "feint_dc_dials_total{dc=\"2\",result=\"ok\"}"),
        1.0
    );
    assert!(sample(&body, "feint_bytes_total{direction=\"client_to_dc\"}") > 0.0);
    assert!(sample(&body, "feint_bytes_total{direction=\"dc_to_client\"}") > 0.0);
    assert!(sample(&body, "feint_bytes_total{direction=\"fronted_in\"}") >= 27.0);
    assert_eq!(sample(&body, "feint_replay_table_entries"), 1.0);
    assert!(sample(&body, "feint_buffers_in_use") >= 0.0);
    drop((session, probe));
}

#[test]
fn sighup_blocks_new_connections_without_cutting_a_live_one() {
    let dir = TempDir::new("feint-lists").expect("temp dir");
    let block = dir.path().join("block.netset");
    fs::write(&block, "# nothing blocked yet\n").expect("written");
    let secret = Secret::random(DOMAIN);
    let dc = FakeDc::start(DcMode::Echo).expect("a fake DC");
    let front = RecordingFront::start(FrontMode::Record).expect("a front");
    // Every loopback connection comes from 127.0.0.1 (the kernel's source for 127.0.0.0/8),
    // so the test blocks that address, then lifts the block again.
    let feint = start_with_dc(
        &secret,
        &dc,
        &front,
        &["--metrics", "127.0.0.1:0", "--block", block_path(&block)],
    );
    let address = feint.addr();
    let mut live = echo_through(address, &secret).expect("served before the reload");

    fs::write(&block, "127.0.0.1/32\n").expect("written");
    sighup(&feint);
    wait_for_line(&feint, "address lists reloaded: blocking 1 range");

    let data = frame_padded(b"still here");
    live.send(&data).expect("the live session takes more");
    assert_eq!(live.recv_exact(data.len()).expect("and answers"), data);

    let options = ClientOptions {
        timeout: Duration::from_secs(3),
        ..ClientOptions::default()
    };
    assert!(FakeTlsClient::connect(address, &secret, &options).is_err());
    let fronted = front.wait_until(WAIT, |connections| {
        connections
            .iter()
            .any(|c| c.received.first() == Some(&0x16))
    });
    assert!(
        fronted.iter().any(|c| c.received.first() == Some(&0x16)),
        "the blocked hello reached the front"
    );
    let body = scrape(metrics_addr(&feint));
    assert_eq!(sample(&body, "feint_refused_total{why=\"blocked\"}"), 1.0);

    fs::write(&block, "# nothing blocked\n").expect("written");
    sighup(&feint);
    wait_for_line(&feint, "address lists reloaded: blocking 0 ranges");
    echo_through(address, &secret).expect("served again once the block is lifted");
}

fn block_path(path: &Path) -> &str {
    path.to_str().expect("UTF-8 path")
}
