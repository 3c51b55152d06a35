//! Everything that is not a valid fresh FakeTLS hello for our secret goes to the real site
//! (docs/PROTOCOL.md §8): a prober through feint must see exactly what nginx sends it directly.
//!
//! HTTP answers are compared with the value of the `Date:` header masked (`wire::mask_date`):
//! the direct and the proxied request may fall on either side of a second boundary, and masking
//! is deterministic where retrying would only make a mismatch less likely. Raw TLS answers to
//! crafted hellos carry fresh randoms and keys, so they are compared by record structure (type
//! and length of every record), and shown not to be a FakeTLS reply for our key.

use std::io::Write;
use std::net::{Shutdown, SocketAddr};
use std::path::PathBuf;
use std::time::Duration;

use feint_testkit::crypto::random_bytes;
use feint_testkit::front::{FrontConnection, FrontMode};
use feint_testkit::record::{self, HANDSHAKE};
use feint_testkit::wire::{self, mask_date, Ending};
use feint_testkit::{
    client, feint, hello, reply, tls, unix_now, ClientOptions, FakeTlsClient, Feint, HelloShape,
    Nginx, RecordingFront, Secret,
};

const DOMAIN: &str = "www.example.com";
const WAIT: Duration = Duration::from_secs(10);
/// nginx answers a hello in milliseconds; this much silence means its flight is complete.
const QUIET: Duration = Duration::from_millis(800);

fn bin() -> PathBuf {
    feint::binary(env!("CARGO_BIN_EXE_feint"))
}

struct Setup {
    secret: Secret,
    nginx: Nginx,
    feint: Feint,
}

fn setup(extra: &[&str]) -> Setup {
    let secret = Secret::random(DOMAIN);
    let nginx = Nginx::start(DOMAIN).unwrap();
    let mut args = vec!["--front".to_string(), nginx.tls_addr.to_string()];
    args.extend(extra.iter().map(|s| s.to_string()));
    let feint = Feint::start(bin(), &secret, &args).unwrap();
    Setup {
        secret,
        nginx,
        feint,
    }
}

fn exchange(addr: SocketAddr, bytes: &[u8], half_close: bool) -> (Vec<u8>, Ending) {
    wire::exchange(addr, bytes, half_close, QUIET, WAIT).unwrap()
}

/// Sends `hello` through feint and straight to nginx, and checks the proxied answer is nginx's:
/// a TLS flight with the same record structure as the direct one, whose server random does not
/// verify as a FakeTLS reply for our key.
fn assert_fronted_hello(s: &Setup, hello: &[u8], case: &str) {
    // Both at once: each waits for nginx's flight to go quiet.
    let (nginx_addr, copy) = (s.nginx.tls_addr, hello.to_vec());
    let direct = std::thread::spawn(move || exchange(nginx_addr, &copy, false).0);
    let (via, _) = exchange(s.feint.addr(), hello, false);
    let direct = direct.join().unwrap();
    let (via_records, via_rest) = record::structure(&via);
    let (direct_records, _) = record::structure(&direct);
    assert!(
        !direct_records.is_empty() && direct_records[0].0 == HANDSHAKE,
        "{case}: nginx did not answer the hello directly: {direct_records:?}"
    );
    assert_eq!(
        (via_records, via_rest),
        (direct_records, 0),
        "{case}: the answer through feint is not shaped like nginx's\nfeint:\n{}",
        s.feint.output()
    );
    assert!(
        !reply::verify(&via, &hello::client_random(hello), &s.secret.key),
        "{case}: feint answered with a FakeTLS reply"
    );
}

fn hello(s: &Setup, options: ClientOptions) -> Vec<u8> {
    options.hello(&s.secret)
}

#[test]
fn garbage_gets_nginx_answer() {
    let s = setup(&[]);
    let mut junk = random_bytes(300);
    junk[0] = 0x00; // not a handshake record
    let (via, via_end) = exchange(s.feint.addr(), &junk, false);
    let (direct, direct_end) = exchange(s.nginx.tls_addr, &junk, false);
    // nginx takes bytes that are not TLS for plain HTTP and answers 400.
    assert!(
        via.starts_with(b"HTTP/1.1 400 Bad Request\r\n"),
        "feint:\n{}",
        s.feint.output()
    );
    assert_eq!(mask_date(&via), mask_date(&direct));
    assert_eq!(via_end, direct_end);
}

#[test]
fn plain_http_gets_nginx_400_page() {
    let s = setup(&[]);
    let request = tls::get_request(DOMAIN);
    let (via, via_end) = exchange(s.feint.addr(), &request, false);
    let (direct, direct_end) = exchange(s.nginx.tls_addr, &request, false);
    let text = String::from_utf8_lossy(&via);
    assert!(text.starts_with("HTTP/1.1 400 Bad Request\r\n"), "{text}");
    assert!(
        text.contains("The plain HTTP request was sent to HTTPS port"),
        "{text}"
    );
    assert_eq!(mask_date(&via), mask_date(&direct));
    assert_eq!(via_end, direct_end);
}

#[test]
fn tls_with_another_sni_fetches_the_page() {
    let s = setup(&[]);
    let request = tls::get_request("other.example.net");
    let via = tls::request(s.feint.addr(), "other.example.net", &request, WAIT)
        .unwrap_or_else(|e| panic!("{e}\nfeint:\n{}", s.feint.output()));
    let direct = tls::request(s.nginx.tls_addr, "other.example.net", &request, WAIT).unwrap();
    assert!(via.ends_with(&s.nginx.index));
    assert_eq!(mask_date(&via), mask_date(&direct));
}

/// A real TLS client with our SNI: its random holds no digest, so feint fronts it, and the TLS
/// session with nginx completes through feint.
#[test]
fn real_tls_client_with_our_sni_fetches_the_page() {
    let s = setup(&[]);
    let request = tls::get_request(DOMAIN);
    let via = tls::request(s.feint.addr(), DOMAIN, &request, WAIT)
        .unwrap_or_else(|e| panic!("{e}\nfeint:\n{}", s.feint.output()));
    let direct = tls::request(s.nginx.tls_addr, DOMAIN, &request, WAIT).unwrap();
    assert!(via.starts_with(b"HTTP/1.1 200 OK\r\n"));
    assert!(via.ends_with(&s.nginx.index));
    assert_eq!(mask_date(&via), mask_date(&direct));
}

#[test]
fn bad_digest_is_fronted() {
    let s = setup(&[]);
    for shape in [HelloShape::Classic, HelloShape::Modern] {
        let h = hello(
            &s,
            ClientOptions {
                shape,
                corrupt_digest: true,
                ..ClientOptions::default()
            },
        );
        assert_fronted_hello(&s, &h, &format!("bad digest, {shape:?}"));
    }
}

#[test]
fn stale_and_future_clocks_are_fronted() {
    let s = setup(&["--time-skew", "2m"]);
    // Beyond ±120 s by a margin: the test's clock and feint's may straddle a second boundary.
    for offset in [-125i64, 125, -3600, 86_400] {
        let h = hello(
            &s,
            ClientOptions {
                time: Some((i64::from(unix_now()) + offset) as u32),
                ..ClientOptions::default()
            },
        );
        assert_fronted_hello(&s, &h, &format!("clock off by {offset} s"));
    }
}

#[test]
fn crafted_hello_for_another_domain_is_fronted() {
    let s = setup(&[]);
    let h = hello(
        &s,
        ClientOptions {
            sni: Some("www.example.org".to_string()),
            ..ClientOptions::default()
        },
    );
    assert_fronted_hello(&s, &h, "valid digest, other SNI");
}

#[test]
fn replayed_hello_is_fronted() {
    let s = setup(&[]);
    let options = ClientOptions::default();
    let h = hello(&s, options.clone());
    let stream = client::connect(s.feint.addr(), WAIT).unwrap();
    let first = FakeTlsClient::handshake(stream, &s.secret, &options, h.clone());
    assert!(
        first.is_ok(),
        "the first use must be served: {:?}",
        first.err()
    );
    assert_fronted_hello(&s, &h, "the same hello again");
}

/// Half a hello, then the client closes: nginx gets the half and reacts as it does directly.
#[test]
fn truncated_hello_reaches_nginx() {
    let s = setup(&[]);
    let h = hello(&s, ClientOptions::default());
    let half = &h[..h.len() / 2];
    let via = exchange(s.feint.addr(), half, true);
    let direct = exchange(s.nginx.tls_addr, half, true);
    assert_eq!(via, direct, "feint:\n{}", s.feint.output());
}

/// Half a hello, then silence past `--handshake-timeout 1s`: feint hands the half to nginx, and
/// the rest, sent later, completes a hello that nginx (not feint) answers.
#[test]
fn slow_hello_goes_to_nginx_after_the_handshake_timeout() {
    let s = setup(&["--handshake-timeout", "1s"]);
    let h = hello(&s, ClientOptions::default());
    let (first, second) = h.split_at(h.len() / 2);
    let mut stream = client::connect(s.feint.addr(), WAIT).unwrap();
    stream.write_all(first).unwrap();
    // The bounded wait is the test: nothing may come back while the hello is incomplete.
    let (early, ending) = wire::read_until_quiet(&mut stream, Duration::from_millis(1500), WAIT);
    assert_eq!((early.len(), ending), (0, Ending::Quiet));
    stream.write_all(second).unwrap();
    let (via, _) = wire::read_until_quiet(&mut stream, QUIET, WAIT);
    stream.shutdown(Shutdown::Both).unwrap();
    let (direct, _) = exchange(s.nginx.tls_addr, &h, false);
    assert_eq!(
        record::structure(&via),
        (record::structure(&direct).0, 0),
        "feint:\n{}",
        s.feint.output()
    );
    assert!(!reply::verify(
        &via,
        &hello::client_random(&h),
        &s.secret.key
    ));
}

/// The front connections that carried client bytes, in order of arrival.
fn fronted(conns: &[FrontConnection]) -> Vec<&FrontConnection> {
    conns.iter().filter(|c| !c.received.is_empty()).collect()
}

/// For every rejected input, the front receives exactly the bytes the client sent.
#[test]
fn every_rejected_input_reaches_the_front_unchanged() {
    let secret = Secret::random(DOMAIN);
    let front = RecordingFront::start(FrontMode::Record).unwrap();
    let args = [
        "--front".to_string(),
        front.addr().to_string(),
        // A recording front must see only fronted connections.
        "--no-front-probe".to_string(),
    ];
    let feint = Feint::start(bin(), &secret, &args).unwrap();
    let build = |options: ClientOptions| options.hello(&secret);
    let valid = build(ClientOptions::default());
    let stream = client::connect(feint.addr(), WAIT).unwrap();
    FakeTlsClient::handshake(stream, &secret, &ClientOptions::default(), valid.clone()).unwrap();
    let mut wrong_key = secret.clone();
    wrong_key.key[15] ^= 0x80;
    let cases: Vec<(&str, Vec<u8>)> = vec![
        ("garbage", {
            let mut junk = random_bytes(1000);
            junk[0] = 0x00;
            junk
        }),
        ("plain HTTP", tls::get_request(DOMAIN)),
        (
            "bad digest",
            build(ClientOptions {
                corrupt_digest: true,
                ..ClientOptions::default()
            }),
        ),
        (
            "stale clock",
            build(ClientOptions {
                time: Some(unix_now() - 3600),
                ..ClientOptions::default()
            }),
        ),
        (
            "other SNI",
            build(ClientOptions {
                sni: Some("www.example.org".to_string()),
                ..ClientOptions::default()
            }),
        ),
        ("another key", ClientOptions::default().hello(&wrong_key)),
        ("replay", valid.clone()),
        ("truncated", valid[..valid.len() / 2].to_vec()),
        ("record header only", valid[..5].to_vec()),
        ("record over 16384 bytes", {
            let mut v = vec![0x16, 0x03, 0x01, 0x40, 0x01];
            v.extend(random_bytes(300));
            v
        }),
        ("record under 100 bytes", {
            let mut v = vec![0x16, 0x03, 0x01, 0x00, 0x10];
            v.extend(random_bytes(16));
            v
        }),
        ("not a ClientHello, signed", {
            let mut v = build(ClientOptions::default());
            v[5] = 0x02;
            hello::sign(&mut v, &secret.key, unix_now());
            v
        }),
        ("hello and trailing junk", {
            let mut v = build(ClientOptions {
                corrupt_digest: true,
                ..ClientOptions::default()
            });
            v.extend(random_bytes(5000));
            v
        }),
    ];
    for (i, (case, bytes)) in cases.iter().enumerate() {
        let mut stream = client::connect(feint.addr(), WAIT).unwrap();
        stream.write_all(bytes).unwrap();
        stream.shutdown(Shutdown::Write).unwrap();
        // feint dials the front for every connection at accept, so the genuine client above
        // and each case open one; only the connections that carried bytes are fronted ones.
        let carried = |c: &[FrontConnection]| fronted(c).len() > i && fronted(c)[i].peer_closed;
        let conns = front.wait_until(WAIT, |c| carried(c));
        let conns = fronted(&conns);
        assert!(
            conns.len() > i,
            "{case}: not fronted\nfeint:\n{}",
            feint.output()
        );
        assert!(
            conns[i].received == *bytes,
            "{case}: the front got different bytes"
        );
    }
}

/// A 3 MiB download over TLS through the fronting relay arrives as nginx sends it directly.
#[test]
fn large_download_through_the_front_is_intact() {
    let s = setup(&[]);
    let request = tls::get_path_request(DOMAIN, "/big.bin");
    let via = tls::request(s.feint.addr(), DOMAIN, &request, WAIT)
        .unwrap_or_else(|e| panic!("{e}\nfeint:\n{}", s.feint.output()));
    assert!(via.ends_with(&s.nginx.big), "{} bytes", via.len());
    let direct = tls::request(s.nginx.tls_addr, DOMAIN, &request, WAIT).unwrap();
    assert_eq!(mask_date(&via), mask_date(&direct));
}

/// A 4 MiB upload through the fronting relay reaches the front byte for byte.
#[test]
fn large_upload_through_the_front_is_intact() {
    let secret = Secret::random(DOMAIN);
    let front = RecordingFront::start(FrontMode::Record).unwrap();
    let args = [
        "--front".to_string(),
        front.addr().to_string(),
        // A recording front must see only fronted connections.
        "--no-front-probe".to_string(),
    ];
    let feint = Feint::start(bin(), &secret, &args).unwrap();
    let mut upload = random_bytes(4 << 20);
    upload[0] = 0x00;
    let mut stream = client::connect(feint.addr(), WAIT).unwrap();
    stream.write_all(&upload).unwrap();
    stream.shutdown(Shutdown::Write).unwrap();
    let conns = front.wait_until(Duration::from_secs(30), |c| {
        c.len() == 1 && c[0].peer_closed
    });
    assert_eq!(conns.len(), 1, "feint:\n{}", feint.output());
    assert_eq!(conns[0].received.len(), upload.len());
    assert!(conns[0].received == upload, "the front got different bytes");
}
