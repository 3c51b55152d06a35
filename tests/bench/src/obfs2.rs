//! obfuscated2 headers from both ends (docs/PROTOCOL.md §5): the client's header made with the
//! secret, and the DC's view of the proxy's header, read without it.

use crate::crypto::{random_array, sha256, Ctr};

pub const FRAME_LEN: usize = 64;
pub const TAG_PADDED_INTERMEDIATE: [u8; 4] = [0xdd; 4];

/// The two keystreams of one end: `send` for bytes it writes, `receive` for bytes it reads.
pub struct Streams {
    pub send: Ctr,
    pub receive: Ctr,
}

/// (key, iv) of the initiator-to-responder and responder-to-initiator streams of `frame`
/// (plaintext [8..56) is all that matters), with key16 mixed in when there is a secret.
pub fn derive(frame: &[u8; FRAME_LEN], secret: Option<&[u8; 16]>) -> [([u8; 32], [u8; 16]); 2] {
    let mut reversed = [0u8; 48];
    reversed.copy_from_slice(&frame[8..56]);
    reversed.reverse();
    let forward_material: [u8; 32] = frame[8..40].try_into().expect("32 bytes");
    let backward_material: [u8; 32] = reversed[..32].try_into().expect("32 bytes");
    let forward_iv: [u8; 16] = frame[40..56].try_into().expect("16 bytes");
    let backward_iv: [u8; 16] = reversed[32..].try_into().expect("16 bytes");
    let (forward_key, backward_key) = match secret {
        Some(key16) => (
            sha256(&[&forward_material, key16]),
            sha256(&[&backward_material, key16]),
        ),
        None => (forward_material, backward_material),
    };
    [(forward_key, forward_iv), (backward_key, backward_iv)]
}

/// Builds an initiator's header from `random` (64 bytes, patterns not checked: the bench draws
/// them) with tag `dd` and `dc`. Returns the wire bytes and the initiator's streams, `send`
/// already at position 64.
pub fn initiator_frame(
    mut random: [u8; FRAME_LEN],
    dc: i16,
    secret: Option<&[u8; 16]>,
) -> ([u8; FRAME_LEN], Streams) {
    random[56..60].copy_from_slice(&TAG_PADDED_INTERMEDIATE);
    random[60..62].copy_from_slice(&dc.to_le_bytes());
    let [(fk, fi), (bk, bi)] = derive(&random, secret);
    let mut send = Ctr::new(&fk, &fi);
    let mut encrypted = random;
    send.apply(&mut encrypted);
    let mut wire = random;
    wire[56..].copy_from_slice(&encrypted[56..]);
    let receive = Ctr::new(&bk, &bi);
    (wire, Streams { send, receive })
}

/// A client's header to a proxy with key16, for DC `dc`, from fresh randomness that avoids the
/// patterns of docs/PROTOCOL.md §5.5 (so the same frame would also pass as a DC header).
pub fn client_frame(key16: &[u8; 16], dc: i16) -> ([u8; FRAME_LEN], Streams) {
    for _ in 0..1000 {
        let random: [u8; FRAME_LEN] = random_array();
        if !forbidden(&random) {
            return initiator_frame(random, dc, Some(key16));
        }
    }
    panic!("1000 random frames in a row hit a forbidden pattern; the RNG is broken");
}

fn forbidden(frame: &[u8; FRAME_LEN]) -> bool {
    let first = u32::from_le_bytes(frame[0..4].try_into().expect("4 bytes"));
    frame[0] == 0xef
        || [
            0x44414548, 0x54534f50, 0x20544547, 0x4954504f, 0xdddddddd, 0xeeeeeeee, 0x02010316,
        ]
        .contains(&first)
        || frame[4..8] == [0; 4]
}

/// What the responder learns from a header.
pub struct Accepted {
    pub tag: [u8; 4],
    pub dc: i16,
    /// `receive` at position 64, `send` at 0.
    pub streams: Streams,
}

/// Reads a header as its responder: the DC without a secret, a proxy with key16.
pub fn accept_frame(wire: &[u8; FRAME_LEN], secret: Option<&[u8; 16]>) -> Accepted {
    let [(fk, fi), (bk, bi)] = derive(wire, secret);
    let mut receive = Ctr::new(&fk, &fi);
    let mut plain = *wire;
    receive.apply(&mut plain);
    Accepted {
        tag: plain[56..60].try_into().expect("4 bytes"),
        dc: i16::from_le_bytes([plain[60], plain[61]]),
        streams: Streams {
            send: Ctr::new(&bk, &bi),
            receive,
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hex(s: &str) -> Vec<u8> {
        (0..s.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
            .collect()
    }

    fn key16() -> [u8; 16] {
        std::array::from_fn(|i| i as u8)
    }

    fn keystream(ctr: &mut Ctr, len: usize) -> Vec<u8> {
        let mut out = vec![0u8; len];
        ctr.apply(&mut out);
        out
    }

    // docs/PROTOCOL.md §10, "obfuscated2 from the client".
    #[test]
    fn client_frame_matches_protocol_vectors() {
        let plain: [u8; 64] = std::array::from_fn(|i| (7 * i + 3) as u8);
        let [(fk, fi), (bk, bi)] = derive(&plain, Some(&key16()));
        assert_eq!(
            fk.to_vec(),
            hex("0308e7662e68abbad41a1c556097aed5a92a92e246f3855fbdf37bcc260af25a")
        );
        assert_eq!(fi.to_vec(), hex("1b222930373e454c535a61686f767d84"));
        assert_eq!(
            bk.to_vec(),
            hex("656b8178a3aa19888d687f95eeb3746a7227018d300af3243a4a2fa4b519c23a")
        );
        assert_eq!(bi.to_vec(), hex("a49d968f88817a736c655e575049423b"));

        let mut random = plain;
        random[62] = 0;
        random[63] = 0;
        let (wire, mut streams) = initiator_frame(random, 2, Some(&key16()));
        assert_eq!(wire[..56], plain[..56]);
        assert_eq!(wire[56..].to_vec(), hex("e909a100566ce4b6"));
        assert_eq!(keystream(&mut streams.send, 8), hex("1204d1dd04cda30c"));
        assert_eq!(keystream(&mut streams.receive, 8), hex("2d42bac7e2be50b4"));

        let accepted = accept_frame(&wire, Some(&key16()));
        assert_eq!(accepted.tag, TAG_PADDED_INTERMEDIATE);
        assert_eq!(accepted.dc, 2);
    }

    // docs/PROTOCOL.md §10, "Header to the DC (no secret)".
    #[test]
    fn dc_reads_the_proxy_frame_of_the_protocol_vectors() {
        let plain: [u8; 64] = std::array::from_fn(|i| (11 * i + 5) as u8);
        let (wire, _) = initiator_frame(plain, 2, None);
        assert_eq!(wire[56..].to_vec(), hex("19e93d0f60c32c2e"));
        let [_, (bk, bi)] = derive(&wire, None);
        assert_eq!(
            bk.to_vec(),
            hex("62574c41362b20150afff4e9ded3c8bdb2a79c91867b70655a4f44392e23180d")
        );
        assert_eq!(bi.to_vec(), hex("02f7ece1d6cbc0b5aa9f94897e73685d"));
        let accepted = accept_frame(&wire, None);
        assert_eq!(accepted.tag, TAG_PADDED_INTERMEDIATE);
        assert_eq!(accepted.dc, 2);
    }

    #[test]
    fn seeking_matches_applying() {
        let mut a = Ctr::new(&[7; 32], &[0xff; 16]);
        let mut b = Ctr::new(&[7; 32], &[0xff; 16]);
        let _ = keystream(&mut a, 1000);
        b.seek(1000);
        assert_eq!(keystream(&mut a, 40), keystream(&mut b, 40));
    }
}
