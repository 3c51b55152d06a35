//! The bench's tools against each other on loopback, without feint: load client ↔ fake DC
//! directly and through the plain relay, with loopback's and with internet-sized segments, and a
//! proxy-like obfs2 client ↔ the DC's obfs2 side.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

use feint_bench::command::{Command, ACK};
use feint_bench::dc::{self, Framing};
use feint_bench::load::throughput::Direction;
use feint_bench::load::{self, handshake, idle, pingpong, throughput, Target};
use feint_bench::obfs2::initiator_frame;
use feint_bench::relay::{self, Crypto};
use feint_bench::sys::{connect, max_segment, reuseport_listener, INTERNET_SEGMENT};

fn any() -> SocketAddr {
    "127.0.0.1:0".parse().unwrap()
}

/// A DC with a raw and an obfs2 listener, living for a minute in a background thread.
fn start_dc() -> (SocketAddr, SocketAddr) {
    start_dc_with(None)
}

/// The same, its listeners set to TCP_MAXSEG `segment` when given.
fn start_dc_with(segment: Option<u32>) -> (SocketAddr, SocketAddr) {
    let raw = reuseport_listener(any(), segment).unwrap();
    let obfs2 = reuseport_listener(any(), segment).unwrap();
    let addresses = (raw.local_addr().unwrap(), obfs2.local_addr().unwrap());
    std::thread::spawn(move || {
        dc::run(
            vec![(raw, Framing::Raw), (obfs2, Framing::Obfs2)],
            Duration::from_secs(60),
        )
    });
    addresses
}

const LIMIT: Duration = Duration::from_secs(20);

#[test]
fn throughput_moves_every_byte_directly_and_through_the_relay() {
    let (raw, _) = start_dc();
    let (relayed, _handles) =
        relay::start(any(), raw, 2, Crypto::None, Duration::from_secs(60)).unwrap();
    for target in [Target::Raw(raw), Target::Raw(relayed)] {
        for direction in [Direction::Up, Direction::Down, Direction::Both] {
            for connections in [1, 8] {
                let bytes = throughput::round_to_records(4 << 20);
                let outcome =
                    throughput::run(&target, direction, connections, bytes, LIMIT).unwrap();
                assert!(outcome.complete, "{target:?} {direction:?} {connections}");
                let per = if direction == Direction::Both { 2 } else { 1 };
                assert_eq!(outcome.bytes, per * bytes * connections as u64);
            }
        }
    }
}

#[test]
fn connections_carry_internet_sized_segments_when_asked() {
    let (raw, _) = start_dc_with(Some(INTERNET_SEGMENT));
    let (relayed, _handles) =
        relay::start(any(), raw, 1, Crypto::None, Duration::from_secs(60)).unwrap();
    // The client's own clamp, against a listener that announces loopback's size ...
    let client = connect(relayed, Some(INTERNET_SEGMENT), LIMIT).unwrap();
    let clamped = max_segment(&client).unwrap();
    assert!((1000..=INTERNET_SEGMENT).contains(&clamped), "{clamped}");
    // ... the listener's, against a client that asks for nothing ...
    let plain = connect(raw, None, LIMIT).unwrap();
    let announced = max_segment(&plain).unwrap();
    assert!(
        (1000..=INTERNET_SEGMENT).contains(&announced),
        "{announced}"
    );
    // ... and loopback's own where neither asks.
    let (loopback, _) = start_dc();
    let wide = max_segment(&connect(loopback, None, LIMIT).unwrap()).unwrap();
    assert!(wide > 16 * 1024, "{wide}");
}

#[test]
fn throughput_moves_every_byte_with_internet_sized_segments() {
    // Only this test sets the load client's segment; the others pass with either size.
    load::use_segment(Some(INTERNET_SEGMENT));
    let (raw, _) = start_dc_with(Some(INTERNET_SEGMENT));
    let (relayed, _handles) =
        relay::start(any(), raw, 2, Crypto::None, Duration::from_secs(60)).unwrap();
    for direction in [Direction::Up, Direction::Down, Direction::Both] {
        for connections in [1, 16] {
            let bytes = throughput::round_to_records(1 << 20);
            let outcome =
                throughput::run(&Target::Raw(relayed), direction, connections, bytes, LIMIT)
                    .unwrap();
            assert!(outcome.complete, "{direction:?} {connections}");
            let per = if direction == Direction::Both { 2 } else { 1 };
            assert_eq!(outcome.bytes, per * bytes * connections as u64);
        }
    }
    load::use_segment(None);
}

#[test]
fn round_trips_and_handshakes_complete_through_the_relay() {
    let (raw, _) = start_dc();
    let (relayed, _handles) =
        relay::start(any(), raw, 1, Crypto::TwoPasses, Duration::from_secs(60)).unwrap();
    let target = Target::Raw(relayed);
    let mut outcome = pingpong::run(&target, 4, 128, 200, 10, LIMIT).unwrap();
    assert!(outcome.complete);
    assert_eq!(outcome.round_trips.len(), 800);
    assert!(outcome.round_trips.quantile(0.5) > Duration::ZERO);
    let outcome = handshake::run(&target, 4, Duration::from_millis(300)).unwrap();
    assert!(outcome.connections > 10);
    assert_eq!(outcome.failures, 0);
}

#[test]
fn idle_sessions_stay_open_until_closed() {
    let (raw, _) = start_dc();
    let (relayed, _handles) =
        relay::start(any(), raw, 2, Crypto::None, Duration::from_secs(60)).unwrap();
    let sessions = idle::open(&Target::Raw(relayed), 200, 4, LIMIT).unwrap();
    assert_eq!(sessions.len(), 200);
    idle::close(sessions);
}

#[test]
fn dc_reads_a_proxy_header_echoes_through_ciphers_and_acks_an_upload() {
    let (_, obfs2) = start_dc();
    // Echo: header, command and a message, each through the keys of docs/PROTOCOL.md §5.5.
    let mut stream = TcpStream::connect(obfs2).unwrap();
    stream.set_read_timeout(Some(LIMIT)).unwrap();
    let random: [u8; 64] = std::array::from_fn(|i| (i * 13 + 1) as u8);
    let (wire, mut streams) = initiator_frame(random, 2, None);
    let mut message = Command::Echo { close_after: 0 }.encode().to_vec();
    message.extend_from_slice(b"hello, DC");
    streams.send.apply(&mut message);
    stream.write_all(&wire).unwrap();
    stream.write_all(&message).unwrap();
    let mut echoed = [0u8; 9];
    stream.read_exact(&mut echoed).unwrap();
    streams.receive.apply(&mut echoed);
    assert_eq!(&echoed, b"hello, DC");

    // Upload: filler the DC never deciphers, then an ACK at DC-to-proxy position 0.
    let mut stream = TcpStream::connect(obfs2).unwrap();
    stream.set_read_timeout(Some(LIMIT)).unwrap();
    let (wire, mut streams) = initiator_frame(random, 2, None);
    let mut command = Command::Sink { bytes: 100_000 }.encode();
    streams.send.apply(&mut command);
    stream.write_all(&wire).unwrap();
    stream.write_all(&command).unwrap();
    stream.write_all(&vec![0x33; 100_000]).unwrap();
    let mut ack = [0u8; 1];
    stream.read_exact(&mut ack).unwrap();
    streams.receive.apply(&mut ack);
    assert_eq!(ack[0], ACK);
}
