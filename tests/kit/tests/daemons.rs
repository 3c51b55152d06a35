//! The kit's launchers of real servers checked on their own, without feint: HAProxy puts the
//! PROXY protocol header it was asked for before the client's bytes, Dante CONNECTs a SOCKS5
//! client to a loopback echo server, and nginx logs the address a PROXY header carries.

use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4, TcpListener, TcpStream};
use std::thread;
use std::time::Duration;

use feint_testkit::client::connect_from;
use feint_testkit::haproxy::HeaderVersion;
use feint_testkit::nginx::ProxyHeader;
use feint_testkit::{Dante, Haproxy, Nginx};

const TIMEOUT: Duration = Duration::from_secs(10);
/// The test client's address: loopback, but not the 127.0.0.1 every server connects from.
const CLIENT_IP: Ipv4Addr = Ipv4Addr::new(127, 0, 0, 2);

fn v4(addr: SocketAddr) -> SocketAddrV4 {
    match addr {
        SocketAddr::V4(addr) => addr,
        SocketAddr::V6(_) => panic!("{addr} is not IPv4"),
    }
}

fn listener() -> (TcpListener, SocketAddr) {
    let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).unwrap();
    let addr = listener.local_addr().unwrap();
    (listener, addr)
}

/// Accepts one connection with bounded reads, or fails after `TIMEOUT`.
fn accept(listener: &TcpListener) -> TcpStream {
    listener.set_nonblocking(true).unwrap();
    for _ in 0..1000 {
        match listener.accept() {
            Ok((stream, _)) => {
                stream.set_nonblocking(false).unwrap();
                stream.set_read_timeout(Some(TIMEOUT)).unwrap();
                stream.set_write_timeout(Some(TIMEOUT)).unwrap();
                return stream;
            }
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                thread::sleep(Duration::from_millis(10));
            }
            Err(e) => panic!("accept: {e}"),
        }
    }
    panic!("nothing connected within {TIMEOUT:?}");
}

/// Sends `hello` through HAProxy to a backend of ours and returns what the backend read: the
/// header and the bytes, with the client's address. Checks the backend's answer gets back.
fn through_haproxy(version: HeaderVersion, hello: &[u8]) -> (Vec<u8>, SocketAddrV4, Haproxy) {
    let (backend, backend_addr) = listener();
    let haproxy = Haproxy::start(backend_addr, version).unwrap();
    let mut client = connect_from(CLIENT_IP, v4(haproxy.addr), TIMEOUT).unwrap();
    let client_addr = v4(client.local_addr().unwrap());
    client.write_all(hello).unwrap();
    let mut server = accept(&backend);
    let mut received = Vec::new();
    let mut buf = [0u8; 1024];
    for _ in 0..100 {
        if received.ends_with(hello) {
            break;
        }
        let n = server.read(&mut buf).unwrap();
        assert!(n > 0, "HAProxy closed early:\n{}", haproxy.log());
        received.extend_from_slice(&buf[..n]);
    }
    server.write_all(b"answer").unwrap();
    let mut answer = [0u8; 6];
    client.read_exact(&mut answer).unwrap();
    assert_eq!(&answer, b"answer");
    (received, client_addr, haproxy)
}

#[test]
fn haproxy_sends_a_v1_line_before_the_client_bytes() {
    let (received, client, haproxy) = through_haproxy(HeaderVersion::V1, b"hello");
    let expected = format!(
        "PROXY TCP4 {} 127.0.0.1 {} {}\r\nhello",
        client.ip(),
        client.port(),
        haproxy.addr.port()
    );
    assert_eq!(String::from_utf8_lossy(&received), expected);
}

#[test]
fn haproxy_sends_a_v2_header_before_the_client_bytes() {
    let (received, client, haproxy) = through_haproxy(HeaderVersion::V2, b"hello");
    assert_eq!(&received[..12], b"\r\n\r\n\0\r\nQUIT\n");
    assert_eq!(received[12], 0x21, "version 2, PROXY");
    assert_eq!(received[13], 0x11, "TCP over IPv4");
    let len = usize::from(u16::from_be_bytes([received[14], received[15]]));
    assert!(len >= 12 && received.len() == 16 + len + 5, "{received:?}");
    let mut block = client.ip().octets().to_vec();
    block.extend_from_slice(&[127, 0, 0, 1]);
    block.extend_from_slice(&client.port().to_be_bytes());
    block.extend_from_slice(&haproxy.addr.port().to_be_bytes());
    assert_eq!(&received[16..28], &block[..]);
    assert_eq!(&received[16 + len..], b"hello");
}

#[test]
fn dante_connects_a_socks5_client_to_an_echo_server() {
    let (echo, echo_addr) = listener();
    let echo_thread = thread::spawn(move || {
        let mut stream = accept(&echo);
        let mut buf = [0u8; 64];
        let n = stream.read(&mut buf).unwrap();
        stream.write_all(&buf[..n]).unwrap();
    });
    let dante = Dante::start().unwrap();
    let mut client = feint_testkit::client::connect(dante.addr, TIMEOUT).unwrap();
    // RFC 1928: greeting with "no authentication", then CONNECT to an IPv4 address.
    client.write_all(&[5, 1, 0]).unwrap();
    let mut choice = [0u8; 2];
    client.read_exact(&mut choice).unwrap();
    assert_eq!(choice, [5, 0], "{}", dante.log());
    let mut request = vec![5, 1, 0, 1, 127, 0, 0, 1];
    request.extend_from_slice(&echo_addr.port().to_be_bytes());
    client.write_all(&request).unwrap();
    let mut reply = [0u8; 10];
    client.read_exact(&mut reply).unwrap();
    assert_eq!(&reply[..4], &[5, 0, 0, 1], "{}", dante.log());
    client.write_all(b"through dante").unwrap();
    let mut echoed = [0u8; 13];
    client.read_exact(&mut echoed).unwrap();
    assert_eq!(&echoed, b"through dante");
    echo_thread.join().unwrap();
    // Dante writes addresses as ADDR.PORT; tests through feint look for the DC this way.
    let log = dante.log();
    assert!(
        log.contains(&format!("127.0.0.1.{}", echo_addr.port())),
        "{log}"
    );
}

#[test]
fn nginx_logs_the_address_of_a_proxy_header() {
    let nginx = Nginx::start_with("www.example.com", ProxyHeader::Required).unwrap();
    let mut stream = feint_testkit::client::connect(nginx.http_addr, TIMEOUT).unwrap();
    let request = format!(
        "PROXY TCP4 192.0.2.7 127.0.0.1 4242 {}\r\nGET / HTTP/1.0\r\nHost: www.example.com\r\n\r\n",
        nginx.http_addr.port()
    );
    stream.write_all(request.as_bytes()).unwrap();
    let mut answer = Vec::new();
    stream.read_to_end(&mut answer).unwrap();
    assert!(answer.starts_with(b"HTTP/1.1 200"), "{}", nginx.error_log());
    // nginx writes the line when the request ends; the read above waited for that.
    let log = nginx.access_log();
    assert!(
        log.contains("127.0.0.1 192.0.2.7:4242 \"GET / HTTP/1.0\" 200"),
        "{log}"
    );
}
