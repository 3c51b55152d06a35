//! The kit checked against itself and against real programs, without feint: the FakeTLS client
//! against a reference server written here from docs/PROTOCOL.md §3, the fake DC against the kit's
//! obfs2 initiator, and nginx against the rustls client and the kit's crafted hellos.

use std::io::{Read, Write};
use std::net::{Ipv4Addr, Shutdown, TcpListener, TcpStream};
use std::thread;
use std::time::Duration;

use feint_testkit::crypto::{hmac_sha256, random_bytes};
use feint_testkit::dc::{DcMode, FakeDc};
use feint_testkit::hello::{self, HelloShape};
use feint_testkit::obfs2::{self, HEADER_LEN, TAG_PADDED_INTERMEDIATE};
use feint_testkit::record::{self, MAX_SERVER_PAYLOAD};
use feint_testkit::wire::{self, Ending};
use feint_testkit::{tls, unix_now, ClientOptions, FakeTlsClient, Nginx, Secret};

const DOMAIN: &str = "www.example.com";
const TIMEOUT: Duration = Duration::from_secs(10);

/// A one-connection FakeTLS server per docs/PROTOCOL.md §3 that echoes the obfs2 stream.
fn reference_server(secret: Secret) -> (std::net::SocketAddr, thread::JoinHandle<(i16, usize)>) {
    let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).unwrap();
    let addr = listener.local_addr().unwrap();
    let handle = thread::spawn(move || {
        let (mut s, _) = listener.accept().unwrap();
        s.set_read_timeout(Some(TIMEOUT)).unwrap();
        let mut head = [0u8; 5];
        s.read_exact(&mut head).unwrap();
        let mut hello = head.to_vec();
        hello.resize(5 + u16::from_be_bytes([head[3], head[4]]) as usize, 0);
        s.read_exact(&mut hello[5..]).unwrap();
        let ts = hello::verify(&hello, &secret.key).expect("digest verifies");
        assert!(ts.abs_diff(unix_now()) < 60);

        let mut reply = vec![
            0x16, 0x03, 0x03, 0x00, 0x7a, 0x02, 0x00, 0x00, 0x76, 0x03, 0x03,
        ];
        reply.extend_from_slice(&[0; 32]);
        reply.extend_from_slice(&hello[43..76]);
        reply.extend_from_slice(&[0x13, 0x01, 0x00, 0x00, 0x2e]);
        reply.extend_from_slice(&[0x00, 0x33, 0x00, 0x24, 0x00, 0x1d, 0x00, 0x20]);
        reply.extend_from_slice(&random_bytes(32));
        reply.extend_from_slice(&[0x00, 0x2b, 0x00, 0x02, 0x03, 0x04]);
        reply.extend_from_slice(&record::CCS);
        reply.extend_from_slice(&[0x17, 0x03, 0x03, 0x0b, 0xb8]);
        reply.extend_from_slice(&random_bytes(3000));
        let random = hmac_sha256(&secret.key, &[&hello[11..43], &reply]);
        reply[11..43].copy_from_slice(&random);
        s.write_all(&reply).unwrap();

        let ccs = record::read_record(&mut s).unwrap().unwrap();
        assert_eq!(ccs.kind, record::CHANGE_CIPHER_SPEC);
        let mut stream = Vec::new();
        while stream.len() < HEADER_LEN {
            stream.extend(record::read_record(&mut s).unwrap().unwrap().payload);
        }
        let header: [u8; HEADER_LEN] = stream[..HEADER_LEN].try_into().unwrap();
        let mut accepted = obfs2::accept(&header, Some(&secret.key));
        assert_eq!(accepted.tag, TAG_PADDED_INTERMEDIATE);
        let mut pending = stream[HEADER_LEN..].to_vec();
        let mut total = 0;
        loop {
            if !pending.is_empty() {
                accepted.ciphers.receive.apply(&mut pending);
                total += pending.len();
                accepted.ciphers.send.apply(&mut pending);
                let framed = record::frame_app_data(&pending, MAX_SERVER_PAYLOAD);
                s.write_all(&framed).unwrap();
            }
            match record::read_record(&mut s).unwrap() {
                Some(r) => pending = r.payload,
                None => break,
            }
        }
        s.shutdown(Shutdown::Write).unwrap();
        (accepted.dc, total)
    });
    (addr, handle)
}

#[test]
fn client_round_trips_through_the_reference_server() {
    for shape in [HelloShape::Classic, HelloShape::Modern] {
        let secret = Secret::random(DOMAIN);
        let (addr, server) = reference_server(secret.clone());
        let options = ClientOptions {
            shape,
            dc: -4,
            ..ClientOptions::default()
        };
        let client = FakeTlsClient::connect(addr, &secret, &options).unwrap();
        let (mut writer, mut reader) = client.split();
        let data = random_bytes(300_000);
        let sent = data.clone();
        let w = thread::spawn(move || {
            for chunk in sent.chunks(7000) {
                writer.send(chunk).unwrap();
            }
            writer.shutdown_write().unwrap();
        });
        let back = reader.recv_to_eof(1 << 20).unwrap();
        w.join().unwrap();
        assert_eq!(back, data);
        assert_eq!(server.join().unwrap(), (-4, data.len()));
    }
}

#[test]
fn client_rejects_a_reply_signed_with_another_key() {
    let secret = Secret::random(DOMAIN);
    let (addr, _server) = reference_server(secret.clone());
    let mut other = secret.clone();
    other.key[0] ^= 1;
    // The server checks the digest with its own key, so sign with it but verify with another.
    let hello = ClientOptions::default().hello(&secret);
    let stream = feint_testkit::client::connect(addr, TIMEOUT).unwrap();
    let err = FakeTlsClient::handshake(stream, &other, &ClientOptions::default(), hello)
        .err()
        .expect("reply must not verify");
    assert_eq!(err.kind(), std::io::ErrorKind::InvalidData);
}

#[test]
fn fake_dc_decodes_header_and_echoes() {
    let dc = FakeDc::start(DcMode::EchoThenOnEof(b"bye".to_vec())).unwrap();
    let (header, mut ciphers) = obfs2::initiate(TAG_PADDED_INTERMEDIATE, -2, None);
    let mut s = TcpStream::connect_timeout(&dc.addr(), TIMEOUT).unwrap();
    s.set_read_timeout(Some(TIMEOUT)).unwrap();
    let data = obfs2::frame_padded(b"the first packet");
    let mut wire_bytes = data.clone();
    ciphers.send.apply(&mut wire_bytes);
    s.write_all(&header).unwrap();
    s.write_all(&wire_bytes).unwrap();
    s.shutdown(Shutdown::Write).unwrap();
    let mut back = Vec::new();
    s.read_to_end(&mut back).unwrap();
    ciphers.receive.apply(&mut back);
    let mut expected = data.clone();
    expected.extend_from_slice(b"bye");
    assert_eq!(back, expected);
    let conns = dc.wait_until(TIMEOUT, |c| c.len() == 1 && c[0].finished);
    assert_eq!(conns[0].tag, TAG_PADDED_INTERMEDIATE);
    assert_eq!(conns[0].dc, -2);
    assert_eq!(conns[0].received, data);
    assert!(conns[0].peer_closed);
    assert!(conns[0].error.is_none(), "{:?}", conns[0].error);
}

#[test]
fn nginx_serves_the_page_over_tls_and_http() {
    let nginx = Nginx::start(DOMAIN).unwrap();
    let answer = tls::request(nginx.tls_addr, DOMAIN, &tls::get_request(DOMAIN), TIMEOUT).unwrap();
    assert!(
        answer.starts_with(b"HTTP/1.1 200 OK\r\n"),
        "{}",
        String::from_utf8_lossy(&answer)
    );
    assert!(answer.ends_with(&nginx.index));

    let (plain, ending) = wire::exchange(
        nginx.http_addr,
        &tls::get_request(DOMAIN),
        false,
        Duration::from_secs(3),
        TIMEOUT,
    )
    .unwrap();
    assert_eq!(ending, Ending::Eof);
    assert!(plain.ends_with(&nginx.index));

    let (bad, _) = wire::exchange(
        nginx.tls_addr,
        &tls::get_request(DOMAIN),
        false,
        Duration::from_secs(3),
        TIMEOUT,
    )
    .unwrap();
    assert!(
        bad.starts_with(b"HTTP/1.1 400 Bad Request\r\n"),
        "{}",
        String::from_utf8_lossy(&bad)
    );
    assert!(String::from_utf8_lossy(&bad).contains("plain HTTP request was sent to HTTPS port"));
}

/// The crafted hellos are real enough that OpenSSL answers them with a TLS 1.3 flight; the
/// fronting tests depend on that.
#[test]
fn nginx_answers_the_kit_hellos() {
    let nginx = Nginx::start(DOMAIN).unwrap();
    let secret = Secret::random(DOMAIN);
    for shape in [HelloShape::Classic, HelloShape::Modern] {
        let hello = ClientOptions {
            shape,
            ..ClientOptions::default()
        }
        .hello(&secret);
        let (answer, _) = wire::exchange(
            nginx.tls_addr,
            &hello,
            false,
            Duration::from_millis(700),
            TIMEOUT,
        )
        .unwrap();
        let (records, rest) = record::structure(&answer);
        assert_eq!(rest, 0, "{shape:?}");
        assert!(
            records.len() > 1,
            "{shape:?}: {answer:02x?}\n{}",
            nginx.error_log()
        );
        assert_eq!(records[0].0, record::HANDSHAKE, "{shape:?}: {records:?}");
        assert!(records.len() >= 3, "{shape:?}: {records:?}");
        assert!(
            records[1..].iter().any(|r| r.0 == record::APPLICATION_DATA),
            "{shape:?}: {records:?}"
        );
        assert!(!feint_testkit::reply::verify(
            &answer,
            &hello::client_random(&hello),
            &secret.key
        ));
    }
}
