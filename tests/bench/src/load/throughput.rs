//! Bulk transfer through `connections` sessions at once from one mio loop: up (client → DC),
//! down (DC → client) or both. Bulk payload is filler the endpoints never decipher (the proxy
//! does: that is its work); the command and the DC's ACK go through the real ciphers.
//! Client records carry CLIENT_RECORD_LEN (2878) bytes of payload, as real clients send.

use std::io::{self, Read, Write};
use std::time::{Duration, Instant};

use mio::net::TcpStream;
use mio::{Events, Interest, Poll, Token};

use super::{Session, Target, Tls};
use crate::command::{Command, ACK};
use crate::faketls::{data_header, filler, CLIENT_RECORD_LEN, HEADER_LEN};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Direction {
    Up,
    Down,
    Both,
}

impl Direction {
    pub fn name(self) -> &'static str {
        match self {
            Direction::Up => "up",
            Direction::Down => "down",
            Direction::Both => "both",
        }
    }
}

pub struct Outcome {
    /// Payload bytes moved, both directions added up.
    pub bytes: u64,
    pub elapsed: Duration,
    /// False when the deadline came first; `bytes` is then what moved until it.
    pub complete: bool,
}

impl Outcome {
    pub fn bytes_per_second(&self) -> f64 {
        self.bytes as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }
}

const RECORDS_PER_CHUNK: usize = 22;
const SCRATCH_LEN: usize = 64 * 1024;

struct Flow {
    stream: TcpStream,
    tls: Option<Tls>,
    prefix: Vec<u8>,
    prefix_sent: usize,
    bulk_total: u64,
    bulk_sent: u64,
    expect: u64,
    got: u64,
    ack_position: Option<u64>,
    done: bool,
}

/// Payload bytes per connection are rounded down to whole client records.
pub fn round_to_records(bytes: u64) -> u64 {
    (bytes / CLIENT_RECORD_LEN as u64).max(1) * CLIENT_RECORD_LEN as u64
}

pub fn run(
    target: &Target,
    direction: Direction,
    connections: usize,
    bytes_per_connection: u64,
    limit: Duration,
) -> io::Result<Outcome> {
    let bytes = round_to_records(bytes_per_connection);
    let command = match direction {
        Direction::Up => Command::Sink { bytes },
        Direction::Down => Command::Source { bytes },
        Direction::Both => Command::Both { bytes },
    };
    let upload = matches!(direction, Direction::Up | Direction::Both);
    // One chunk of bulk wire bytes, repeated: whole records for FakeTLS, plain filler for raw.
    let chunk: Vec<u8> = if target.is_tls() {
        let payload = filler(CLIENT_RECORD_LEN);
        let mut chunk = Vec::with_capacity(RECORDS_PER_CHUNK * (CLIENT_RECORD_LEN + HEADER_LEN));
        for _ in 0..RECORDS_PER_CHUNK {
            chunk.extend_from_slice(&data_header(CLIENT_RECORD_LEN));
            chunk.extend_from_slice(&payload);
        }
        chunk
    } else {
        filler(RECORDS_PER_CHUNK * CLIENT_RECORD_LEN)
    };
    let bulk_total = match (upload, target.is_tls()) {
        (false, _) => 0,
        (true, false) => bytes,
        (true, true) => bytes / CLIENT_RECORD_LEN as u64 * (CLIENT_RECORD_LEN + HEADER_LEN) as u64,
    };

    let poll = Poll::new()?;
    let mut flows = Vec::with_capacity(connections);
    for index in 0..connections {
        let mut session = Session::open(target, &[])?;
        let prefix = session.seal(&command.encode());
        session.stream.set_nonblocking(true)?;
        let mut stream = TcpStream::from_std(session.stream);
        poll.registry().register(
            &mut stream,
            Token(index),
            Interest::READABLE | Interest::WRITABLE,
        )?;
        flows.push(Flow {
            stream,
            tls: session.tls,
            prefix,
            prefix_sent: 0,
            bulk_total,
            bulk_sent: 0,
            expect: command.bytes_back(),
            got: 0,
            ack_position: match command {
                Command::Sink { .. } => Some(0),
                Command::Both { bytes } => Some(bytes),
                _ => None,
            },
            done: false,
        });
    }
    drive(poll, flows, &chunk, upload, bytes, limit)
}

fn drive(
    mut poll: Poll,
    mut flows: Vec<Flow>,
    chunk: &[u8],
    upload: bool,
    bytes: u64,
    limit: Duration,
) -> io::Result<Outcome> {
    let mut events = Events::with_capacity(1024);
    let mut scratch = vec![0u8; SCRATCH_LEN];
    let start = Instant::now();
    let deadline = start + limit;
    let mut last_done = start;
    let mut remaining = flows.len();
    let mut again: Vec<usize> = (0..flows.len()).collect();
    while remaining > 0 && Instant::now() < deadline {
        let timeout = if again.is_empty() {
            Duration::from_millis(100)
        } else {
            Duration::ZERO
        };
        poll.poll(&mut events, Some(timeout))?;
        let mut ready = std::mem::take(&mut again);
        ready.extend(events.iter().map(|e| e.token().0));
        for index in ready {
            let flow = &mut flows[index];
            if flow.done {
                continue;
            }
            match step(flow, chunk, &mut scratch)? {
                Step::Blocked => {}
                Step::Again => again.push(index),
                Step::Done => {
                    flow.done = true;
                    remaining -= 1;
                    last_done = Instant::now();
                }
            }
        }
        again.sort_unstable();
        again.dedup();
    }
    let complete = remaining == 0;
    let elapsed = if complete {
        last_done - start
    } else {
        start.elapsed()
    };
    let moved: u64 = flows
        .iter()
        .map(|f| {
            let up = if upload {
                (u128::from(f.bulk_sent) * u128::from(bytes))
                    .checked_div(u128::from(f.bulk_total))
                    .map_or(0, |n| n as u64)
            } else {
                0
            };
            // The ACK byte is not payload of the test.
            let down = f
                .got
                .min(f.expect.saturating_sub(f.ack_position.map_or(0, |_| 1)));
            up + down
        })
        .sum();
    Ok(Outcome {
        bytes: moved,
        elapsed,
        complete,
    })
}

enum Step {
    Blocked,
    Again,
    Done,
}

fn step(flow: &mut Flow, chunk: &[u8], scratch: &mut [u8]) -> io::Result<Step> {
    for _ in 0..64 {
        let mut progress = false;
        if flow.prefix_sent < flow.prefix.len() {
            match flow.stream.write(&flow.prefix[flow.prefix_sent..]) {
                Ok(n) => {
                    flow.prefix_sent += n;
                    progress = true;
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                Err(e) => return Err(e),
            }
        } else if flow.bulk_sent < flow.bulk_total {
            let offset = (flow.bulk_sent % chunk.len() as u64) as usize;
            let n = (chunk.len() - offset).min((flow.bulk_total - flow.bulk_sent) as usize);
            match flow.stream.write(&chunk[offset..offset + n]) {
                Ok(n) => {
                    flow.bulk_sent += n as u64;
                    progress = true;
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                Err(e) => return Err(e),
            }
        }
        match flow.stream.read(scratch) {
            Ok(0) => {
                return Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    "peer closed during a transfer",
                ))
            }
            Ok(n) => {
                receive(flow, &mut scratch[..n])?;
                progress = true;
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
            Err(e) => return Err(e),
        }
        if flow.prefix_sent == flow.prefix.len()
            && flow.bulk_sent == flow.bulk_total
            && flow.got >= flow.expect
        {
            return Ok(Step::Done);
        }
        if !progress {
            return Ok(Step::Blocked);
        }
    }
    Ok(Step::Again)
}

/// Counts payload bytes just read; checks the ACK byte where there is one.
fn receive(flow: &mut Flow, data: &mut [u8]) -> io::Result<()> {
    let mut bad_ack = false;
    let got = &mut flow.got;
    let ack_position = flow.ack_position;
    let mut check = |payload: &mut [u8], receive: Option<&mut crate::crypto::Ctr>| {
        if let Some(position) = ack_position {
            if *got <= position && position < *got + payload.len() as u64 {
                let mut byte = [payload[(position - *got) as usize]];
                if let Some(receive) = receive {
                    receive.seek(position);
                    receive.apply(&mut byte);
                }
                bad_ack |= byte[0] != ACK;
            }
        }
        *got += payload.len() as u64;
    };
    match &mut flow.tls {
        None => check(data, None),
        Some(tls) => {
            let Tls {
                reader, receive, ..
            } = tls;
            reader.walk(data, |payload| check(payload, Some(receive)))?;
        }
    }
    if bad_ack {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            "the DC's ACK did not decrypt to 'A': keys differ somewhere on the path",
        ));
    }
    if flow.got > flow.expect {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            "more bytes came back than the DC was asked to send",
        ));
    }
    Ok(())
}
