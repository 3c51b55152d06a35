//! Round trips of small messages through `connections` sessions from one mio loop, one message
//! in flight per connection: send, wait for the echo (deciphered and compared), send the next.

use std::io::{self, Read, Write};
use std::time::{Duration, Instant};

use mio::net::TcpStream;
use mio::{Events, Interest, Poll, Token};

use super::{seal, Session, Target, Tls};
use crate::command::Command;
use crate::crypto::random;
use crate::stats::Latencies;

pub struct Outcome {
    pub round_trips: Latencies,
    pub complete: bool,
}

struct Peer {
    stream: TcpStream,
    tls: Option<Tls>,
    message: Vec<u8>,
    wire: Vec<u8>,
    wire_sent: usize,
    echoed: usize,
    sent_at: Instant,
    round: u64,
}

struct Plan {
    warmup: u64,
    rounds: u64,
}

/// `rounds` round trips of `size` payload bytes per connection, after `warmup` unrecorded ones.
pub fn run(
    target: &Target,
    connections: usize,
    size: usize,
    rounds: u64,
    warmup: u64,
    limit: Duration,
) -> io::Result<Outcome> {
    let poll = Poll::new()?;
    let mut peers = Vec::with_capacity(connections);
    for index in 0..connections {
        let session = Session::open(target, &Command::Echo { close_after: 0 }.encode())?;
        session.stream.set_nonblocking(true)?;
        let mut stream = TcpStream::from_std(session.stream);
        poll.registry().register(
            &mut stream,
            Token(index),
            Interest::READABLE | Interest::WRITABLE,
        )?;
        peers.push(Peer {
            stream,
            tls: session.tls,
            message: vec![0; size],
            wire: Vec::new(),
            wire_sent: 0,
            echoed: 0,
            sent_at: Instant::now(),
            round: 0,
        });
    }
    let plan = Plan { warmup, rounds };
    let mut round_trips = Latencies::default();
    drive(poll, peers, &plan, &mut round_trips, limit).map(|complete| Outcome {
        round_trips,
        complete,
    })
}

fn drive(
    mut poll: Poll,
    mut peers: Vec<Peer>,
    plan: &Plan,
    round_trips: &mut Latencies,
    limit: Duration,
) -> io::Result<bool> {
    let mut events = Events::with_capacity(1024);
    let mut scratch = vec![0u8; 64 * 1024];
    let deadline = Instant::now() + limit;
    let mut remaining = peers.len();
    for peer in peers.iter_mut() {
        next_message(peer);
        if pump(peer, &mut scratch, round_trips, plan)? {
            remaining -= 1;
        }
    }
    while remaining > 0 && Instant::now() < deadline {
        poll.poll(&mut events, Some(Duration::from_millis(100)))?;
        for event in events.iter() {
            let peer = &mut peers[event.token().0];
            if peer.round == plan.warmup + plan.rounds {
                continue;
            }
            if pump(peer, &mut scratch, round_trips, plan)? {
                remaining -= 1;
            }
        }
    }
    Ok(remaining == 0)
}

fn next_message(peer: &mut Peer) {
    random(&mut peer.message);
    peer.wire = match &mut peer.tls {
        None => peer.message.clone(),
        Some(tls) => seal(tls, &peer.message),
    };
    peer.wire_sent = 0;
    peer.echoed = 0;
    peer.sent_at = Instant::now();
}

/// Moves bytes until the socket blocks; returns true when the peer has finished its rounds.
fn pump(
    peer: &mut Peer,
    scratch: &mut [u8],
    round_trips: &mut Latencies,
    plan: &Plan,
) -> io::Result<bool> {
    for _ in 0..1024 {
        let mut progress = false;
        if peer.wire_sent < peer.wire.len() {
            match peer.stream.write(&peer.wire[peer.wire_sent..]) {
                Ok(n) => {
                    peer.wire_sent += n;
                    progress = true;
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                Err(e) => return Err(e),
            }
        }
        match peer.stream.read(scratch) {
            Ok(0) => return Err(io::ErrorKind::UnexpectedEof.into()),
            Ok(n) => {
                take(peer, &mut scratch[..n])?;
                progress = true;
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
            Err(e) => return Err(e),
        }
        if peer.echoed == peer.message.len() {
            if peer.round >= plan.warmup {
                round_trips.push(peer.sent_at.elapsed());
            }
            peer.round += 1;
            if peer.round == plan.warmup + plan.rounds {
                return Ok(true);
            }
            next_message(peer);
            continue;
        }
        if !progress {
            return Ok(false);
        }
    }
    Ok(false)
}

/// Checks echoed payload against the message in flight.
fn take(peer: &mut Peer, data: &mut [u8]) -> io::Result<()> {
    let mut mismatch = false;
    let message = &peer.message;
    let echoed = &mut peer.echoed;
    let mut check = |payload: &mut [u8], receive: Option<&mut crate::crypto::Ctr>| {
        if let Some(receive) = receive {
            receive.apply(payload);
        }
        let end = *echoed + payload.len();
        mismatch |= end > message.len() || message[*echoed..end] != *payload;
        *echoed = end.min(message.len());
    };
    match &mut peer.tls {
        None => check(data, None),
        Some(tls) => {
            let Tls {
                reader, receive, ..
            } = tls;
            reader.walk(data, |payload| check(payload, Some(receive)))?;
        }
    }
    if mismatch {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            "the echo differs from the message sent",
        ));
    }
    Ok(())
}
