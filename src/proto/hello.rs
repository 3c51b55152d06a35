//! The FakeTLS ClientHello: reassembly from the bytes read so far and verification
//! (docs/PROTOCOL.md §2). Decides as early as possible when bytes cannot be a valid hello.

use std::time::Duration;

use hmac::{Hmac, Mac};
use sha2::Sha256;

use super::front_flight::{
    EXTENSION_KEY_SHARE, GROUP_X25519_MLKEM768, ML_KEM_768_ENCAPSULATION_KEY_LEN,
};
use super::record::{HANDSHAKE, HEADER_LEN};

/// Smallest and largest handshake payload accepted (docs/PROTOCOL.md §2.3).
pub const MIN_HELLO_LEN: usize = 100;
pub const MAX_HELLO_LEN: usize = 16384;
/// At most this many `16 03 01` records are joined into one hello (docs/PROTOCOL.md §2.6).
pub const MAX_HELLO_FRAGMENTS: usize = 10;
/// Size of the single-record form written by `assemble`: header plus the largest handshake.
pub const MAX_ASSEMBLED_LEN: usize = 5 + MAX_HELLO_LEN;
/// Bytes of the client random that must match the HMAC; the last four carry the timestamp.
pub const DIGEST_CHECKED_LEN: usize = 28;
/// The TLS 1.3 suites we can name in the reply (RFC 8446 §B.4), in no order of preference.
pub const TLS13_SUITES: [[u8; 2]; 3] = [[0x13, 0x01], [0x13, 0x02], [0x13, 0x03]];

const CLIENT_HELLO: u8 = 0x01;
const HANDSHAKE_HEADER_LEN: usize = 4;
const MAX_SESSION_ID_LEN: usize = 32;
const EXTENSION_SERVER_NAME: u16 = 0x0000;
/// The client's X25519MLKEM768 share: an ML-KEM-768 encapsulation key, then X25519.
const X25519_MLKEM768_SHARE_LEN: usize = ML_KEM_768_ENCAPSULATION_KEY_LEN + 32;
const SERVER_NAME_HOST: u8 = 0x00;
/// Record versions a hello may carry: every client sends `03 01`; telemt also takes `03 03`.
const HELLO_RECORD_VERSIONS: [[u8; 2]; 2] = [[0x03, 0x01], [0x03, 0x03]];

/// Byte positions in the single-record hello (docs/PROTOCOL.md §2.1):
///
/// ```text
/// 0     1       3       5   6       9        11       43      44
/// | 16 | 03 01 | L(BE) | 01 | L - 4 | 03 03 | random | sidlen | sid | suites | ...
/// ```
mod field {
    use std::ops::Range;
    pub const RECORD_TYPE: usize = 0;
    pub const RECORD_VERSION: Range<usize> = 1..3;
    pub const RECORD_LENGTH: Range<usize> = 3..5;
    pub const HANDSHAKE_TYPE: usize = 5;
    pub const HANDSHAKE_LENGTH: Range<usize> = 6..9;
    /// Where the ClientHello body starts: legacy_version, then the random.
    pub const BODY: usize = 9;
    pub const RANDOM: Range<usize> = 11..43;
}

/// Why a connection is not a FakeTLS client of ours. Every variant leads to fronting.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Rejection {
    /// The first bytes are not a TLS handshake record (`16 03 01` or `16 03 03`).
    NotTls,
    /// A record or handshake length out of bounds, too many fragments, or a body that ends early.
    Truncated,
    /// The handshake message is not a well-formed ClientHello.
    NotClientHello,
    /// No SNI, two SNI extensions, or a name other than the secret's domain.
    WrongDomain,
    /// The HMAC in the client random does not match our key.
    BadDigest,
    /// The timestamp is outside the accepted window.
    ClockSkew,
    /// This hello was accepted before.
    Replayed,
    /// No TLS 1.3 cipher suite offered.
    NoTls13Suite,
    /// Bytes followed the hello before our reply.
    TrailingData,
    /// The hello did not complete before the handshake deadline.
    Timeout,
}

impl Rejection {
    /// Every rejection, in the order of the `reason` labels of `feint_fronted_total`.
    #[cfg_attr(not(test), allow(dead_code))]
    pub const ALL: [Rejection; 10] = [
        Rejection::NotTls,
        Rejection::Truncated,
        Rejection::NotClientHello,
        Rejection::WrongDomain,
        Rejection::BadDigest,
        Rejection::ClockSkew,
        Rejection::Replayed,
        Rejection::NoTls13Suite,
        Rejection::TrailingData,
        Rejection::Timeout,
    ];
}

impl std::fmt::Display for Rejection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Rejection::NotTls => "not tls",
            Rejection::Truncated => "truncated",
            Rejection::NotClientHello => "not a client hello",
            Rejection::WrongDomain => "wrong domain",
            Rejection::BadDigest => "bad digest",
            Rejection::ClockSkew => "clock skew",
            Rejection::Replayed => "replayed",
            Rejection::NoTls13Suite => "no tls 1.3 suite",
            Rejection::TrailingData => "trailing data",
            Rejection::Timeout => "timeout",
        })
    }
}

/// What the bytes read so far amount to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Assembly {
    /// Could still become a valid hello; read more.
    NeedMore,
    /// A whole hello: `consumed` input bytes became `len` bytes of single-record form in `out`.
    Complete { consumed: usize, len: usize },
    /// Cannot be a valid hello, whatever follows.
    Rejected(Rejection),
}

/// Looks at `input` (every byte the client sent so far) and, once one hello is complete,
/// writes it as a single record (`16 03 01`, length, handshake) into `out`, which must be at
/// least MAX_ASSEMBLED_LEN long. Fragments over several `16 03 01` records are joined.
///
/// A hello sent as one record is copied unchanged, header included, because its digest covers
/// the header as sent. Bytes after the hello are left for the caller. A record of fewer than
/// MIN_HELLO_LEN bytes may be a fragment, so that bound is applied once the handshake header
/// (its first four bytes, possibly over two records) is in.
pub fn assemble(input: &[u8], out: &mut [u8]) -> Assembly {
    match join_records(input, out) {
        Ok(Some((consumed, len))) => Assembly::Complete { consumed, len },
        Ok(None) => Assembly::NeedMore,
        Err(rejection) => Assembly::Rejected(rejection),
    }
}

/// `assemble` with `?`: Ok(None) means "need more", Ok(Some((consumed, len))) a whole hello.
fn join_records(input: &[u8], out: &mut [u8]) -> Result<Option<(usize, usize)>, Rejection> {
    // Start of the current record in `input`.
    let mut position = 0;
    // Handshake bytes copied to out[HEADER_LEN..] so far.
    let mut gathered = 0;
    // Length of the handshake message including its own header, once known.
    let mut total: Option<usize> = None;

    for fragment in 1..=MAX_HELLO_FRAGMENTS {
        let rest = input.get(position..).unwrap_or_default();
        let Some(record_len) = read_record_header(rest)? else {
            return Ok(None);
        };
        let before = gathered;
        let after = before + record_len;
        // An empty handshake record is illegal (RFC 8446 §5.1); a long one is refused before
        // anything is copied, so `out` is never indexed by an unchecked length.
        if record_len == 0 || after > MAX_HELLO_LEN || HEADER_LEN + after > out.len() {
            return Err(Rejection::Truncated);
        }
        let body = rest.get(HEADER_LEN..).unwrap_or_default();
        let arrived = body.get(..record_len).unwrap_or(body);
        let destination = out
            .get_mut(HEADER_LEN + before..HEADER_LEN + before + arrived.len())
            .ok_or(Rejection::Truncated)?;
        destination.copy_from_slice(arrived);
        gathered += arrived.len();

        if total.is_none() {
            total = read_handshake_header(out.get(HEADER_LEN..HEADER_LEN + gathered))?;
        }
        if let Some(total) = total {
            // The record must not carry bytes past the ClientHello, and the last allowed
            // fragment must finish it.
            if after > total || (fragment == MAX_HELLO_FRAGMENTS && after < total) {
                return Err(Rejection::Truncated);
            }
        }
        if arrived.len() < record_len {
            return Ok(None);
        }
        position += HEADER_LEN + record_len;
        if total == Some(gathered) {
            let header = out.get_mut(..HEADER_LEN).ok_or(Rejection::Truncated)?;
            if fragment == 1 {
                header.copy_from_slice(input.get(..HEADER_LEN).ok_or(Rejection::Truncated)?);
            } else {
                // mtg rebuilds the same header and computes the HMAC over it
                // (docs/PROTOCOL.md §2.6).
                let [high, low] = u16::try_from(gathered)
                    .map_err(|_| Rejection::Truncated)?
                    .to_be_bytes();
                header.copy_from_slice(&[HANDSHAKE, 0x03, 0x01, high, low]);
            }
            return Ok(Some((position, HEADER_LEN + gathered)));
        }
    }
    Err(Rejection::Truncated)
}

/// Checks a hello record header byte by byte, so garbage is refused after its first byte.
/// Returns the record length once all five bytes are in.
fn read_record_header(bytes: &[u8]) -> Result<Option<usize>, Rejection> {
    match bytes.first() {
        None => return Ok(None),
        Some(&HANDSHAKE) => {}
        Some(_) => return Err(Rejection::NotTls),
    }
    let major = HELLO_RECORD_VERSIONS[0][0];
    match bytes.get(1) {
        None => return Ok(None),
        Some(&byte) if byte == major => {}
        Some(_) => return Err(Rejection::NotTls),
    }
    match bytes.get(2) {
        None => return Ok(None),
        Some(&minor) if HELLO_RECORD_VERSIONS.contains(&[major, minor]) => {}
        Some(_) => return Err(Rejection::NotTls),
    }
    let Some(&[high, low]) = bytes.get(3..HEADER_LEN) else {
        return Ok(None);
    };
    Ok(Some(usize::from(u16::from_be_bytes([high, low]))))
}

/// Checks the handshake header in the bytes gathered so far; returns the handshake's total
/// length once its four header bytes are in.
fn read_handshake_header(handshake: Option<&[u8]>) -> Result<Option<usize>, Rejection> {
    let handshake = handshake.unwrap_or_default();
    match handshake.first() {
        None => return Ok(None),
        Some(&CLIENT_HELLO) => {}
        Some(_) => return Err(Rejection::NotClientHello),
    }
    let Some(&[_, high, middle, low]) = handshake.get(..HANDSHAKE_HEADER_LEN) else {
        return Ok(None);
    };
    let total = HANDSHAKE_HEADER_LEN + u32::from_be_bytes([0, high, middle, low]) as usize;
    if !(MIN_HELLO_LEN..=MAX_HELLO_LEN).contains(&total) {
        return Err(Rejection::Truncated);
    }
    Ok(Some(total))
}

/// What a verified hello tells us, for the reply.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Verified {
    pub client_random: [u8; 32],
    pub session_id: [u8; 32],
    pub session_id_len: u8,
    pub cipher_suite: [u8; 2],
    /// Which of TLS13_SUITES the client offered, in that order.
    pub tls13_suites_offered: [bool; 3],
    /// The client sent a key share for X25519MLKEM768, so a server may answer in that group.
    pub offers_x25519mlkem768: bool,
    pub timestamp: u32,
}

impl Verified {
    /// True if the client offered this TLS 1.3 cipher suite.
    pub fn offers_suite(&self, suite: [u8; 2]) -> bool {
        TLS13_SUITES
            .iter()
            .zip(self.tls13_suites_offered)
            .any(|(&known, offered)| offered && known == suite)
    }
}

/// Checks an assembled hello (docs/PROTOCOL.md §2.4 steps 2-5 and 7): ClientHello structure, SNI equal
/// to `domain`, digest in constant time, |now - ts| <= max_skew, a TLS 1.3 suite. Replay is the
/// caller's step. `record` is modified while the digest is computed (the random is zeroed) and
/// restored before returning.
pub fn verify(
    record: &mut [u8],
    key: &[u8; 16],
    domain: &[u8],
    now_unix: u64,
    max_skew: Duration,
) -> Result<Verified, Rejection> {
    let hello = ClientHello::parse(record)?;
    if hello.server_name()? != domain {
        return Err(Rejection::WrongDomain);
    }
    let client_random = hello.random;
    let (session_id, session_id_len) = hello.session_id();
    let cipher_suite = hello.tls13_suite();
    let tls13_suites_offered = TLS13_SUITES.map(|suite| hello.offers_suite(suite));
    let offers_x25519mlkem768 =
        hello.has_key_share(GROUP_X25519_MLKEM768, X25519_MLKEM768_SHARE_LEN);

    let timestamp = check_digest(record, key, &client_random)?;
    if now_unix.abs_diff(u64::from(timestamp)) > max_skew.as_secs() {
        return Err(Rejection::ClockSkew);
    }
    Ok(Verified {
        client_random,
        session_id,
        session_id_len,
        cipher_suite: cipher_suite.ok_or(Rejection::NoTls13Suite)?,
        tls13_suites_offered,
        offers_x25519mlkem768,
        timestamp,
    })
}

/// Computes the digest of §2.2 over `record` with its random zeroed, compares the 28 checked
/// bytes in constant time and returns the timestamp from the other four.
fn check_digest(record: &mut [u8], key: &[u8; 16], random: &[u8; 32]) -> Result<u32, Rejection> {
    record
        .get_mut(field::RANDOM)
        .ok_or(Rejection::Truncated)?
        .fill(0);
    let digest = hmac_sha256(key, &[record]);
    record
        .get_mut(field::RANDOM)
        .ok_or(Rejection::Truncated)?
        .copy_from_slice(random);

    let mut x = [0u8; 32];
    for ((x, d), r) in x.iter_mut().zip(digest).zip(random) {
        *x = d ^ r;
    }
    let (checked, stamp) = x.split_at(DIGEST_CHECKED_LEN);
    // OR of all differences, no early exit: the time taken says nothing about where a guess
    // went wrong. black_box keeps the compiler from turning the fold into a search.
    let difference = std::hint::black_box(checked.iter().fold(0u8, |acc, byte| acc | byte));
    if difference != 0 {
        return Err(Rejection::BadDigest);
    }
    let stamp: [u8; 4] = stamp.try_into().map_err(|_| Rejection::BadDigest)?;
    Ok(u32::from_le_bytes(stamp))
}

/// Signs `record` as a client does (docs/PROTOCOL.md §2.2): the HMAC of the record with its
/// random zeroed, its last four bytes XORed with `timestamp`, becomes the random. Returns that
/// client random; None if the record is too short to hold one.
pub fn sign(record: &mut [u8], key: &[u8; 16], timestamp: u32) -> Option<[u8; 32]> {
    record.get_mut(field::RANDOM)?.fill(0);
    let mut random = hmac_sha256(key, &[record]);
    for (byte, stamp) in random[DIGEST_CHECKED_LEN..]
        .iter_mut()
        .zip(timestamp.to_le_bytes())
    {
        *byte ^= stamp;
    }
    record.get_mut(field::RANDOM)?.copy_from_slice(&random);
    Some(random)
}

/// HMAC-SHA256 with key16 over the concatenation of `parts` (docs/PROTOCOL.md §2.2, §3.3).
pub(crate) fn hmac_sha256(key: &[u8; 16], parts: &[&[u8]]) -> [u8; 32] {
    let mut mac =
        <Hmac<Sha256> as Mac>::new_from_slice(key).expect("HMAC accepts keys of any length");
    for part in parts {
        mac.update(part);
    }
    mac.finalize().into_bytes().into()
}

/// GREASE code points (RFC 8701) are two equal bytes ending in `a`; never validate them further.
fn is_grease(value: [u8; 2]) -> bool {
    (u16::from_be_bytes(value) & 0x0f0f) == 0x0a0a
}

/// A ClientHello in single-record form whose every length was checked by `parse`.
struct ClientHello<'a> {
    random: [u8; 32],
    session_id: &'a [u8],
    cipher_suites: &'a [u8],
    extensions: &'a [u8],
}

impl<'a> ClientHello<'a> {
    /// Checks the record and handshake headers, then walks the body (RFC 8446 §4.1.2).
    fn parse(record: &'a [u8]) -> Result<Self, Rejection> {
        let header = record.get(..field::BODY).ok_or(Rejection::Truncated)?;
        let version = header.get(field::RECORD_VERSION).ok_or(Rejection::NotTls)?;
        if header.get(field::RECORD_TYPE) != Some(&HANDSHAKE)
            || !HELLO_RECORD_VERSIONS.iter().any(|v| v == version)
        {
            return Err(Rejection::NotTls);
        }
        let record_len = be_length(header.get(field::RECORD_LENGTH))?;
        if !(MIN_HELLO_LEN..=MAX_HELLO_LEN).contains(&record_len)
            || record.len() != HEADER_LEN + record_len
        {
            return Err(Rejection::Truncated);
        }
        if header.get(field::HANDSHAKE_TYPE) != Some(&CLIENT_HELLO) {
            return Err(Rejection::NotClientHello);
        }
        if be_length(header.get(field::HANDSHAKE_LENGTH))? + HANDSHAKE_HEADER_LEN != record_len {
            return Err(Rejection::Truncated);
        }

        let mut body = Reader(record.get(field::BODY..).unwrap_or_default());
        body.take(2)?; // legacy_version: clients send 03 03; nothing depends on it
        let random: [u8; 32] = body
            .take(32)?
            .try_into()
            .map_err(|_| Rejection::NotClientHello)?;
        let session_id_len = body.u8()?;
        if usize::from(session_id_len) > MAX_SESSION_ID_LEN {
            return Err(Rejection::NotClientHello);
        }
        let session_id = body.take(usize::from(session_id_len))?;
        let cipher_suites_len = body.u16()?;
        let cipher_suites = body.take(cipher_suites_len)?;
        if cipher_suites.is_empty() || cipher_suites.len() % 2 != 0 {
            return Err(Rejection::NotClientHello);
        }
        let compression_len = usize::from(body.u8()?);
        if compression_len == 0 {
            return Err(Rejection::NotClientHello);
        }
        body.take(compression_len)?;
        // A hello without extensions is well-formed TLS 1.2; it fails later, for lack of SNI.
        let extensions = if body.0.is_empty() {
            &[][..]
        } else {
            let extensions_len = body.u16()?;
            body.take(extensions_len)?
        };
        if !body.0.is_empty() {
            return Err(Rejection::NotClientHello);
        }
        for extension in Extensions(extensions) {
            extension?;
        }
        Ok(ClientHello {
            random,
            session_id,
            cipher_suites,
            extensions,
        })
    }

    /// The host_name of the one server_name extension (RFC 6066 §3). None, two, or a malformed
    /// list are all WrongDomain: telemt refuses a duplicate, and we cannot tell which to trust.
    fn server_name(&self) -> Result<&'a [u8], Rejection> {
        let mut server_names = Extensions(self.extensions)
            .filter_map(Result::ok)
            .filter(|&(kind, _)| kind == EXTENSION_SERVER_NAME)
            .map(|(_, body)| body);
        let body = server_names.next().ok_or(Rejection::WrongDomain)?;
        if server_names.next().is_some() {
            return Err(Rejection::WrongDomain);
        }
        let mut extension = Reader(body);
        let list = extension.u16().and_then(|len| extension.take(len));
        let mut list = Reader(list.map_err(|_| Rejection::WrongDomain)?);
        if !extension.0.is_empty() {
            return Err(Rejection::WrongDomain);
        }
        let mut host_name = None;
        while !list.0.is_empty() {
            let name_type = list.u8().map_err(|_| Rejection::WrongDomain)?;
            let name = list
                .u16()
                .and_then(|len| list.take(len))
                .map_err(|_| Rejection::WrongDomain)?;
            // RFC 6066 allows one name per type; a second host_name is refused like a second SNI.
            if name_type == SERVER_NAME_HOST && host_name.replace(name).is_some() {
                return Err(Rejection::WrongDomain);
            }
        }
        host_name.ok_or(Rejection::WrongDomain)
    }

    fn session_id(&self) -> ([u8; 32], u8) {
        let mut session_id = [0; 32];
        let len = self.session_id.len().min(MAX_SESSION_ID_LEN);
        session_id[..len].copy_from_slice(&self.session_id[..len]);
        (session_id, len as u8)
    }

    fn offers_suite(&self, suite: [u8; 2]) -> bool {
        self.cipher_suites.chunks_exact(2).any(|pair| pair == suite)
    }

    /// True if the key_share extension (RFC 8446 §4.2.8) holds a share of `group` that is `len`
    /// bytes long. A malformed list holds nothing.
    fn has_key_share(&self, group: u16, len: usize) -> bool {
        let Some((_, body)) = Extensions(self.extensions)
            .filter_map(Result::ok)
            .find(|&(kind, _)| kind == EXTENSION_KEY_SHARE)
        else {
            return false;
        };
        let mut extension = Reader(body);
        let Ok(list) = extension
            .u16()
            .and_then(|list_len| extension.take(list_len))
        else {
            return false;
        };
        let mut list = Reader(list);
        while !list.0.is_empty() {
            let Ok(kind) = list.u16() else { return false };
            let Ok(share) = list.u16().and_then(|share_len| list.take(share_len)) else {
                return false;
            };
            if kind == usize::from(group) && share.len() == len {
                return true;
            }
        }
        false
    }

    /// The first offered suite that is TLS 1.3, skipping GREASE (docs/PROTOCOL.md §2.4 step 7).
    fn tls13_suite(&self) -> Option<[u8; 2]> {
        self.cipher_suites
            .chunks_exact(2)
            .filter_map(|pair| <[u8; 2]>::try_from(pair).ok())
            .filter(|&suite| !is_grease(suite))
            .find(|suite| TLS13_SUITES.contains(suite))
    }
}

/// A big-endian length field of two or three bytes.
fn be_length(bytes: Option<&[u8]>) -> Result<usize, Rejection> {
    let bytes = bytes.ok_or(Rejection::Truncated)?;
    Ok(bytes
        .iter()
        .fold(0usize, |acc, &byte| (acc << 8) | usize::from(byte)))
}

/// Reads a ClientHello body front to back; any length that does not fit is NotClientHello.
struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn take(&mut self, len: usize) -> Result<&'a [u8], Rejection> {
        if len > self.0.len() {
            return Err(Rejection::NotClientHello);
        }
        let (taken, rest) = self.0.split_at(len);
        self.0 = rest;
        Ok(taken)
    }

    fn u8(&mut self) -> Result<u8, Rejection> {
        let (&byte, rest) = self.0.split_first().ok_or(Rejection::NotClientHello)?;
        self.0 = rest;
        Ok(byte)
    }

    fn u16(&mut self) -> Result<usize, Rejection> {
        let high = self.u8()?;
        let low = self.u8()?;
        Ok(usize::from(u16::from_be_bytes([high, low])))
    }
}

/// The extension list as `(type, body)` pairs; yields an error at the first length that does
/// not fit and stops there.
struct Extensions<'a>(&'a [u8]);

impl<'a> Iterator for Extensions<'a> {
    type Item = Result<(u16, &'a [u8]), Rejection>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.0.is_empty() {
            return None;
        }
        let mut reader = Reader(self.0);
        let item = reader.u16().and_then(|kind| {
            let body = reader.u16().and_then(|len| reader.take(len))?;
            Ok((kind as u16, body))
        });
        self.0 = if item.is_ok() { reader.0 } else { &[] };
        Some(item)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proto::replay::ReplayFilter;
    use crate::proto::testdata::{
        hex, Capture, KEY, TDLIB_CAPTURES, TDLIB_DOMAIN, TDLIB_HELLO_LEN,
    };
    use sha2::Digest;

    const T: u32 = 1_700_000_000;
    const WINDOW: Duration = Duration::from_secs(120);

    /// The tests sign through the function `feint doctor` uses, so both are checked at once.
    fn sign(record: &mut [u8], key: &[u8; 16], timestamp: u32) {
        super::sign(record, key, timestamp).expect("a test hello holds a random");
    }

    /// The 517-byte hello of docs/PROTOCOL.md §10, built exactly as its table says, unsigned.
    fn reference_hello_unsigned() -> Vec<u8> {
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

    fn reference_hello() -> Vec<u8> {
        let mut hello = reference_hello_unsigned();
        sign(&mut hello, &KEY, T);
        hello
    }

    fn server_name_extension(names: &[&[u8]]) -> Vec<u8> {
        let mut list = Vec::new();
        for name in names {
            list.push(SERVER_NAME_HOST);
            list.extend((name.len() as u16).to_be_bytes());
            list.extend(*name);
        }
        let mut body = (list.len() as u16).to_be_bytes().to_vec();
        body.extend(list);
        extension(0x0000, &body)
    }

    fn extension(kind: u16, body: &[u8]) -> Vec<u8> {
        let mut bytes = kind.to_be_bytes().to_vec();
        bytes.extend((body.len() as u16).to_be_bytes());
        bytes.extend(body);
        bytes
    }

    /// A signed hello with the given suites and extensions, padded past MIN_HELLO_LEN.
    fn build_hello(suites: &[u8], extensions: &[u8]) -> Vec<u8> {
        let padding = extension(0x0015, &[0; 64]);
        let extensions = [extensions, &padding].concat();
        let mut body = vec![0x03, 0x03];
        body.extend([0; 32]);
        body.push(32);
        body.extend([0x42; 32]);
        body.extend((suites.len() as u16).to_be_bytes());
        body.extend(suites);
        body.extend([0x01, 0x00]);
        body.extend((extensions.len() as u16).to_be_bytes());
        body.extend(extensions);
        let mut handshake = vec![CLIENT_HELLO];
        handshake.extend(&(body.len() as u32).to_be_bytes()[1..]);
        handshake.extend(body);
        let mut record = vec![0x16, 0x03, 0x01];
        record.extend((handshake.len() as u16).to_be_bytes());
        record.extend(handshake);
        sign(&mut record, &KEY, T);
        record
    }

    const SUITES: [u8; 6] = [0x0a, 0x0a, 0x13, 0x01, 0x13, 0x02];

    fn check(record: &[u8], now: u64) -> Result<Verified, Rejection> {
        verify(&mut record.to_vec(), &KEY, b"example.com", now, WINDOW)
    }

    fn assemble_all(input: &[u8]) -> (Assembly, Vec<u8>) {
        let mut out = vec![0; MAX_ASSEMBLED_LEN];
        let assembly = assemble(input, &mut out);
        if let Assembly::Complete { len, .. } = assembly {
            out.truncate(len);
        }
        (assembly, out)
    }

    /// The hello's handshake split into records of the given payload sizes.
    fn fragment(hello: &[u8], sizes: &[usize]) -> Vec<u8> {
        let mut handshake = &hello[5..];
        let mut records = Vec::new();
        for &size in sizes.iter().chain([&usize::MAX]) {
            let (part, rest) = handshake.split_at(size.min(handshake.len()));
            records.extend([0x16, 0x03, 0x01]);
            records.extend((part.len() as u16).to_be_bytes());
            records.extend(part);
            handshake = rest;
            if handshake.is_empty() {
                break;
            }
        }
        records
    }

    #[test]
    fn reproduces_the_reference_hello_of_protocol_section_10() {
        let unsigned = reference_hello_unsigned();
        assert_eq!(
            hmac_sha256(&KEY, &[&unsigned]).to_vec(),
            hex("fb0d1114fc4c3e01da9ac230d71bf9f27a6aa5cb4f9f0bafa7e6b21ff11fb23f")
        );
        let hello = reference_hello();
        assert_eq!(
            hello[11..43].to_vec(),
            hex("fb0d1114fc4c3e01da9ac230d71bf9f27a6aa5cb4f9f0bafa7e6b21ff1eee15a")
        );
        assert_eq!(
            sha2::Sha256::digest(&hello).to_vec(),
            hex("ddd6155907b183cbbb5debda000117821ac675f9471bd48d795eaace6b6605ea")
        );
    }

    #[test]
    fn accepts_the_reference_hello_and_reads_its_fields() {
        let hello = reference_hello();
        let verified = check(&hello, u64::from(T)).unwrap();
        assert_eq!(verified.timestamp, T);
        assert_eq!(verified.client_random[..], hello[11..43]);
        assert_eq!(verified.session_id_len, 32);
        assert_eq!(
            verified.session_id.to_vec(),
            (0xa0..=0xbf).collect::<Vec<u8>>()
        );
        assert_eq!(verified.cipher_suite, [0x13, 0x01]);
        // The §10 hello offers 13 01 and 13 02, and only an X25519 share.
        assert_eq!(verified.tls13_suites_offered, [true, true, false]);
        assert!(verified.offers_suite([0x13, 0x02]) && !verified.offers_suite([0x13, 0x03]));
        assert!(!verified.offers_x25519mlkem768);
    }

    #[test]
    fn verify_leaves_the_record_unchanged() {
        let hello = reference_hello();
        let mut record = hello.clone();
        verify(&mut record, &KEY, b"example.com", u64::from(T), WINDOW).unwrap();
        assert_eq!(record, hello);
    }

    #[test]
    fn assembles_a_single_record_hello_unchanged() {
        let hello = reference_hello();
        let (assembly, out) = assemble_all(&hello);
        assert_eq!(
            assembly,
            Assembly::Complete {
                consumed: 517,
                len: 517
            }
        );
        assert_eq!(out, hello);
    }

    #[test]
    fn accepts_each_tdlib_capture_at_its_timestamp() {
        for Capture {
            bytes: capture,
            time: timestamp,
            ..
        } in TDLIB_CAPTURES
        {
            let (assembly, mut out) = assemble_all(capture);
            let expected = Assembly::Complete {
                consumed: TDLIB_HELLO_LEN,
                len: TDLIB_HELLO_LEN,
            };
            assert_eq!(assembly, expected);
            let verified = verify(
                &mut out,
                &KEY,
                TDLIB_DOMAIN,
                u64::from(timestamp),
                Duration::ZERO,
            )
            .unwrap();
            assert_eq!(verified.timestamp, timestamp);
            assert_eq!(verified.cipher_suite, [0x13, 0x01]);
            assert_eq!(verified.session_id_len, 32);
            assert!(verified.offers_x25519mlkem768);
            assert_eq!(verified.tls13_suites_offered, [true; 3]);
        }
    }

    #[test]
    fn every_prefix_of_a_tdlib_hello_needs_more() {
        let hello = &TDLIB_CAPTURES[0].bytes[..TDLIB_HELLO_LEN];
        let mut out = vec![0; MAX_ASSEMBLED_LEN];
        for end in 0..hello.len() {
            assert_eq!(
                assemble(&hello[..end], &mut out),
                Assembly::NeedMore,
                "{end}"
            );
        }
        assert!(matches!(
            assemble(hello, &mut out),
            Assembly::Complete { .. }
        ));
    }

    #[test]
    fn leaves_bytes_after_the_hello_unconsumed() {
        let input = [reference_hello(), vec![0x14, 0x03, 0x03]].concat();
        let (assembly, _) = assemble_all(&input);
        assert_eq!(
            assembly,
            Assembly::Complete {
                consumed: 517,
                len: 517
            }
        );
    }

    #[test]
    fn joins_a_hello_split_at_offset_3_into_two_records() {
        let hello = reference_hello();
        let input = fragment(&hello, &[3]);
        assert_eq!(input.len(), 517 + 5);
        let (assembly, mut out) = assemble_all(&input);
        assert_eq!(
            assembly,
            Assembly::Complete {
                consumed: 522,
                len: 517
            }
        );
        assert_eq!(out, hello);
        assert_eq!(check(&out, u64::from(T)).map(|v| v.timestamp), Ok(T));
        let mut scratch = vec![0; MAX_ASSEMBLED_LEN];
        for end in 0..input.len() {
            assert_eq!(assemble(&input[..end], &mut scratch), Assembly::NeedMore);
        }
        assert!(verify(&mut out, &KEY, b"example.com", u64::from(T), WINDOW).is_ok());
    }

    #[test]
    fn joins_the_largest_allowed_number_of_fragments() {
        let hello = reference_hello();
        let input = fragment(&hello, &[1, 1, 1, 1, 1, 1, 1, 1, 1]);
        let (assembly, out) = assemble_all(&input);
        let expected = Assembly::Complete {
            consumed: 517 + 5 * (MAX_HELLO_FRAGMENTS - 1),
            len: 517,
        };
        assert_eq!(assembly, expected);
        assert_eq!(out, hello);
    }

    #[test]
    fn rejects_too_many_fragments() {
        let hello = reference_hello();
        let input = fragment(&hello, &[1; MAX_HELLO_FRAGMENTS]);
        let (assembly, _) = assemble_all(&input);
        assert_eq!(assembly, Assembly::Rejected(Rejection::Truncated));
        // Refused as soon as the tenth header shows it cannot finish the handshake.
        let tenth_header_end = (5 + 1) * (MAX_HELLO_FRAGMENTS - 1) + 5;
        let (assembly, _) = assemble_all(&input[..tenth_header_end]);
        assert_eq!(assembly, Assembly::Rejected(Rejection::Truncated));
    }

    #[test]
    fn rejects_non_tls_after_one_byte() {
        for first in [b'G', b'P', 0x00, 0x17, 0xef] {
            assert_eq!(
                assemble_all(&[first]).0,
                Assembly::Rejected(Rejection::NotTls)
            );
        }
        assert_eq!(
            assemble_all(b"GET / HTTP/1.1\r\n").0,
            Assembly::Rejected(Rejection::NotTls)
        );
        for version in [[0x02, 0x00], [0x03, 0x02], [0x03, 0x04]] {
            let input = [0x16, version[0], version[1]];
            assert_eq!(
                assemble_all(&input).0,
                Assembly::Rejected(Rejection::NotTls)
            );
        }
        assert_eq!(assemble_all(&[0x16, 0x03]).0, Assembly::NeedMore);
        let mut hello = reference_hello();
        hello[0] = 0x17;
        assert_eq!(check(&hello, u64::from(T)), Err(Rejection::NotTls));
    }

    #[test]
    fn rejects_out_of_bounds_lengths_as_truncated() {
        // L = 0 and L > 16384, refused once the five header bytes are in.
        for length in [[0x00, 0x00], [0x40, 0x01], [0xff, 0xff]] {
            let input = [0x16, 0x03, 0x01, length[0], length[1]];
            assert_eq!(
                assemble_all(&input).0,
                Assembly::Rejected(Rejection::Truncated)
            );
        }
        // A handshake length under MIN_HELLO_LEN, refused once it is in.
        let input = [0x16, 0x03, 0x01, 0x00, 0x40, 0x01, 0x00, 0x00, 0x3c];
        assert_eq!(
            assemble_all(&input).0,
            Assembly::Rejected(Rejection::Truncated)
        );
        // A record that runs past the handshake it carries.
        let mut hello = reference_hello();
        hello[8] -= 1;
        assert_eq!(
            assemble_all(&hello[..9]).0,
            Assembly::Rejected(Rejection::Truncated)
        );
        // A truncated body handed to verify.
        assert_eq!(
            check(&reference_hello()[..400], u64::from(T)),
            Err(Rejection::Truncated)
        );
        assert_eq!(check(&[], u64::from(T)), Err(Rejection::Truncated));
    }

    #[test]
    fn rejects_a_wrong_handshake_type_at_byte_5() {
        let mut hello = reference_hello();
        hello[5] = 0x02;
        assert_eq!(
            assemble_all(&hello[..6]).0,
            Assembly::Rejected(Rejection::NotClientHello)
        );
        assert_eq!(check(&hello, u64::from(T)), Err(Rejection::NotClientHello));
    }

    #[test]
    fn rejects_malformed_client_hello_bodies() {
        let reference = reference_hello();
        // Session id length 33, then a suites length that overruns the record.
        let mut long_session = reference.clone();
        long_session[43] = 33;
        let mut long_suites = reference.clone();
        long_suites[76..78].copy_from_slice(&[0x02, 0x00]);
        // An extension whose length runs past the list.
        let mut long_extension = reference.clone();
        long_extension[90..92].copy_from_slice(&[0x01, 0xff]);
        for hello in [long_session, long_suites, long_extension] {
            assert_eq!(check(&hello, u64::from(T)), Err(Rejection::NotClientHello));
        }
    }

    #[test]
    fn rejects_a_hello_signed_for_another_domain() {
        let sni = server_name_extension(&[b"example.org"]);
        let hello = build_hello(&SUITES, &sni);
        assert_eq!(check(&hello, u64::from(T)), Err(Rejection::WrongDomain));
        // The same builder with our domain passes, so only the name differs.
        let ours = build_hello(&SUITES, &server_name_extension(&[b"example.com"]));
        assert!(check(&ours, u64::from(T)).is_ok());
    }

    #[test]
    fn rejects_a_duplicate_server_name_extension() {
        let sni = server_name_extension(&[b"example.com"]);
        let hello = build_hello(&SUITES, &[sni.clone(), sni].concat());
        assert_eq!(check(&hello, u64::from(T)), Err(Rejection::WrongDomain));
    }

    #[test]
    fn rejects_a_hello_without_server_name() {
        let hello = build_hello(&SUITES, &extension(0x002b, &[0x02, 0x03, 0x04]));
        assert_eq!(check(&hello, u64::from(T)), Err(Rejection::WrongDomain));
        let two_names = server_name_extension(&[b"example.com", b"example.com"]);
        let hello = build_hello(&SUITES, &two_names);
        assert_eq!(check(&hello, u64::from(T)), Err(Rejection::WrongDomain));
    }

    #[test]
    fn rejects_a_flipped_byte_outside_the_random_as_bad_digest() {
        let reference = reference_hello();
        for position in [9, 44, 80, 300, 516] {
            let mut hello = reference.clone();
            hello[position] ^= 0x01;
            assert_eq!(
                check(&hello, u64::from(T)),
                Err(Rejection::BadDigest),
                "{position}"
            );
        }
        let mut other_key = reference.clone();
        sign(&mut other_key, &[0xff; 16], T);
        assert_eq!(check(&other_key, u64::from(T)), Err(Rejection::BadDigest));
    }

    #[test]
    fn rejects_hello_outside_skew_window() {
        let hello = reference_hello();
        let window = WINDOW.as_secs();
        let t = u64::from(T);
        assert_eq!(check(&hello, t + window + 1), Err(Rejection::ClockSkew));
        assert_eq!(check(&hello, t - window - 1), Err(Rejection::ClockSkew));
        assert!(check(&hello, t + window).is_ok());
        assert!(check(&hello, t - window).is_ok());
    }

    #[test]
    fn rejects_a_hello_without_tls13_suites() {
        let sni = server_name_extension(&[b"example.com"]);
        let suites = [0x0a, 0x0a, 0xc0, 0x2f, 0x1a, 0x1a, 0x00, 0x9c];
        let hello = build_hello(&suites, &sni);
        assert_eq!(check(&hello, u64::from(T)), Err(Rejection::NoTls13Suite));
    }

    #[test]
    fn picks_the_first_tls13_suite_after_grease_and_tls12() {
        let sni = server_name_extension(&[b"example.com"]);
        let suites = [0xda, 0xda, 0xc0, 0x2f, 0x13, 0x03, 0x13, 0x01];
        let verified = check(&build_hello(&suites, &sni), u64::from(T)).unwrap();
        assert_eq!(verified.cipher_suite, [0x13, 0x03]);
    }

    #[test]
    fn a_replayed_hello_is_caught_by_the_replay_filter() {
        let hello = reference_hello();
        let hasher = std::collections::hash_map::RandomState::new();
        let mut filter = ReplayFilter::new(4096, hasher);
        let accept = |filter: &mut ReplayFilter<_>| {
            let verified = check(&hello, u64::from(T))?;
            if filter.check_and_insert(&verified.client_random) {
                return Err(Rejection::Replayed);
            }
            Ok(())
        };
        assert_eq!(accept(&mut filter), Ok(()));
        assert_eq!(accept(&mut filter), Err(Rejection::Replayed));
    }

    #[test]
    fn display_is_short_lowercase_text() {
        for rejection in Rejection::ALL {
            let text = rejection.to_string();
            assert!(!text.is_empty() && text.len() <= 20, "{text}");
            assert_eq!(text, text.to_lowercase());
        }
        assert_eq!(Rejection::BadDigest.to_string(), "bad digest");
    }

    #[test]
    fn random_garbage_never_panics() {
        let mut state = 0x9e37_79b9_7f4a_7c15u64;
        let mut next = move || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        };
        let reference = reference_hello();
        let mut out = vec![0; MAX_ASSEMBLED_LEN];
        for round in 0..3000 {
            // Alternate pure noise with a valid hello that has a few bytes changed, so the
            // parser gets past its first checks.
            let mut input = if round % 2 == 0 {
                let len = (next() % 700) as usize;
                let mut bytes: Vec<u8> = (0..len).map(|_| next() as u8).collect();
                if let Some(first) = bytes.first_mut() {
                    *first = 0x16;
                }
                bytes
            } else {
                let mut bytes = reference.clone();
                for _ in 0..(next() % 4 + 1) {
                    let position = (next() % bytes.len() as u64) as usize;
                    bytes[position] = next() as u8;
                }
                bytes.truncate((next() % 600) as usize);
                bytes
            };
            if let Assembly::Complete { len, .. } = assemble(&input, &mut out) {
                let _ = verify(&mut out[..len], &KEY, b"example.com", 0, WINDOW);
            }
            let _ = verify(&mut input, &KEY, b"example.com", 0, WINDOW);
        }
    }

    #[test]
    fn too_small_an_output_buffer_is_refused_not_overrun() {
        let hello = reference_hello();
        let mut out = vec![0; 100];
        assert_eq!(
            assemble(&hello, &mut out),
            Assembly::Rejected(Rejection::Truncated)
        );
    }
}
