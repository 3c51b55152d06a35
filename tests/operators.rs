//! feint behind what operators already run (issue 11): a real HAProxy in front with PROXY
//! protocol v1 and v2, a real nginx behind that logs the address in feint's v2 header, and DCs
//! reached through a real Dante SOCKS5 server. Most wait for the connection core to act on the
//! flags and are ignored until then.

use std::io::Write;
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};
use std::path::PathBuf;
use std::time::Duration;

use feint_testkit::client::connect_from;
use feint_testkit::crypto::random_bytes;
use feint_testkit::dc::{self, DcMode};
use feint_testkit::front::FrontMode;
use feint_testkit::haproxy::HeaderVersion;
use feint_testkit::nginx::ProxyHeader;
use feint_testkit::obfs2::frame_padded;
use feint_testkit::wire::{self, Ending};
use feint_testkit::{
    feint, ClientOptions, Dante, FakeDc, FakeTlsClient, Feint, Haproxy, Nginx, RecordingFront,
    Secret,
};

const DOMAIN: &str = "www.example.com";
const WAIT: Duration = Duration::from_secs(10);
const QUIET: Duration = Duration::from_millis(800);
/// The prober's address: loopback, but not the 127.0.0.1 feint and HAProxy connect from.
const PROBER_IP: Ipv4Addr = Ipv4Addr::new(127, 0, 0, 2);

fn bin() -> PathBuf {
    feint::binary(env!("CARGO_BIN_EXE_feint"))
}

fn v4(addr: SocketAddr) -> SocketAddrV4 {
    match addr {
        SocketAddr::V4(addr) => addr,
        SocketAddr::V6(_) => panic!("{addr} is not IPv4"),
    }
}

fn strings(args: &[&str]) -> Vec<String> {
    args.iter().map(|arg| arg.to_string()).collect()
}

/// A genuine client's session through `entry` (feint, or a balancer in front of it) to DC 2:
/// checks that 3 KB of frames come back from the echoing DC and that the DC got them.
fn assert_round_trip(entry: SocketAddr, secret: &Secret, dcs: &[FakeDc], feint: &Feint) {
    let options = ClientOptions::default();
    let mut client = FakeTlsClient::connect(entry, secret, &options)
        .unwrap_or_else(|e| panic!("handshake: {e}\nfeint:\n{}", feint.output()));
    let frames = frame_padded(&random_bytes(3000));
    client.send(&frames).unwrap();
    let back = client
        .recv_exact(frames.len())
        .unwrap_or_else(|e| panic!("echo: {e}\nfeint:\n{}", feint.output()));
    assert!(back == frames, "the echo differs");
    let dc = &dcs[1];
    let seen = dc.wait_until(WAIT, |conns| {
        conns.iter().any(|c| c.received.len() >= frames.len())
    });
    assert!(
        seen.iter().any(|c| c.dc == 2 && c.received == frames),
        "DC 2 did not get the frames: {seen:?}"
    );
}

/// feint with `extra` flags, five echoing DCs and a recording front.
fn feint_with_dcs(extra: &[&str]) -> (Secret, Vec<FakeDc>, RecordingFront, Feint) {
    let secret = Secret::random(DOMAIN);
    let dcs: Vec<FakeDc> = (1..=5)
        .map(|_| FakeDc::start(DcMode::Echo).unwrap())
        .collect();
    let front = RecordingFront::start(FrontMode::Record).unwrap();
    // A recording front must see only the connections a test makes.
    let mut args = strings(&["--front", &front.addr().to_string(), "--no-front-probe"]);
    args.extend(dc::routes(&dcs));
    args.extend(strings(extra));
    let feint = Feint::start(bin(), &secret, &args).unwrap();
    (secret, dcs, front, feint)
}

fn genuine_client_through_haproxy(version: HeaderVersion) {
    let (secret, dcs, _front, feint) = feint_with_dcs(&["--proxy-protocol"]);
    let haproxy = Haproxy::start(feint.addr(), version).unwrap();
    assert_round_trip(haproxy.addr, &secret, &dcs, &feint);
}

#[test]
fn genuine_client_through_haproxy_send_proxy_reaches_its_dc() {
    genuine_client_through_haproxy(HeaderVersion::V1);
}

#[test]
fn genuine_client_through_haproxy_send_proxy_v2_reaches_its_dc() {
    genuine_client_through_haproxy(HeaderVersion::V2);
}

/// Sends an HTTP request from 127.0.0.2 to `entry`, expects nginx's page back, and returns the
/// prober's address.
fn probe_from_another_address(entry: SocketAddr, nginx: &Nginx, feint: &Feint) -> SocketAddrV4 {
    let mut stream = connect_from(PROBER_IP, v4(entry), WAIT).unwrap();
    let prober = v4(stream.local_addr().unwrap());
    let request = format!("GET / HTTP/1.0\r\nHost: {DOMAIN}\r\n\r\n");
    stream.write_all(request.as_bytes()).unwrap();
    let (answer, ending) = wire::read_until_quiet(&mut stream, QUIET, WAIT);
    assert!(
        answer.starts_with(b"HTTP/1.1 200") && answer.ends_with(&nginx.index),
        "{ending:?}: {:?}\nfeint:\n{}\nnginx:\n{}",
        String::from_utf8_lossy(&answer[..answer.len().min(200)]),
        feint.output(),
        nginx.error_log()
    );
    prober
}

/// nginx's access log has the request from `prober`, relayed by feint from 127.0.0.1.
fn assert_nginx_saw(nginx: &Nginx, prober: SocketAddrV4) {
    let expected = format!("127.0.0.1 {prober} \"GET / HTTP/1.0\" 200");
    let log = nginx.access_log();
    assert!(log.contains(&expected), "{expected:?} not in:\n{log}");
}

#[test]
fn fronted_probe_reaches_nginx_with_its_own_address() {
    let nginx = Nginx::start_with(DOMAIN, ProxyHeader::Required).unwrap();
    let secret = Secret::random(DOMAIN);
    let args = strings(&[
        "--front",
        &nginx.http_addr.to_string(),
        "--front-proxy-protocol",
    ]);
    let feint = Feint::start(bin(), &secret, &args).unwrap();
    let prober = probe_from_another_address(feint.addr(), &nginx, &feint);
    assert_nginx_saw(&nginx, prober);
}

/// Through HAProxy, the front must get feint's own v2 header, not HAProxy's bytes passed on:
/// with `send-proxy` a v1 line forwarded unchanged would also satisfy nginx, so the bytes are
/// checked at a recording front. The kit reads the header by hand, apart from `src/proto`.
#[test]
fn fronted_probe_through_haproxy_reaches_the_front_behind_a_fresh_v2_header() {
    let front = RecordingFront::start(FrontMode::Record).unwrap();
    let secret = Secret::random(DOMAIN);
    let args = strings(&[
        "--front",
        &front.addr().to_string(),
        "--proxy-protocol",
        "--front-proxy-protocol",
        "--no-front-probe",
    ]);
    let feint = Feint::start(bin(), &secret, &args).unwrap();
    let request = b"GET / HTTP/1.0\r\n\r\n";
    for (round, version) in [HeaderVersion::V1, HeaderVersion::V2]
        .into_iter()
        .enumerate()
    {
        let haproxy = Haproxy::start(feint.addr(), version).unwrap();
        let mut stream = connect_from(PROBER_IP, v4(haproxy.addr), WAIT).unwrap();
        let prober = v4(stream.local_addr().unwrap());
        stream.write_all(request).unwrap();
        let conns = front.wait_until(WAIT, |conns| {
            conns.len() > round && conns[round].received.ends_with(request)
        });
        let received = conns
            .get(round)
            .map(|c| c.received.clone())
            .unwrap_or_default();
        let mut expected = b"\r\n\r\n\0\r\nQUIT\n\x21\x11\x00\x0c".to_vec();
        expected.extend_from_slice(&prober.ip().octets());
        assert!(
            received.len() == 28 + request.len()
                && received.starts_with(&expected)
                && received[24..26] == prober.port().to_be_bytes()
                && received.ends_with(request),
            "{version:?}: the front got {received:?}\nfeint:\n{}",
            feint.output()
        );
    }
}

#[test]
fn connections_without_a_valid_header_are_closed_not_served_or_fronted() {
    let (secret, dcs, front, feint) = feint_with_dcs(&["--proxy-protocol"]);
    let hello = ClientOptions::default().hello(&secret);
    let cases: [(&str, Vec<u8>); 4] = [
        ("a genuine hello without a header", hello.clone()),
        ("HTTP", b"GET / HTTP/1.0\r\n\r\n".to_vec()),
        (
            "a v1 line with a bad address",
            [&b"PROXY TCP4 300.0.0.1 127.0.0.1 1 2\r\n"[..], &hello].concat(),
        ),
        (
            "a v1 line without CRLF in 107 bytes",
            [&b"PROXY UNKNOWN "[..], &[b'x'; 120]].concat(),
        ),
    ];
    for (case, bytes) in cases {
        let (answer, ending) = wire::exchange(feint.addr(), &bytes, false, QUIET, WAIT).unwrap();
        assert!(answer.is_empty(), "{case}: answered {} bytes", answer.len());
        assert!(
            matches!(ending, Ending::Eof | Ending::Reset),
            "{case}: still open ({ending:?})"
        );
    }
    assert!(front.connections().is_empty(), "something was fronted");
    assert!(
        dcs.iter().all(|dc| dc.connections().is_empty()),
        "a DC was dialled"
    );
}

#[test]
fn a_dc_is_reached_through_dante() {
    let dante = Dante::start().unwrap();
    let upstream = format!("socks5://{}", dante.addr);
    let (secret, dcs, _front, feint) = feint_with_dcs(&["--upstream", &upstream]);
    assert_round_trip(feint.addr(), &secret, &dcs, &feint);
    let dc_address = format!("127.0.0.1.{}", dcs[1].addr().port());
    let log = dante.log();
    assert!(
        log.contains(&dc_address),
        "Dante did not connect to DC 2:\n{log}"
    );
}

#[test]
fn a_dead_socks5_proxy_fails_the_dial_without_touching_the_dc() {
    // A closed port: the dial to the proxy is refused, so the client's session ends.
    let (secret, dcs, _front, feint) =
        feint_with_dcs(&["--upstream", &format!("socks5://{}", feint::NOWHERE)]);
    let options = ClientOptions::default();
    let client = FakeTlsClient::connect(feint.addr(), &secret, &options);
    if let Ok(mut client) = client {
        client.send(&frame_padded(b"hello")).unwrap();
        let mut stream = client.reader;
        assert!(stream.recv_exact(1).is_err(), "data came back");
    }
    assert!(
        dcs.iter().all(|dc| dc.connections().is_empty()),
        "a DC was dialled directly"
    );
}

/// Runs today: the flags parse together and feint starts with them.
#[test]
fn feint_starts_with_every_operator_flag() {
    let secret = Secret::random(DOMAIN);
    let args = strings(&[
        "--proxy-protocol",
        "--front-proxy-protocol",
        "--upstream",
        "socks5://user:password@127.0.0.1:1080",
        "--front-via-upstream",
    ]);
    let mut feint = Feint::start(bin(), &secret, &args).unwrap();
    assert!(feint.is_running());
    assert!(!feint.output().contains("password"), "{}", feint.output());
}
