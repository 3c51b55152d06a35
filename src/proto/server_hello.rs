//! Our reply flight: ServerHello, CCS and one ApplicationData record standing in for the
//! certificate, signed as docs/PROTOCOL.md §3 says. Written into the caller's buffer.

use super::hello::{hmac_sha256, Verified};
use super::record::{APPLICATION_DATA, CHANGE_CIPHER_SPEC, HANDSHAKE};

/// iOS refuses a certificate record over 10 240 bytes (docs/PROTOCOL.md §3.2).
pub const MAX_CERT_LEN: usize = 10240;
/// Bytes before the certificate payload with a 32-byte session id.
pub const FIXED_LEN: usize = 138;

const SERVER_HELLO: u8 = 0x02;
const TLS12: [u8; 2] = [0x03, 0x03];
/// Where the server random sits in the reply (docs/PROTOCOL.md §3.1).
const RANDOM_START: usize = 11;
const RANDOM_LEN: usize = 32;
const MAX_SESSION_ID_LEN: usize = 32;
/// ServerHello record payload with an empty session id: 4 + 2 + 32 + 1 + 2 + 1 + 2 + 46.
const SERVER_HELLO_BASE_LEN: usize = 90;
/// key_share with X25519 (RFC 8446 §4.2.8), placed first as the official server does.
const KEY_SHARE_PREFIX: [u8; 8] = [0x00, 0x33, 0x00, 0x24, 0x00, 0x1d, 0x00, 0x20];
/// supported_versions naming TLS 1.3 (RFC 8446 §4.2.1).
const SUPPORTED_VERSIONS: [u8; 6] = [0x00, 0x2b, 0x00, 0x02, 0x03, 0x04];
const EXTENSIONS_LEN: usize = KEY_SHARE_PREFIX.len() + 32 + SUPPORTED_VERSIONS.len();
const CHANGE_CIPHER_SPEC_RECORD: [u8; 6] = [CHANGE_CIPHER_SPEC, 0x03, 0x03, 0x00, 0x01, 0x01];

/// Writes the reply into `out` and returns its length, 138 - 32 + session_id_len + noise.len().
/// `noise` (1..=MAX_CERT_LEN random bytes) becomes the certificate record's payload; `public_key`
/// is an X25519 public key. Returns None if `out` is too small or `noise` out of range.
pub fn emit(
    out: &mut [u8],
    key: &[u8; 16],
    hello: &Verified,
    public_key: &[u8; 32],
    noise: &[u8],
) -> Option<usize> {
    let session_id = hello
        .session_id
        .get(..usize::from(hello.session_id_len))
        .filter(|id| id.len() <= MAX_SESSION_ID_LEN)?;
    if noise.is_empty() || noise.len() > MAX_CERT_LEN {
        return None;
    }
    let record_len = SERVER_HELLO_BASE_LEN + session_id.len();
    let total = FIXED_LEN - MAX_SESSION_ID_LEN + session_id.len() + noise.len();
    let out = out.get_mut(..total)?;

    let record_len_bytes = u16::try_from(record_len).ok()?.to_be_bytes();
    let handshake_len = u32::try_from(record_len - 4).ok()?.to_be_bytes();
    let noise_len = u16::try_from(noise.len()).ok()?.to_be_bytes();
    let extensions_len = u16::try_from(EXTENSIONS_LEN).ok()?.to_be_bytes();
    let parts: [&[u8]; 20] = [
        &[HANDSHAKE],
        &TLS12,
        &record_len_bytes,
        &[SERVER_HELLO],
        &handshake_len[1..],
        &TLS12,
        &[0; RANDOM_LEN],
        // The session id is echoed at the length the client used (docs/PROTOCOL.md §9, item 6).
        &[hello.session_id_len],
        session_id,
        &hello.cipher_suite,
        &[0x00],
        &extensions_len,
        &KEY_SHARE_PREFIX,
        public_key,
        &SUPPORTED_VERSIONS,
        &CHANGE_CIPHER_SPEC_RECORD,
        &[APPLICATION_DATA],
        &TLS12,
        &noise_len,
        noise,
    ];
    let mut written = 0;
    for part in parts {
        out.get_mut(written..written + part.len())?
            .copy_from_slice(part);
        written += part.len();
    }
    debug_assert_eq!(written, total);

    // docs/PROTOCOL.md §3.3: HMAC over the client random and the reply with its random zeroed.
    let server_random = hmac_sha256(key, &[&hello.client_random, out]);
    out.get_mut(RANDOM_START..RANDOM_START + RANDOM_LEN)?
        .copy_from_slice(&server_random);
    Some(total)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proto::hello::{assemble, verify, Assembly, MAX_ASSEMBLED_LEN};
    use crate::proto::testdata::{hex, Capture, KEY, TDLIB_CAPTURES};
    use crate::proto::x25519;
    use sha2::{Digest, Sha256};
    use std::time::Duration;

    /// What `verify` reads from the docs/PROTOCOL.md §10 hello.
    fn reference_verified() -> Verified {
        let mut client_random = [0; 32];
        client_random.copy_from_slice(&hex(
            "fb0d1114fc4c3e01da9ac230d71bf9f27a6aa5cb4f9f0bafa7e6b21ff1eee15a",
        ));
        let mut session_id = [0; 32];
        for (byte, value) in session_id.iter_mut().zip(0xa0..) {
            *byte = value;
        }
        Verified {
            client_random,
            session_id,
            session_id_len: 32,
            cipher_suite: [0x13, 0x01],
            timestamp: 1_700_000_000,
        }
    }

    /// Checks a reply the way TDLib does (docs/PROTOCOL.md §3.2): framing, then the HMAC.
    fn client_accepts(reply: &[u8], client_random: &[u8; 32]) -> bool {
        let server_hello_len = usize::from(u16::from_be_bytes([reply[3], reply[4]]));
        let middle = &reply[5 + server_hello_len..];
        if reply[..3] != [0x16, 0x03, 0x03] || middle[..9] != hex("140303000101170303")[..] {
            return false;
        }
        let noise_len = usize::from(u16::from_be_bytes([middle[9], middle[10]]));
        if reply.len() != 5 + server_hello_len + 11 + noise_len {
            return false;
        }
        let mut zeroed = reply.to_vec();
        zeroed[11..43].fill(0);
        hmac_sha256(&KEY, &[client_random, &zeroed])[..] == reply[11..43]
    }

    #[test]
    fn reproduces_the_reply_of_protocol_section_10() {
        let public_key = x25519::public_key(&[0x77; 32]);
        let mut out = [0; 3000];
        let len = emit(
            &mut out,
            &KEY,
            &reference_verified(),
            &public_key,
            &[0; 2500],
        )
        .unwrap();
        let reply = &out[..len];
        assert_eq!(len, 2638);
        assert_eq!(reply[..11], hex("160303007a020000760303")[..]);
        assert_eq!(
            reply[11..43],
            hex("21e68281f26dede67654ad3715b18473cc5812e8d593c0a90ac147e8971af148")[..]
        );
        assert_eq!(
            Sha256::digest(reply).to_vec(),
            hex("81367a2e11dc1142788b37e5f1f202d7fc5b3bf4de2357c53d2f2e4d648053f7")
        );
        assert_eq!(reply[121..127], SUPPORTED_VERSIONS);
        assert!(client_accepts(reply, &reference_verified().client_random));
    }

    #[test]
    fn echoes_a_short_session_id_with_lengths_adjusted() {
        let mut hello = reference_verified();
        hello.session_id_len = 5;
        let mut out = [0; 200];
        let len = emit(&mut out, &KEY, &hello, &[9; 32], &[1, 2, 3]).unwrap();
        assert_eq!(len, FIXED_LEN - 32 + 5 + 3);
        assert_eq!(out[3..9], [0x00, 0x5f, 0x02, 0x00, 0x00, 0x5b]);
        assert_eq!(out[43..49], [5, 0xa0, 0xa1, 0xa2, 0xa3, 0xa4]);
        assert_eq!(out[49..51], [0x13, 0x01]);
        assert!(client_accepts(&out[..len], &hello.client_random));

        hello.session_id_len = 0;
        let len = emit(&mut out, &KEY, &hello, &[9; 32], &[1]).unwrap();
        assert_eq!(out[4], 90);
        assert!(client_accepts(&out[..len], &hello.client_random));
    }

    #[test]
    fn refuses_bad_noise_lengths_small_buffers_and_long_session_ids() {
        let hello = reference_verified();
        let mut out = vec![0; FIXED_LEN + MAX_CERT_LEN + 1];
        assert_eq!(emit(&mut out, &KEY, &hello, &[0; 32], &[]), None);
        let too_much = vec![0; MAX_CERT_LEN + 1];
        assert_eq!(emit(&mut out, &KEY, &hello, &[0; 32], &too_much), None);
        let most = vec![0; MAX_CERT_LEN];
        assert_eq!(
            emit(&mut out, &KEY, &hello, &[0; 32], &most),
            Some(FIXED_LEN + MAX_CERT_LEN)
        );
        assert_eq!(
            emit(&mut out[..FIXED_LEN], &KEY, &hello, &[0; 32], &[0]),
            None
        );
        let mut long = hello;
        long.session_id_len = 33;
        assert_eq!(emit(&mut out, &KEY, &long, &[0; 32], &[0]), None);
    }

    #[test]
    fn answers_each_tdlib_capture_with_a_reply_it_accepts() {
        for Capture {
            bytes: capture,
            time,
            ..
        } in TDLIB_CAPTURES
        {
            let now = u64::from(time);
            let mut record = vec![0; MAX_ASSEMBLED_LEN];
            let Assembly::Complete { len, .. } = assemble(capture, &mut record) else {
                panic!("capture is not a hello");
            };
            let hello = verify(
                &mut record[..len],
                &KEY,
                b"www.example.com",
                now,
                Duration::ZERO,
            )
            .unwrap();
            let mut out = [0; 4000];
            let public_key = x25519::public_key(&[0x31; 32]);
            let len = emit(&mut out, &KEY, &hello, &public_key, &[0x5a; 2700]).unwrap();
            assert!(client_accepts(&out[..len], &hello.client_random));
            assert_eq!(out[44..76], hello.session_id);
        }
    }
}
