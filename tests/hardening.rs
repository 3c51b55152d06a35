//! Issue 7: each attack a stranger without the secret can make, tried against the real binary
//! with nginx as the front, and the behaviour feint must keep under it. `FEINT_BIN` runs these
//! against another build (an older one must fail them).

use std::io::{self, Read, Write};
use std::net::{Ipv4Addr, Shutdown, SocketAddr, TcpListener, TcpStream};
use std::os::fd::AsRawFd;
use std::os::unix::fs::PermissionsExt;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use feint_testkit::dc::DcMode;
use feint_testkit::hello::RANDOM_RANGE;
use feint_testkit::obfs2::frame_padded;
use feint_testkit::record::{self, HANDSHAKE};
use feint_testkit::tempdir::TempDir;
use feint_testkit::wire::{self, mask_date, Ending};
use feint_testkit::{
    client, feint, hello, reply, unix_now, ClientOptions, FakeDc, FakeTlsClient, Feint, Nginx,
    Secret,
};

const DOMAIN: &str = "www.example.com";
const WAIT: Duration = Duration::from_secs(10);
/// nginx answers in milliseconds; this much silence means its answer is complete.
const QUIET: Duration = Duration::from_millis(800);

fn bin() -> PathBuf {
    feint::binary(env!("CARGO_BIN_EXE_feint"))
}

/// True if `feint run --help` lists `flag`, so a flag an older build lacks can be left out when
/// these tests run against it.
fn supports(flag: &str) -> bool {
    static HELP: OnceLock<String> = OnceLock::new();
    HELP.get_or_init(|| {
        let args = ["run".to_string(), "--help".to_string()];
        feint::run_to_exit(bin(), &args, WAIT)
            .map(|(_, text)| text)
            .unwrap_or_default()
    })
    .contains(flag)
}

/// Which of nginx's ports is the front.
#[derive(Clone, Copy)]
enum FrontPort {
    Tls,
    Http,
}

struct Rig {
    secret: Secret,
    nginx: Nginx,
    dc: FakeDc,
    feint: Feint,
}

/// nginx as the front, an echoing DC 2, and feint with `extra`.
fn rig(port: FrontPort, extra: &[&str]) -> Rig {
    let secret = Secret::random(DOMAIN);
    let nginx = Nginx::start(DOMAIN).unwrap();
    let dc = FakeDc::start(DcMode::Echo).unwrap();
    let front = match port {
        FrontPort::Tls => nginx.tls_addr,
        FrontPort::Http => nginx.http_addr,
    };
    let mut args = vec![
        "--front".to_string(),
        front.to_string(),
        "--dc".to_string(),
        format!("2={}", dc.addr()),
        "-v".to_string(),
    ];
    args.extend(extra.iter().map(|s| s.to_string()));
    let feint = Feint::start(bin(), &secret, &args).unwrap();
    Rig {
        secret,
        nginx,
        dc,
        feint,
    }
}

fn options(timeout: Duration) -> ClientOptions {
    ClientOptions {
        timeout,
        ..ClientOptions::default()
    }
}

/// One frame through an established relay and back.
fn echo(client: &mut FakeTlsClient, text: &[u8]) -> io::Result<()> {
    let data = frame_padded(text);
    client.send(&data)?;
    let back = client.recv_exact(data.len())?;
    if back != data {
        return Err(io::Error::other("the echo differs from what was sent"));
    }
    Ok(())
}

/// A new genuine client completes the handshake and one echo within `limit`; returns the time.
fn genuine_within(r: &Rig, limit: Duration) -> Result<Duration, String> {
    let start = Instant::now();
    let mut c = FakeTlsClient::connect(r.feint.addr(), &r.secret, &options(limit))
        .map_err(|e| format!("no reply after {:?}: {e}", start.elapsed()))?;
    let replied = start.elapsed();
    echo(&mut c, b"hello through the relay").map_err(|e| format!("no echo: {e}"))?;
    if replied > limit {
        return Err(format!("reply after {replied:?}"));
    }
    Ok(replied)
}

/// `hello` with its timestamp moved from `from` to `to`: bytes 28..32 of the client random are
/// the digest XOR the time (docs/PROTOCOL.md §2.2), so this needs no key.
fn restamp(hello: &[u8], from: u32, to: u32) -> Vec<u8> {
    let mut out = hello.to_vec();
    let time = RANDOM_RANGE.start + 28..RANDOM_RANGE.end;
    for (byte, delta) in out[time].iter_mut().zip((from ^ to).to_le_bytes()) {
        *byte ^= delta;
    }
    out
}

/// Sends `hello` on a new connection; returns what came back until quiet.
fn answer_to(r: &Rig, hello: &[u8]) -> Vec<u8> {
    wire::exchange(r.feint.addr(), hello, false, QUIET, WAIT)
        .unwrap()
        .0
}

/// Attack 1: a genuine hello, recorded and re-stamped to the current time, replayed after the
/// old table's time horizon (2 × skew + 60 s = 62 s with `--time-skew 1s`) must still be
/// fronted. The table must forget by memory only, so no wait can make it forget; the test waits
/// 64 s, just past where the old build forgot, because no shorter wait shows the difference.
#[test]
fn restamped_replay_is_fronted_even_after_a_minute() {
    let r = rig(FrontPort::Tls, &["--time-skew", "1s"]);
    let stamp = unix_now();
    let genuine = ClientOptions {
        time: Some(stamp),
        ..ClientOptions::default()
    };
    let recorded = genuine.hello(&r.secret);
    let stream = client::connect(r.feint.addr(), WAIT).unwrap();
    let mut first = FakeTlsClient::handshake(stream, &r.secret, &genuine, recorded.clone())
        .expect("the genuine first use is served");
    echo(&mut first, b"the real session").unwrap();
    drop(first);

    let fronted = |when: &str| {
        let now = unix_now();
        let replay = restamp(&recorded, stamp, now);
        assert_eq!(hello::verify(&replay, &r.secret.key), Some(now));
        let answer = answer_to(&r, &replay);
        assert!(
            !reply::verify(&answer, &hello::client_random(&replay), &r.secret.key),
            "{when}: feint served a re-stamped replay of a used hello\nfeint:\n{}",
            r.feint.output()
        );
        let (records, _) = record::structure(&answer);
        assert!(
            records.first().is_some_and(|(kind, _)| *kind == HANDSHAKE),
            "{when}: the replay did not get nginx's TLS answer: {records:?}"
        );
    };
    fronted("at once");

    // Bounded: 64 s of one-second sleeps at most, then a little slack.
    for _ in 0..70 {
        if unix_now() >= stamp + 64 {
            break;
        }
        std::thread::sleep(Duration::from_secs(1));
    }
    fronted("64 s later");
    genuine_within(&r, Duration::from_secs(3)).expect("a fresh hello is still served");
    assert_eq!(
        r.dc.connections().len(),
        2,
        "only the two genuine clients reach the DC"
    );
}

/// An HTTP GET for nginx's 3 MiB `/big.bin`, four times over one connection.
fn download_requests() -> Vec<u8> {
    let one = format!("GET /big.bin HTTP/1.1\r\nHost: {DOMAIN}\r\n\r\n");
    one.repeat(4).into_bytes()
}

/// Attack 2: with `--buffers 8 --threads 1`, twelve fronted downloads whose clients never read
/// must not stop an established relay, a new genuine client or a new prober.
#[test]
fn unread_fronted_downloads_starve_no_one() {
    let r = rig(FrontPort::Http, &["--buffers", "8", "--threads", "1"]);
    let mut relay =
        FakeTlsClient::connect(r.feint.addr(), &r.secret, &options(Duration::from_secs(2)))
            .unwrap();
    echo(&mut relay, b"before the downloads").unwrap();

    let downloads: Vec<TcpStream> = (0..12)
        .map(|_| {
            let mut s = client::connect(r.feint.addr(), WAIT).unwrap();
            s.write_all(&download_requests()).unwrap();
            s
        })
        .collect();
    // Loopback fills every kernel buffer on the way in well under this.
    std::thread::sleep(Duration::from_secs(2));

    let start = Instant::now();
    let relayed = echo(&mut relay, b"during the downloads");
    assert!(
        relayed.is_ok() && start.elapsed() < Duration::from_secs(2),
        "the established relay stalled: {relayed:?} after {:?}\nfeint:\n{}",
        start.elapsed(),
        r.feint.output()
    );
    let genuine = genuine_within(&r, Duration::from_secs(2));
    assert!(
        genuine.is_ok(),
        "a new genuine client: {genuine:?}\nfeint:\n{}",
        r.feint.output()
    );
    let request = format!("GET / HTTP/1.1\r\nHost: {DOMAIN}\r\nConnection: close\r\n\r\n");
    let start = Instant::now();
    let (via, _) = wire::exchange(r.feint.addr(), request.as_bytes(), false, QUIET, WAIT).unwrap();
    let (direct, _) =
        wire::exchange(r.nginx.http_addr, request.as_bytes(), false, QUIET, WAIT).unwrap();
    assert!(
        !via.is_empty() && mask_date(&via) == mask_date(&direct),
        "a new prober got {} bytes, not nginx's page, after {:?}\nfeint:\n{}",
        via.len(),
        start.elapsed(),
        r.feint.output()
    );
    // The attack was real: every download was fronted and is waiting on its unread client.
    for (i, mut d) in downloads.into_iter().enumerate() {
        let mut head = [0u8; 12];
        let read = d.read_exact(&mut head);
        assert!(
            read.is_ok() && head == *b"HTTP/1.1 200",
            "download {i} got no answer from nginx: {read:?} {head:?}"
        );
    }
}

/// Keeps `count` connections open that each sent only `0x16`, replacing each one `every` after
/// it opened, until `stop`; at most `rounds` replacements.
fn one_byte_flood(
    addr: SocketAddr,
    count: usize,
    every: Duration,
    rounds: usize,
    stop: Arc<AtomicBool>,
) -> std::thread::JoinHandle<()> {
    let open = move || -> Option<(TcpStream, Instant)> {
        let mut s = client::connect(addr, WAIT).ok()?;
        s.write_all(&[0x16]).ok()?;
        Some((s, Instant::now()))
    };
    let mut held: Vec<(TcpStream, Instant)> = (0..count).filter_map(|_| open()).collect();
    std::thread::spawn(move || {
        for _ in 0..rounds {
            if stop.load(Ordering::SeqCst) {
                return;
            }
            if let Some(i) = held.iter().position(|(_, at)| at.elapsed() >= every) {
                held.swap_remove(i);
                if let Some(fresh) = open() {
                    held.push(fresh);
                }
            } else {
                std::thread::sleep(Duration::from_millis(20));
            }
        }
    })
}

/// Attack 3: with `--buffers 8 --threads 1`, sixteen connections that each sent one byte
/// `0x16` and reconnect just before `--handshake-timeout` must not delay a genuine handshake:
/// each of ten, over five seconds, is answered within 1 s.
#[test]
fn one_byte_hellos_do_not_delay_a_handshake() {
    let r = rig(
        FrontPort::Tls,
        &[
            "--buffers",
            "8",
            "--threads",
            "1",
            "--handshake-timeout",
            "4s",
        ],
    );
    let stop = Arc::new(AtomicBool::new(false));
    let flood = one_byte_flood(
        r.feint.addr(),
        16,
        Duration::from_millis(3500),
        2000,
        stop.clone(),
    );
    std::thread::sleep(Duration::from_millis(300));
    let mut results = Vec::new();
    for _ in 0..10 {
        results.push(genuine_within(&r, Duration::from_secs(1)));
        std::thread::sleep(Duration::from_millis(500));
    }
    stop.store(true, Ordering::SeqCst);
    flood.join().unwrap();
    assert!(
        results.iter().all(Result::is_ok),
        "genuine handshakes under the flood: {results:?}\nfeint:\n{}",
        r.feint.output()
    );
}

/// Attack 4: with `--max-connections 4 --threads 1` and four idle connections open, a fifth is
/// not reset: it waits in the listen backlog (connect succeeds, reads time out without error)
/// and is served once one of the four closes.
#[test]
fn a_connection_over_the_cap_waits_instead_of_being_reset() {
    let r = rig(
        FrontPort::Tls,
        &["--max-connections", "4", "--threads", "1"],
    );
    let mut idle: Vec<TcpStream> = (0..4)
        .map(|_| client::connect(r.feint.addr(), WAIT).unwrap())
        .collect();
    // Give the loop time to accept all four.
    std::thread::sleep(Duration::from_millis(300));

    let genuine = options(WAIT);
    let hello = genuine.hello(&r.secret);
    let mut fifth = client::connect(r.feint.addr(), WAIT).unwrap();
    fifth.write_all(&hello).unwrap();
    fifth
        .set_read_timeout(Some(Duration::from_millis(1500)))
        .unwrap();
    let mut byte = [0u8; 1];
    match fifth.read(&mut byte) {
        Err(e)
            if matches!(
                e.kind(),
                io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
            ) => {}
        other => panic!(
            "the fifth connection must wait, not get {other:?}\nfeint:\n{}",
            r.feint.output()
        ),
    }

    idle.remove(0).shutdown(Shutdown::Both).unwrap();
    fifth.set_read_timeout(Some(WAIT)).unwrap();
    let start = Instant::now();
    let answer = reply::read(&mut fifth);
    assert!(
        answer.as_ref().is_ok_and(|a| reply::verify(
            a,
            &hello::client_random(&hello),
            &r.secret.key
        )),
        "the fifth connection was not served once a slot freed: {:?} after {:?}\nfeint:\n{}",
        answer.map(|a| a.len()),
        start.elapsed(),
        r.feint.output()
    );
    assert!(
        start.elapsed() < Duration::from_secs(3),
        "served only after {:?}",
        start.elapsed()
    );
}

/// Attack 4, the per-address limit: with `--max-connections 4 --max-connections-per-ip 2`, four
/// idle connections from 127.0.0.1 cannot fill the cap: a genuine client from 127.0.0.2 is
/// served, and a third hello from 127.0.0.1 is not.
#[test]
fn one_address_cannot_fill_the_connection_cap() {
    let r = rig(
        FrontPort::Tls,
        &[
            "--max-connections",
            "4",
            "--max-connections-per-ip",
            "2",
            "--threads",
            "1",
        ],
    );
    let SocketAddr::V4(addr) = r.feint.addr() else {
        panic!("feint listens on 127.0.0.1")
    };
    let _idle: Vec<TcpStream> = (0..4)
        .filter_map(|_| client::connect(r.feint.addr(), WAIT).ok())
        .collect();
    std::thread::sleep(Duration::from_millis(300));

    let hello_from = |ip: Ipv4Addr| -> io::Result<bool> {
        let genuine = options(Duration::from_secs(2));
        let hello = genuine.hello(&r.secret);
        let mut s = client::connect_from(ip, addr, Duration::from_secs(2))?;
        s.write_all(&hello)?;
        let answer = reply::read(&mut s)?;
        Ok(reply::verify(
            &answer,
            &hello::client_random(&hello),
            &r.secret.key,
        ))
    };
    let other = hello_from(Ipv4Addr::new(127, 0, 0, 2));
    assert!(
        other.as_ref().is_ok_and(|served| *served),
        "a client from another address: {other:?}\nfeint:\n{}",
        r.feint.output()
    );
    let same = hello_from(Ipv4Addr::LOCALHOST);
    assert!(
        !same.as_ref().is_ok_and(|served| *served),
        "a third hello from 127.0.0.1 was served over --max-connections-per-ip 2"
    );
}

/// A loopback listener that drops every SYN: its accept queue (backlog 0, one entry) is full
/// and nobody accepts. Returns it with the connections that fill it.
fn syn_dropping_listener() -> (TcpListener, Vec<TcpStream>) {
    let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).unwrap();
    // SAFETY: listen on a socket we own; Linux lets a listening socket change its backlog.
    assert_eq!(unsafe { libc::listen(listener.as_raw_fd(), 0) }, 0);
    let addr = listener.local_addr().unwrap();
    let mut filling = Vec::new();
    for _ in 0..8 {
        match TcpStream::connect_timeout(&addr, Duration::from_millis(300)) {
            Ok(s) => filling.push(s),
            Err(_) => return (listener, filling),
        }
    }
    panic!("the listener's accept queue never filled");
}

/// Attack 5, front dial deadline: a prober whose front address drops SYNs is closed within
/// about 6 s (feint gives each front address 5 s), not left waiting for the kernel's
/// two-minute connect timeout. With no other address to try, feint closes the prober.
#[test]
fn a_front_that_drops_syns_costs_a_prober_seconds_not_minutes() {
    let (front, _filling) = syn_dropping_listener();
    let secret = Secret::random(DOMAIN);
    let mut args = vec![
        "--front".to_string(),
        front.local_addr().unwrap().to_string(),
        "-v".to_string(),
    ];
    if supports("--no-front-probe") {
        args.push("--no-front-probe".to_string());
    }
    let f = Feint::start(bin(), &secret, &args).unwrap();
    let start = Instant::now();
    let mut prober = client::connect(f.addr(), WAIT).unwrap();
    prober
        .write_all(format!("GET / HTTP/1.1\r\nHost: {DOMAIN}\r\n\r\n").as_bytes())
        .unwrap();
    let (bytes, ending) =
        wire::read_until_quiet(&mut prober, Duration::from_secs(8), Duration::from_secs(8));
    let elapsed = start.elapsed();
    assert!(
        matches!(ending, Ending::Eof | Ending::Reset) && elapsed < Duration::from_millis(7000),
        "the prober got {} bytes and {ending:?} after {elapsed:?}\nfeint:\n{}",
        bytes.len(),
        f.output()
    );
}

/// A script that runs feint in a mount namespace of its own where `hosts` is /etc/hosts, or
/// `None` (and a note) without root or `unshare`; under CI=true that is a failure.
fn feint_with_hosts(dir: &TempDir, hosts: &str) -> Option<PathBuf> {
    let unshare = ["/usr/bin/unshare", "/bin/unshare"]
        .iter()
        .any(|p| std::path::Path::new(p).exists());
    // SAFETY: geteuid has no preconditions.
    let root = unsafe { libc::geteuid() } == 0;
    if !unshare || !root {
        let why = "unshare --mount needs util-linux and root";
        assert!(
            !std::env::var("CI").is_ok_and(|v| v == "true" || v == "1"),
            "{why}: run scripts/install-test-deps"
        );
        eprintln!("skipping: {why}");
        return None;
    }
    let hosts_path = dir.path().join("hosts");
    std::fs::write(&hosts_path, hosts).unwrap();
    let script = dir.path().join("feint");
    // `$0` and `$@` carry the paths, so nothing is re-parsed by the shell; every step execs, so
    // the pid the kit kills is feint's.
    std::fs::write(
        &script,
        format!(
            "#!/bin/sh\nexec unshare --mount -- sh -c 'mount --bind \"$0\" /etc/hosts && exec \"$@\"' \
             '{}' '{}' \"$@\"\n",
            hosts_path.display(),
            bin().display()
        ),
    )
    .unwrap();
    std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).unwrap();
    Some(script)
}

/// Attack 5, front dial deadline with two addresses: the front's name resolves to a
/// SYN-dropping 127.0.0.1:P and a working 127.0.0.2:P (the resolver sorts 127.0.0.1 first; a
/// mount namespace gives feint its own /etc/hosts). A prober's bytes reach the second address
/// after the first one's 5 s, not after the kernel's two-minute connect timeout.
#[test]
fn a_front_that_drops_syns_hands_the_prober_to_the_next_address() {
    let (stalled, _filling) = syn_dropping_listener();
    let port = stalled.local_addr().unwrap().port();
    let second = TcpListener::bind((Ipv4Addr::new(127, 0, 0, 2), port)).unwrap();
    const ANSWER: &[u8] = b"HTTP/1.1 204 No Content\r\nServer: the second address\r\n\r\n";
    let server = std::thread::spawn(move || {
        let (mut s, _) = second.accept().ok()?;
        s.set_read_timeout(Some(WAIT)).ok()?;
        let mut request = [0u8; 1024];
        let n = s.read(&mut request).ok()?;
        s.write_all(ANSWER).ok()?;
        Some(request[..n].to_vec())
    });

    let dir = TempDir::new("feint-hosts").unwrap();
    let hosts = "127.0.0.2 front.test\n127.0.0.1 front.test\n";
    let Some(wrapper) = feint_with_hosts(&dir, hosts) else {
        return;
    };
    let secret = Secret::random(DOMAIN);
    let mut args = vec![
        "--front".to_string(),
        format!("front.test:{port}"),
        "-v".to_string(),
    ];
    if supports("--no-front-probe") {
        args.push("--no-front-probe".to_string());
    }
    let f = Feint::start(wrapper, &secret, &args).unwrap();
    let request = format!("GET / HTTP/1.1\r\nHost: {DOMAIN}\r\n\r\n");
    let start = Instant::now();
    let mut prober = client::connect(f.addr(), WAIT).unwrap();
    prober.write_all(request.as_bytes()).unwrap();
    let (answer, ending) =
        wire::read_until_quiet(&mut prober, Duration::from_secs(8), Duration::from_secs(8));
    let elapsed = start.elapsed();
    assert!(
        answer == ANSWER && elapsed < Duration::from_secs(7),
        "the prober got {:?} ({ending:?}) after {elapsed:?}\nfeint:\n{}",
        String::from_utf8_lossy(&answer),
        f.output()
    );
    // Too fast means feint did not try the stalled address first, and this proved nothing.
    assert!(
        elapsed > Duration::from_secs(4),
        "answered after {elapsed:?}: the stalled address was not tried first"
    );
    drop(prober);
    assert_eq!(server.join().unwrap(), Some(request.into_bytes()));
}

/// The timer field (`tr`) of the socket from `local` to `remote` in /proc/net/tcp: 2 is a
/// pending keepalive timer. The file prints an IPv4 address as the hex of its four bytes read as
/// a native integer, and the port in host order.
fn tcp_timer(local: SocketAddr, remote: SocketAddr) -> Option<u8> {
    let hex = |a: SocketAddr| match a {
        SocketAddr::V4(a) => format!(
            "{:08X}:{:04X}",
            u32::from_ne_bytes(a.ip().octets()),
            a.port()
        ),
        SocketAddr::V6(_) => String::new(),
    };
    let (local, remote) = (hex(local), hex(remote));
    let table = std::fs::read_to_string("/proc/net/tcp").ok()?;
    table.lines().skip(1).find_map(|line| {
        let fields: Vec<&str> = line.split_whitespace().collect();
        if fields.get(1)? != &local || fields.get(2)? != &remote {
            return None;
        }
        let timer = fields.get(5)?.split(':').next()?;
        u8::from_str_radix(timer, 16).ok()
    })
}

/// Waits up to 2 s for the timer of feint's end of the connection from `client` to become `want`; returns the last.
fn feint_timer(feint: SocketAddr, client: SocketAddr, want: u8) -> Option<u8> {
    let mut last = None;
    for _ in 0..40 {
        last = tcp_timer(feint, client);
        if last == Some(want) {
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    last
}

/// Attack 5, keepalive: TCP keepalive only on the socket of a client whose hello verified;
/// a fronted prober's socket (nginx keeps its connection open) and an undecided one have none,
/// as nginx's own sockets have none.
#[test]
fn keepalive_only_after_a_verified_hello() {
    const KEEPALIVE: u8 = 2;
    const NONE: u8 = 0;
    let r = rig(FrontPort::Http, &[]);
    let stream = client::connect(r.feint.addr(), WAIT).unwrap();
    let genuine_addr = stream.local_addr().unwrap();
    let opts = options(WAIT);
    let hello = opts.hello(&r.secret);
    let mut genuine = FakeTlsClient::handshake(stream, &r.secret, &opts, hello).unwrap();
    echo(&mut genuine, b"keep me alive").unwrap();

    let mut prober = client::connect(r.feint.addr(), WAIT).unwrap();
    prober
        .write_all(format!("GET / HTTP/1.1\r\nHost: {DOMAIN}\r\n\r\n").as_bytes())
        .unwrap();
    let (page, _) = wire::read_until_quiet(&mut prober, QUIET, WAIT);
    assert!(
        page.starts_with(b"HTTP/1.1 200"),
        "the prober got nginx's page"
    );
    let undecided = client::connect(r.feint.addr(), WAIT).unwrap();

    let timer = |client: SocketAddr, want| feint_timer(r.feint.addr(), client, want);
    let genuine_timer = timer(genuine_addr, KEEPALIVE);
    let prober_timer = timer(prober.local_addr().unwrap(), NONE);
    let undecided_timer = timer(undecided.local_addr().unwrap(), NONE);
    assert_eq!(
        (genuine_timer, prober_timer, undecided_timer),
        (Some(KEEPALIVE), Some(NONE), Some(NONE)),
        "timers (2 = keepalive) of feint's sockets to the genuine client, the prober, the \
         undecided connection"
    );
}

/// Attack 5, flags: durations the 100 ms timer tick or the whole-second hello clock cannot
/// honour are refused with exit status 2 instead of quietly becoming 0.
#[test]
fn durations_the_clock_cannot_honour_are_refused() {
    let secret = Secret::random(DOMAIN);
    for (flag, value) in [("--time-skew", "500ms"), ("--handshake-timeout", "50ms")] {
        let args: Vec<String> = [
            "run",
            "--bind",
            "127.0.0.1:0",
            "--front",
            feint::NOWHERE,
            flag,
            value,
            &secret.to_hex(),
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        let (status, output) = feint::run_to_exit(bin(), &args, Duration::from_secs(3)).unwrap();
        assert_eq!(
            status.and_then(|s| s.code()),
            Some(2),
            "{flag} {value}: {output}"
        );
        assert!(output.contains(flag), "{flag} {value}: {output}");
    }
}
