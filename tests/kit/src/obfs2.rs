//! obfuscated2 (docs/PROTOCOL.md §5): the 64-byte header, key derivation with and without the
//! secret, and padded-intermediate (`dd`) framing.

use crate::crypto::{fill_random, random_below, random_bytes, sha256, Ctr};

pub const HEADER_LEN: usize = 64;
pub const TAG_PADDED_INTERMEDIATE: [u8; 4] = [0xdd; 4];
pub const TAG_INTERMEDIATE: [u8; 4] = [0xee; 4];
pub const TAG_ABRIDGED: [u8; 4] = [0xef; 4];

/// The two ciphers of one side of an obfs2 connection.
pub struct Ciphers {
    /// Encrypts what this side sends.
    pub send: Ctr,
    /// Decrypts what this side receives.
    pub receive: Ctr,
}

/// Key and IV for the initiator-to-acceptor direction and for the reverse one (§5.2, §5.5 step
/// 3). With a secret, each key is SHA-256(material ‖ secret); without, the material itself.
fn derive(header: &[u8; HEADER_LEN], secret: Option<&[u8; 16]>) -> (Ctr, Ctr) {
    let forward: [u8; 48] = header[8..56].try_into().expect("48 bytes");
    let mut reverse = forward;
    reverse.reverse();
    let make = |material: &[u8; 48]| {
        let key: [u8; 32] = match secret {
            Some(s) => sha256(&[&material[..32], s]),
            None => material[..32].try_into().expect("32 bytes"),
        };
        let iv: [u8; 16] = material[32..48].try_into().expect("16 bytes");
        Ctr::new(&key, &iv)
    };
    (make(&forward), make(&reverse))
}

/// True if a random header could be mistaken for another transport (§5.5 step 1, §5.6).
fn forbidden(h: &[u8; HEADER_LEN]) -> bool {
    let first = u32::from_le_bytes([h[0], h[1], h[2], h[3]]);
    h[0] == 0xef
        || [
            0x4441_4548,
            0x5453_4f50,
            0x2054_4547,
            0x4954_504f,
            0xdddd_dddd,
            0xeeee_eeee,
            0x0201_0316,
        ]
        .contains(&first)
        || h[4..8] == [0, 0, 0, 0]
}

/// Builds the initiator's header: random, with `tag` and `dc` written in (§5.1). Returns the
/// bytes to send (plain `[0..56)`, encrypted `[56..64)`) and the initiator's ciphers, the send
/// one already 64 bytes into its keystream.
pub fn initiate(tag: [u8; 4], dc: i16, secret: Option<&[u8; 16]>) -> ([u8; HEADER_LEN], Ciphers) {
    let mut header = [0u8; HEADER_LEN];
    loop {
        fill_random(&mut header);
        if !forbidden(&header) {
            break;
        }
    }
    header[56..60].copy_from_slice(&tag);
    header[60..62].copy_from_slice(&dc.to_le_bytes());
    initiate_with(header, secret)
}

/// As [`initiate`], from a header chosen by the caller (test vectors).
pub fn initiate_with(
    mut header: [u8; HEADER_LEN],
    secret: Option<&[u8; 16]>,
) -> ([u8; HEADER_LEN], Ciphers) {
    let (mut send, receive) = derive(&header, secret);
    let mut encrypted = header;
    send.apply(&mut encrypted);
    header[56..].copy_from_slice(&encrypted[56..]);
    (header, Ciphers { send, receive })
}

/// What the acceptor learns from a header.
pub struct Accepted {
    pub tag: [u8; 4],
    /// Signed DC id, LE at offset 60 (§5.4).
    pub dc: i16,
    pub ciphers: Ciphers,
}

/// The acceptor's side: decrypts the header and keeps the receive cipher at offset 64.
pub fn accept(wire: &[u8; HEADER_LEN], secret: Option<&[u8; 16]>) -> Accepted {
    let (mut receive, send) = derive(wire, secret);
    let mut plain = *wire;
    receive.apply(&mut plain);
    Accepted {
        tag: plain[56..60].try_into().expect("4 bytes"),
        dc: i16::from_le_bytes([plain[60], plain[61]]),
        ciphers: Ciphers { send, receive },
    }
}

/// One padded-intermediate frame: 4-byte LE length counting 0..15 random padding bytes, the
/// payload, the padding (§5.3).
pub fn frame_padded(payload: &[u8]) -> Vec<u8> {
    let padding = random_bytes(random_below(16) as usize);
    let len = (payload.len() + padding.len()) as u32;
    let mut out = len.to_le_bytes().to_vec();
    out.extend_from_slice(payload);
    out.extend_from_slice(&padding);
    out
}

/// Splits whole padded-intermediate frames off the front of `buf`; returns each frame's body
/// (payload and padding together: the receiver cannot tell them apart) and leaves a partial
/// frame in `buf`.
pub fn unframe_padded(buf: &mut Vec<u8>) -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    loop {
        if buf.len() < 4 {
            return out;
        }
        let len = (u32::from_le_bytes([buf[0], buf[1], buf[2], buf[3]]) & 0x7fff_ffff) as usize;
        if buf.len() < 4 + len {
            return out;
        }
        out.push(buf[4..4 + len].to_vec());
        buf.drain(..4 + len);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crypto::{hex, unhex};

    fn header_from(f: impl Fn(usize) -> u8) -> [u8; HEADER_LEN] {
        core::array::from_fn(f)
    }

    /// docs/PROTOCOL.md §10, obfuscated2 from the client, with the vector secret.
    #[test]
    fn client_header_matches_the_protocol_vector() {
        let key: [u8; 16] = core::array::from_fn(|i| i as u8);
        let mut header = header_from(|i| (7 * i + 3) as u8);
        header[56..64].copy_from_slice(&[0xdd, 0xdd, 0xdd, 0xdd, 0x02, 0x00, 0x00, 0x00]);
        let (wire, mut ciphers) = initiate_with(header, Some(&key));
        assert_eq!(wire[..56], header[..56]);
        assert_eq!(hex(&wire[56..]), "e909a100566ce4b6");
        let mut next = [0u8; 8];
        ciphers.send.apply(&mut next);
        assert_eq!(hex(&next), "1204d1dd04cda30c");
        let mut first = [0u8; 8];
        ciphers.receive.apply(&mut first);
        assert_eq!(hex(&first), "2d42bac7e2be50b4");

        let accepted = accept(&wire, Some(&key));
        assert_eq!(accepted.tag, TAG_PADDED_INTERMEDIATE);
        assert_eq!(accepted.dc, 2);
    }

    /// docs/PROTOCOL.md §10, the header to the DC (no secret).
    #[test]
    fn dc_header_matches_the_protocol_vector() {
        let mut header = header_from(|i| (11 * i + 5) as u8);
        header[56..62].copy_from_slice(&[0xdd, 0xdd, 0xdd, 0xdd, 0x02, 0x00]);
        let (wire, _) = initiate_with(header, None);
        assert_eq!(hex(&wire[56..]), "19e93d0f60c32c2e");
        let mut accepted = accept(&wire, None);
        assert_eq!((accepted.tag, accepted.dc), (TAG_PADDED_INTERMEDIATE, 2));
        let expected = Ctr::new(
            &unhex("62574c41362b20150afff4e9ded3c8bdb2a79c91867b70655a4f44392e23180d")
                .try_into()
                .unwrap(),
            &unhex("02f7ece1d6cbc0b5aa9f94897e73685d")
                .try_into()
                .unwrap(),
        );
        let (mut a, mut b) = ([0u8; 16], [0u8; 16]);
        accepted.ciphers.send.apply(&mut a);
        let mut expected = expected;
        expected.apply(&mut b);
        assert_eq!(a, b);
    }

    /// The real TDLib connections in the fixtures carry tag `dd` and DC 2, 3 and 5.
    #[test]
    fn decodes_real_tdlib_headers() {
        let key: [u8; 16] = core::array::from_fn(|i| i as u8);
        for (name, dc) in [("003", 2), ("004", 3), ("006", 5)] {
            let path = format!(
                "{}/fixtures/tdlib-1.8.69/client-to-proxy-{name}.bin",
                env!("CARGO_MANIFEST_DIR")
            );
            let bytes = std::fs::read(path).expect("fixture");
            let hello_len = 5 + u16::from_be_bytes([bytes[3], bytes[4]]) as usize;
            let rest = &bytes[hello_len..];
            assert_eq!(rest[..6], crate::record::CCS);
            assert_eq!(rest[6..9], [0x17, 0x03, 0x03]);
            let header: [u8; HEADER_LEN] = rest[11..11 + HEADER_LEN].try_into().unwrap();
            let accepted = accept(&header, Some(&key));
            assert_eq!(
                (accepted.tag, accepted.dc),
                (TAG_PADDED_INTERMEDIATE, dc),
                "{name}"
            );
        }
    }

    #[test]
    fn initiator_and_acceptor_agree_both_ways() {
        for secret in [None, Some([9u8; 16])] {
            let (wire, mut client) = initiate(TAG_PADDED_INTERMEDIATE, -2, secret.as_ref());
            assert!(!forbidden(&wire) || wire[56..60] == TAG_PADDED_INTERMEDIATE);
            let mut server = accept(&wire, secret.as_ref());
            assert_eq!(server.dc, -2);
            let mut up = b"hello upstream".to_vec();
            client.send.apply(&mut up);
            server.ciphers.receive.apply(&mut up);
            assert_eq!(up, b"hello upstream");
            let mut down = b"hello client".to_vec();
            server.ciphers.send.apply(&mut down);
            client.receive.apply(&mut down);
            assert_eq!(down, b"hello client");
        }
    }

    #[test]
    fn padded_frames_round_trip() {
        let mut buf = frame_padded(b"abcd");
        buf.extend(frame_padded(b"efgh1234"));
        buf.extend_from_slice(&[1, 0]);
        let frames = unframe_padded(&mut buf);
        assert_eq!(frames.len(), 2);
        assert_eq!(&frames[0][..4], b"abcd");
        assert_eq!(&frames[1][..8], b"efgh1234");
        assert_eq!(buf, vec![1, 0]);
    }
}
