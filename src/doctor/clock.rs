//! The clock check: an unencrypted `req_pq_multi` to a DC over obfuscated2, as feint's own DC
//! connections start (docs/PROTOCOL.md §5.5); the resPQ's message id is the DC's time.

use std::io::{Read, Write};
use std::net::SocketAddr;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use super::exchange::{connect, TIMEOUT};
use super::{dcs, human, Finding};
use crate::proto::mtproto::{self, MAX_REQ_PQ_MULTI_FRAME_LEN, MAX_RES_PQ_LEN, NONCE_LEN};
use crate::proto::obfs2::{self, FRAME_LEN};
use crate::settings::Config;

/// DC addresses tried before giving up, and the time all of them may take.
const MAX_ATTEMPTS: usize = 3;
const MAX_TIME: Duration = Duration::from_secs(8);
/// Off by more than this, but within the limit, is worth an NTP fix before it grows.
const WARN_OFFSET: f64 = 2.0;
/// Random 64-byte frames drawn before giving up on one the DC would take (one in a few
/// billion is refused).
const MAX_FRAME_DRAWS: usize = 16;

pub fn check(config: &Config) -> Finding {
    let start = Instant::now();
    let mut errors = Vec::new();
    let candidates =
        (1..=5).flat_map(|id| dcs::addresses(config, id).into_iter().map(move |a| (id, a)));
    for (id, address) in candidates.take(MAX_ATTEMPTS) {
        if start.elapsed() > MAX_TIME {
            break;
        }
        match measure(address, id) {
            Ok((offset, round_trip)) => return judge(config, id, address, offset, round_trip),
            Err(e) => errors.push(format!("DC {id} {address}: {e}")),
        }
    }
    Finding::warn(
        "clock",
        format!("cannot compare with a DC's clock: {}", errors.join("; ")),
        "see the DC lines below; keep the clock synced (timedatectl set-ntp true, or chrony)",
    )
}

/// The DC's clock minus ours, in seconds, and the round trip it was measured over.
fn measure(address: SocketAddr, id: i16) -> Result<(f64, Duration), String> {
    let mut random = [0; FRAME_LEN];
    let mut upstream = None;
    for _ in 0..MAX_FRAME_DRAWS {
        getrandom::getrandom(&mut random).map_err(|e| e.to_string())?;
        upstream = obfs2::upstream_frame(&random, id);
        if upstream.is_some() {
            break;
        }
    }
    let mut upstream = upstream.ok_or("no usable obfuscated2 frame")?;

    let mut nonce = [0; NONCE_LEN];
    let mut padding = [0; 16];
    getrandom::getrandom(&mut nonce).map_err(|e| e.to_string())?;
    getrandom::getrandom(&mut padding).map_err(|e| e.to_string())?;
    let padding_len = usize::from(padding[15] % 16);
    let sent_at = unix_now();
    let message_id = mtproto::client_message_id(sent_at.as_secs(), sent_at.subsec_nanos());
    let mut request = [0; FRAME_LEN + MAX_REQ_PQ_MULTI_FRAME_LEN];
    request[..FRAME_LEN].copy_from_slice(&upstream.wire);
    let len = mtproto::req_pq_multi(
        &mut request[FRAME_LEN..],
        message_id,
        &nonce,
        &padding[..padding_len],
    )
    .ok_or("cannot build req_pq_multi")?;
    let request = &mut request[..FRAME_LEN + len];
    upstream.encrypt.apply(&mut request[FRAME_LEN..]);

    let mut stream = connect(address).map_err(|e| format!("cannot connect: {e}"))?;
    let started = Instant::now();
    stream
        .write_all(request)
        .map_err(|e| format!("cannot send: {e}"))?;
    let mut header = [0; 4];
    stream
        .read_exact(&mut header)
        .map_err(|e| format!("no answer to req_pq_multi: {e}"))?;
    let round_trip = started.elapsed();
    upstream.decrypt.apply(&mut header);
    let frame_len = mtproto::frame_len(header).ok_or("an answer of impossible length")?;
    let mut frame = [0; MAX_RES_PQ_LEN];
    let frame = frame
        .get_mut(..frame_len)
        .ok_or("an answer of impossible length")?;
    stream
        .set_read_timeout(Some(TIMEOUT))
        .and_then(|()| stream.read_exact(frame))
        .map_err(|e| format!("the answer ends early: {e}"))?;
    upstream.decrypt.apply(frame);
    let server_id =
        mtproto::res_pq_message_id(frame, &nonce).map_err(|e| format!("the answer is {e}"))?;
    // The DC stamped its answer about half a round trip after we sent.
    let ours = (sent_at + round_trip / 2).as_secs_f64();
    Ok((mtproto::message_time(server_id) - ours, round_trip))
}

fn judge(
    config: &Config,
    id: i16,
    address: SocketAddr,
    offset: f64,
    round_trip: Duration,
) -> Finding {
    let limit = config.time_skew.as_secs_f64() / 2.0;
    let direction = if offset > 0.0 { "behind" } else { "ahead of" };
    let finding = format!(
        "our clock is {:.1} s {direction} DC {id}'s ({address}, round trip {}); \
         half of --time-skew is {limit:.0} s",
        offset.abs(),
        human(round_trip)
    );
    if offset.abs() > limit {
        Finding::fail(
            "clock",
            finding,
            "every client would be fronted: sync the clock (timedatectl set-ntp true, or \
             chrony) and run doctor again",
        )
    } else if offset.abs() > WARN_OFFSET {
        Finding::warn(
            "clock",
            finding,
            "the clock drifts: enable NTP (timedatectl set-ntp true, or chrony)",
        )
    } else {
        Finding::ok("clock", finding)
    }
}

fn unix_now() -> Duration {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
}
