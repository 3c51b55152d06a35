//! Bytes moving one way between the two sockets of a connection, one read or one write per step.
//! A relay pipe borrows a pool buffer only while bytes are in flight and does the record framing
//! and AES-CTR work in place. A raw (fronted) pipe borrows none: it peeks into the loop's scratch
//! area, writes, and then takes from the socket only what the sink accepted, so a peer that stops
//! reading leaves the bytes waiting in the kernel, as a real server's would.

use std::io::IoSliceMut;

use super::buffer::{BufferId, BufferPool, RECORDS_PER_READ};
use super::end::End;
use super::net::{Net, Outcome, Readiness, Side};
use crate::proto::cipher::{CtrState, Pass};
use crate::proto::record::{self, Deframer, HEADER_LEN, MAX_PAYLOAD_LEN, MIN_PAYLOAD_LEN};

/// One record's place in a buffer: header, then payload.
const SLOT_LEN: usize = HEADER_LEN + MAX_PAYLOAD_LEN;

/// One socket of a connection and the readiness last reported for it. Events are
/// edge-triggered, so readiness is remembered until a read or write says WouldBlock.
pub struct Peer<S> {
    pub stream: Option<S>,
    pub side: Side,
    pub ready: Readiness,
}

impl<S> Peer<S> {
    pub fn new(side: Side) -> Self {
        Peer {
            stream: None,
            side,
            ready: Readiness::default(),
        }
    }

    /// Takes a new socket, forgetting what was known of the last one.
    pub fn attach(&mut self, stream: S) {
        self.ready = Readiness::default();
        self.stream = Some(stream);
    }
}

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
    /// Bytes written to the sink, for the log line.
    pub bytes: u64,
    /// DC to client only: payload bytes read and re-encrypted but not yet framed, because a
    /// record that small would stand out; they wait for more, or for `frame_held`.
    pub held: u16,
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
        self.held = 0;
    }
}

/// Frames the held bytes as one record, however small, and makes them pending.
pub fn frame_held(pipe: &mut Pipe, pool: &mut BufferPool) {
    let Some(id) = pipe.buffer else {
        return;
    };
    if pipe.held == 0 || pipe.pending() {
        return;
    }
    let buf = pool.get(id);
    let mut header = [0; HEADER_LEN];
    record::write_application_data_header(&mut header, pipe.held);
    buf[..HEADER_LEN].copy_from_slice(&header);
    pipe.start = 0;
    pipe.end = HEADER_LEN as u16 + pipe.held;
    pipe.held = 0;
}

pub enum Step {
    Progress,
    Idle,
    /// The pool is empty; run again when a buffer comes back.
    NeedBuffer,
    /// Nothing may be written before a set time.
    Hold,
}

/// What one read from a peer gave.
pub enum Read {
    Bytes(usize),
    /// Nothing to read now.
    Idle,
    /// FIN, after every byte before it.
    Closed,
}

/// Whether a read takes the bytes or leaves them queued.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Take {
    Consume,
    Peek,
}

/// The one read rule of feint: read only what readiness promises, and forget readiness after a
/// short read, because epoll reports the next arrival. Not so once FIN has been seen: that edge
/// has passed, so read on until the end.
pub fn read<N: Net>(
    peer: &mut Peer<N::Stream>,
    net: &mut N,
    buf: &mut [u8],
    take: Take,
) -> Result<Read, End> {
    if !peer.ready.readable {
        return Ok(Read::Idle);
    }
    let Some(stream) = peer.stream.as_mut() else {
        return Err(End::Internal);
    };
    let outcome = match take {
        Take::Consume => net.read(stream, buf),
        Take::Peek => net.peek(stream, buf),
    };
    after_read(peer, outcome, buf.len())
}

/// `read`, into the payload slots of up to `RECORDS_PER_READ` records of `buf` at once
/// (readv), leaving room for each record's header in front of its payload.
fn read_records<N: Net>(
    peer: &mut Peer<N::Stream>,
    net: &mut N,
    buf: &mut [u8],
) -> Result<Read, End> {
    if !peer.ready.readable {
        return Ok(Read::Idle);
    }
    let Some(stream) = peer.stream.as_mut() else {
        return Err(End::Internal);
    };
    let (first, rest) = buf.split_at_mut(SLOT_LEN);
    let (second, rest) = rest.split_at_mut(SLOT_LEN);
    let third = rest.get_mut(..SLOT_LEN).ok_or(End::Internal)?;
    let mut slots = [
        IoSliceMut::new(&mut first[HEADER_LEN..]),
        IoSliceMut::new(&mut second[HEADER_LEN..]),
        IoSliceMut::new(&mut third[HEADER_LEN..]),
    ];
    let outcome = net.read_vectored(stream, &mut slots);
    after_read(peer, outcome, RECORDS_PER_READ * MAX_PAYLOAD_LEN)
}

/// The rule both reads share, given what the read did and how much room it had.
fn after_read<S>(peer: &mut Peer<S>, outcome: Outcome, room: usize) -> Result<Read, End> {
    match outcome {
        Outcome::Progress(n) => {
            if n < room && !peer.ready.hung_up {
                peer.ready.readable = false;
            }
            Ok(Read::Bytes(n))
        }
        Outcome::WouldBlock => {
            peer.ready.readable = false;
            Ok(Read::Idle)
        }
        Outcome::Closed => Ok(Read::Closed),
        Outcome::Failed => Err(End::Failed(peer.side)),
    }
}

/// One write of `bytes` to `sink`: how many it took.
pub fn write<N: Net>(sink: &mut Peer<N::Stream>, net: &mut N, bytes: &[u8]) -> Result<usize, End> {
    if !sink.ready.writable {
        return Ok(0);
    }
    let Some(stream) = sink.stream.as_mut() else {
        return Err(End::Internal);
    };
    match net.write(stream, bytes) {
        Outcome::Progress(n) => {
            if n < bytes.len() {
                // The socket buffer is full; epoll reports the next edge when it drains.
                sink.ready.writable = false;
            }
            Ok(n)
        }
        Outcome::WouldBlock => {
            sink.ready.writable = false;
            Ok(0)
        }
        Outcome::Closed | Outcome::Failed => Err(End::Failed(sink.side)),
    }
}

/// One write of the bytes a pipe holds to its sink.
pub fn write_pending<N: Net>(
    pipe: &mut Pipe,
    sink: &mut Peer<N::Stream>,
    net: &mut N,
    pool: &mut BufferPool,
) -> Result<Step, End> {
    let Some(id) = pipe.buffer else {
        return Err(End::Internal);
    };
    let buf = pool.get(id);
    let n = write(sink, net, &buf[pipe.start as usize..pipe.end as usize])?;
    if n == 0 {
        return Ok(Step::Idle);
    }
    pipe.start += n as u16;
    pipe.bytes += n as u64;
    if !pipe.pending() {
        pipe.release(pool);
    }
    Ok(Step::Progress)
}

/// Passes a FIN on once every byte before it has been written.
fn pass_fin<N: Net>(pipe: &mut Pipe, sink: &mut Peer<N::Stream>, net: &mut N) -> Step {
    if pipe.sink_shut {
        return Step::Idle;
    }
    if let Some(stream) = sink.stream.as_mut() {
        net.shutdown_write(stream);
    }
    pipe.sink_shut = true;
    Step::Progress
}

/// What a relay pipe does to bytes between its read and its write.
pub enum Transform<'a> {
    /// Client to DC: strip the TLS records, then re-encrypt for the DC.
    FromClient {
        deframer: &'a mut Deframer,
        decrypt: &'a mut CtrState,
        encrypt: &'a mut CtrState,
    },
    /// DC to client: re-encrypt for the client, then frame as one TLS record.
    ToClient {
        decrypt: &'a mut CtrState,
        encrypt: &'a mut CtrState,
    },
}

/// One read or one write on a relay pipe.
pub fn relay<N: Net>(
    pipe: &mut Pipe,
    source: &mut Peer<N::Stream>,
    sink: &mut Peer<N::Stream>,
    net: &mut N,
    pool: &mut BufferPool,
    transform: Transform<'_>,
) -> Result<Step, End> {
    if pipe.pending() {
        return write_pending(pipe, sink, net, pool);
    }
    if pipe.held == 0 {
        pipe.release(pool);
    }
    if pipe.source_closed {
        if pipe.held > 0 {
            frame_held(pipe, pool);
            return Ok(Step::Progress);
        }
        return Ok(pass_fin(pipe, sink, net));
    }
    if !source.ready.readable {
        return Ok(Step::Idle);
    }
    let id = match pipe.buffer {
        Some(id) => id,
        None => match pool.take() {
            Some(id) => id,
            None => return Ok(Step::NeedBuffer),
        },
    };
    pipe.buffer = Some(id);
    let held = usize::from(pipe.held);
    let buf = pool.get(id);
    let read_result = match transform {
        // Held bytes wait at the start of the first record: read on after them.
        Transform::ToClient { .. } if held > 0 => read(
            source,
            net,
            &mut buf[HEADER_LEN + held..SLOT_LEN],
            Take::Consume,
        ),
        Transform::ToClient { .. } => read_records(source, net, buf),
        Transform::FromClient { .. } => read(source, net, &mut buf[..], Take::Consume),
    };
    let n = match read_result {
        Ok(Read::Bytes(n)) => n,
        Ok(Read::Idle) => {
            if pipe.held == 0 {
                pipe.release(pool);
            }
            return Ok(Step::Idle);
        }
        Ok(Read::Closed) => {
            pipe.source_closed = true;
            if pipe.held == 0 {
                pipe.release(pool);
            }
            return Ok(Step::Progress);
        }
        Err(end) => {
            pipe.release(pool);
            return Err(end);
        }
    };
    let end = match transform {
        Transform::FromClient {
            deframer,
            decrypt,
            encrypt,
        } => {
            // The payload is decrypted, re-encrypted and moved over the record headers in
            // one pass, the key schedules expanded once for the whole read.
            let mut pass = Pass::new(decrypt, encrypt);
            deframer
                .deframe_with(&mut buf[..n], |buf, from, to, len| {
                    pass.apply_moving(buf, from, to, len)
                })
                .map_err(End::BadRecord)?
        }
        Transform::ToClient { decrypt, encrypt } if held > 0 => {
            let data = &mut buf[HEADER_LEN + held..HEADER_LEN + held + n];
            Pass::new(decrypt, encrypt).apply(data);
            let total = held + n;
            if total < MIN_PAYLOAD_LEN {
                pipe.held = total as u16;
                return Ok(Step::Progress);
            }
            pipe.held = 0;
            put_header(buf, 0, total);
            HEADER_LEN + total
        }
        Transform::ToClient { decrypt, encrypt } => {
            // The read filled the record slots in order: all but the last are full.
            let mut lens = [0; RECORDS_PER_READ];
            let mut left = n;
            let mut count = 0;
            for len in lens.iter_mut() {
                if left == 0 {
                    break;
                }
                *len = left.min(MAX_PAYLOAD_LEN);
                left -= *len;
                count += 1;
            }
            if count == 0 {
                // A read of zero bytes is a FIN and never gets here.
                return Err(End::Internal);
            }
            let mut pass = Pass::new(decrypt, encrypt);
            for (slot, &len) in lens[..count].iter().enumerate() {
                let data = slot * SLOT_LEN + HEADER_LEN;
                pass.apply(&mut buf[data..data + len]);
            }
            let last = lens[count - 1];
            if count == 1 && last < MIN_PAYLOAD_LEN {
                // Too small for a record a TLS server would send: wait for what follows.
                pipe.held = last as u16;
                return Ok(Step::Progress);
            }
            if last < MIN_PAYLOAD_LEN {
                // Lend the small last record bytes from the full one before it.
                let lent = MIN_PAYLOAD_LEN - last;
                lens[count - 2] -= lent;
                lens[count - 1] = MIN_PAYLOAD_LEN;
                let mut joined = [0; MIN_PAYLOAD_LEN];
                let from = (count - 2) * SLOT_LEN + HEADER_LEN + lens[count - 2];
                joined[..lent].copy_from_slice(&buf[from..from + lent]);
                let tail = (count - 1) * SLOT_LEN + HEADER_LEN;
                joined[lent..].copy_from_slice(&buf[tail..tail + last]);
                buf[from + HEADER_LEN..from + HEADER_LEN + MIN_PAYLOAD_LEN]
                    .copy_from_slice(&joined);
                put_header(buf, (count - 2) * SLOT_LEN, lens[count - 2]);
                put_header(buf, from, MIN_PAYLOAD_LEN);
                for (slot, &len) in lens[..count - 2].iter().enumerate() {
                    put_header(buf, slot * SLOT_LEN, len);
                }
                from + HEADER_LEN + MIN_PAYLOAD_LEN
            } else {
                for (slot, &len) in lens[..count].iter().enumerate() {
                    put_header(buf, slot * SLOT_LEN, len);
                }
                (count - 1) * SLOT_LEN + HEADER_LEN + last
            }
        }
    };
    pipe.start = 0;
    pipe.end = end as u16;
    if !pipe.pending() {
        pipe.release(pool);
    }
    Ok(Step::Progress)
}

/// Writes an ApplicationData header for `len` payload bytes at `at`.
fn put_header(buf: &mut [u8], at: usize, len: usize) {
    let mut header = [0; HEADER_LEN];
    record::write_application_data_header(&mut header, len as u16);
    buf[at..at + HEADER_LEN].copy_from_slice(&header);
}

/// One peek-write-consume round on a raw pipe, through the loop's scratch area.
pub fn raw<N: Net>(
    pipe: &mut Pipe,
    source: &mut Peer<N::Stream>,
    sink: &mut Peer<N::Stream>,
    net: &mut N,
    scratch: &mut [u8],
) -> Result<Step, End> {
    if pipe.source_closed {
        return Ok(pass_fin(pipe, sink, net));
    }
    if !sink.ready.writable {
        return Ok(Step::Idle);
    }
    let n = match read(source, net, scratch, Take::Peek)? {
        Read::Bytes(n) => n,
        Read::Idle => return Ok(Step::Idle),
        Read::Closed => {
            pipe.source_closed = true;
            return Ok(Step::Progress);
        }
    };
    let written = write(sink, net, scratch.get(..n).ok_or(End::Internal)?)?;
    if written < n {
        // The rest stays queued in the source's socket; keep its readiness for the next round.
        source.ready.readable = true;
    }
    if written == 0 {
        return Ok(Step::Idle);
    }
    let Some(stream) = source.stream.as_mut() else {
        return Err(End::Internal);
    };
    // The peeked bytes are queued, so this read takes exactly the `written` bytes.
    match net.read(stream, scratch.get_mut(..written).ok_or(End::Internal)?) {
        Outcome::Progress(taken) if taken == written => {}
        _ => return Err(End::Internal),
    }
    pipe.bytes += written as u64;
    Ok(Step::Progress)
}
