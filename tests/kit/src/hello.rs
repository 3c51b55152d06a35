//! ClientHello records as Telegram clients build them (docs/PROTOCOL.md §2): the classic 517-byte
//! shape and the current ~1.7 KB TDLib shape, signed with the FakeTLS digest of §2.2.

use crate::crypto::{fill_random, hmac_sha256, random_below, random_bytes};

/// Offset and length of the client random in the record (docs/PROTOCOL.md §2.1).
pub const RANDOM_RANGE: std::ops::Range<usize> = 11..43;

/// Which hello to build.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HelloShape {
    /// Chrome-like, padded to exactly 517 bytes, X25519 key share (TDLib before late 2025,
    /// desktop, Android).
    Classic,
    /// Current TDLib: 16 shuffled extensions, X25519MLKEM768 + X25519 shares, ECH GREASE,
    /// no padding; 1.6-1.8 KB.
    Modern,
}

/// What to put in a hello.
#[derive(Clone, Debug)]
pub struct HelloSpec {
    pub shape: HelloShape,
    /// The SNI host name.
    pub sni: String,
    /// Unix time mixed into the digest.
    pub time: u32,
    pub key: [u8; 16],
    /// Flip one bit of the finished random, so the digest no longer verifies.
    pub corrupt_digest: bool,
}

/// Builds and signs a hello record.
pub fn build(spec: &HelloSpec) -> Vec<u8> {
    let mut record = match spec.shape {
        HelloShape::Classic => unsigned_classic(spec.sni.as_bytes()),
        HelloShape::Modern => unsigned_modern(spec.sni.as_bytes()),
    };
    sign(&mut record, &spec.key, spec.time);
    if spec.corrupt_digest {
        record[RANDOM_RANGE.start + 5] ^= 0x01;
    }
    record
}

/// Writes the FakeTLS digest into `[11..43)` (docs/PROTOCOL.md §2.2).
pub fn sign(record: &mut [u8], key: &[u8; 16], time: u32) {
    record[RANDOM_RANGE].fill(0);
    let mut digest = hmac_sha256(key, &[record]);
    for (d, t) in digest[28..32].iter_mut().zip(time.to_le_bytes()) {
        *d ^= t;
    }
    record[RANDOM_RANGE].copy_from_slice(&digest);
}

/// The server's check of §2.2: `Some(timestamp)` if the first 28 bytes of the XOR are zero.
pub fn verify(record: &[u8], key: &[u8; 16]) -> Option<u32> {
    let random = record.get(RANDOM_RANGE)?;
    let mut copy = record.to_vec();
    copy[RANDOM_RANGE].fill(0);
    let digest = hmac_sha256(key, &[&copy]);
    let x: Vec<u8> = digest.iter().zip(random).map(|(a, b)| a ^ b).collect();
    if x[..28].iter().any(|&b| b != 0) {
        return None;
    }
    Some(u32::from_le_bytes([x[28], x[29], x[30], x[31]]))
}

/// The 32-byte client random of a hello record.
pub fn client_random(record: &[u8]) -> [u8; 32] {
    record[RANDOM_RANGE].try_into().expect("32 bytes")
}

/// Seven GREASE values drawn as TDLib does (docs/PROTOCOL.md §2.3), neighbours kept distinct.
fn grease_values() -> [u8; 7] {
    let mut g = [0u8; 7];
    fill_random(&mut g);
    for i in 0..g.len() {
        g[i] = (g[i] & 0xf0) | 0x0a;
        if i > 0 && g[i] == g[i - 1] {
            g[i] ^= 0x10;
        }
    }
    g
}

fn u16be(v: usize) -> [u8; 2] {
    u16::try_from(v).expect("field fits in u16").to_be_bytes()
}

/// One extension: type, 2-byte length, body.
fn ext(kind: [u8; 2], body: &[u8]) -> Vec<u8> {
    let mut e = kind.to_vec();
    e.extend_from_slice(&u16be(body.len()));
    e.extend_from_slice(body);
    e
}

/// A 2-byte length prefix, then `body`.
fn vec16(body: &[u8]) -> Vec<u8> {
    let mut v = u16be(body.len()).to_vec();
    v.extend_from_slice(body);
    v
}

fn sni_ext(sni: &[u8]) -> Vec<u8> {
    let mut name = vec![0x00];
    name.extend_from_slice(&vec16(sni));
    ext([0x00, 0x00], &vec16(&name))
}

fn alpn_ext() -> Vec<u8> {
    let mut list = vec![2];
    list.extend_from_slice(b"h2");
    list.push(8);
    list.extend_from_slice(b"http/1.1");
    ext([0x00, 0x10], &vec16(&list))
}

fn signature_algorithms_ext() -> Vec<u8> {
    let algs = [
        0x04, 0x03, 0x08, 0x04, 0x04, 0x01, 0x05, 0x03, 0x08, 0x05, 0x05, 0x01, 0x08, 0x06, 0x06,
        0x01,
    ];
    ext([0x00, 0x0d], &vec16(&algs))
}

fn supported_versions_ext(grease: u8) -> Vec<u8> {
    ext(
        [0x00, 0x2b],
        &[0x06, grease, grease, 0x03, 0x04, 0x03, 0x03],
    )
}

/// Record header, handshake header, version, zero random, session id, suites, compression, then
/// `extensions` (already joined).
fn assemble(grease: u8, extensions: &[u8]) -> Vec<u8> {
    let suites: [u8; 30] = [
        0x13, 0x01, 0x13, 0x02, 0x13, 0x03, 0xc0, 0x2b, 0xc0, 0x2f, 0xc0, 0x2c, 0xc0, 0x30, 0xcc,
        0xa9, 0xcc, 0xa8, 0xc0, 0x13, 0xc0, 0x14, 0x00, 0x9c, 0x00, 0x9d, 0x00, 0x2f, 0x00, 0x35,
    ];
    let mut body = vec![0x03, 0x03];
    body.extend_from_slice(&[0; 32]);
    body.push(0x20);
    body.extend_from_slice(&random_bytes(32));
    let mut suite_list = vec![grease, grease];
    suite_list.extend_from_slice(&suites);
    body.extend_from_slice(&vec16(&suite_list));
    body.extend_from_slice(&[0x01, 0x00]);
    body.extend_from_slice(&vec16(extensions));

    let mut handshake = vec![0x01];
    handshake.extend_from_slice(&(body.len() as u32).to_be_bytes()[1..]);
    handshake.extend_from_slice(&body);
    let mut record = vec![0x16, 0x03, 0x01];
    record.extend_from_slice(&vec16(&handshake));
    record
}

/// The classic 517-byte Chrome-like hello with a padding extension.
fn unsigned_classic(sni: &[u8]) -> Vec<u8> {
    let g = grease_values();
    // The key share's GREASE group must be the one in supported_groups, as in Chrome and
    // TDLib: OpenSSL fails the handshake ("bad key share") on a share for a group not offered.
    let mut key_share = vec![g[3], g[3], 0x00, 0x01, 0x00, 0x00, 0x1d, 0x00, 0x20];
    key_share.extend_from_slice(&random_bytes(32));
    let exts: Vec<Vec<u8>> = vec![
        ext([g[2], g[2]], &[]),
        sni_ext(sni),
        ext([0x00, 0x17], &[]),
        ext([0xff, 0x01], &[0x00]),
        ext(
            [0x00, 0x0a],
            &vec16(&[g[3], g[3], 0x00, 0x1d, 0x00, 0x17, 0x00, 0x18]),
        ),
        ext([0x00, 0x0b], &[0x01, 0x00]),
        ext([0x00, 0x23], &[]),
        alpn_ext(),
        ext([0x00, 0x05], &[0x01, 0x00, 0x00, 0x00, 0x00]),
        signature_algorithms_ext(),
        ext([0x00, 0x12], &[]),
        ext([0x00, 0x33], &vec16(&key_share)),
        ext([0x00, 0x2d], &[0x01, 0x01]),
        supported_versions_ext(g[4]),
        ext([0x00, 0x1b], &[0x02, 0x00, 0x02]),
        ext([g[5], g[5]], &[0x00]),
    ];
    let mut joined: Vec<u8> = exts.concat();
    let unpadded = assemble(g[0], &joined).len();
    assert!(
        unpadded + 4 <= 517,
        "classic hello without padding is {unpadded} bytes"
    );
    joined.extend_from_slice(&ext([0x00, 0x15], &vec![0; 517 - unpadded - 4]));
    let record = assemble(g[0], &joined);
    assert_eq!(record.len(), 517);
    record
}

/// The current TDLib hello (docs/PROTOCOL.md §2.3): GREASE, then the 16 extensions shuffled, then a
/// one-byte GREASE extension.
fn unsigned_modern(sni: &[u8]) -> Vec<u8> {
    let g = grease_values();
    let mut key_share = vec![g[3], g[3], 0x00, 0x01, 0x00];
    key_share.extend_from_slice(&[0x11, 0xec, 0x04, 0xc0]);
    key_share.extend_from_slice(&random_bytes(1216));
    key_share.extend_from_slice(&[0x00, 0x1d, 0x00, 0x20]);
    key_share.extend_from_slice(&random_bytes(32));

    let ech_payload_len = [144, 176, 208, 240][random_below(4) as usize];
    let mut ech = vec![0x00, 0x00, 0x01, 0x00, 0x01];
    ech.extend_from_slice(&random_bytes(1));
    ech.extend_from_slice(&vec16(&random_bytes(32)));
    ech.extend_from_slice(&vec16(&random_bytes(ech_payload_len)));

    let mut alps = vec![0x00, 0x03, 0x02];
    alps.extend_from_slice(b"h2");

    let mut shuffled: Vec<Vec<u8>> = vec![
        sni_ext(sni),
        ext([0x00, 0x05], &[0x01, 0x00, 0x00, 0x00, 0x00]),
        ext(
            [0x00, 0x0a],
            &vec16(&[g[3], g[3], 0x11, 0xec, 0x00, 0x1d, 0x00, 0x17, 0x00, 0x18]),
        ),
        ext([0x00, 0x0b], &[0x01, 0x00]),
        signature_algorithms_ext(),
        alpn_ext(),
        ext([0x00, 0x12], &[]),
        ext([0x00, 0x17], &[]),
        ext([0x00, 0x1b], &[0x02, 0x00, 0x02]),
        ext([0x00, 0x23], &[]),
        supported_versions_ext(g[4]),
        ext([0x00, 0x2d], &[0x01, 0x01]),
        ext([0x00, 0x33], &vec16(&key_share)),
        ext([0x44, 0xcd], &alps),
        ext([0xfe, 0x0d], &ech),
        ext([0xff, 0x01], &[0x00]),
    ];
    for i in (1..shuffled.len()).rev() {
        let j = random_below(i as u32 + 1) as usize;
        shuffled.swap(i, j);
    }
    let mut exts = ext([g[2], g[2]], &[]);
    exts.extend_from_slice(&shuffled.concat());
    exts.extend_from_slice(&ext([g[5], g[5]], &[0x00]));
    assemble(g[0], &exts)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crypto::{hex, sha256, unhex};

    fn vector_key() -> [u8; 16] {
        core::array::from_fn(|i| i as u8)
    }

    /// docs/PROTOCOL.md §10: the 517-byte vector hello.
    fn vector_hello() -> Vec<u8> {
        let mut r = unhex("160301020001 0001fc 0303");
        r.extend_from_slice(&[0; 32]);
        r.push(0x20);
        r.extend((0xa0..=0xbf).collect::<Vec<u8>>());
        r.extend(unhex("00060a0a13011302 0100 01ad"));
        r.extend(unhex("00000010000e00000b"));
        r.extend_from_slice(b"example.com");
        r.extend(unhex("002b0003020304"));
        r.extend(unhex("003300260024001d0020"));
        r.extend_from_slice(&[0x55; 32]);
        r.extend(unhex("00150164"));
        r.extend_from_slice(&[0; 356]);
        assert_eq!(r.len(), 517);
        r
    }

    #[test]
    fn signs_the_protocol_vector() {
        let mut r = vector_hello();
        sign(&mut r, &vector_key(), 1_700_000_000);
        assert_eq!(
            hex(&r[RANDOM_RANGE]),
            "fb0d1114fc4c3e01da9ac230d71bf9f27a6aa5cb4f9f0bafa7e6b21ff1eee15a"
        );
        assert_eq!(
            hex(&sha256(&[&r])),
            "ddd6155907b183cbbb5debda000117821ac675f9471bd48d795eaace6b6605ea"
        );
        assert_eq!(verify(&r, &vector_key()), Some(1_700_000_000));
    }

    #[test]
    fn verifies_real_tdlib_hellos() {
        let key = vector_key();
        for (name, time) in [
            ("003", 1795691477),
            ("004", 1795691477),
            ("006", 1795691478),
        ] {
            let path = format!(
                "{}/fixtures/tdlib-1.8.69/client-to-proxy-{name}.bin",
                env!("CARGO_MANIFEST_DIR")
            );
            let bytes = std::fs::read(&path).expect("fixture");
            let len = u16::from_be_bytes([bytes[3], bytes[4]]) as usize;
            assert_eq!(verify(&bytes[..5 + len], &key), Some(time), "{name}");
        }
    }

    #[test]
    fn builds_both_shapes_with_valid_digests() {
        let key = vector_key();
        for shape in [HelloShape::Classic, HelloShape::Modern] {
            let spec = HelloSpec {
                shape,
                sni: "www.example.com".into(),
                time: 1_800_000_000,
                key,
                corrupt_digest: false,
            };
            let r = build(&spec);
            assert_eq!(u16::from_be_bytes([r[3], r[4]]) as usize, r.len() - 5);
            assert_eq!(verify(&r, &key), Some(1_800_000_000));
            if shape == HelloShape::Modern {
                assert!((1700..1830).contains(&r.len()), "modern hello {}", r.len());
            }
            let bad = build(&HelloSpec {
                corrupt_digest: true,
                ..spec
            });
            assert_eq!(verify(&bad, &key), None);
        }
    }
}
