//! obfuscated2 frames (docs/PROTOCOL.md §5): the client's 64-byte header, read with the secret, and
//! the header feint sends to the DC, made without it.

use sha2::{Digest, Sha256};

use super::cipher::CtrState;

pub const FRAME_LEN: usize = 64;
/// Padded intermediate, the only tag accepted inside FakeTLS (docs/PROTOCOL.md §5.3).
pub const TAG_PADDED_INTERMEDIATE: [u8; 4] = [0xdd; 4];

/// Byte positions in the frame (docs/PROTOCOL.md §5.1):
///
/// ```text
/// 0        8             40     56    60   62     64
/// | random | key material | IV  | tag | DC | random |
///   plain on the wire             encrypted on the wire
/// ```
mod field {
    use std::ops::Range;
    pub const FIRST_WORD: Range<usize> = 0..4;
    pub const SECOND_WORD: Range<usize> = 4..8;
    /// Key material and IV together; their reverse gives the other direction's keys.
    pub const KEYS: Range<usize> = 8..56;
    pub const KEY: Range<usize> = 8..40;
    pub const IV: Range<usize> = 40..56;
    pub const TAG: Range<usize> = 56..60;
    pub const DC: Range<usize> = 60..62;
    /// The part sent in the clear.
    pub const PLAIN: Range<usize> = 0..56;
}

/// First u32 (LE) values a DC would take for another transport (docs/PROTOCOL.md §5.5, §5.6).
const FORBIDDEN_FIRST_WORDS: [u32; 7] = [
    0x4441_4548, // "HEAD"
    0x5453_4f50, // "POST"
    0x2054_4547, // "GET "
    0x4954_504f, // "OPTI"
    0xdddd_dddd, // padded intermediate
    0xeeee_eeee, // intermediate
    0x0201_0316, // 16 03 01 02, TLS
];
/// A first byte of `ef` announces the abridged transport.
const ABRIDGED_MARKER: u8 = 0xef;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Obfs2Error {
    /// The decrypted tag is not `dd dd dd dd`.
    BadTag,
}

impl std::fmt::Display for Obfs2Error {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Obfs2Error::BadTag => "bad obfs2 tag",
        })
    }
}

/// The client's frame, decoded.
pub struct ClientFrame {
    /// Signed DC id (docs/PROTOCOL.md §5.4).
    pub dc: i16,
    /// Client-to-proxy keystream, already at position 64.
    pub decrypt: CtrState,
    /// Proxy-to-client keystream, at position 0.
    pub encrypt: CtrState,
}

/// Decodes the client's 64 bytes with key16 (§5.2).
pub fn parse_client_frame(
    frame: &[u8; FRAME_LEN],
    key: &[u8; 16],
) -> Result<ClientFrame, Obfs2Error> {
    let mut decrypt = CtrState::new(
        secret_key(&frame[field::KEY], key),
        array(&frame[field::IV]),
    );
    let mut plain = *frame;
    decrypt.apply(&mut plain);
    if plain[field::TAG] != TAG_PADDED_INTERMEDIATE {
        return Err(Obfs2Error::BadTag);
    }
    let reversed = reversed_keys(frame);
    let encrypt = CtrState::new(secret_key(&reversed[..32], key), array(&reversed[32..]));
    Ok(ClientFrame {
        dc: i16::from_le_bytes(array(&plain[field::DC])),
        decrypt,
        encrypt,
    })
}

/// The frame for the DC and its keystreams.
pub struct UpstreamFrame {
    /// Bytes to send: plaintext [0..56), ciphertext [56..64).
    pub wire: [u8; FRAME_LEN],
    /// Proxy-to-DC keystream, at position 64.
    pub encrypt: CtrState,
    /// DC-to-proxy keystream, at position 0.
    pub decrypt: CtrState,
}

/// Builds the DC frame from 64 random bytes (§5.5) with the padded-intermediate tag and `dc`.
/// Returns None when `random` starts with a forbidden pattern; the caller draws again.
pub fn upstream_frame(random: &[u8; FRAME_LEN], dc: i16) -> Option<UpstreamFrame> {
    let first_word = u32::from_le_bytes(array(&random[field::FIRST_WORD]));
    if random[0] == ABRIDGED_MARKER
        || FORBIDDEN_FIRST_WORDS.contains(&first_word)
        || random[field::SECOND_WORD] == [0; 4]
    {
        return None;
    }
    let mut frame = *random;
    frame[field::TAG].copy_from_slice(&TAG_PADDED_INTERMEDIATE);
    frame[field::DC].copy_from_slice(&dc.to_le_bytes());

    // The DC does not know the secret, so the keys are the frame bytes themselves.
    let mut encrypt = CtrState::new(array(&frame[field::KEY]), array(&frame[field::IV]));
    let reversed = reversed_keys(&frame);
    let decrypt = CtrState::new(array(&reversed[..32]), array(&reversed[32..]));

    // Unlike mtg, the whole plaintext head goes out as checked above (docs/PROTOCOL.md §5.5).
    let mut wire = frame;
    encrypt.apply(&mut wire);
    wire[field::PLAIN].copy_from_slice(&frame[field::PLAIN]);
    Some(UpstreamFrame {
        wire,
        encrypt,
        decrypt,
    })
}

/// Bytes 8..56 in reverse order: key material then IV of the other direction.
fn reversed_keys(frame: &[u8; FRAME_LEN]) -> [u8; 48] {
    let mut reversed: [u8; 48] = array(&frame[field::KEYS]);
    reversed.reverse();
    reversed
}

/// SHA-256(key material ‖ key16), the AES key of a direction that uses the secret.
fn secret_key(material: &[u8], key: &[u8; 16]) -> [u8; 32] {
    Sha256::new()
        .chain_update(material)
        .chain_update(key)
        .finalize()
        .into()
}

/// A fixed-size copy of a slice cut at constant offsets of a fixed-size frame.
fn array<const N: usize>(bytes: &[u8]) -> [u8; N] {
    let mut out = [0; N];
    out.copy_from_slice(bytes);
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proto::record::Deframer;
    use crate::proto::testdata::{hex, Capture, KEY, TDLIB_CAPTURES, TDLIB_HELLO_LEN};

    fn keystream(state: &mut CtrState, len: usize) -> Vec<u8> {
        let mut bytes = vec![0; len];
        state.apply(&mut bytes);
        bytes
    }

    /// The client frame of docs/PROTOCOL.md §10 in plaintext: P[i] = 7i + 3, tag dd, DC 2.
    fn reference_client_plaintext() -> [u8; FRAME_LEN] {
        let mut frame = [0; FRAME_LEN];
        for (i, byte) in frame.iter_mut().enumerate().take(56) {
            *byte = (7 * i + 3) as u8;
        }
        frame[56..64].copy_from_slice(&[0xdd, 0xdd, 0xdd, 0xdd, 0x02, 0x00, 0x00, 0x00]);
        frame
    }

    fn reference_client_wire() -> [u8; FRAME_LEN] {
        let mut wire = reference_client_plaintext();
        wire[56..].copy_from_slice(&hex("e909a100566ce4b6"));
        wire
    }

    #[test]
    fn client_encryption_gives_the_wire_bytes_of_section_10() {
        // Encrypt as the client does and compare with the published ciphertext tail.
        let plain = reference_client_plaintext();
        let mut cipher = CtrState::new(secret_key(&plain[8..40], &KEY), array(&plain[40..56]));
        let mut encrypted = plain;
        cipher.apply(&mut encrypted);
        assert_eq!(encrypted[56..], reference_client_wire()[56..]);
    }

    #[test]
    fn parses_the_client_frame_of_section_10() {
        let mut frame = parse_client_frame(&reference_client_wire(), &KEY).unwrap();
        assert_eq!(frame.dc, 2);
        assert_eq!(
            frame.decrypt.key.to_vec(),
            hex("0308e7662e68abbad41a1c556097aed5a92a92e246f3855fbdf37bcc260af25a")
        );
        assert_eq!(
            frame.decrypt.iv.to_vec(),
            hex("1b222930373e454c535a61686f767d84")
        );
        assert_eq!(frame.decrypt.position, 64);
        assert_eq!(keystream(&mut frame.decrypt, 8), hex("1204d1dd04cda30c"));
        assert_eq!(
            frame.encrypt.key.to_vec(),
            hex("656b8178a3aa19888d687f95eeb3746a7227018d300af3243a4a2fa4b519c23a")
        );
        assert_eq!(
            frame.encrypt.iv.to_vec(),
            hex("a49d968f88817a736c655e575049423b")
        );
        assert_eq!(frame.encrypt.position, 0);
        assert_eq!(keystream(&mut frame.encrypt, 8), hex("2d42bac7e2be50b4"));
    }

    #[test]
    fn rejects_a_frame_with_another_tag_or_key() {
        let mut wire = reference_client_wire();
        wire[56] ^= 0x01;
        assert_eq!(
            parse_client_frame(&wire, &KEY).err(),
            Some(Obfs2Error::BadTag)
        );
        let wrong_key = [0xff; 16];
        assert_eq!(
            parse_client_frame(&reference_client_wire(), &wrong_key).err(),
            Some(Obfs2Error::BadTag)
        );
        // Intermediate (ee) and abridged (ef) tags are refused inside FakeTLS.
        for tag in [0xee, 0xef] {
            let mut plain = reference_client_plaintext();
            plain[56..60].fill(tag);
            let mut cipher = CtrState::new(secret_key(&plain[8..40], &KEY), array(&plain[40..56]));
            let mut wire = plain;
            cipher.apply(&mut wire);
            wire[..56].copy_from_slice(&plain[..56]);
            assert_eq!(
                parse_client_frame(&wire, &KEY).err(),
                Some(Obfs2Error::BadTag)
            );
        }
        assert_eq!(Obfs2Error::BadTag.to_string(), "bad obfs2 tag");
    }

    /// The DC frame plaintext of docs/PROTOCOL.md §10: Q[i] = 11i + 5 with tag and DC 2 set.
    fn reference_upstream_random() -> [u8; FRAME_LEN] {
        let mut random = [0; FRAME_LEN];
        for (i, byte) in random.iter_mut().enumerate() {
            *byte = (11 * i + 5) as u8;
        }
        random
    }

    #[test]
    fn builds_the_upstream_frame_of_section_10() {
        let random = reference_upstream_random();
        let mut frame = upstream_frame(&random, 2).unwrap();
        assert_eq!(frame.wire[..56], random[..56]);
        assert_eq!(frame.wire[56..].to_vec(), hex("19e93d0f60c32c2e"));
        assert_eq!(frame.encrypt.key[..], random[8..40]);
        assert_eq!(frame.encrypt.iv[..], random[40..56]);
        assert_eq!(frame.encrypt.position, 64);
        assert_eq!(
            frame.decrypt.key.to_vec(),
            hex("62574c41362b20150afff4e9ded3c8bdb2a79c91867b70655a4f44392e23180d")
        );
        assert_eq!(
            frame.decrypt.iv.to_vec(),
            hex("02f7ece1d6cbc0b5aa9f94897e73685d")
        );
        assert_eq!(frame.decrypt.position, 0);

        // Decrypting what we sent, as the DC would, gives tag dd, DC 2 and the random tail.
        let mut dc_side = CtrState::new(frame.encrypt.key, frame.encrypt.iv);
        let mut seen = frame.wire;
        dc_side.apply(&mut seen);
        assert_eq!(
            seen[56..64],
            [0xdd, 0xdd, 0xdd, 0xdd, 0x02, 0x00, 0xaf, 0xba]
        );
        // And the stream continues where the DC expects it.
        assert_eq!(keystream(&mut frame.encrypt, 8), keystream(&mut dc_side, 8));
    }

    #[test]
    fn upstream_frame_carries_a_negative_dc_as_signed() {
        let frame = upstream_frame(&reference_upstream_random(), -4).unwrap();
        let mut dc_side = CtrState::new(frame.encrypt.key, frame.encrypt.iv);
        let mut seen = frame.wire;
        dc_side.apply(&mut seen);
        assert_eq!(i16::from_le_bytes([seen[60], seen[61]]), -4);
    }

    #[test]
    fn refuses_each_forbidden_upstream_pattern() {
        let base = reference_upstream_random();
        let mut patterns: Vec<[u8; 8]> = vec![[0xef, 1, 2, 3, 4, 5, 6, 7]];
        for word in [b"HEAD", b"POST", b"GET ", b"OPTI"] {
            let mut head = [0x11; 8];
            head[..4].copy_from_slice(word);
            patterns.push(head);
        }
        for word in [[0xdd; 4], [0xee; 4], [0x16, 0x03, 0x01, 0x02]] {
            let mut head = [0x11; 8];
            head[..4].copy_from_slice(&word);
            patterns.push(head);
        }
        patterns.push([1, 2, 3, 4, 0, 0, 0, 0]);
        for head in patterns {
            let mut random = base;
            random[..8].copy_from_slice(&head);
            assert!(upstream_frame(&random, 2).is_none(), "{head:02x?}");
        }
        // Near misses pass.
        for head in [[0xee, 1, 2, 3, 4, 5, 6, 7], [1, 2, 3, 4, 0, 0, 0, 1]] {
            let mut random = base;
            random[..8].copy_from_slice(&head);
            assert!(upstream_frame(&random, 2).is_some(), "{head:02x?}");
        }
    }

    /// The first 64 payload bytes after each capture's hello and CCS, and its DC (README).
    #[test]
    fn decodes_the_frame_of_each_tdlib_capture() {
        for Capture {
            bytes: capture, dc, ..
        } in TDLIB_CAPTURES
        {
            let mut records = capture[TDLIB_HELLO_LEN..].to_vec();
            assert_eq!(records[..6], [0x14, 0x03, 0x03, 0x00, 0x01, 0x01]);
            let len = Deframer::new().deframe(&mut records).unwrap();
            let payload = &records[..len];
            let mut frame = parse_client_frame(&array(&payload[..64]), &KEY).unwrap();
            assert_eq!(frame.dc, dc);

            // The stream continues with TDLib's first packet: a padded-intermediate length,
            // then an unencrypted MTProto message, whose auth_key_id is zero.
            let mut packet = payload[64..].to_vec();
            frame.decrypt.apply(&mut packet);
            let length = u32::from_le_bytes(array(&packet[..4])) as usize;
            assert!(
                length <= packet.len() - 4,
                "{length} > {}",
                packet.len() - 4
            );
            assert_eq!(packet[4..12], [0; 8]);
        }
    }
}
