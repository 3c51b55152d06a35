//! The load client. `Session::open` does the real handshake (FakeTLS hello, reply check, CCS,
//! obfs2 header) or connects raw; the tests drive sessions blocking or from a mio loop. Every
//! connection asks for the segment size set with `use_segment` (loopback's own by default).

pub mod crypto_speed;
pub mod handshake;
pub mod idle;
pub mod pingpong;
pub mod throughput;

use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use crate::crypto::Ctr;
use crate::faketls::{
    client_hello, data_header, read_reply, unix_now, RecordReader, CHANGE_CIPHER_SPEC,
    CLIENT_RECORD_LEN,
};
use crate::obfs2::client_frame;
use crate::sys::connect;

/// TCP_MAXSEG for every connection the load client opens from now on; 0: loopback's own.
static SEGMENT: AtomicU32 = AtomicU32::new(0);

/// Sets the segment size the load client's connections announce and send (None: loopback's
/// 64 KiB). One setting for the whole process: the driver sets it once, before any load.
pub fn use_segment(bytes: Option<u32>) {
    SEGMENT.store(bytes.unwrap_or(0), Ordering::Relaxed);
}

/// The segment size set with `use_segment`.
pub fn segment() -> Option<u32> {
    Some(SEGMENT.load(Ordering::Relaxed)).filter(|&bytes| bytes > 0)
}

/// What the load client talks to.
#[derive(Clone, Debug)]
pub enum Target {
    /// Plain bytes: the fake DC directly, or the plain relay.
    Raw(SocketAddr),
    /// feint: FakeTLS with this key16 and domain, then obfs2 asking for `dc`.
    FakeTls {
        address: SocketAddr,
        key16: [u8; 16],
        domain: Vec<u8>,
        dc: i16,
    },
}

impl Target {
    pub fn address(&self) -> SocketAddr {
        match self {
            Target::Raw(address) | Target::FakeTls { address, .. } => *address,
        }
    }

    pub fn is_tls(&self) -> bool {
        matches!(self, Target::FakeTls { .. })
    }
}

/// The client's ciphers and record reader once FakeTLS and obfs2 are set up.
pub struct Tls {
    pub send: Ctr,
    pub receive: Ctr,
    pub reader: RecordReader,
}

pub struct Session {
    pub stream: TcpStream,
    pub tls: Option<Tls>,
}

pub const IO_TIMEOUT: Duration = Duration::from_secs(10);

impl Session {
    /// Connects and handshakes; `initial` payload bytes ride in the first flight (with FakeTLS,
    /// in the record that carries the obfs2 header, as real clients do).
    pub fn open(target: &Target, initial: &[u8]) -> io::Result<Session> {
        let mut stream = connect(target.address(), segment(), IO_TIMEOUT)?;
        stream.set_nodelay(true)?;
        stream.set_read_timeout(Some(IO_TIMEOUT))?;
        stream.set_write_timeout(Some(IO_TIMEOUT))?;
        match target {
            Target::Raw(_) => {
                if !initial.is_empty() {
                    stream.write_all(initial)?;
                }
                Ok(Session { stream, tls: None })
            }
            Target::FakeTls {
                key16, domain, dc, ..
            } => {
                let (hello, client_random) = client_hello(key16, domain, unix_now());
                stream.write_all(&hello)?;
                read_reply(&mut stream, key16, &client_random)?;
                let (frame, streams) = client_frame(key16, *dc);
                let first = (frame.len() + initial.len()).min(CLIENT_RECORD_LEN);
                let mut flight = Vec::with_capacity(CHANGE_CIPHER_SPEC.len() + 5 + first);
                flight.extend_from_slice(&CHANGE_CIPHER_SPEC);
                flight.extend_from_slice(&data_header(first));
                flight.extend_from_slice(&frame);
                let mut tls = Tls {
                    send: streams.send,
                    receive: streams.receive,
                    reader: RecordReader::default(),
                };
                let (now, later) = initial.split_at(first - frame.len());
                let at = flight.len();
                flight.extend_from_slice(now);
                tls.send.apply(&mut flight[at..]);
                stream.write_all(&flight)?;
                let mut session = Session {
                    stream,
                    tls: Some(tls),
                };
                session.send(later)?;
                Ok(session)
            }
        }
    }

    /// The wire bytes for `payload`: encrypted and framed with FakeTLS, else as is.
    pub fn seal(&mut self, payload: &[u8]) -> Vec<u8> {
        match &mut self.tls {
            None => payload.to_vec(),
            Some(tls) => seal(tls, payload),
        }
    }

    pub fn send(&mut self, payload: &[u8]) -> io::Result<()> {
        if payload.is_empty() {
            return Ok(());
        }
        let wire = self.seal(payload);
        self.stream.write_all(&wire)
    }

    /// Reads exactly `out.len()` payload bytes (decrypted).
    pub fn receive_exact(&mut self, out: &mut [u8]) -> io::Result<()> {
        let mut have = 0;
        let mut scratch = [0u8; 4096];
        for _ in 0..1_000_000 {
            if have == out.len() {
                return Ok(());
            }
            // With FakeTLS, never read past the payload we want plus one record header, so the
            // stream stays aligned for the next call.
            let want = match &self.tls {
                None => out.len() - have,
                Some(_) => (out.len() - have).min(scratch.len() - 5),
            };
            let n = match &mut self.tls {
                None => self.stream.read(&mut out[have..have + want])?,
                Some(_) => self.stream.read(&mut scratch[..want])?,
            };
            if n == 0 {
                return Err(io::ErrorKind::UnexpectedEof.into());
            }
            match &mut self.tls {
                None => have += n,
                Some(tls) => {
                    let Tls {
                        receive, reader, ..
                    } = tls;
                    let mut overflow = false;
                    reader.walk(&mut scratch[..n], |payload| {
                        let room = out.len() - have;
                        if payload.len() > room {
                            overflow = true;
                        }
                        let take = payload.len().min(room);
                        out[have..have + take].copy_from_slice(&payload[..take]);
                        receive.apply(&mut out[have..have + take]);
                        have += take;
                    })?;
                    if overflow {
                        return Err(io::Error::new(
                            io::ErrorKind::InvalidData,
                            "more payload than asked for",
                        ));
                    }
                }
            }
        }
        Err(io::Error::new(io::ErrorKind::TimedOut, "read loop bound"))
    }
}

/// Encrypts `payload` with `tls.send` and frames it in records of at most CLIENT_RECORD_LEN.
pub fn seal(tls: &mut Tls, payload: &[u8]) -> Vec<u8> {
    let mut wire = Vec::with_capacity(payload.len() + payload.len() / CLIENT_RECORD_LEN * 5 + 5);
    for chunk in payload.chunks(CLIENT_RECORD_LEN) {
        wire.extend_from_slice(&data_header(chunk.len()));
        let at = wire.len();
        wire.extend_from_slice(chunk);
        tls.send.apply(&mut wire[at..]);
    }
    wire
}
