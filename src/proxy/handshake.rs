//! The handshake steps of a connection: deciding the hello (docs/PROTOCOL.md §2.4), writing our
//! reply (§3), and reading the client's obfs2 frame to start the relay (§5). Called by
//! `connection.rs`, which owns the phases; the I/O goes through `Net` like everywhere else.

use std::time::Duration;

use super::buffer::BUF_LEN;
use super::connection::{Connection, Cx, Dial, FrontReason, Phase, Relay};
use super::end::End;
use super::net::{CloseStyle, Net, Outcome};
use super::pipe::{self, Read, Step, Take};
use crate::proto::front_flight::ML_KEM_768_CIPHERTEXT_LEN;
use crate::proto::hello::{self, Assembly, Rejection};
use crate::proto::obfs2::{self, FRAME_LEN};
use crate::proto::record::Deframer;
use crate::proto::{server_hello, x25519};

// A reply shaped like the front's and its ML-KEM stand-in fit one pool buffer side by side.
const _: () = assert!(server_hello::MAX_REPLY_LEN + ML_KEM_768_CIPHERTEXT_LEN <= BUF_LEN);

/// The longest a reply is held to match the front's time to answer.
const MAX_REPLY_HOLD: Duration = Duration::from_millis(500);
/// Tries at drawing a DC frame without a forbidden pattern; each try fails with p < 2^-7.
const MAX_FRAME_DRAWS: usize = 32;

/// Peeks at everything the client has sent and decides, as early as the bytes allow.
pub fn read_hello<S, N: Net<Stream = S>>(
    connection: &mut Connection<S>,
    cx: &mut Cx<'_, N>,
) -> Result<Step, End> {
    let env = &mut *cx.env;
    let peeked = match pipe::read(&mut connection.client, cx.net, &mut env.scratch, Take::Peek)? {
        Read::Idle => return Ok(Step::Idle),
        // FIN before any byte: the front answers that as it would, if there is one.
        Read::Closed => {
            return match connection.front(FrontReason::Hello(Rejection::Truncated), cx) {
                Err(End::Unreachable) => Err(End::ClientLeft),
                other => other.map(|()| Step::Progress),
            }
        }
        Read::Bytes(n) => n,
    };
    let whole = peeked == env.scratch.len() || connection.client.ready.hung_up;
    let verdict = match hello::assemble(&env.scratch[..peeked], &mut env.assembled) {
        Assembly::NeedMore if !whole => return Ok(Step::Idle),
        Assembly::NeedMore => Err(Rejection::Truncated),
        Assembly::Rejected(reason) => Err(reason),
        Assembly::Complete { consumed, .. } if consumed != peeked => Err(Rejection::TrailingData),
        Assembly::Complete { len, .. } => Ok(len),
    };
    let len = match verdict {
        Ok(len) => len,
        Err(reason) => {
            return connection
                .front(FrontReason::Hello(reason), cx)
                .map(|()| Step::Progress)
        }
    };
    // The reply's buffer first, so that a hello that passes (and so enters the replay table)
    // never has to wait for one.
    let Some(id) = cx.pool.take() else {
        connection.client.ready.readable = true;
        return Ok(Step::NeedBuffer);
    };
    let verified = match verify(cx, len) {
        Ok(verified) => verified,
        Err(reason) => {
            cx.pool.give(id);
            return connection
                .front(FrontReason::Hello(reason), cx)
                .map(|()| Step::Progress);
        }
    };
    // Take the hello out of the kernel's queue now that it is ours.
    let Some(client) = connection.client.stream.as_mut() else {
        cx.pool.give(id);
        return Err(End::Internal);
    };
    match cx.net.read(client, &mut cx.env.scratch[..peeked]) {
        Outcome::Progress(n) if n == peeked => {}
        _ => {
            cx.pool.give(id);
            return Err(End::Internal);
        }
    }
    cx.net.client_verified(client);
    if let Some(front) = connection.upstream.stream.take() {
        cx.net.close(front, CloseStyle::Graceful);
    }
    connection.upstream = pipe::Peer::new(connection.upstream.side);
    connection.down.buffer = Some(id);
    let len = emit_reply(cx, id, &verified)?;
    connection.down.start = 0;
    connection.down.end = len as u16;
    // No sooner than the front would answer the same hello (its time, learned by the probe).
    let hold = cx
        .env
        .shared
        .front_profile()
        .map_or(Duration::ZERO, |front| front.first_byte.min(MAX_REPLY_HOLD));
    connection.phase = Phase::AwaitObfs2 {
        deadline: match connection.phase {
            Phase::AwaitHello { deadline, .. } => deadline,
            _ => cx.env.now.tick + cx.env.handshake_ticks,
        },
        deframer: Deframer::new(),
        reply_at: cx.env.now.micros + hold.as_micros() as u64,
    };
    Ok(Step::Progress)
}

/// Checks the assembled hello; replay is checked last, so only hellos signed with our key and
/// inside the clock window ever enter the replay table.
fn verify<N: Net>(cx: &mut Cx<'_, N>, len: usize) -> Result<hello::Verified, Rejection> {
    let shared = &cx.env.shared;
    let record = cx
        .env
        .assembled
        .get_mut(..len)
        .ok_or(Rejection::Truncated)?;
    let verified = hello::verify(
        record,
        &shared.key,
        &shared.domain,
        cx.env.now.unix,
        shared.time_skew,
    )?;
    if shared.is_replay(&verified.client_random) {
        return Err(Rejection::Replayed);
    }
    Ok(verified)
}

/// Writes our reply flight (§3) into buffer `id`; returns its length. Once the front's answer
/// is known, the reply takes its shape: cipher, extension order, group, and one certificate
/// record as long as the front's whole encrypted flight, the same on every connection.
fn emit_reply<N: Net>(
    cx: &mut Cx<'_, N>,
    id: u32,
    verified: &hello::Verified,
) -> Result<usize, End> {
    let env = &mut *cx.env;
    let mut random = [0; 32 * x25519::KEY_SHARE_TRIES];
    env.random(&mut random);
    let public_key = x25519::key_share(&random);
    let mut seed = [0; 1];
    env.random(&mut seed);
    let profile = env.shared.front_profile();
    let cert_len = match &profile {
        Some(front) => front.cert_len(),
        None => (env.shared.cert_len + (seed[0] as usize % 64)).min(server_hello::MAX_CERT_LEN),
    };
    let noise = env.noise.get_mut(..cert_len).ok_or(End::Internal)?;
    noise.fill(0);
    env.rng.apply(noise);
    let buf = cx.pool.get(id);
    let len = match &profile {
        None => server_hello::emit(
            buf,
            &env.shared.key,
            verified,
            &public_key,
            &env.noise[..cert_len],
        ),
        Some(front) => {
            // The stand-in ML-KEM ciphertext goes at the end of the buffer, past the longest
            // reply; any bytes do, nobody can decrypt a FakeTLS reply.
            let (out, tail) = buf.split_at_mut(BUF_LEN - ML_KEM_768_CIPHERTEXT_LEN);
            tail.fill(0);
            env.rng.apply(tail);
            let ml_kem_ciphertext =
                <&[u8; ML_KEM_768_CIPHERTEXT_LEN]>::try_from(&*tail).map_err(|_| End::Internal)?;
            server_hello::emit_like(
                out,
                &env.shared.key,
                verified,
                front,
                &public_key,
                ml_kem_ciphertext,
                &env.noise[..cert_len],
            )
        }
    };
    len.ok_or(End::Internal)
}

/// One read of the client's records until its 64-byte obfs2 frame is in.
pub fn read_obfs2<S, N: Net<Stream = S>>(
    connection: &mut Connection<S>,
    cx: &mut Cx<'_, N>,
) -> Result<Step, End> {
    let Phase::AwaitObfs2 { deframer, .. } = &mut connection.phase else {
        return Err(End::Internal);
    };
    if !connection.client.ready.readable {
        return Ok(Step::Idle);
    }
    let id = match connection.up.buffer {
        Some(id) => id,
        None => match cx.pool.take() {
            Some(id) => {
                connection.up.buffer = Some(id);
                id
            }
            None => return Ok(Step::NeedBuffer),
        },
    };
    let start = connection.up.end as usize;
    let room = &mut cx.pool.get(id)[start..];
    let n = match pipe::read(&mut connection.client, cx.net, room, Take::Consume)? {
        Read::Bytes(n) => n,
        Read::Idle => {
            if start == 0 {
                connection.up.release(cx.pool);
            }
            return Ok(Step::Idle);
        }
        Read::Closed => return Err(End::ClientLeft),
    };
    let payload = deframer
        .deframe(&mut cx.pool.get(id)[start..start + n])
        .map_err(End::BadRecord)?;
    connection.up.end += payload as u16;
    if (connection.up.end as usize) < FRAME_LEN {
        return Ok(Step::Progress);
    }
    start_relay(connection, cx, id)?;
    Ok(Step::Progress)
}

/// The client's frame is in: derive the four keystreams, re-encrypt what came after the frame
/// for the DC, put our frame for the DC in front of it and dial the DC.
fn start_relay<S, N: Net<Stream = S>>(
    connection: &mut Connection<S>,
    cx: &mut Cx<'_, N>,
    id: u32,
) -> Result<(), End> {
    let Phase::AwaitObfs2 { deframer, .. } = &connection.phase else {
        return Err(End::Internal);
    };
    let deframer = deframer.clone();
    let key = cx.env.shared.key;
    let mut frame = [0; FRAME_LEN];
    frame.copy_from_slice(&cx.pool.get(id)[..FRAME_LEN]);
    let client = obfs2::parse_client_frame(&frame, &key).map_err(|_| End::BadTag)?;
    if cx.env.shared.dc_address(client.dc, 0).is_none() {
        return Err(End::UnknownDc);
    }
    let mut upstream = None;
    for _ in 0..MAX_FRAME_DRAWS {
        cx.env.random(&mut frame);
        upstream = obfs2::upstream_frame(&frame, client.dc);
        if upstream.is_some() {
            break;
        }
    }
    let upstream = upstream.ok_or(End::Internal)?;
    let mut relay = Relay {
        dc: client.dc,
        dial: Dial::NEW,
        idle_deadline: cx.env.now.tick + cx.env.idle_ticks,
        flush_at: 0,
        deframer,
        client_decrypt: client.decrypt,
        client_encrypt: client.encrypt,
        dc_encrypt: upstream.encrypt,
        dc_decrypt: upstream.decrypt,
    };
    let buf = cx.pool.get(id);
    let end = connection.up.end as usize;
    let rest = &mut buf[FRAME_LEN..end];
    relay.client_decrypt.apply(rest);
    relay.dc_encrypt.apply(rest);
    buf[..FRAME_LEN].copy_from_slice(&upstream.wire);
    connection.up.start = 0;
    connection.phase = Phase::Relay(relay);
    cx.env.counters().handshake();
    connection.dial(cx)
}
