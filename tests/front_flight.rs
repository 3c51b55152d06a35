//! feint's reply to a genuine hello is shaped like its front's answer to the same hello
//! (issue 8): the same ServerHello cipher, extension order and length, and one ApplicationData
//! record as long as the front's whole encrypted flight, the same on every connection. The
//! front is nginx 1.22 with OpenSSL 3.0, which has no ML-KEM and so answers in X25519.

use std::io::Write;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use feint_testkit::record::{self, APPLICATION_DATA, CHANGE_CIPHER_SPEC, HANDSHAKE};
use feint_testkit::{client, feint, hello, reply, wire, ClientOptions, Feint, Nginx, Secret};

const DOMAIN: &str = "www.example.com";
const WAIT: Duration = Duration::from_secs(10);
/// nginx answers a hello in milliseconds; this much silence means its flight is complete.
const QUIET: Duration = Duration::from_millis(800);

fn bin() -> PathBuf {
    feint::binary(env!("CARGO_BIN_EXE_feint"))
}

/// What the test compares of a ServerHello: cipher suite and extension types in order.
#[derive(Debug, PartialEq, Eq)]
struct ServerHello {
    record_len: usize,
    cipher_suite: [u8; 2],
    extensions: Vec<u16>,
}

/// Reads the ServerHello record at the start of `answer` (RFC 8446 §4.1.3).
fn server_hello(answer: &[u8]) -> ServerHello {
    assert_eq!(
        answer[0], HANDSHAKE,
        "the answer starts with a handshake record"
    );
    let record_len = usize::from(u16::from_be_bytes([answer[3], answer[4]]));
    let body = &answer[5..5 + record_len];
    assert_eq!(body[0], 0x02, "a ServerHello");
    let mut at = 4 + 2 + 32;
    at += 1 + usize::from(body[at]);
    let cipher_suite = [body[at], body[at + 1]];
    at += 2 + 1;
    let end = at + 2 + usize::from(u16::from_be_bytes([body[at], body[at + 1]]));
    at += 2;
    let mut extensions = Vec::new();
    while at < end {
        extensions.push(u16::from_be_bytes([body[at], body[at + 1]]));
        at += 4 + usize::from(u16::from_be_bytes([body[at + 2], body[at + 3]]));
    }
    assert_eq!(at, end, "the extensions fill the ServerHello");
    ServerHello {
        record_len,
        cipher_suite,
        extensions,
    }
}

/// nginx's whole answer to `hello`, read until it goes quiet.
fn ask_nginx(addr: SocketAddr, hello: &[u8]) -> Vec<u8> {
    wire::exchange(addr, hello, false, QUIET, WAIT).unwrap().0
}

/// feint's reply to `hello`, read as TDLib reads it, and checked to be signed for our key.
fn ask_feint(feint: &Feint, secret: &Secret, hello: &[u8]) -> Vec<u8> {
    let mut stream = client::connect(feint.addr(), WAIT).unwrap();
    stream.write_all(hello).unwrap();
    let answer = reply::read(&mut stream).unwrap();
    assert!(
        reply::verify(&answer, &hello::client_random(hello), &secret.key),
        "the reply does not verify"
    );
    answer
}

#[test]
fn the_reply_copies_nginxs_server_hello_and_flight_length() {
    let secret = Secret::random(DOMAIN);
    let nginx = Nginx::start(DOMAIN).unwrap();
    let args = ["--front".to_string(), nginx.tls_addr.to_string()];
    let feint = Feint::start(bin(), &secret, &args).unwrap();
    let learned = feint.wait_for_line("answers a TDLib hello", WAIT);
    assert!(learned.is_some(), "nothing learned:\n{}", feint.output());
    assert!(
        feint
            .wait_for_line("a passive observer comparing record counts can tell", WAIT)
            .is_some(),
        "nginx splits its flight, and feint should say so:\n{}",
        feint.output()
    );

    let first = ClientOptions::default().hello(&secret);
    let direct = ask_nginx(nginx.tls_addr, &first);
    let (records, rest) = record::structure(&direct);
    assert_eq!(rest, 0, "nginx's flight ends on a record boundary");
    assert_eq!(records[..2], [(HANDSHAKE, 122), (CHANGE_CIPHER_SPEC, 1)]);
    let nginx_flight: Vec<usize> = records[2..]
        .iter()
        .map(|&(kind, len)| {
            assert_eq!(kind, APPLICATION_DATA);
            len
        })
        .collect();
    assert!(nginx_flight.len() > 1, "nginx 1.22 sends {nginx_flight:?}");
    let nginx_hello = server_hello(&direct);
    // OpenSSL 3.0 knows no ML-KEM: it takes the client's first suite and its X25519 share, and
    // names supported_versions before key_share.
    assert_eq!(nginx_hello.cipher_suite, [0x13, 0x01]);
    assert_eq!(nginx_hello.extensions, [0x002b, 0x0033]);

    let mut certificate_lengths = Vec::new();
    for hello in [first, ClientOptions::default().hello(&secret)] {
        let ours = ask_feint(&feint, &secret, &hello);
        assert_eq!(server_hello(&ours), nginx_hello, "{}", feint.output());
        let (records, rest) = record::structure(&ours);
        assert_eq!(rest, 0);
        assert_eq!(records.len(), 3);
        assert_eq!(records[1], (CHANGE_CIPHER_SPEC, 1));
        assert_eq!(records[2].0, APPLICATION_DATA);
        certificate_lengths.push(records[2].1);
    }
    let whole_flight: usize = nginx_flight.iter().sum();
    assert_eq!(certificate_lengths, [whole_flight, whole_flight]);
}

#[test]
fn without_a_probe_the_reply_is_the_default_one() {
    let secret = Secret::random(DOMAIN);
    let nginx = Nginx::start(DOMAIN).unwrap();
    let args = [
        "--front".to_string(),
        nginx.tls_addr.to_string(),
        "--no-front-probe".to_string(),
    ];
    let feint = Feint::start(bin(), &secret, &args).unwrap();
    let ours = ask_feint(&feint, &secret, &ClientOptions::default().hello(&secret));
    let shape = server_hello(&ours);
    // PROTOCOL.md §3.1: key_share before supported_versions, a 2500..4763-byte certificate.
    assert_eq!(shape.extensions, [0x0033, 0x002b]);
    assert_eq!(shape.record_len, 122);
    let (records, _) = record::structure(&ours);
    assert!((2500..=4763).contains(&records[2].1), "{records:?}");
    assert!(!feint.output().contains("answers a TDLib hello"));
}
