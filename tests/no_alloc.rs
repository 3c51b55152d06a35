//! Shows that the relay path allocates nothing: feint's event loops run in this process under a
//! counting global allocator while a FakeTLS client pushes megabytes through one session to an
//! echo DC, and the count must not move. The client and the DC use fixed buffers only.

use std::alloc::{GlobalAlloc, Layout, System};
use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Barrier};
use std::thread;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use feint::cli::{self, Command};
use feint::proto::cipher::CtrState;
use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256};

struct Counting;

static ALLOCATIONS: AtomicU64 = AtomicU64::new(0);

// SAFETY: every call is passed on to the system allocator unchanged; only a counter is added.
#[allow(unsafe_code)]
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        System.alloc(layout)
    }
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        System.alloc_zeroed(layout)
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        System.realloc(ptr, layout, new_size)
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        System.dealloc(ptr, layout)
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

const KEY: [u8; 16] = *b"0123456789abcdef";
const DOMAIN: &str = "www.example.com";
const RECORD_PAYLOAD: usize = 2878;
const ROUNDS: usize = 2000;
const TIMEOUT: Duration = Duration::from_secs(20);

fn free_port() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind a probe port");
    listener.local_addr().expect("probe address").port()
}

fn ctr(key: &[u8], iv: &[u8]) -> CtrState {
    let mut k = [0; 32];
    let mut i = [0; 16];
    k.copy_from_slice(key);
    i.copy_from_slice(iv);
    CtrState::new(k, i)
}

/// A 517-byte hello in the layout of docs/PROTOCOL.md §10, signed for `now`.
fn hello(now: u32) -> Vec<u8> {
    let mut extensions = Vec::new();
    let name = DOMAIN.as_bytes();
    extensions.extend_from_slice(&[0, 0]);
    extensions.extend_from_slice(&((name.len() + 5) as u16).to_be_bytes());
    extensions.extend_from_slice(&((name.len() + 3) as u16).to_be_bytes());
    extensions.push(0);
    extensions.extend_from_slice(&(name.len() as u16).to_be_bytes());
    extensions.extend_from_slice(name);
    extensions.extend_from_slice(&[0x00, 0x2b, 0x00, 0x03, 0x02, 0x03, 0x04]);
    extensions.extend_from_slice(&[0x00, 0x33, 0x00, 0x26, 0x00, 0x24, 0x00, 0x1d, 0x00, 0x20]);
    extensions.extend_from_slice(&[0x55; 32]);
    let mut body = vec![0x03, 0x03];
    body.extend_from_slice(&[0; 32]);
    body.push(32);
    body.extend_from_slice(&[0xa5; 32]);
    body.extend_from_slice(&[0x00, 0x04, 0x13, 0x01, 0x13, 0x02, 0x01, 0x00]);
    let padding = 517 - 9 - body.len() - 2 - extensions.len() - 4;
    extensions.extend_from_slice(&[0x00, 0x15]);
    extensions.extend_from_slice(&(padding as u16).to_be_bytes());
    extensions.extend(std::iter::repeat_n(0, padding));
    body.extend_from_slice(&(extensions.len() as u16).to_be_bytes());
    body.extend_from_slice(&extensions);
    let mut record = vec![0x16, 0x03, 0x01];
    record.extend_from_slice(&((body.len() + 4) as u16).to_be_bytes());
    record.push(0x01);
    record.extend_from_slice(&(body.len() as u32).to_be_bytes()[1..]);
    record.extend_from_slice(&body);
    assert_eq!(record.len(), 517);
    let mut mac = Hmac::<Sha256>::new_from_slice(&KEY).expect("any key length");
    mac.update(&record);
    let mut digest: [u8; 32] = mac.finalize().into_bytes().into();
    for (d, t) in digest[28..].iter_mut().zip(now.to_le_bytes()) {
        *d ^= t;
    }
    record[11..43].copy_from_slice(&digest);
    record
}

/// Reads the three records of the reply and returns how many bytes they took.
fn read_reply(stream: &mut TcpStream) -> usize {
    let mut total = 0;
    for _ in 0..3 {
        let mut header = [0; 5];
        stream.read_exact(&mut header).expect("reply record header");
        let len = u16::from_be_bytes([header[3], header[4]]) as usize;
        let mut body = vec![0; len];
        stream.read_exact(&mut body).expect("reply record body");
        total += 5 + len;
    }
    total
}

/// The DC: decodes feint's frame (keys without the secret) and echoes the plaintext back.
fn echo_dc(listener: TcpListener) {
    let (mut stream, _) = listener.accept().expect("feint dials the DC");
    stream.set_read_timeout(Some(TIMEOUT)).expect("timeout");
    let mut frame = [0; 64];
    stream.read_exact(&mut frame).expect("DC frame");
    let mut decrypt = ctr(&frame[8..40], &frame[40..56]);
    let mut check = frame;
    decrypt.apply(&mut check);
    assert_eq!(&check[56..60], &[0xdd; 4], "tag for the DC");
    let mut reversed = [0; 48];
    reversed.copy_from_slice(&frame[8..56]);
    reversed.reverse();
    let mut encrypt = ctr(&reversed[..32], &reversed[32..]);
    let mut buf = [0; 65536];
    loop {
        let n = match stream.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        decrypt.apply(&mut buf[..n]);
        encrypt.apply(&mut buf[..n]);
        if stream.write_all(&buf[..n]).is_err() {
            break;
        }
    }
    let _ = stream.shutdown(Shutdown::Write);
}

#[test]
fn relaying_megabytes_allocates_nothing() {
    let dc = TcpListener::bind("127.0.0.1:0").expect("bind the DC");
    let dc_address = dc.local_addr().expect("DC address");
    thread::spawn(move || echo_dc(dc));

    let port = free_port();
    let secret = format!("ee{}{}", hex(&KEY), hex(DOMAIN.as_bytes()));
    let args = [
        "run".to_string(),
        "--bind".into(),
        format!("127.0.0.1:{port}"),
        "--dc".into(),
        format!("2={dc_address}"),
        "--front".into(),
        "127.0.0.1:9".into(),
        "--threads".into(),
        "1".into(),
        "--max-connections".into(),
        "16".into(),
        "--buffers".into(),
        "8".into(),
        secret,
    ];
    let Ok(Command::Run(config)) = cli::parse(lexopt::Parser::from_args(args)) else {
        panic!("the run command line parses");
    };
    thread::spawn(move || feint::proxy::run(&config, feint::proxy::AccessLists::default(), |_| {}));

    let proxy: SocketAddr = format!("127.0.0.1:{port}").parse().expect("address");
    let mut stream = (0..100)
        .find_map(|_| {
            TcpStream::connect_timeout(&proxy, Duration::from_millis(100))
                .map_err(|_| thread::sleep(Duration::from_millis(50)))
                .ok()
        })
        .expect("feint listens");
    stream.set_read_timeout(Some(TIMEOUT)).expect("timeout");
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock")
        .as_secs() as u32;
    stream.write_all(&hello(now)).expect("send hello");
    assert!(read_reply(&mut stream) > 133, "a whole reply flight");

    let mut frame = [0u8; 64];
    for (i, b) in frame.iter_mut().enumerate() {
        *b = (i as u8).wrapping_mul(13).wrapping_add(7);
    }
    frame[56..60].copy_from_slice(&[0xdd; 4]);
    frame[60..62].copy_from_slice(&2i16.to_le_bytes());
    let mut material = frame[8..40].to_vec();
    material.extend_from_slice(&KEY);
    let mut encrypt = ctr(&Sha256::digest(&material), &frame[40..56]);
    let mut reversed = [0; 48];
    reversed.copy_from_slice(&frame[8..56]);
    reversed.reverse();
    let mut material = reversed[..32].to_vec();
    material.extend_from_slice(&KEY);
    let mut decrypt = ctr(&Sha256::digest(&material), &reversed[32..]);
    let mut wire = frame;
    encrypt.apply(&mut wire);
    wire[..56].copy_from_slice(&frame[..56]);
    let mut first = vec![
        0x14, 0x03, 0x03, 0x00, 0x01, 0x01, 0x17, 0x03, 0x03, 0x00, 0x40,
    ];
    first.extend_from_slice(&wire);
    stream.write_all(&first).expect("send frame");

    let start = Arc::new(Barrier::new(2));
    let mut writer = stream.try_clone().expect("clone");
    let writer_start = Arc::clone(&start);
    let writer_thread = thread::spawn(move || {
        let mut record = [0u8; 5 + RECORD_PAYLOAD];
        record[..3].copy_from_slice(&[0x17, 0x03, 0x03]);
        record[3..5].copy_from_slice(&(RECORD_PAYLOAD as u16).to_be_bytes());
        let mut sent = 0usize;
        // One record before the count starts, so one-time lazy set-up is not counted.
        for round in 0..=ROUNDS {
            if round == 1 {
                writer_start.wait();
            }
            for (i, b) in record[5..].iter_mut().enumerate() {
                *b = ((sent + i) % 251) as u8;
            }
            sent += RECORD_PAYLOAD;
            encrypt.apply(&mut record[5..]);
            writer.write_all(&record).expect("send record");
        }
    });

    let total = (ROUNDS + 1) * RECORD_PAYLOAD;
    let mut received = 0usize;
    let mut buf = [0u8; 32768];
    let mut header = [0u8; 5];
    let mut before = None;
    while received < total {
        if before.is_none() && received >= RECORD_PAYLOAD {
            start.wait();
            before = Some(ALLOCATIONS.load(Ordering::SeqCst));
        }
        stream.read_exact(&mut header).expect("record header");
        assert_eq!(&header[..3], &[0x17, 0x03, 0x03], "records to the client");
        let len = u16::from_be_bytes([header[3], header[4]]) as usize;
        assert!(len > 0 && len <= 16384 && len <= buf.len());
        stream.read_exact(&mut buf[..len]).expect("record body");
        decrypt.apply(&mut buf[..len]);
        for (i, b) in buf[..len].iter().enumerate() {
            assert_eq!(
                *b,
                ((received + i) % 251) as u8,
                "echoed byte {}",
                received + i
            );
        }
        received += len;
    }
    let after = ALLOCATIONS.load(Ordering::SeqCst);
    writer_thread.join().expect("writer");
    let before = before.expect("the count started");
    assert_eq!(
        after - before,
        0,
        "allocations while relaying {} MB both ways",
        total / 1_000_000
    );
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}
