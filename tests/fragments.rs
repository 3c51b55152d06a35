//! Hellos split over several TLS records, as DPI-evasion tools send them (docs/PROTOCOL.md §2.6):
//! feint joins up to 10 records and verifies the rebuilt single record; more than that is
//! fronted with the bytes unchanged.

use std::io::Write;
use std::path::PathBuf;
use std::time::Duration;

use feint_testkit::front::FrontMode;
use feint_testkit::{client, feint, hello, reply, ClientOptions, Feint, RecordingFront, Secret};

const WAIT: Duration = Duration::from_secs(10);

fn bin() -> PathBuf {
    feint::binary(env!("CARGO_BIN_EXE_feint"))
}

/// The handshake bytes of a single-record hello, cut into `pieces` records of `16 03 01`.
fn split(record: &[u8], pieces: usize) -> Vec<u8> {
    let handshake = &record[5..];
    let size = handshake.len().div_ceil(pieces);
    let mut out = Vec::new();
    for chunk in handshake.chunks(size) {
        out.extend_from_slice(&[0x16, 0x03, 0x01]);
        out.extend_from_slice(&(chunk.len() as u16).to_be_bytes());
        out.extend_from_slice(chunk);
    }
    out
}

fn start(front: &RecordingFront, secret: &Secret) -> Feint {
    let args = [
        "--front".to_string(),
        front.addr().to_string(),
        // A recording front must see only fronted connections.
        "--no-front-probe".to_string(),
    ];
    Feint::start(bin(), secret, &args).unwrap()
}

#[test]
fn hello_split_into_records_is_joined_and_answered() {
    let secret = Secret::random("www.example.com");
    let front = RecordingFront::start(FrontMode::Record).unwrap();
    let feint = start(&front, &secret);
    for pieces in [2, 3, 10] {
        let record = ClientOptions::default().hello(&secret);
        let mut stream = client::connect(feint.addr(), WAIT).unwrap();
        stream.write_all(&split(&record, pieces)).unwrap();
        let answer = reply::read(&mut stream).unwrap();
        assert!(
            reply::verify(&answer, &hello::client_random(&record), &secret.key),
            "a hello in {pieces} records got no valid reply"
        );
    }
    assert!(
        front.fronted_connections().is_empty(),
        "nothing was fronted"
    );
}

#[test]
fn hello_split_at_handshake_offset_three_is_answered() {
    let secret = Secret::random("www.example.com");
    let front = RecordingFront::start(FrontMode::Record).unwrap();
    let feint = start(&front, &secret);
    let record = ClientOptions::default().hello(&secret);
    let handshake = &record[5..];
    let mut bytes = vec![0x16, 0x03, 0x01, 0x00, 0x03];
    bytes.extend_from_slice(&handshake[..3]);
    bytes.extend_from_slice(&[0x16, 0x03, 0x01]);
    bytes.extend_from_slice(&((handshake.len() - 3) as u16).to_be_bytes());
    bytes.extend_from_slice(&handshake[3..]);
    let mut stream = client::connect(feint.addr(), WAIT).unwrap();
    stream.write_all(&bytes).unwrap();
    let answer = reply::read(&mut stream).unwrap();
    assert!(reply::verify(
        &answer,
        &hello::client_random(&record),
        &secret.key
    ));
}

#[test]
fn hello_in_more_than_ten_records_goes_to_the_front_unchanged() {
    let secret = Secret::random("www.example.com");
    let front = RecordingFront::start(FrontMode::Record).unwrap();
    let feint = start(&front, &secret);
    let record = ClientOptions::default().hello(&secret);
    let bytes = split(&record, 11);
    let mut stream = client::connect(feint.addr(), WAIT).unwrap();
    stream.write_all(&bytes).unwrap();
    let seen = front.wait_until(WAIT, |c| c.len() == 1 && c[0].received.len() >= bytes.len());
    assert_eq!(seen.len(), 1, "fronted once:\n{}", feint.output());
    assert_eq!(seen[0].received, bytes, "the front got the bytes as sent");
}
