//! Shared by the fuzz targets: the fixtures, signing a hello as a client does
//! (docs/PROTOCOL.md §2.2), the §10 reference hello, and the invariants every `assemble` /
//! `verify` result must satisfy.

use std::time::Duration;

use feint::proto::hello::{self, Assembly, Rejection, MAX_ASSEMBLED_LEN, TLS13_SUITES};
use hmac::{Hmac, Mac};
use sha2::Sha256;

/// key16 of docs/PROTOCOL.md §10 and of the TDLib captures.
pub const KEY: [u8; 16] = [0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15];
/// Domain of the TDLib captures.
pub const TDLIB_DOMAIN: &[u8] = b"www.example.com";
/// Domain of the §10 reference hello.
pub const REFERENCE_DOMAIN: &[u8] = b"example.com";
/// Every capture starts with a 1731-byte hello record.
pub const TDLIB_HELLO_LEN: usize = 1731;
/// The skew window used when verifying.
pub const WINDOW: Duration = Duration::from_secs(120);

pub const CAPTURES: [&[u8]; 3] = [
    include_bytes!("../../fixtures/tdlib-1.8.69/client-to-proxy-003.bin"),
    include_bytes!("../../fixtures/tdlib-1.8.69/client-to-proxy-004.bin"),
    include_bytes!("../../fixtures/tdlib-1.8.69/client-to-proxy-006.bin"),
];

/// Fills in the client random of a single-record hello as a client does (docs/PROTOCOL.md §2.2).
/// Does nothing to a record shorter than 43 bytes.
pub fn sign(record: &mut [u8], key: &[u8; 16], timestamp: u32) {
    let Some(random) = record.get_mut(11..43) else {
        return;
    };
    random.fill(0);
    let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(key).expect("any key length");
    mac.update(record);
    let mut digest: [u8; 32] = mac.finalize().into_bytes().into();
    for (byte, stamp) in digest[28..].iter_mut().zip(timestamp.to_le_bytes()) {
        *byte ^= stamp;
    }
    record[11..43].copy_from_slice(&digest);
}

/// The 517-byte hello of docs/PROTOCOL.md §10, unsigned.
pub fn reference_hello_unsigned() -> Vec<u8> {
    let mut hello = vec![
        0x16, 0x03, 0x01, 0x02, 0x00, 0x01, 0x00, 0x01, 0xfc, 0x03, 0x03,
    ];
    hello.extend([0; 32]);
    hello.push(0x20);
    hello.extend(0xa0..=0xbf);
    hello.extend([0x00, 0x06, 0x0a, 0x0a, 0x13, 0x01, 0x13, 0x02, 0x01, 0x00]);
    hello.extend([0x01, 0xad]);
    hello.extend([0x00, 0x00, 0x00, 0x10, 0x00, 0x0e, 0x00, 0x00, 0x0b]);
    hello.extend(b"example.com");
    hello.extend([0x00, 0x2b, 0x00, 0x03, 0x02, 0x03, 0x04]);
    hello.extend([0x00, 0x33, 0x00, 0x26, 0x00, 0x24, 0x00, 0x1d, 0x00, 0x20]);
    hello.extend([0x55; 32]);
    hello.extend([0x00, 0x15, 0x01, 0x64]);
    hello.extend([0; 356]);
    assert_eq!(hello.len(), 517);
    hello
}

/// Reads fuzz input front to back; returns zeros once it runs out.
pub struct Input<'a>(pub &'a [u8]);

impl<'a> Input<'a> {
    pub fn u8(&mut self) -> u8 {
        match self.0.split_first() {
            Some((&byte, rest)) => {
                self.0 = rest;
                byte
            }
            None => 0,
        }
    }
    pub fn u16(&mut self) -> u16 {
        u16::from_le_bytes([self.u8(), self.u8()])
    }
    pub fn u32(&mut self) -> u32 {
        u32::from_le_bytes([self.u8(), self.u8(), self.u8(), self.u8()])
    }
    pub fn bytes(&mut self, len: usize) -> &'a [u8] {
        let (taken, rest) = self.0.split_at(len.min(self.0.len()));
        self.0 = rest;
        taken
    }
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

/// A small xorshift generator, for cut points derived from a few input bytes.
pub struct XorShift(pub u64);

impl XorShift {
    pub fn next_u64(&mut self) -> u64 {
        let mut x = self.0 | 1;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.0 = x;
        x
    }
    /// A value in 0..=max.
    pub fn upto(&mut self, max: usize) -> usize {
        (self.next_u64() % (max as u64 + 1)) as usize
    }
}

/// Runs `assemble` and checks what its doc promises about the result.
pub fn assemble_checked(input: &[u8], out: &mut [u8; MAX_ASSEMBLED_LEN]) -> Assembly {
    let result = hello::assemble(input, out);
    if let Assembly::Complete { consumed, len } = result {
        assert!(
            consumed <= input.len(),
            "consumed {consumed} > input {}",
            input.len()
        );
        assert!(len <= out.len(), "len {len} > out {}", out.len());
        assert!(
            len >= 5 + hello::MIN_HELLO_LEN,
            "len {len} below the minimum hello"
        );
        assert!(len <= hello::MAX_ASSEMBLED_LEN);
        let record = &out[..len];
        assert_eq!(record[0], 0x16, "not a handshake record");
        assert_eq!(record[1], 0x03);
        assert!(
            record[2] == 0x01 || record[2] == 0x03,
            "record version 03 {:02x}",
            record[2]
        );
        let record_len = usize::from(u16::from_be_bytes([record[3], record[4]]));
        assert_eq!(record_len + 5, len, "record length field does not match");
        assert_eq!(record[5], 0x01, "not a ClientHello");
        let handshake_len = u32::from_be_bytes([0, record[6], record[7], record[8]]) as usize;
        assert_eq!(
            handshake_len + 4,
            record_len,
            "handshake length does not match"
        );
        // Each extra fragment adds one 5-byte header to what was consumed.
        assert!(
            consumed >= len && (consumed - len) % 5 == 0,
            "consumed {consumed}, len {len}"
        );
        let fragments = 1 + (consumed - len) / 5;
        assert!(
            fragments <= hello::MAX_HELLO_FRAGMENTS,
            "{fragments} fragments joined"
        );
        if fragments == 1 {
            assert_eq!(
                record,
                &input[..len],
                "a one-record hello must be copied unchanged"
            );
        } else {
            assert_eq!(
                &record[..3],
                &[0x16, 0x03, 0x01],
                "a rebuilt header is 16 03 01"
            );
        }
    }
    result
}

/// Checks that a prefix of `input` agrees with the result on the whole input: a prefix of a
/// complete or incomplete hello needs more; a rejected prefix means the whole is rejected alike.
pub fn check_prefix(input: &[u8], prefix_len: usize, whole: Assembly) {
    let prefix_len = prefix_len.min(input.len());
    let mut out = Box::new([0u8; MAX_ASSEMBLED_LEN]);
    let part = assemble_checked(&input[..prefix_len], &mut out);
    match (whole, part) {
        (Assembly::Complete { consumed, .. }, part) if prefix_len < consumed => {
            assert_eq!(
                part,
                Assembly::NeedMore,
                "prefix {prefix_len} of a complete hello"
            );
        }
        (Assembly::Complete { .. }, part) => assert_eq!(part, whole, "prefix past the hello"),
        (Assembly::NeedMore, part) => assert_eq!(part, Assembly::NeedMore, "prefix {prefix_len}"),
        (Assembly::Rejected(_), Assembly::NeedMore) => {}
        (Assembly::Rejected(_), part) => assert_eq!(part, whole, "prefix {prefix_len}"),
    }
}

/// Runs `verify` on an assembled record and checks its result; the record must come back as it
/// went in.
pub fn verify_checked(
    record: &mut [u8],
    domain: &[u8],
    now: u64,
) -> Result<hello::Verified, Rejection> {
    let before = record.to_vec();
    let result = hello::verify(record, &KEY, domain, now, WINDOW);
    assert_eq!(record, &before[..], "verify did not restore the record");
    if let Ok(verified) = &result {
        assert!(now.abs_diff(u64::from(verified.timestamp)) <= WINDOW.as_secs());
        assert!(verified.session_id_len <= 32);
        assert!(TLS13_SUITES.contains(&verified.cipher_suite));
        assert_eq!(&verified.client_random[..], &record[11..43]);
        let sid_len = usize::from(verified.session_id_len);
        assert_eq!(&verified.session_id[..sid_len], &record[44..44 + sid_len]);
        assert!(verified.session_id[sid_len..].iter().all(|&b| b == 0));
    }
    result
}

/// Signs a copy of `record` with `timestamp` and verifies it at `now`: whatever else is wrong
/// with it, the digest must match, and the clock must too when now = timestamp.
pub fn verify_resigned(
    record: &[u8],
    domain: &[u8],
    timestamp: u32,
    now: u64,
) -> Result<hello::Verified, Rejection> {
    let mut copy = record.to_vec();
    sign(&mut copy, &KEY, timestamp);
    let result = verify_checked(&mut copy, domain, now);
    assert_ne!(
        result,
        Err(Rejection::BadDigest),
        "a correctly signed record fails the digest"
    );
    if now == u64::from(timestamp) {
        assert_ne!(result, Err(Rejection::ClockSkew), "skew at now = timestamp");
    }
    if let Ok(verified) = &result {
        assert_eq!(verified.timestamp, timestamp);
    }
    result
}
