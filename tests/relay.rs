//! Valid clients through the real binary to fake DCs: both hello shapes, small and
//! multi-megabyte payloads, every DC id (signed, media too), IPv4 and IPv6, and real TDLib bytes.

use std::io::Write;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, TcpListener};
use std::path::PathBuf;
use std::thread;
use std::time::Duration;

use feint_testkit::crypto::random_bytes;
use feint_testkit::dc::{self, DcMode};
use feint_testkit::front::FrontMode;
use feint_testkit::obfs2::{self, frame_padded, TAG_PADDED_INTERMEDIATE};
use feint_testkit::{
    client, feint, unix_now, ClientOptions, FakeDc, FakeTlsClient, Feint, HelloShape,
    RecordingFront, Secret,
};

const DOMAIN: &str = "www.example.com";
const WAIT: Duration = Duration::from_secs(10);

fn bin() -> PathBuf {
    feint::binary(env!("CARGO_BIN_EXE_feint"))
}

/// feint on `ip` with DCs 1..5 on `ip`, a recording front, and `extra` flags.
struct Setup {
    secret: Secret,
    dcs: Vec<FakeDc>,
    front: RecordingFront,
    feint: Feint,
}

fn setup(ip: IpAddr, extra: &[&str]) -> Setup {
    let secret = Secret::random(DOMAIN);
    let dcs: Vec<FakeDc> = (1..=5)
        .map(|_| FakeDc::start_on(ip, DcMode::Echo).unwrap())
        .collect();
    let front = RecordingFront::start(FrontMode::Record).unwrap();
    let mut args = vec![
        "--bind".to_string(),
        std::net::SocketAddr::new(ip, 0).to_string(),
        "--front".to_string(),
        front.addr().to_string(),
        // A recording front must see only fronted connections.
        "--no-front-probe".to_string(),
    ];
    args.extend(dc::routes(&dcs));
    args.extend(extra.iter().map(|s| s.to_string()));
    let feint = Feint::start(bin(), &secret, &args).unwrap();
    Setup {
        secret,
        dcs,
        front,
        feint,
    }
}

/// Sends `size` bytes in padded-intermediate frames through a fresh client and checks that the
/// DC receives them and the client gets them back, byte for byte; writes on a second thread so
/// neither side stalls on full socket buffers.
fn round_trip(s: &Setup, options: &ClientOptions, size: usize) {
    let client = FakeTlsClient::connect(s.feint.addr(), &s.secret, options)
        .unwrap_or_else(|e| panic!("handshake: {e}\nfeint:\n{}", s.feint.output()));
    let mut stream = Vec::with_capacity(size + size / 1000 * 20);
    while stream.len() < size {
        let n = (size - stream.len()).min(4000);
        stream.extend(frame_padded(&random_bytes(n)));
    }
    let (mut writer, mut reader) = client.split();
    let sent = stream.clone();
    let w = thread::spawn(move || {
        for chunk in sent.chunks(16 * 1024) {
            writer.send(chunk).unwrap();
        }
        writer
    });
    let back = reader.recv_exact(stream.len()).unwrap();
    let _writer = w.join().unwrap();
    assert!(back == stream, "echo differs ({} bytes)", stream.len());

    let index = (options.dc.unsigned_abs() - 1) as usize;
    let conns =
        s.dcs[index].wait_until(WAIT, |c| c.iter().any(|c| c.received.len() >= stream.len()));
    let conn = conns.last().expect("the DC saw a connection");
    assert_eq!(conn.tag, TAG_PADDED_INTERMEDIATE);
    assert_eq!(conn.dc, options.dc, "the DC id arrives signed");
    assert!(conn.received == stream, "DC received different bytes");
    assert!(
        s.front.fronted_connections().is_empty(),
        "a valid client was fronted"
    );
}

#[test]
fn classic_hello_round_trips_a_small_payload() {
    let s = setup(IpAddr::V4(Ipv4Addr::LOCALHOST), &[]);
    let options = ClientOptions {
        shape: HelloShape::Classic,
        ..ClientOptions::default()
    };
    round_trip(&s, &options, 100);
}

#[test]
fn modern_hello_round_trips_a_small_payload() {
    let s = setup(IpAddr::V4(Ipv4Addr::LOCALHOST), &[]);
    round_trip(&s, &ClientOptions::default(), 100);
}

#[test]
fn both_shapes_round_trip_megabytes() {
    let s = setup(IpAddr::V4(Ipv4Addr::LOCALHOST), &[]);
    for (shape, size) in [
        (HelloShape::Classic, 1 << 20),
        (HelloShape::Modern, 4 << 20),
    ] {
        let options = ClientOptions {
            shape,
            dc: 4,
            timeout: Duration::from_secs(30),
            ..ClientOptions::default()
        };
        round_trip(&s, &options, size);
    }
}

#[test]
fn every_dc_id_is_routed_and_arrives_signed() {
    let s = setup(IpAddr::V4(Ipv4Addr::LOCALHOST), &[]);
    for dc in [1, 2, 3, 4, 5, -1, -2, -5] {
        let options = ClientOptions {
            dc,
            ..ClientOptions::default()
        };
        round_trip(&s, &options, 64);
    }
}

#[test]
fn round_trips_over_ipv6() {
    if TcpListener::bind((Ipv6Addr::LOCALHOST, 0)).is_err() {
        eprintln!("skipping: ::1 is not available here");
        return;
    }
    let s = setup(IpAddr::V6(Ipv6Addr::LOCALHOST), &[]);
    assert!(s.feint.addr().is_ipv6(), "{}", s.feint.output());
    for shape in [HelloShape::Classic, HelloShape::Modern] {
        let options = ClientOptions {
            shape,
            dc: -3,
            ..ClientOptions::default()
        };
        round_trip(&s, &options, 200_000);
    }
}

#[test]
fn data_records_to_the_client_are_application_data_of_at_most_16384_bytes() {
    let s = setup(IpAddr::V4(Ipv4Addr::LOCALHOST), &[]);
    let mut client =
        FakeTlsClient::connect(s.feint.addr(), &s.secret, &ClientOptions::default()).unwrap();
    let data = frame_padded(&random_bytes(100_000));
    client.send(&data).unwrap();
    // recv_exact fails on any record that is not `17 03 03`, empty, or over 16384 bytes.
    assert_eq!(client.recv_exact(data.len()).unwrap(), data);
    assert!(client
        .reader
        .record_lengths
        .iter()
        .all(|&n| (1..=16384).contains(&n)));
}

fn capture() -> (Vec<u8>, usize) {
    let path = format!(
        "{}/tests/kit/fixtures/tdlib-1.8.69/client-to-proxy-003.bin",
        env!("CARGO_MANIFEST_DIR")
    );
    let capture = std::fs::read(path).unwrap();
    let hello_len = 5 + u16::from_be_bytes([capture[3], capture[4]]) as usize;
    (capture, hello_len)
}

/// A real TDLib 1.8.69 connection from the capture (its hello, CCS and first ApplicationData
/// record) reaches DC 2 with TDLib's first packet intact. The capture is older than feint's
/// largest skew window (24h), so its hello is re-signed with the current time: every byte but
/// the 32 of the random is TDLib's. The key is the fixture's.
#[test]
fn captured_tdlib_connection_reaches_its_dc() {
    let secret = Secret::new(core::array::from_fn(|i| i as u8), DOMAIN);
    let dcs: Vec<FakeDc> = (1..=5)
        .map(|_| FakeDc::start(DcMode::Silent).unwrap())
        .collect();
    let front = RecordingFront::start(FrontMode::Record).unwrap();
    let mut args = vec![
        "--front".to_string(),
        front.addr().to_string(),
        // A recording front must see only fronted connections.
        "--no-front-probe".to_string(),
    ];
    args.extend(dc::routes(&dcs));
    let feint = Feint::start(bin(), &secret, &args).unwrap();

    let (mut capture, hello_len) = capture();
    feint_testkit::hello::sign(&mut capture[..hello_len], &secret.key, unix_now());
    let mut stream = client::connect(feint.addr(), WAIT).unwrap();
    stream.write_all(&capture[..hello_len]).unwrap();
    let reply = feint_testkit::reply::read(&mut stream)
        .unwrap_or_else(|e| panic!("{e}\nfeint:\n{}", feint.output()));
    let client_random = feint_testkit::hello::client_random(&capture);
    assert!(feint_testkit::reply::verify(
        &reply,
        &client_random,
        &secret.key
    ));
    stream.write_all(&capture[hello_len..]).unwrap();

    // The capture's records after the CCS carry the 64-byte header, then TDLib's packet.
    let mut payload = Vec::new();
    let mut rest = &capture[hello_len + 6..];
    while let Ok(Some(r)) = feint_testkit::record::read_record(&mut rest) {
        payload.extend(r.payload);
    }
    let packet_len = payload.len() - 64;
    let conns = dcs[1].wait_until(WAIT, |c| c.iter().any(|c| c.received.len() >= packet_len));
    assert_eq!(conns.len(), 1, "feint:\n{}", feint.output());
    assert_eq!((conns[0].tag, conns[0].dc), (TAG_PADDED_INTERMEDIATE, 2));
    let received = &conns[0].received;
    assert_eq!(received.len(), packet_len);
    // padded intermediate: length, then auth_key_id 0, msg_id, length, req_pq_multi.
    let frame_len = u32::from_le_bytes(received[..4].try_into().unwrap()) as usize;
    assert_eq!(frame_len + 4, packet_len);
    assert_eq!(received[4..12], [0; 8], "auth_key_id 0");
    assert_eq!(
        received[24..28],
        0xbe7e_8ef1u32.to_le_bytes(),
        "req_pq_multi"
    );
    assert!(front.fronted_connections().is_empty());
}

/// The same capture as it is, stamped hours ago: outside the 5-minute default window, so it is
/// fronted, and the front receives every byte the client sent, unchanged.
#[test]
fn stale_captured_tdlib_connection_is_fronted_unchanged() {
    let secret = Secret::new(core::array::from_fn(|i| i as u8), DOMAIN);
    let dc = FakeDc::start(DcMode::Silent).unwrap();
    let front = RecordingFront::start(FrontMode::Record).unwrap();
    let args = [
        "--front".to_string(),
        front.addr().to_string(),
        // A recording front must see only fronted connections.
        "--no-front-probe".to_string(),
        "--dc".to_string(),
        format!("2={}", dc.addr()),
    ];
    let feint = Feint::start(bin(), &secret, &args).unwrap();
    let (capture, hello_len) = capture();
    let stamped = feint_testkit::hello::verify(&capture[..hello_len], &secret.key).unwrap();
    assert!(
        unix_now().abs_diff(stamped) > 3600,
        "the capture is fresh; this test needs it old"
    );
    let mut stream = client::connect(feint.addr(), WAIT).unwrap();
    stream.write_all(&capture).unwrap();
    stream.shutdown(std::net::Shutdown::Write).unwrap();
    let conns = front.wait_until(WAIT, |c| c.len() == 1 && c[0].peer_closed);
    assert_eq!(conns.len(), 1, "feint:\n{}", feint.output());
    assert!(
        conns[0].received == capture,
        "the front got different bytes"
    );
    assert!(dc.connections().is_empty());
}

/// The reply is ServerHello + CCS + one ApplicationData record (read and HMAC-checked by the
/// client), echoes the session id, picks a TLS 1.3 suite, and is followed by silence until the
/// client speaks: Android HMACs every byte it has received (docs/PROTOCOL.md §3.2).
#[test]
fn reply_is_one_flight_then_silence() {
    let s = setup(IpAddr::V4(Ipv4Addr::LOCALHOST), &[]);
    for shape in [HelloShape::Classic, HelloShape::Modern] {
        let options = ClientOptions {
            shape,
            ..ClientOptions::default()
        };
        let c = FakeTlsClient::connect(s.feint.addr(), &s.secret, &options).unwrap();
        let (hello, reply) = (&c.hello, &c.reply);
        assert_eq!(reply[..3], [0x16, 0x03, 0x03]);
        assert_eq!(reply[5], 0x02, "ServerHello");
        assert_eq!(reply[43], 0x20);
        assert_eq!(reply[44..76], hello[44..76], "session id echoed");
        let suite = [reply[76], reply[77]];
        assert!(
            [[0x13, 0x01], [0x13, 0x02], [0x13, 0x03]].contains(&suite),
            "suite {suite:02x?}"
        );
        let (_writer, mut reader) = c.split();
        let mut byte = [0u8; 1];
        let quiet = reader.read_raw_with_timeout(&mut byte, Duration::from_millis(500));
        assert!(quiet.is_err(), "feint sent more after its reply: {quiet:?}");
    }
}

#[test]
fn hellos_inside_the_skew_window_are_served() {
    let s = setup(IpAddr::V4(Ipv4Addr::LOCALHOST), &["--time-skew", "2m"]);
    for offset in [-100i64, 100] {
        let options = ClientOptions {
            time: Some((i64::from(unix_now()) + offset) as u32),
            ..ClientOptions::default()
        };
        round_trip(&s, &options, 100);
    }
}

#[test]
fn every_bound_address_serves() {
    let second = if TcpListener::bind((Ipv6Addr::LOCALHOST, 0)).is_ok() {
        "[::1]:0"
    } else {
        "127.0.0.1:0"
    };
    let s = setup(IpAddr::V4(Ipv4Addr::LOCALHOST), &["--bind", second]);
    assert_eq!(s.feint.addrs().len(), 2, "{}", s.feint.output());
    for &addr in s.feint.addrs() {
        let mut c = FakeTlsClient::connect(addr, &s.secret, &ClientOptions::default())
            .unwrap_or_else(|e| panic!("{addr}: {e}"));
        let data = frame_padded(b"hello");
        c.send(&data).unwrap();
        assert_eq!(c.recv_exact(data.len()).unwrap(), data, "{addr}");
    }
}

/// After the ServerHello, fronting is no longer possible: a wrong obfs2 tag or a DC feint has no
/// route for closes the connection, and no DC or front is contacted.
#[test]
fn wrong_tag_or_unknown_dc_after_the_reply_closes() {
    let s = setup(IpAddr::V4(Ipv4Addr::LOCALHOST), &[]);
    let cases = [
        ("tag ee (intermediate)", obfs2::TAG_INTERMEDIATE, 2),
        ("tag ef (abridged)", obfs2::TAG_ABRIDGED, 2),
        ("DC 7", TAG_PADDED_INTERMEDIATE, 7),
        ("DC -7", TAG_PADDED_INTERMEDIATE, -7),
    ];
    for (case, tag, dc) in cases {
        let options = ClientOptions {
            tag,
            dc,
            ..ClientOptions::default()
        };
        let mut c = FakeTlsClient::connect(s.feint.addr(), &s.secret, &options).unwrap();
        c.send(&frame_padded(b"first packet")).unwrap();
        let end = c.recv_to_eof(1 << 16);
        let closed = match &end {
            Ok(rest) => rest.is_empty(),
            Err(e) => matches!(
                e.kind(),
                std::io::ErrorKind::ConnectionReset | std::io::ErrorKind::ConnectionAborted
            ),
        };
        assert!(closed, "{case}: expected a close, got {end:?}");
    }
    for (i, dc) in s.dcs.iter().enumerate() {
        assert!(dc.connections().is_empty(), "DC {} was contacted", i + 1);
    }
    assert!(
        s.front.fronted_connections().is_empty(),
        "fronted after the ServerHello"
    );
}

/// A 1.7 KB hello does not fit one segment on a real path (docs/PROTOCOL.md §2.6): written in
/// pieces of 100 bytes (and of 1 byte for the record header), it is still served.
#[test]
fn hello_written_in_pieces_is_served() {
    let s = setup(IpAddr::V4(Ipv4Addr::LOCALHOST), &[]);
    let options = ClientOptions::default();
    let hello = options.hello(&s.secret);
    let mut stream = client::connect(s.feint.addr(), WAIT).unwrap();
    for piece in hello[..5].chunks(1).chain(hello[5..].chunks(100)) {
        stream.write_all(piece).unwrap();
    }
    let reply = feint_testkit::reply::read(&mut stream).unwrap();
    assert!(feint_testkit::reply::verify(
        &reply,
        &feint_testkit::hello::client_random(&hello),
        &s.secret.key
    ));
}

/// Records and the obfs2 header cut at every boundary a client may produce: 7-byte records,
/// written 3 bytes at a time, so record headers and the 64-byte header span reads.
#[test]
fn records_and_header_split_across_reads_round_trip() {
    let s = setup(IpAddr::V4(Ipv4Addr::LOCALHOST), &[]);
    let c = FakeTlsClient::connect(s.feint.addr(), &s.secret, &ClientOptions::default()).unwrap();
    let (mut writer, mut reader) = c.split();
    let data = frame_padded(&random_bytes(3000));
    writer.send_fragmented(&data, 7, 3).unwrap();
    assert_eq!(reader.recv_exact(data.len()).unwrap(), data);
    let more = frame_padded(&random_bytes(20_000));
    writer.send_fragmented(&more, 2878, 1000).unwrap();
    assert_eq!(reader.recv_exact(more.len()).unwrap(), more);
}

/// Thirty-two clients at once, 256 KB each way, all intact.
#[test]
fn many_clients_at_once_round_trip() {
    let s = setup(IpAddr::V4(Ipv4Addr::LOCALHOST), &[]);
    let addr = s.feint.addr();
    let clients: Vec<_> = (0..32)
        .map(|i| {
            let secret = s.secret.clone();
            thread::spawn(move || {
                let options = ClientOptions {
                    dc: [1, 2, 3, 4, 5, -1, -2, -3][i % 8],
                    shape: if i % 2 == 0 {
                        HelloShape::Classic
                    } else {
                        HelloShape::Modern
                    },
                    timeout: Duration::from_secs(30),
                    ..ClientOptions::default()
                };
                let c = FakeTlsClient::connect(addr, &secret, &options)?;
                let (mut writer, mut reader) = c.split();
                let data = frame_padded(&random_bytes(256 * 1024));
                let sent = data.clone();
                let w = thread::spawn(move || {
                    for chunk in sent.chunks(10_000) {
                        writer.send(chunk)?;
                    }
                    Ok::<_, std::io::Error>(writer)
                });
                let back = reader.recv_exact(data.len())?;
                w.join().expect("writer thread")?;
                Ok::<_, std::io::Error>(back == data)
            })
        })
        .collect();
    for (i, c) in clients.into_iter().enumerate() {
        let intact = c.join().unwrap().unwrap_or_else(|e| {
            panic!("client {i}: {e}\nfeint:\n{}", s.feint.output());
        });
        assert!(intact, "client {i}: echo differs");
    }
}

/// `--idle-timeout` counts time without traffic, not the relay's age: a relay that trickles
/// data more often than the timeout outlives it several times over.
#[test]
fn idle_timeout_spares_a_relay_with_traffic() {
    let s = setup(IpAddr::V4(Ipv4Addr::LOCALHOST), &["--idle-timeout", "1s"]);
    let mut c =
        FakeTlsClient::connect(s.feint.addr(), &s.secret, &ClientOptions::default()).unwrap();
    // Pacing, not synchronization: 10 exchanges 300 ms apart span three idle timeouts.
    for i in 0..10u8 {
        let data = frame_padded(&[i; 16]);
        c.send(&data).unwrap();
        assert_eq!(c.recv_exact(data.len()).unwrap(), data, "exchange {i}");
        thread::sleep(Duration::from_millis(300));
    }
}

/// The DC's answers of 1, 4 and 12 bytes, coming apart, do not leave as records that small: a
/// TLS 1.3 record carries at least 17 bytes (content type and tag). Small reads wait 10 ms for
/// what follows and go out together. (What is still under 17 bytes then goes as it is; README
/// says so.)
#[test]
fn small_dc_answers_are_joined_into_records_a_tls_server_would_send() {
    let s = setup(IpAddr::V4(Ipv4Addr::LOCALHOST), &[]);
    let client = FakeTlsClient::connect(s.feint.addr(), &s.secret, &ClientOptions::default())
        .unwrap_or_else(|e| panic!("handshake: {e}\nfeint:\n{}", s.feint.output()));
    let (mut writer, mut reader) = client.split();
    let mut sent = Vec::new();
    for (round, size) in [1usize, 4, 12, 40].into_iter().enumerate() {
        let piece = vec![round as u8; size];
        writer.send(&piece).unwrap();
        sent.extend_from_slice(&piece);
        thread::sleep(Duration::from_millis(1));
    }
    let back = reader.recv_exact(sent.len()).unwrap();
    assert_eq!(back, sent, "the echo arrives whole and in order");
    assert!(
        reader.record_lengths.iter().all(|&len| len >= 17),
        "records to the client: {:?}",
        reader.record_lengths
    );
    // Alone, the same 1, 4 and 12 bytes wait for the tick and leave as one 17-byte record.
    let mut alone = Vec::new();
    for size in [1usize, 4, 12] {
        let piece = vec![0xa5; size];
        writer.send(&piece).unwrap();
        alone.extend_from_slice(&piece);
        thread::sleep(Duration::from_millis(1));
    }
    let records_before = reader.record_lengths.len();
    assert_eq!(reader.recv_exact(alone.len()).unwrap(), alone);
    assert_eq!(reader.record_lengths[records_before..], [17]);
}
