//! Limits and lifecycle: the connection cap, the handshake and idle timeouts, half-close in both
//! relays, a burst of hostile input, a port in use, and SIGTERM.

use std::io::{Read, Write};
use std::net::{Ipv4Addr, Shutdown, TcpListener, TcpStream};
use std::path::PathBuf;
use std::time::{Duration, Instant};

use feint_testkit::crypto::{random_below, random_bytes};
use feint_testkit::dc::DcMode;
use feint_testkit::front::FrontMode;
use feint_testkit::obfs2::frame_padded;
use feint_testkit::wire::{self, Ending};
use feint_testkit::{
    client, feint, ClientOptions, FakeDc, FakeTlsClient, Feint, RecordingFront, Secret,
};

const DOMAIN: &str = "www.example.com";
const WAIT: Duration = Duration::from_secs(10);

fn bin() -> PathBuf {
    feint::binary(env!("CARGO_BIN_EXE_feint"))
}

struct Setup {
    secret: Secret,
    dc: FakeDc,
    front: RecordingFront,
    feint: Feint,
}

/// feint with DC 2 at a fake DC in `dc_mode`, a recording front in `front_mode`, and `extra`.
fn setup(dc_mode: DcMode, front_mode: FrontMode, extra: &[&str]) -> Setup {
    let secret = Secret::random(DOMAIN);
    let dc = FakeDc::start(dc_mode).unwrap();
    let front = RecordingFront::start(front_mode).unwrap();
    let mut args = vec![
        "--front".to_string(),
        front.addr().to_string(),
        // A recording front must see only fronted connections.
        "--no-front-probe".to_string(),
        "--dc".to_string(),
        format!("2={}", dc.addr()),
    ];
    args.extend(extra.iter().map(|s| s.to_string()));
    let feint = Feint::start(bin(), &secret, &args).unwrap();
    Setup {
        secret,
        dc,
        front,
        feint,
    }
}

/// A valid client sends one frame and gets it back.
fn echo_once(s: &Setup) -> std::io::Result<()> {
    let mut c = FakeTlsClient::connect(s.feint.addr(), &s.secret, &ClientOptions::default())?;
    let data = frame_padded(b"are you still there?");
    c.send(&data)?;
    let back = c.recv_exact(data.len())?;
    assert_eq!(back, data);
    Ok(())
}

/// True if feint still holds `stream` open: no EOF or reset within a short read.
fn still_open(stream: &mut TcpStream) -> bool {
    let (bytes, ending) = wire::read_until_quiet(stream, Duration::from_millis(300), WAIT);
    bytes.is_empty() && ending == Ending::Quiet
}

/// `--max-connections 2`: with two connections held open, a third is closed or not served,
/// whatever the number of event loops; once they close, a valid client is served again.
#[test]
fn connection_cap_refuses_the_extra_connection_and_survives() {
    for threads in ["1", "2"] {
        let s = setup(
            DcMode::Echo,
            FrontMode::Record,
            &["--max-connections", "2", "--threads", threads],
        );
        // At the cap a new connection waits in the listen backlog (it is never reset), so
        // "served" means a completed handshake, not an open socket.
        let options = ClientOptions {
            timeout: Duration::from_secs(3),
            ..ClientOptions::default()
        };
        let a = FakeTlsClient::connect(s.feint.addr(), &s.secret, &options);
        let b = FakeTlsClient::connect(s.feint.addr(), &s.secret, &options);
        let held = usize::from(a.is_ok()) + usize::from(b.is_ok());
        let third = FakeTlsClient::connect(s.feint.addr(), &s.secret, &options);
        let served = held + usize::from(third.is_ok());
        assert!(
            served <= 2,
            "--threads {threads}: {held} held open and a third served over --max-connections 2"
        );
        if threads == "1" {
            assert_eq!(held, 2, "--threads 1: the first two must be held");
        }
        drop((a, b, third));
        // Closed slots come back; retry a bounded number of times while feint notices.
        let end = Instant::now() + WAIT;
        let mut last = None;
        for _ in 0..50 {
            match echo_once(&s) {
                Ok(()) => {
                    last = None;
                    break;
                }
                Err(e) => last = Some(e),
            }
            if Instant::now() >= end {
                break;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        assert!(
            last.is_none(),
            "--threads {threads}: no valid client after the cap: {last:?}\n{}",
            s.feint.output()
        );
    }
}

#[test]
fn handshake_timeout_hands_the_partial_hello_to_the_front() {
    let s = setup(
        DcMode::Echo,
        FrontMode::Record,
        &["--handshake-timeout", "1s"],
    );
    let hello = ClientOptions::default().hello(&s.secret);
    let mut stream = client::connect(s.feint.addr(), WAIT).unwrap();
    stream.write_all(&hello[..100]).unwrap();
    // Well before the timeout, nothing has been fronted yet (the front was dialled at accept,
    // but no byte went to it).
    let early = s.front.wait_until(Duration::from_millis(300), |c| {
        c.iter().any(|c| !c.received.is_empty())
    });
    assert!(
        early.iter().all(|c| c.received.is_empty()),
        "fronted before the handshake timeout"
    );
    let conns = s
        .front
        .wait_until(WAIT, |c| c.len() == 1 && c[0].received.len() >= 100);
    assert_eq!(conns.len(), 1, "not fronted\n{}", s.feint.output());
    assert_eq!(conns[0].received, hello[..100]);
    // The relay is raw from now on: the rest of the hello follows unchanged.
    stream.write_all(&hello[100..]).unwrap();
    let conns = s
        .front
        .wait_until(WAIT, |c| c[0].received.len() >= hello.len());
    assert_eq!(conns[0].received, hello);
}

/// Clients that trickle partial hellos hold buffers only up to half the pool: a relay that is
/// already up keeps moving bytes while they wait out the handshake timeout.
#[test]
fn partial_hellos_cannot_starve_established_relays() {
    let s = setup(
        DcMode::Echo,
        FrontMode::Record,
        &[
            "--threads",
            "1",
            "--buffers",
            "8",
            "--handshake-timeout",
            "20s",
        ],
    );
    let mut relay =
        FakeTlsClient::connect(s.feint.addr(), &s.secret, &ClientOptions::default()).unwrap();
    let first = frame_padded(b"before the trickle");
    relay.send(&first).unwrap();
    assert_eq!(relay.recv_exact(first.len()).unwrap(), first);

    // Each of these holds a buffer with the first bytes of a hello and then goes quiet.
    let mut trickles: Vec<TcpStream> = (0..8)
        .map(|_| {
            let mut t = client::connect(s.feint.addr(), WAIT).unwrap();
            t.write_all(&[0x16, 0x03, 0x01, 0x02, 0x00, 0x01]).unwrap();
            t
        })
        .collect();
    assert!(
        still_open(&mut trickles[0]),
        "a partial hello is waited for"
    );

    let data = frame_padded(&random_bytes(100_000));
    relay.send(&data).unwrap();
    assert_eq!(
        relay.recv_exact(data.len()).unwrap(),
        data,
        "feint:\n{}",
        s.feint.output()
    );
}

#[test]
fn idle_timeout_closes_an_authenticated_idle_relay() {
    let s = setup(DcMode::Echo, FrontMode::Record, &["--idle-timeout", "1s"]);
    let mut c =
        FakeTlsClient::connect(s.feint.addr(), &s.secret, &ClientOptions::default()).unwrap();
    let data = frame_padded(b"then silence");
    c.send(&data).unwrap();
    assert_eq!(c.recv_exact(data.len()).unwrap(), data);
    let started = Instant::now();
    // The socket timeout (10 s) bounds this read; feint must close well before it.
    let rest = c.recv_to_eof(0);
    assert!(
        matches!(&rest, Ok(v) if v.is_empty())
            || matches!(&rest, Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset),
        "expected a close, got {rest:?} after {:?}",
        started.elapsed()
    );
    assert!(started.elapsed() < Duration::from_secs(8));
    let conns = s.dc.wait_until(WAIT, |c| c.len() == 1 && c[0].finished);
    assert!(conns[0].finished, "the DC side stayed open");
}

#[test]
fn client_half_close_still_gets_the_dc_answer() {
    let s = setup(
        DcMode::EchoThenOnEof(b"last words from the DC".to_vec()),
        FrontMode::Record,
        &[],
    );
    let mut c =
        FakeTlsClient::connect(s.feint.addr(), &s.secret, &ClientOptions::default()).unwrap();
    let data = frame_padded(&random_bytes(50_000));
    c.send(&data).unwrap();
    c.shutdown_write().unwrap();
    let conns = s.dc.wait_until(WAIT, |c| c.len() == 1 && c[0].peer_closed);
    assert!(
        conns.len() == 1 && conns[0].peer_closed,
        "the client's half-close did not reach the DC: {:?}\nfeint:\n{}",
        conns
            .iter()
            .map(|c| (c.received.len(), c.peer_closed, c.finished))
            .collect::<Vec<_>>(),
        s.feint.output()
    );
    let back = c.recv_to_eof(1 << 20).unwrap_or_else(|e| {
        panic!("{e}\nfeint:\n{}", s.feint.output());
    });
    let mut expected = data.clone();
    expected.extend_from_slice(b"last words from the DC");
    assert!(
        back == expected,
        "got {} of {} bytes",
        back.len(),
        expected.len()
    );
    let conns = s.dc.wait_until(WAIT, |c| c.len() == 1 && c[0].finished);
    assert!(conns[0].peer_closed);
    assert!(conns[0].received == data);
}

/// The client half-closes after fronting has begun; the front still answers.
#[test]
fn client_half_close_still_gets_the_front_answer() {
    let s = setup(
        DcMode::Echo,
        FrontMode::ReplyOnEof(b"HTTP/1.0 200 OK\r\n\r\nbye".to_vec()),
        &[],
    );
    let mut stream = client::connect(s.feint.addr(), WAIT).unwrap();
    stream.write_all(b"GET / HTTP/1.0\r\n\r\n").unwrap();
    s.front
        .wait_until(WAIT, |c| c.len() == 1 && !c[0].received.is_empty());
    stream.shutdown(Shutdown::Write).unwrap();
    let conns = s.front.wait_until(WAIT, |c| c[0].peer_closed);
    assert!(
        conns[0].peer_closed,
        "the client's half-close did not reach the front\nfeint:\n{}",
        s.feint.output()
    );
    let (answer, ending) = wire::read_until_quiet(&mut stream, Duration::from_secs(5), WAIT);
    assert_eq!(answer, b"HTTP/1.0 200 OK\r\n\r\nbye");
    assert_eq!(ending, Ending::Eof, "feint:\n{}", s.feint.output());
}

/// The client sends junk and half-closes at once, before feint has even decided to front: the
/// EOF must still reach the front, which answers.
#[test]
fn immediate_half_close_reaches_the_front() {
    let s = setup(DcMode::Echo, FrontMode::ReplyOnEof(b"bye".to_vec()), &[]);
    let (answer, ending) = wire::exchange(
        s.feint.addr(),
        b"\x00junk",
        true,
        Duration::from_secs(5),
        WAIT,
    )
    .unwrap();
    assert_eq!(
        (answer.as_slice(), ending),
        (&b"bye"[..], Ending::Eof),
        "feint:\n{}",
        s.feint.output()
    );
}

/// The front half-closes after its answer, as nginx does after a 400: the client sees the EOF
/// at once, not when the front finally closes.
#[test]
fn front_half_close_reaches_the_client() {
    let secret = Secret::random(DOMAIN);
    let front = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).unwrap();
    let args = [
        "--front".to_string(),
        front.local_addr().unwrap().to_string(),
        // This front takes one connection: the client's, not a probe's.
        "--no-front-probe".to_string(),
    ];
    let feint = Feint::start(bin(), &secret, &args).unwrap();
    let server = std::thread::spawn(move || {
        let (mut s, _) = front.accept().unwrap();
        s.set_read_timeout(Some(WAIT)).unwrap();
        let mut buf = [0u8; 64];
        let n = s.read(&mut buf).unwrap();
        s.write_all(b"answer").unwrap();
        s.shutdown(Shutdown::Write).unwrap();
        // Keep reading, as nginx's lingering close does, until the client closes.
        let more = s.read(&mut buf);
        (n, more.map_err(|e| e.kind()))
    });
    let mut stream = client::connect(feint.addr(), WAIT).unwrap();
    stream.write_all(b"GET / HTTP/1.0\r\n\r\n").unwrap();
    let (answer, ending) = wire::read_until_quiet(&mut stream, Duration::from_secs(3), WAIT);
    drop(stream);
    let (n, more) = server.join().unwrap();
    assert_eq!(n, 18);
    assert_eq!(answer, b"answer");
    assert_eq!(ending, Ending::Eof, "feint:\n{}", feint.output());
    assert_eq!(more, Ok(0), "the front should then see the client's close");
}

#[test]
fn survives_a_burst_of_hostile_connections() {
    let mut s = setup(
        DcMode::Echo,
        FrontMode::Record,
        &["--handshake-timeout", "2s"],
    );
    let prefixes: [&[u8]; 6] = [
        b"",
        b"\x16\x03\x01",
        b"\x16\x03\x01\xff\xff",
        b"\x16\x03\x01\x00\x00",
        b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03",
        b"\x14\x03\x03\x00\x01\x01\x17\x03\x03",
    ];
    for i in 0..200 {
        let Ok(mut stream) = TcpStream::connect_timeout(&s.feint.addr(), WAIT) else {
            continue;
        };
        let _ = stream.set_write_timeout(Some(Duration::from_secs(2)));
        let mut junk = prefixes[i % prefixes.len()].to_vec();
        junk.extend(random_bytes(random_below(3000) as usize));
        let _ = stream.write_all(&junk);
        match i % 3 {
            0 => drop(stream),
            1 => {
                let _ = stream.shutdown(Shutdown::Write);
            }
            _ => {
                let _ = stream.shutdown(Shutdown::Both);
            }
        }
    }
    assert!(s.feint.is_running(), "feint died\n{}", s.feint.output());
    echo_once(&s).unwrap_or_else(|e| panic!("{e}\nfeint:\n{}", s.feint.output()));
    // And a valid hello that is then followed by junk instead of obfs2 does not hurt either.
    let mut c =
        FakeTlsClient::connect(s.feint.addr(), &s.secret, &ClientOptions::default()).unwrap();
    c.writer.send_raw(&random_bytes(5000)).unwrap();
    drop(c);
    echo_once(&s).unwrap();
}

#[test]
fn port_in_use_exits_1_with_an_os_error() {
    let taken = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).unwrap();
    let addr = taken.local_addr().unwrap().to_string();
    let secret = Secret::random(DOMAIN);
    let args = [
        "run".to_string(),
        "--bind".to_string(),
        addr,
        "--front".to_string(),
        "127.0.0.1:9".to_string(),
        secret.to_hex(),
    ];
    let (status, output) = feint::run_to_exit(bin(), &args, WAIT).unwrap();
    assert_eq!(status.and_then(|s| s.code()), Some(1), "{output}");
    assert!(output.to_lowercase().contains("in use"), "{output}");
}

/// A front that is feint's own listening address would make fronting recurse (docs/PROTOCOL.md §9
/// item 13): feint says so at start and closes what it cannot front.
#[test]
fn front_pointing_at_feint_itself_is_refused() {
    let probe = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).unwrap();
    let addr = probe.local_addr().unwrap().to_string();
    drop(probe);
    let secret = Secret::random(DOMAIN);
    let args = [
        "--bind".to_string(),
        addr.clone(),
        "--front".to_string(),
        addr,
        "--threads".to_string(),
        "1".to_string(),
    ];
    let feint = Feint::start(bin(), &secret, &args).unwrap();
    let deadline = Instant::now() + WAIT;
    while !feint.output().contains("resolves to this proxy") && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(
        feint.output().contains("resolves to this proxy"),
        "{}",
        feint.output()
    );
    let mut junk = client::connect(feint.addr(), WAIT).unwrap();
    junk.write_all(b"GET / HTTP/1.1\r\n\r\n").unwrap();
    let (bytes, ending) = wire::read_until_quiet(&mut junk, Duration::from_secs(2), WAIT);
    assert!(bytes.is_empty(), "no answer from a loop");
    assert_ne!(ending, Ending::Quiet, "closed, not left hanging");
    // Still one listener's worth of connections, not a cascade of self-connections.
    let mut after = client::connect(feint.addr(), WAIT).unwrap();
    after.write_all(&[0x00]).unwrap();
    assert_ne!(
        wire::read_until_quiet(&mut after, Duration::from_secs(2), WAIT).1,
        Ending::Quiet
    );
}

#[test]
fn sigterm_stops_feint() {
    let s = setup(DcMode::Echo, FrontMode::Record, &[]);
    let mut feint = s.feint;
    let status = feint.terminate(WAIT);
    assert!(
        status.is_some(),
        "feint ignored SIGTERM\n{}",
        feint.output()
    );
}

/// With the front unreachable, a fronted connection is closed and feint carries on.
#[test]
fn unreachable_front_closes_the_connection_and_survives() {
    let secret = Secret::random(DOMAIN);
    let dc = FakeDc::start(DcMode::Echo).unwrap();
    let args = [
        "--front".to_string(),
        feint::NOWHERE.to_string(),
        "--dc".to_string(),
        format!("2={}", dc.addr()),
    ];
    let feint = Feint::start(bin(), &secret, &args).unwrap();
    for _ in 0..20 {
        let (answer, ending) =
            wire::exchange(feint.addr(), b"GET / HTTP/1.1\r\n\r\n", false, WAIT, WAIT).unwrap();
        assert!(answer.is_empty());
        assert!(
            matches!(ending, Ending::Eof | Ending::Reset),
            "{ending:?}\n{}",
            feint.output()
        );
    }
    let mut c = FakeTlsClient::connect(feint.addr(), &secret, &ClientOptions::default()).unwrap();
    let data = frame_padded(b"still here");
    c.send(&data).unwrap();
    assert_eq!(c.recv_exact(data.len()).unwrap(), data);
}
