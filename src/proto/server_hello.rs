//! Our reply flight: ServerHello, CCS and one ApplicationData record standing in for the
//! certificate, signed as docs/PROTOCOL.md §3 says. Written into the caller's buffer.

use super::front_flight::{
    FrontProfile, GROUP_X25519, GROUP_X25519_MLKEM768, ML_KEM_768_CIPHERTEXT_LEN,
};
use super::hello::{hmac_sha256, Verified};
use super::record::{APPLICATION_DATA, CHANGE_CIPHER_SPEC, HANDSHAKE};

/// iOS refuses a certificate record over 10 240 bytes (docs/PROTOCOL.md §3.2).
pub const MAX_CERT_LEN: usize = 10240;
/// Bytes before the certificate payload with a 32-byte session id and an X25519 share.
pub const FIXED_LEN: usize = 138;
/// The longest reply: a 32-byte session id, an X25519MLKEM768 share and the largest certificate.
pub const MAX_REPLY_LEN: usize = FIXED_LEN + ML_KEM_768_CIPHERTEXT_LEN + MAX_CERT_LEN;

const SERVER_HELLO: u8 = 0x02;
const TLS12: [u8; 2] = [0x03, 0x03];
/// Where the server random sits in the reply (docs/PROTOCOL.md §3.1).
const RANDOM_START: usize = 11;
const RANDOM_LEN: usize = 32;
const MAX_SESSION_ID_LEN: usize = 32;
/// ServerHello record payload with an empty session id and an X25519 share:
/// 4 + 2 + 32 + 1 + 2 + 1 + 2 + 46.
const SERVER_HELLO_BASE_LEN: usize = 90;
const X25519_LEN: usize = 32;
/// key_share (RFC 8446 §4.2.8): type, then the length of group, share length and share.
const KEY_SHARE_TYPE: [u8; 2] = [0x00, 0x33];
const KEY_SHARE_HEADER_LEN: usize = 8;
/// supported_versions naming TLS 1.3 (RFC 8446 §4.2.1).
const SUPPORTED_VERSIONS: [u8; 6] = [0x00, 0x2b, 0x00, 0x02, 0x03, 0x04];
const CHANGE_CIPHER_SPEC_RECORD: [u8; 6] = [CHANGE_CIPHER_SPEC, 0x03, 0x03, 0x00, 0x01, 0x01];

/// Writes PROTOCOL.md §3.1's reply into `out` and returns its length: the client's first TLS 1.3
/// suite, then key_share (X25519) before supported_versions. `noise` (1..=MAX_CERT_LEN random
/// bytes) becomes the certificate record's payload; `public_key` is an X25519 public key.
/// Returns None if `out` is too small, `noise` out of range or the session id over 32 bytes.
pub fn emit(
    out: &mut [u8],
    key: &[u8; 16],
    hello: &Verified,
    public_key: &[u8; 32],
    noise: &[u8],
) -> Option<usize> {
    let shape = Shape {
        cipher_suite: hello.cipher_suite,
        versions_first: false,
        ml_kem_part: &[],
    };
    write(out, key, hello, &shape, public_key, noise)
}

/// Like `emit`, but shaped like the front's own answer (issue 8): its cipher suite when the
/// client offered it, its extension order, and its group when that is X25519MLKEM768 and the
/// client sent a share for it. The share is then `ml_kem_ciphertext` (random bytes) followed by
/// `public_key`: the ML-KEM part comes first in X25519MLKEM768
/// (draft-kwiatkowski-tls-ecdhe-mlkem). The caller takes `noise`'s length from
/// `FrontProfile::cert_len`, so the one certificate record is as long as the front's flight.
pub fn emit_like(
    out: &mut [u8],
    key: &[u8; 16],
    hello: &Verified,
    front: &FrontProfile,
    public_key: &[u8; 32],
    ml_kem_ciphertext: &[u8; ML_KEM_768_CIPHERTEXT_LEN],
    noise: &[u8],
) -> Option<usize> {
    let hybrid = front.group == GROUP_X25519_MLKEM768 && hello.offers_x25519mlkem768;
    let shape = Shape {
        cipher_suite: if hello.offers_suite(front.cipher_suite) {
            front.cipher_suite
        } else {
            hello.cipher_suite
        },
        versions_first: front.supported_versions_first(),
        ml_kem_part: if hybrid { ml_kem_ciphertext } else { &[] },
    };
    write(out, key, hello, &shape, public_key, noise)
}

/// True if `reply`, the three records a client reads (ServerHello, CCS, certificate), carries
/// the server random docs/PROTOCOL.md §3.3 asks for `client_random`, as a client checks it.
/// The comparison is in constant time; a reply too short for a random is false.
pub fn verifies(reply: &[u8], client_random: &[u8; 32], key: &[u8; 16]) -> bool {
    let random_end = RANDOM_START + RANDOM_LEN;
    let (Some(head), Some(random), Some(tail)) = (
        reply.get(..RANDOM_START),
        reply.get(RANDOM_START..random_end),
        reply.get(random_end..),
    ) else {
        return false;
    };
    let expected = hmac_sha256(key, &[client_random, head, &[0; RANDOM_LEN], tail]);
    let difference = expected
        .iter()
        .zip(random)
        .fold(0u8, |acc, (a, b)| acc | (a ^ b));
    std::hint::black_box(difference) == 0
}

/// What may differ between replies besides the random parts.
struct Shape<'a> {
    cipher_suite: [u8; 2],
    /// supported_versions before key_share, as nginx orders them.
    versions_first: bool,
    /// Empty for an X25519 share; the ML-KEM ciphertext for X25519MLKEM768.
    ml_kem_part: &'a [u8],
}

fn write(
    out: &mut [u8],
    key: &[u8; 16],
    hello: &Verified,
    shape: &Shape<'_>,
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
    let (cipher_suite, ml_kem_part) = (shape.cipher_suite, shape.ml_kem_part);
    let group = if ml_kem_part.is_empty() {
        GROUP_X25519
    } else {
        GROUP_X25519_MLKEM768
    };
    let share_len = ml_kem_part.len() + X25519_LEN;

    let record_len = SERVER_HELLO_BASE_LEN + session_id.len() + ml_kem_part.len();
    let total =
        FIXED_LEN - MAX_SESSION_ID_LEN - X25519_LEN + session_id.len() + share_len + noise.len();
    let out = out.get_mut(..total)?;

    let record_len_bytes = u16::try_from(record_len).ok()?.to_be_bytes();
    let handshake_len = u32::try_from(record_len - 4).ok()?.to_be_bytes();
    let noise_len = u16::try_from(noise.len()).ok()?.to_be_bytes();
    let key_share_len = KEY_SHARE_HEADER_LEN + share_len;
    let extensions_len = u16::try_from(key_share_len + SUPPORTED_VERSIONS.len())
        .ok()?
        .to_be_bytes();
    let key_share_body_len = u16::try_from(key_share_len - 4).ok()?.to_be_bytes();
    let share_len_bytes = u16::try_from(share_len).ok()?.to_be_bytes();
    let group_bytes = group.to_be_bytes();
    let (versions_before, versions_after): (&[u8], &[u8]) = if shape.versions_first {
        (&SUPPORTED_VERSIONS, &[])
    } else {
        (&[], &SUPPORTED_VERSIONS)
    };
    let parts: [&[u8]; 25] = [
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
        &cipher_suite,
        &[0x00],
        &extensions_len,
        versions_before,
        &KEY_SHARE_TYPE,
        &key_share_body_len,
        &group_bytes,
        &share_len_bytes,
        ml_kem_part,
        public_key,
        versions_after,
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
    use crate::proto::front_flight::parse_flight;
    use crate::proto::hello::{assemble, verify, Assembly, MAX_ASSEMBLED_LEN};
    use crate::proto::testdata::{hex, Capture, KEY, NGINX_FLIGHT, TDLIB_CAPTURES};
    use crate::proto::x25519;
    use sha2::{Digest, Sha256};
    use std::time::Duration;

    /// Stands in for the ML-KEM ciphertext; any bytes do.
    const ML_KEM: [u8; ML_KEM_768_CIPHERTEXT_LEN] = [0xc7; ML_KEM_768_CIPHERTEXT_LEN];

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
            tls13_suites_offered: [true, true, false],
            offers_x25519mlkem768: false,
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
        assert!(verifies(reply, &reference_verified().client_random, &KEY));
    }

    #[test]
    fn a_reply_verifies_only_with_its_key_random_and_bytes() {
        let hello = reference_verified();
        let mut out = [0; 300];
        let len = emit(&mut out, &KEY, &hello, &[9; 32], &[1, 2, 3]).unwrap();
        assert!(verifies(&out[..len], &hello.client_random, &KEY));
        assert!(!verifies(&out[..len], &hello.client_random, &[7; 16]));
        assert!(!verifies(&out[..len], &[0; 32], &KEY));
        out[len - 1] ^= 1;
        assert!(!verifies(&out[..len], &hello.client_random, &KEY));
        assert!(!verifies(&out[..20], &hello.client_random, &KEY));
        assert!(!verifies(&[], &hello.client_random, &KEY));
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

    /// The first TDLib capture, verified at its time.
    fn tdlib_verified() -> Verified {
        let capture = &TDLIB_CAPTURES[0];
        let mut record = vec![0; MAX_ASSEMBLED_LEN];
        let Assembly::Complete { len, .. } = assemble(capture.bytes, &mut record) else {
            panic!("capture is not a hello");
        };
        let now = u64::from(capture.time);
        verify(
            &mut record[..len],
            &KEY,
            b"www.example.com",
            now,
            Duration::ZERO,
        )
        .unwrap()
    }

    /// (type, body) of each ServerHello extension in a reply.
    fn server_hello_extensions(reply: &[u8]) -> Vec<(u16, Vec<u8>)> {
        let mut at = 43;
        at += 1 + usize::from(reply[at]) + 2 + 1;
        let end = at + 2 + usize::from(u16::from_be_bytes([reply[at], reply[at + 1]]));
        at += 2;
        let mut out = Vec::new();
        while at < end {
            let kind = u16::from_be_bytes([reply[at], reply[at + 1]]);
            let len = usize::from(u16::from_be_bytes([reply[at + 2], reply[at + 3]]));
            out.push((kind, reply[at + 4..at + 4 + len].to_vec()));
            at += 4 + len;
        }
        assert_eq!(at, end);
        out
    }

    #[test]
    fn copies_nginxs_cipher_order_and_lengths() {
        let front = parse_flight(NGINX_FLIGHT).unwrap();
        let hello = tdlib_verified();
        let noise = vec![0x42; front.cert_len()];
        let public_key = x25519::public_key(&[0x31; 32]);
        let mut out = [0; MAX_REPLY_LEN];
        let len = emit_like(&mut out, &KEY, &hello, &front, &public_key, &ML_KEM, &noise).unwrap();
        let reply = &out[..len];
        assert!(client_accepts(reply, &hello.client_random));
        let ours = parse_flight(reply).unwrap();
        assert_eq!(ours.server_hello_len, front.server_hello_len);
        assert_eq!(ours.cipher_suite, front.cipher_suite);
        assert_eq!(ours.extensions(), front.extensions());
        assert_eq!(
            (ours.group, ours.key_share_len),
            (front.group, front.key_share_len)
        );
        assert_eq!(ours.records(), [1227]);
        // The reply is nginx's ServerHello and CCS, then one record holding its whole flight.
        assert_eq!(len, 5 + 122 + 6 + 5 + 1227);
    }

    #[test]
    fn answers_in_x25519mlkem768_only_when_the_front_and_the_client_do() {
        let mut front = parse_flight(NGINX_FLIGHT).unwrap();
        front.group = GROUP_X25519_MLKEM768;
        front.key_share_len = 1120;
        let public_key = x25519::public_key(&[0x31; 32]);
        let mut out = [0; MAX_REPLY_LEN];

        let hello = tdlib_verified();
        assert!(hello.offers_x25519mlkem768);
        let len = emit_like(
            &mut out,
            &KEY,
            &hello,
            &front,
            &public_key,
            &ML_KEM,
            &[7; 100],
        )
        .unwrap();
        let reply = &out[..len];
        assert!(client_accepts(reply, &hello.client_random));
        let ours = parse_flight(reply).unwrap();
        assert_eq!(
            (ours.group, ours.key_share_len),
            (GROUP_X25519_MLKEM768, 1120)
        );
        assert_eq!(ours.server_hello_len, 122 + 1088);
        let extensions = server_hello_extensions(reply);
        let share = &extensions[1].1;
        assert_eq!(extensions[1].0, 0x0033);
        assert_eq!(share[..4], [0x11, 0xec, 0x04, 0x60]);
        assert_eq!(share[4..4 + 1088], ML_KEM);
        assert_eq!(share[4 + 1088..], public_key);

        // The §10 hello sends only an X25519 share: the reply stays in X25519.
        let hello = reference_verified();
        let len = emit_like(
            &mut out,
            &KEY,
            &hello,
            &front,
            &public_key,
            &ML_KEM,
            &[7; 100],
        )
        .unwrap();
        let ours = parse_flight(&out[..len]).unwrap();
        assert_eq!((ours.group, ours.key_share_len), (GROUP_X25519, 32));
        assert!(client_accepts(&out[..len], &hello.client_random));
    }

    #[test]
    fn takes_the_fronts_cipher_only_if_the_client_offered_it() {
        let mut front = parse_flight(NGINX_FLIGHT).unwrap();
        let hello = reference_verified();
        let mut out = [0; 400];
        for (fronts, expected) in [([0x13, 0x02], [0x13, 0x02]), ([0x13, 0x03], [0x13, 0x01])] {
            front.cipher_suite = fronts;
            let len = emit_like(&mut out, &KEY, &hello, &front, &[9; 32], &ML_KEM, &[1]).unwrap();
            assert_eq!(parse_flight(&out[..len]).unwrap().cipher_suite, expected);
        }
    }

    #[test]
    fn puts_key_share_first_when_the_front_does() {
        let mut front = parse_flight(NGINX_FLIGHT).unwrap();
        front.extensions[..2].copy_from_slice(&[0x0033, 0x002b]);
        let hello = reference_verified();
        let mut out = [0; 400];
        let len = emit_like(&mut out, &KEY, &hello, &front, &[9; 32], &ML_KEM, &[1]).unwrap();
        let mut without = [0; 400];
        let same = emit(&mut without, &KEY, &hello, &[9; 32], &[1]).unwrap();
        assert_eq!(out[..len], without[..same]);
        assert_eq!(
            parse_flight(&out[..len]).unwrap().extensions(),
            [0x0033, 0x002b]
        );
    }
}
