//! The one MTProto exchange `feint doctor` makes with a DC, unencrypted: `req_pq_multi` out in
//! a padded-intermediate frame, `resPQ` back, whose message id carries the DC's clock
//! (core.telegram.org/mtproto/description, "Message Identifier"; docs/PROTOCOL.md §5.3).

use std::fmt;

pub const REQ_PQ_MULTI: u32 = 0xbe7e_8ef1;
pub const RES_PQ: u32 = 0x0516_2463;
pub const NONCE_LEN: usize = 16;
/// auth_key_id (0 when unencrypted), message id, body length.
const HEADER_LEN: usize = 8 + 8 + 4;
const REQ_PQ_MULTI_BODY_LEN: usize = 4 + NONCE_LEN;
/// Padded intermediate pads with 0 to 15 random bytes.
pub const MAX_PADDING_LEN: usize = 15;
/// The length word, the message and the most padding.
pub const MAX_REQ_PQ_MULTI_FRAME_LEN: usize =
    4 + HEADER_LEN + REQ_PQ_MULTI_BODY_LEN + MAX_PADDING_LEN;
/// The top bit of a padded-intermediate length asks for a quick ack; it is not length.
const QUICK_ACK: u32 = 0x8000_0000;
/// A resPQ with a few fingerprints is about 90 bytes; more than this is not one.
pub const MAX_RES_PQ_LEN: usize = 1024;

/// Why a DC's answer carries no usable clock.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ResPqError {
    /// A 4-byte answer: a transport error code such as -404.
    TransportError(i32),
    /// Shorter than its header says, or a length out of bounds.
    Truncated,
    /// Encrypted (auth_key_id not 0), or not a resPQ.
    NotResPq,
    /// A resPQ for another nonce: not an answer to our request.
    WrongNonce,
}

impl fmt::Display for ResPqError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ResPqError::TransportError(code) => write!(f, "transport error {code}"),
            ResPqError::Truncated => f.write_str("a truncated message"),
            ResPqError::NotResPq => f.write_str("not a resPQ"),
            ResPqError::WrongNonce => f.write_str("a resPQ for another nonce"),
        }
    }
}

/// A client message id for unix time `now_seconds` (with its fraction in `now_nanos`): the
/// time times 2^32, a multiple of 4.
pub fn client_message_id(now_seconds: u64, now_nanos: u32) -> u64 {
    let fraction = (u64::from(now_nanos) << 32) / 1_000_000_000;
    ((now_seconds << 32) | fraction) & !3
}

/// The unix time a message id names, in seconds with fraction.
pub fn message_time(message_id: u64) -> f64 {
    message_id as f64 / 4_294_967_296.0
}

/// Writes `req_pq_multi` for `nonce` as one padded-intermediate frame: the LE length of
/// message and padding, then the unencrypted message, then `padding` (at most 15 bytes).
/// Returns the length, or None when `out` is short or the padding too long.
pub fn req_pq_multi(
    out: &mut [u8],
    message_id: u64,
    nonce: &[u8; NONCE_LEN],
    padding: &[u8],
) -> Option<usize> {
    if padding.len() > MAX_PADDING_LEN {
        return None;
    }
    let message_len = HEADER_LEN + REQ_PQ_MULTI_BODY_LEN;
    let frame_len = u32::try_from(message_len + padding.len()).ok()?;
    let parts: [&[u8]; 7] = [
        &frame_len.to_le_bytes(),
        &0u64.to_le_bytes(),
        &message_id.to_le_bytes(),
        &(REQ_PQ_MULTI_BODY_LEN as u32).to_le_bytes(),
        &REQ_PQ_MULTI.to_le_bytes(),
        nonce,
        padding,
    ];
    let mut at = 0;
    for part in parts {
        out.get_mut(at..at + part.len())?.copy_from_slice(part);
        at += part.len();
    }
    Some(at)
}

/// The length of the padded-intermediate frame whose 4-byte header is `header`, or None when
/// it is out of bounds for a resPQ.
pub fn frame_len(header: [u8; 4]) -> Option<usize> {
    let len = usize::try_from(u32::from_le_bytes(header) & !QUICK_ACK).ok()?;
    (4..=MAX_RES_PQ_LEN).contains(&len).then_some(len)
}

/// Reads the frame body (after the length word, padding included) as a resPQ for `nonce` and
/// returns the server's message id.
pub fn res_pq_message_id(frame: &[u8], nonce: &[u8; NONCE_LEN]) -> Result<u64, ResPqError> {
    if let Ok(code) = <[u8; 4]>::try_from(frame) {
        return Err(ResPqError::TransportError(i32::from_le_bytes(code)));
    }
    let word = |range: std::ops::Range<usize>| frame.get(range).ok_or(ResPqError::Truncated);
    let u64_at = |at: usize| -> Result<u64, ResPqError> {
        let bytes = word(at..at + 8)?;
        Ok(u64::from_le_bytes(
            bytes.try_into().map_err(|_| ResPqError::Truncated)?,
        ))
    };
    let u32_at = |at: usize| -> Result<u32, ResPqError> {
        let bytes = word(at..at + 4)?;
        Ok(u32::from_le_bytes(
            bytes.try_into().map_err(|_| ResPqError::Truncated)?,
        ))
    };
    if u64_at(0)? != 0 {
        return Err(ResPqError::NotResPq);
    }
    let message_id = u64_at(8)?;
    let body_len = usize::try_from(u32_at(16)?).map_err(|_| ResPqError::Truncated)?;
    if body_len < 4 + NONCE_LEN || HEADER_LEN + body_len > frame.len() {
        return Err(ResPqError::Truncated);
    }
    if u32_at(HEADER_LEN)? != RES_PQ {
        return Err(ResPqError::NotResPq);
    }
    if word(HEADER_LEN + 4..HEADER_LEN + 4 + NONCE_LEN)? != nonce {
        return Err(ResPqError::WrongNonce);
    }
    Ok(message_id)
}

#[cfg(test)]
mod tests {
    use super::*;

    const NONCE: [u8; 16] = [0x42; 16];

    /// A resPQ as a DC sends it: header, constructor, nonce, server nonce, pq, fingerprints.
    fn res_pq(message_id: u64, nonce: &[u8; 16]) -> Vec<u8> {
        let mut body = RES_PQ.to_le_bytes().to_vec();
        body.extend(nonce);
        body.extend([7; 16]);
        body.extend([8, 0x17, 0xed, 0x48, 0x94, 0x1a, 0x08, 0xf9, 0x81, 0, 0, 0]);
        body.extend([0x15, 0xc4, 0xb5, 0x1c, 1, 0, 0, 0]);
        body.extend([0x88; 8]);
        let mut frame = 0u64.to_le_bytes().to_vec();
        frame.extend(message_id.to_le_bytes());
        frame.extend((body.len() as u32).to_le_bytes());
        frame.extend(body);
        frame.extend([0; 3]);
        frame
    }

    #[test]
    fn writes_req_pq_multi_as_tdlib_frames_it() {
        let mut out = [0; MAX_REQ_PQ_MULTI_FRAME_LEN];
        let len = req_pq_multi(&mut out, 0x1122_3344_5566_7788, &NONCE, &[9, 9]).unwrap();
        assert_eq!(len, 4 + 40 + 2);
        assert_eq!(out[..4], 42u32.to_le_bytes());
        assert_eq!(out[4..12], [0; 8]);
        assert_eq!(out[12..20], 0x1122_3344_5566_7788u64.to_le_bytes());
        assert_eq!(out[20..24], 20u32.to_le_bytes());
        assert_eq!(out[24..28], [0xf1, 0x8e, 0x7e, 0xbe]);
        assert_eq!(out[28..44], NONCE);
        assert_eq!(out[44..46], [9, 9]);
    }

    #[test]
    fn refuses_long_padding_and_short_buffers() {
        let mut out = [0; MAX_REQ_PQ_MULTI_FRAME_LEN];
        assert_eq!(req_pq_multi(&mut out, 4, &NONCE, &[0; 16]), None);
        assert_eq!(req_pq_multi(&mut out[..43], 4, &NONCE, &[]), None);
        assert_eq!(
            req_pq_multi(&mut out, 4, &NONCE, &[0; 15]),
            Some(MAX_REQ_PQ_MULTI_FRAME_LEN)
        );
    }

    #[test]
    fn message_ids_carry_unix_time_in_their_upper_half() {
        let id = client_message_id(1_700_000_000, 500_000_000);
        assert_eq!(id >> 32, 1_700_000_000);
        assert_eq!(id % 4, 0);
        assert!((message_time(id) - 1_700_000_000.5).abs() < 1e-6);
    }

    #[test]
    fn reads_the_server_message_id_of_a_res_pq() {
        let id = (1_700_000_123u64 << 32) | 1;
        assert_eq!(res_pq_message_id(&res_pq(id, &NONCE), &NONCE), Ok(id));
    }

    #[test]
    fn rejects_answers_that_are_not_our_res_pq() {
        let frame = res_pq(5, &NONCE);
        assert_eq!(
            res_pq_message_id(&frame, &[0; 16]),
            Err(ResPqError::WrongNonce)
        );
        assert_eq!(
            res_pq_message_id(&(-404i32).to_le_bytes(), &NONCE),
            Err(ResPqError::TransportError(-404))
        );
        for cut in [0, 5, 19, 30, 43] {
            assert_eq!(
                res_pq_message_id(&frame[..cut], &NONCE),
                Err(ResPqError::Truncated),
                "{cut}"
            );
        }
        let mut encrypted = frame.clone();
        encrypted[0] = 1;
        assert_eq!(
            res_pq_message_id(&encrypted, &NONCE),
            Err(ResPqError::NotResPq)
        );
        let mut other = frame;
        other[20] ^= 1;
        assert_eq!(res_pq_message_id(&other, &NONCE), Err(ResPqError::NotResPq));
    }

    #[test]
    fn frame_lengths_drop_the_quick_ack_bit_and_stay_bounded() {
        assert_eq!(frame_len(84u32.to_le_bytes()), Some(84));
        assert_eq!(frame_len((84u32 | QUICK_ACK).to_le_bytes()), Some(84));
        assert_eq!(frame_len(3u32.to_le_bytes()), None);
        assert_eq!(frame_len(1025u32.to_le_bytes()), None);
    }
}
