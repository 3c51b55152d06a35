//! A pipe: bytes moving one way between two sockets through a borrowed pool buffer, one read
//! or one write per step, with the record framing and AES-CTR work done in place between them.
//! Owns no socket and no buffer; the session lends both.

use std::net::Shutdown;

use mio::net::TcpStream;

use super::buffer::{BufferId, BufferPool};
use super::session::{End, Side};
use super::socket::{self, Outcome};
use crate::proto::cipher::CtrState;
use crate::proto::record::{self, Deframer, HEADER_LEN, MAX_PAYLOAD_LEN};

/// Bytes moving one way. `start..end` of the borrowed buffer is still to be written.
#[derive(Default)]
pub struct Pipe {
    pub buffer: Option<BufferId>,
    pub start: u16,
    pub end: u16,
    /// The source sent FIN.
    pub source_closed: bool,
    /// We sent FIN to the sink.
    pub sink_shut: bool,
    pub bytes: u64,
}

impl Pipe {
    pub fn pending(&self) -> bool {
        self.start < self.end
    }

    pub fn finished(&self) -> bool {
        self.source_closed && self.sink_shut && !self.pending()
    }

    pub fn release(&mut self, pool: &mut BufferPool) {
        if let Some(id) = self.buffer.take() {
            pool.give(id);
        }
        self.start = 0;
        self.end = 0;
    }
}

/// What a pipe does to bytes between its read and its write.
pub enum Transform<'a> {
    Raw,
    FromClient {
        deframer: &'a mut Deframer,
        decrypt: &'a mut CtrState,
        encrypt: &'a mut CtrState,
    },
    ToClient {
        decrypt: &'a mut CtrState,
        encrypt: &'a mut CtrState,
    },
}

pub enum Step {
    Progress,
    Idle,
    NeedBuffer,
    /// Handshakes hold their share of the pool already: wait for one to finish.
    HelloCapped,
}

/// One socket of a session and the readiness epoll last reported for it. Events are
/// edge-triggered, so readiness is remembered until a read or write says WouldBlock.
pub struct Peer {
    pub stream: Option<TcpStream>,
    pub side: Side,
    pub readable: bool,
    pub writable: bool,
    /// The peer's FIN has arrived (an event said so): read on to the 0, short reads or not.
    pub hung_up: bool,
}

impl Peer {
    pub fn new(side: Side) -> Self {
        Peer {
            stream: None,
            side,
            readable: false,
            writable: false,
            hung_up: false,
        }
    }

    /// Takes a new socket, forgetting what was known of the last one.
    pub fn attach(&mut self, stream: TcpStream) {
        *self = Peer::new(self.side);
        self.stream = Some(stream);
    }
}

/// One read or one write on a pipe.
pub fn step(
    pipe: &mut Pipe,
    source: &mut Peer,
    sink: &mut Peer,
    pool: &mut BufferPool,
    transform: Transform<'_>,
) -> Result<Step, End> {
    if pipe.pending() {
        return write_pending(pipe, sink, pool);
    }
    pipe.release(pool);
    if pipe.source_closed {
        if pipe.sink_shut {
            return Ok(Step::Idle);
        }
        // Half-close passes through only once every byte before it has been written.
        if let Some(stream) = sink.stream.as_ref() {
            let _ = stream.shutdown(Shutdown::Write);
        }
        pipe.sink_shut = true;
        return Ok(Step::Progress);
    }
    if !source.readable {
        return Ok(Step::Idle);
    }
    let Some(stream) = source.stream.as_mut() else {
        return Err(End::Internal);
    };
    let Some(id) = pool.take() else {
        return Ok(Step::NeedBuffer);
    };
    pipe.buffer = Some(id);
    let buf = pool.get(id);
    let room = match transform {
        Transform::ToClient { .. } => &mut buf[HEADER_LEN..HEADER_LEN + MAX_PAYLOAD_LEN],
        _ => &mut buf[..],
    };
    let room_len = room.len();
    match socket::read(stream, room) {
        Outcome::Progress(n) => {
            if n < room_len && !source.hung_up {
                // A short read drained the socket; epoll reports the next arrival. Not so for a
                // FIN that came with the data: that edge has passed, so read on to the 0.
                source.readable = false;
            }
            let (start, end) = match transform {
                Transform::Raw => (0, n),
                Transform::FromClient {
                    deframer,
                    decrypt,
                    encrypt,
                } => {
                    let payload = deframer.deframe(&mut buf[..n]).map_err(End::BadRecord)?;
                    decrypt.apply(&mut buf[..payload]);
                    encrypt.apply(&mut buf[..payload]);
                    (0, payload)
                }
                Transform::ToClient { decrypt, encrypt } => {
                    let data = &mut buf[HEADER_LEN..HEADER_LEN + n];
                    decrypt.apply(data);
                    encrypt.apply(data);
                    let mut header = [0; HEADER_LEN];
                    record::write_application_data_header(&mut header, n as u16);
                    buf[..HEADER_LEN].copy_from_slice(&header);
                    (0, HEADER_LEN + n)
                }
            };
            pipe.start = start as u16;
            pipe.end = end as u16;
            if !pipe.pending() {
                pipe.release(pool);
            }
            Ok(Step::Progress)
        }
        Outcome::WouldBlock => {
            source.readable = false;
            pipe.release(pool);
            Ok(Step::Idle)
        }
        Outcome::Closed => {
            pipe.source_closed = true;
            pipe.release(pool);
            Ok(Step::Progress)
        }
        Outcome::Failed => {
            pipe.release(pool);
            Err(End::Failed(source.side))
        }
    }
}

/// One write of the bytes a pipe holds to its sink.
pub fn write_pending(pipe: &mut Pipe, sink: &mut Peer, pool: &mut BufferPool) -> Result<Step, End> {
    if !sink.writable {
        return Ok(Step::Idle);
    }
    let Some(stream) = sink.stream.as_mut() else {
        return Err(End::Internal);
    };
    let Some(id) = pipe.buffer else {
        return Err(End::Internal);
    };
    let buf = pool.get(id);
    let wanted = &buf[pipe.start as usize..pipe.end as usize];
    match socket::write(stream, wanted) {
        Outcome::Progress(n) => {
            if n < wanted.len() {
                // The socket buffer is full; epoll reports the next edge when it drains.
                sink.writable = false;
            }
            pipe.start += n as u16;
            pipe.bytes += n as u64;
            if !pipe.pending() {
                pipe.release(pool);
            }
            Ok(Step::Progress)
        }
        Outcome::WouldBlock => {
            sink.writable = false;
            Ok(Step::Idle)
        }
        Outcome::Closed | Outcome::Failed => Err(End::Failed(sink.side)),
    }
}
