//! A fake Telegram DC on loopback. It reads feint's 64-byte obfs2 header with the keys without
//! secret (docs/PROTOCOL.md §5.5 step 3, from the DC's side), records the tag and the DC id, then
//! echoes the decrypted stream back and keeps a copy for the test; or, as a DC does, answers an
//! unencrypted `req_pq_multi` with a `resPQ` whose message id carries its (chosen) clock.

use std::io::{Read, Write};
use std::net::{IpAddr, Ipv4Addr, Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crate::obfs2::{self, HEADER_LEN};

/// What the DC does with the stream after the header.
#[derive(Clone, Debug)]
pub enum DcMode {
    /// Echo every byte back.
    Echo,
    /// Echo, and when the proxy half-closes, send these bytes, then close.
    EchoThenOnEof(Vec<u8>),
    /// Record only; never write.
    Silent,
    /// Read padded-intermediate frames; answer each unencrypted `req_pq_multi` with a `resPQ`
    /// stamped with our clock plus `clock_offset` seconds, as `feint doctor` expects.
    AnswerReqPq { clock_offset: i64 },
}

/// What the DC saw on one connection.
#[derive(Clone, Debug, Default)]
pub struct DcConnection {
    pub tag: [u8; 4],
    pub dc: i16,
    /// The decrypted stream after the header.
    pub received: Vec<u8>,
    /// The proxy closed its write side.
    pub peer_closed: bool,
    /// The DC is done with the connection.
    pub finished: bool,
    pub error: Option<String>,
}

struct Shared {
    connections: Mutex<Vec<DcConnection>>,
    changed: Condvar,
}

pub struct FakeDc {
    addr: SocketAddr,
    shared: Arc<Shared>,
    stop: Arc<AtomicBool>,
    accept_thread: Option<JoinHandle<()>>,
}

/// A connection thread gives up after this long without input.
const CONNECTION_IDLE_LIMIT: Duration = Duration::from_secs(60);
/// The most connections one fake DC serves.
const MAX_CONNECTIONS: usize = 4096;

impl FakeDc {
    /// A fake DC on 127.0.0.1.
    pub fn start(mode: DcMode) -> std::io::Result<FakeDc> {
        Self::start_on(IpAddr::V4(Ipv4Addr::LOCALHOST), mode)
    }

    /// A fake DC on `ip`, port chosen by the OS.
    pub fn start_on(ip: IpAddr, mode: DcMode) -> std::io::Result<FakeDc> {
        let listener = TcpListener::bind(SocketAddr::new(ip, 0))?;
        let addr = listener.local_addr()?;
        let shared = Arc::new(Shared {
            connections: Mutex::new(Vec::new()),
            changed: Condvar::new(),
        });
        let stop = Arc::new(AtomicBool::new(false));
        let accept_thread = {
            let (shared, stop) = (shared.clone(), stop.clone());
            std::thread::spawn(move || {
                for _ in 0..MAX_CONNECTIONS {
                    let Ok((stream, _)) = listener.accept() else {
                        continue;
                    };
                    if stop.load(Ordering::SeqCst) {
                        return;
                    }
                    let index = {
                        let mut conns = shared.connections.lock().unwrap();
                        conns.push(DcConnection::default());
                        conns.len() - 1
                    };
                    let (shared, mode) = (shared.clone(), mode.clone());
                    std::thread::spawn(move || serve(stream, index, &shared, &mode));
                }
            })
        };
        Ok(FakeDc {
            addr,
            shared,
            stop,
            accept_thread: Some(accept_thread),
        })
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// A snapshot of every connection so far.
    pub fn connections(&self) -> Vec<DcConnection> {
        self.shared.connections.lock().unwrap().clone()
    }

    /// Waits until `done` holds for the connections or `timeout` passes, and returns the last
    /// snapshot either way; the caller asserts on it.
    pub fn wait_until(
        &self,
        timeout: Duration,
        done: impl Fn(&[DcConnection]) -> bool,
    ) -> Vec<DcConnection> {
        let end = Instant::now() + timeout;
        let mut conns = self.shared.connections.lock().unwrap();
        while !done(&conns) {
            let now = Instant::now();
            if now >= end {
                break;
            }
            conns = self
                .shared
                .changed
                .wait_timeout(conns, end - now)
                .unwrap()
                .0;
        }
        conns.clone()
    }
}

impl Drop for FakeDc {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        let _ = TcpStream::connect_timeout(&self.addr, Duration::from_secs(1));
        if let Some(t) = self.accept_thread.take() {
            let _ = t.join();
        }
    }
}

fn update(shared: &Shared, index: usize, f: impl FnOnce(&mut DcConnection)) {
    f(&mut shared.connections.lock().unwrap()[index]);
    shared.changed.notify_all();
}

fn serve(mut stream: TcpStream, index: usize, shared: &Shared, mode: &DcMode) {
    if let Err(e) = serve_inner(&mut stream, index, shared, mode) {
        update(shared, index, |c| c.error = Some(e.to_string()));
    }
    update(shared, index, |c| c.finished = true);
}

fn serve_inner(
    stream: &mut TcpStream,
    index: usize,
    shared: &Shared,
    mode: &DcMode,
) -> std::io::Result<()> {
    stream.set_read_timeout(Some(CONNECTION_IDLE_LIMIT))?;
    stream.set_write_timeout(Some(CONNECTION_IDLE_LIMIT))?;
    let mut header = [0u8; HEADER_LEN];
    stream.read_exact(&mut header)?;
    let mut accepted = obfs2::accept(&header, None);
    update(shared, index, |c| {
        c.tag = accepted.tag;
        c.dc = accepted.dc;
    });
    if let DcMode::AnswerReqPq { clock_offset } = mode {
        return answer_req_pq(stream, index, shared, &mut accepted.ciphers, *clock_offset);
    }
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let n = stream.read(&mut buf)?;
        if n == 0 {
            update(shared, index, |c| c.peer_closed = true);
            if let DcMode::EchoThenOnEof(trailer) = mode {
                let mut out = trailer.clone();
                accepted.ciphers.send.apply(&mut out);
                stream.write_all(&out)?;
            }
            stream.shutdown(Shutdown::Write)?;
            return Ok(());
        }
        let data = &mut buf[..n];
        accepted.ciphers.receive.apply(data);
        update(shared, index, |c| c.received.extend_from_slice(data));
        if !matches!(mode, DcMode::Silent) {
            accepted.ciphers.send.apply(data);
            stream.write_all(data)?;
        }
    }
}

const REQ_PQ_MULTI: u32 = 0xbe7e_8ef1;
const RES_PQ: u32 = 0x0516_2463;
const VECTOR: u32 = 0x1cb5_c415;
/// The most frames one connection may send.
const MAX_FRAMES: usize = 16;

/// Serves `DcMode::AnswerReqPq`: every frame's plaintext goes to `received`.
fn answer_req_pq(
    stream: &mut TcpStream,
    index: usize,
    shared: &Shared,
    ciphers: &mut obfs2::Ciphers,
    clock_offset: i64,
) -> std::io::Result<()> {
    for _ in 0..MAX_FRAMES {
        let mut length = [0u8; 4];
        if let Err(e) = stream.read_exact(&mut length) {
            update(shared, index, |c| c.peer_closed = true);
            return if e.kind() == std::io::ErrorKind::UnexpectedEof {
                Ok(())
            } else {
                Err(e)
            };
        }
        ciphers.receive.apply(&mut length);
        let length = (u32::from_le_bytes(length) & 0x7fff_ffff) as usize;
        if length > 1 << 16 {
            return Err(std::io::Error::other(format!("frame of {length} bytes")));
        }
        let mut frame = vec![0u8; length];
        stream.read_exact(&mut frame)?;
        ciphers.receive.apply(&mut frame);
        update(shared, index, |c| c.received.extend_from_slice(&frame));
        // auth_key_id 0, message id, body length, then the constructor and the nonce.
        let unencrypted = frame.len() >= 40 && frame[..8] == [0; 8];
        if !unencrypted || u32::from_le_bytes(frame[20..24].try_into().unwrap()) != REQ_PQ_MULTI {
            continue;
        }
        let mut body = RES_PQ.to_le_bytes().to_vec();
        body.extend_from_slice(&frame[24..40]);
        body.extend_from_slice(&crate::crypto::random_bytes(16));
        // pq as TL bytes, then one fingerprint no client knows.
        body.extend_from_slice(&[8, 0x17, 0xed, 0x48, 0x94, 0x1a, 0x08, 0xf9, 0x81, 0, 0, 0]);
        body.extend_from_slice(&VECTOR.to_le_bytes());
        body.extend_from_slice(&1u32.to_le_bytes());
        body.extend_from_slice(&0x1122_3344_5566_7788u64.to_le_bytes());
        // A server message id: unix time in the upper 32 bits, 1 mod 4 for a response.
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .expect("the clock is after 1970");
        let seconds = (now.as_secs() as i64 + clock_offset) as u64;
        let fraction = (u64::from(now.subsec_nanos()) << 32) / 1_000_000_000;
        let message_id = ((seconds << 32) | fraction) & !3 | 1;
        let mut answer = ((20 + body.len()) as u32).to_le_bytes().to_vec();
        answer.extend_from_slice(&[0; 8]);
        answer.extend_from_slice(&message_id.to_le_bytes());
        answer.extend_from_slice(&(body.len() as u32).to_le_bytes());
        answer.extend_from_slice(&body);
        ciphers.send.apply(&mut answer);
        stream.write_all(&answer)?;
    }
    Ok(())
}

/// `--dc N=ADDR` flags routing DC 1, 2, … to `dcs[0]`, `dcs[1]`, ….
pub fn routes(dcs: &[FakeDc]) -> Vec<String> {
    dcs.iter()
        .enumerate()
        .flat_map(|(i, dc)| ["--dc".to_string(), format!("{}={}", i + 1, dc.addr())])
        .collect()
}
