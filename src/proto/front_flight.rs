//! Learning the front's first flight: a ClientHello shaped like current TDLib's, and a reader of
//! the server's answer (ServerHello, CCS, encrypted records) into a fixed-size `FrontProfile`.
//! Nothing is decrypted; randomness and timings come in as arguments.

use std::fmt;
use std::time::Duration;

use super::record::{ALERT, APPLICATION_DATA, CHANGE_CIPHER_SPEC, HANDSHAKE, HEADER_LEN};
use super::server_hello::MAX_CERT_LEN;
use super::x25519;

/// TLS named groups (RFC 8446 §4.2.7; draft-kwiatkowski-tls-ecdhe-mlkem for the hybrid).
pub const GROUP_X25519: u16 = 0x001d;
pub const GROUP_X25519_MLKEM768: u16 = 0x11ec;
/// Extension types the ServerHello of TLS 1.3 carries (RFC 8446 §4.2).
pub const EXTENSION_SUPPORTED_VERSIONS: u16 = 0x002b;
pub const EXTENSION_KEY_SHARE: u16 = 0x0033;
/// X25519MLKEM768 shares: the client's ML-KEM-768 encapsulation key, the server's ciphertext,
/// each followed by 32 bytes of X25519.
pub const ML_KEM_768_ENCAPSULATION_KEY_LEN: usize = 1184;
pub const ML_KEM_768_CIPHERTEXT_LEN: usize = 1088;

/// Most extensions and encrypted records a profile keeps; more are counted, not kept.
pub const MAX_EXTENSIONS: usize = 8;
pub const MAX_FLIGHT_RECORDS: usize = 8;
/// TDLib cuts the SNI to this many bytes (PROTOCOL.md §1.1).
pub const MAX_DOMAIN_LEN: usize = 182;
/// Room for the longest hello `client_hello` writes: 1731 bytes for a 15-byte domain and the
/// shortest ECH payload, plus 167 of domain and 96 of ECH payload.
pub const MAX_CLIENT_HELLO_LEN: usize = 2048;

const SERVER_HELLO: u8 = 0x02;
const TLS13: [u8; 2] = [0x03, 0x04];
const TLS12: [u8; 2] = [0x03, 0x03];
/// A HelloRetryRequest is a ServerHello with this random (RFC 8446 §4.1.3).
const HELLO_RETRY_RANDOM: [u8; 32] = [
    0xcf, 0x21, 0xad, 0x74, 0xe5, 0x9a, 0x61, 0x11, 0xbe, 0x1d, 0x8c, 0x02, 0x1e, 0x65, 0xb8, 0x91,
    0xc2, 0xa2, 0x11, 0x16, 0x7a, 0xbb, 0x8c, 0x5e, 0x07, 0x9e, 0x09, 0xe2, 0xc8, 0xa8, 0x33, 0x9c,
];
/// RFC 8446 §5.2: an encrypted record holds at most 2^14 + 256 bytes.
const MAX_ENCRYPTED_RECORD_LEN: usize = 16640;
/// ML-KEM coefficients are below q = 3329 (FIPS 203), so a front that checks the key accepts it.
const ML_KEM_Q: u16 = 3329;
const ML_KEM_COEFFICIENT_BYTES: usize = 384 * 3;
const ECH_MIN_PAYLOAD_LEN: usize = 144;
const ECH_MAX_PAYLOAD_LEN: usize = 240;
const GREASE_VALUES: usize = 7;
/// The extensions TDLib shuffles on every hello.
const SHUFFLED_EXTENSIONS: usize = 16;

/// Where each part of `client_hello`'s random input goes, one after the other.
mod random {
    use super::SHUFFLED_EXTENSIONS;
    use super::{ECH_MAX_PAYLOAD_LEN, GREASE_VALUES, ML_KEM_COEFFICIENT_BYTES};
    use std::ops::Range;

    const fn after(previous: Range<usize>, len: usize) -> Range<usize> {
        previous.end..previous.end + len
    }
    pub const CLIENT_RANDOM: Range<usize> = 0..32;
    pub const SESSION_ID: Range<usize> = after(CLIENT_RANDOM, 32);
    pub const GREASE: Range<usize> = after(SESSION_ID, GREASE_VALUES);
    pub const ML_KEM_COEFFICIENTS: Range<usize> = after(GREASE, ML_KEM_COEFFICIENT_BYTES);
    pub const ML_KEM_SEED: Range<usize> = after(ML_KEM_COEFFICIENTS, 32);
    pub const X25519_HYBRID_SCALAR: Range<usize> = after(ML_KEM_SEED, 32);
    pub const X25519_SCALAR: Range<usize> = after(X25519_HYBRID_SCALAR, 32);
    const ECH_CONFIG_IDS: Range<usize> = after(X25519_SCALAR, 1);
    pub const ECH_CONFIG_ID: usize = ECH_CONFIG_IDS.start;
    pub const ECH_ENC: Range<usize> = after(ECH_CONFIG_IDS, 32);
    const ECH_LEN_CHOICES: Range<usize> = after(ECH_ENC, 1);
    pub const ECH_LEN_CHOICE: usize = ECH_LEN_CHOICES.start;
    pub const ECH_PAYLOAD: Range<usize> = after(ECH_LEN_CHOICES, ECH_MAX_PAYLOAD_LEN);
    /// One draw per Fisher-Yates step.
    pub const SHUFFLE: Range<usize> = after(ECH_PAYLOAD, SHUFFLED_EXTENSIONS - 1);
    pub const LEN: usize = SHUFFLE.end;
}

/// Random bytes `client_hello` needs.
pub const CLIENT_HELLO_RANDOM_LEN: usize = random::LEN;

/// Writes into `out` a ClientHello record for `domain` laid out as TDLib 1.8.69 on Linux builds
/// it (`tdlib/td td/mtproto/TlsInit.cpp`): GREASE, 15 shuffled extensions, key shares for
/// X25519MLKEM768 and X25519, ECH GREASE. The client random is plain random bytes: the front
/// does not check it. Returns the length, or None when `out` is short or `domain` empty or
/// longer than MAX_DOMAIN_LEN.
pub fn client_hello(
    out: &mut [u8],
    domain: &[u8],
    random: &[u8; CLIENT_HELLO_RANDOM_LEN],
) -> Option<usize> {
    if domain.is_empty() || domain.len() > MAX_DOMAIN_LEN {
        return None;
    }
    let grease = grease_values(random.get(random::GREASE)?);
    let mut order: [usize; SHUFFLED_EXTENSIONS] = std::array::from_fn(|i| i);
    // Fisher-Yates; the slight bias of a byte modulo a small number does not matter here.
    for (i, draw) in (1..SHUFFLED_EXTENSIONS)
        .rev()
        .zip(random.get(random::SHUFFLE)?)
    {
        order.swap(i, usize::from(*draw) % (i + 1));
    }

    let mut w = Writer { out, at: 0 };
    w.put(&[HANDSHAKE, 0x03, 0x01])?;
    let record = w.begin()?;
    w.put(&[0x01, 0x00])?;
    let handshake = w.begin()?;
    w.put(&TLS12)?;
    w.put(random.get(random::CLIENT_RANDOM)?)?;
    w.put(&[0x20])?;
    w.put(random.get(random::SESSION_ID)?)?;
    w.put(&[0x00, 0x20, grease[0], grease[0]])?;
    w.put(&[
        0x13, 0x01, 0x13, 0x02, 0x13, 0x03, 0xc0, 0x2b, 0xc0, 0x2f, 0xc0, 0x2c, 0xc0, 0x30, 0xcc,
        0xa9, 0xcc, 0xa8, 0xc0, 0x13, 0xc0, 0x14, 0x00, 0x9c, 0x00, 0x9d, 0x00, 0x2f, 0x00, 0x35,
    ])?;
    w.put(&[0x01, 0x00])?;
    let extensions = w.begin()?;
    w.put(&[grease[2], grease[2], 0x00, 0x00])?;
    for part in order {
        write_extension(&mut w, part, domain, &grease, random)?;
    }
    w.put(&[grease[3], grease[3], 0x00, 0x01, 0x00])?;
    // TDLib pads only hellos under 513 bytes; with the ML-KEM key this one never is.
    w.end(extensions)?;
    w.end(handshake)?;
    w.end(record)?;
    Some(w.at)
}

/// Seven GREASE bytes as TDLib draws them: high nibble random, low nibble `a`, and each odd
/// one different from the one before it.
fn grease_values(random: &[u8]) -> [u8; GREASE_VALUES] {
    let mut grease = [0x0a; GREASE_VALUES];
    for (value, draw) in grease.iter_mut().zip(random) {
        *value = (draw & 0xf0) | 0x0a;
    }
    for i in (1..GREASE_VALUES).step_by(2) {
        if grease[i] == grease[i - 1] {
            grease[i] ^= 0x10;
        }
    }
    grease
}

/// The `part`-th of the extensions TDLib shuffles, in TlsInit.cpp's order.
fn write_extension(
    w: &mut Writer<'_>,
    part: usize,
    domain: &[u8],
    grease: &[u8; GREASE_VALUES],
    random: &[u8; CLIENT_HELLO_RANDOM_LEN],
) -> Option<()> {
    match part {
        0 => {
            w.put(&[0x00, 0x00])?;
            let extension = w.begin()?;
            let list = w.begin()?;
            w.put(&[0x00])?;
            let name = w.begin()?;
            w.put(domain)?;
            w.end(name)?;
            w.end(list)?;
            w.end(extension)
        }
        1 => w.put(&[0x00, 0x05, 0x00, 0x05, 0x01, 0x00, 0x00, 0x00, 0x00]),
        2 => {
            w.put(&[0x00, 0x0a, 0x00, 0x0c, 0x00, 0x0a, grease[4], grease[4]])?;
            w.put(&[0x11, 0xec, 0x00, 0x1d, 0x00, 0x17, 0x00, 0x18])
        }
        3 => w.put(&[0x00, 0x0b, 0x00, 0x02, 0x01, 0x00]),
        // The 1.8.69 captures also offer the ML-DSA schemes 0904..0906.
        4 => w.put(&[
            0x00, 0x0d, 0x00, 0x18, 0x00, 0x16, 0x09, 0x04, 0x09, 0x05, 0x09, 0x06, 0x04, 0x03,
            0x08, 0x04, 0x04, 0x01, 0x05, 0x03, 0x08, 0x05, 0x05, 0x01, 0x08, 0x06, 0x06, 0x01,
        ]),
        5 => w.put(&[
            0x00, 0x10, 0x00, 0x0e, 0x00, 0x0c, 0x02, b'h', b'2', 0x08, b'h', b't', b't', b'p',
            b'/', b'1', b'.', b'1',
        ]),
        6 => w.put(&[0x00, 0x12, 0x00, 0x00]),
        7 => w.put(&[0x00, 0x17, 0x00, 0x00]),
        8 => w.put(&[0x00, 0x1b, 0x00, 0x03, 0x02, 0x00, 0x02]),
        9 => w.put(&[0x00, 0x23, 0x00, 0x00]),
        10 => {
            w.put(&[0x00, 0x2b, 0x00, 0x07, 0x06, grease[6], grease[6]])?;
            w.put(&[0x03, 0x04, 0x03, 0x03])
        }
        11 => w.put(&[0x00, 0x2d, 0x00, 0x02, 0x01, 0x01]),
        12 => write_key_share(w, grease, random),
        13 => w.put(&[0x44, 0xcd, 0x00, 0x05, 0x00, 0x03, 0x02, b'h', b'2']),
        14 => {
            // ECH GREASE: a config id, a 32-byte enc and 144 to 240 bytes of payload.
            w.put(&[0xfe, 0x0d])?;
            let extension = w.begin()?;
            w.put(&[0x00, 0x00, 0x01, 0x00, 0x01])?;
            w.put(&[*random.get(random::ECH_CONFIG_ID)?, 0x00, 0x20])?;
            w.put(random.get(random::ECH_ENC)?)?;
            let choice = usize::from(*random.get(random::ECH_LEN_CHOICE)? % 4);
            let payload_len = ECH_MIN_PAYLOAD_LEN + 32 * choice;
            let payload = w.begin()?;
            w.put(random.get(random::ECH_PAYLOAD)?.get(..payload_len)?)?;
            w.end(payload)?;
            w.end(extension)
        }
        15 => w.put(&[0xff, 0x01, 0x00, 0x01, 0x00]),
        _ => None,
    }
}

/// key_share: a GREASE entry, X25519MLKEM768 (ML-KEM-768 encapsulation key, then X25519), then
/// X25519. Both X25519 parts are real public keys; the ML-KEM key has valid coefficients.
fn write_key_share(
    w: &mut Writer<'_>,
    grease: &[u8; GREASE_VALUES],
    random: &[u8; CLIENT_HELLO_RANDOM_LEN],
) -> Option<()> {
    w.put(&[0x00, 0x33])?;
    let extension = w.begin()?;
    let shares = w.begin()?;
    w.put(&[grease[4], grease[4], 0x00, 0x01, 0x00])?;
    let hybrid_len = ML_KEM_768_ENCAPSULATION_KEY_LEN + 32;
    w.put(&GROUP_X25519_MLKEM768.to_be_bytes())?;
    w.put(&u16::try_from(hybrid_len).ok()?.to_be_bytes())?;
    for three in random.get(random::ML_KEM_COEFFICIENTS)?.chunks_exact(3) {
        let &[a, b, c] = three else { return None };
        // Two 12-bit draws, each reduced below q, packed as FIPS 203 ByteEncode_12 does.
        let low = u16::from_le_bytes([a, b & 0x0f]) % ML_KEM_Q;
        let high = (u16::from(b >> 4) | (u16::from(c) << 4)) % ML_KEM_Q;
        w.put(&[
            (low & 0xff) as u8,
            ((low >> 8) as u8) | (((high & 0x0f) as u8) << 4),
            (high >> 4) as u8,
        ])?;
    }
    w.put(random.get(random::ML_KEM_SEED)?)?;
    w.put(&x25519::public_key(
        random.get(random::X25519_HYBRID_SCALAR)?.try_into().ok()?,
    ))?;
    w.put(&[0x00, 0x1d, 0x00, 0x20])?;
    w.put(&x25519::public_key(
        random.get(random::X25519_SCALAR)?.try_into().ok()?,
    ))?;
    w.end(shares)?;
    w.end(extension)
}

/// Writes front to back into a caller buffer; `begin`/`end` fill in 2-byte length prefixes.
struct Writer<'a> {
    out: &'a mut [u8],
    at: usize,
}

impl Writer<'_> {
    fn put(&mut self, bytes: &[u8]) -> Option<()> {
        self.out
            .get_mut(self.at..self.at + bytes.len())?
            .copy_from_slice(bytes);
        self.at += bytes.len();
        Some(())
    }

    /// Reserves a 2-byte length and returns where it is.
    fn begin(&mut self) -> Option<usize> {
        let at = self.at;
        self.put(&[0, 0])?;
        Some(at)
    }

    /// Writes the length of everything after the prefix at `at`.
    fn end(&mut self, at: usize) -> Option<()> {
        let len = u16::try_from(self.at - at - 2).ok()?;
        self.out
            .get_mut(at..at + 2)?
            .copy_from_slice(&len.to_be_bytes());
        Some(())
    }
}

/// What the front answered a TDLib-shaped hello with: enough to shape our reply like it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FrontProfile {
    /// Payload length of the ServerHello record.
    pub server_hello_len: u16,
    pub cipher_suite: [u8; 2],
    /// Extension types of the ServerHello in order; the first `extension_count` are set.
    pub extensions: [u16; MAX_EXTENSIONS],
    pub extension_count: u8,
    /// The key_share group and the length of the server's share.
    pub group: u16,
    pub key_share_len: u16,
    /// Lengths of the first MAX_FLIGHT_RECORDS ApplicationData records of the flight.
    pub records: [u16; MAX_FLIGHT_RECORDS],
    /// Every ApplicationData record of the flight, also those past MAX_FLIGHT_RECORDS.
    pub record_count: u16,
    /// Sum of the payload lengths of every ApplicationData record of the flight.
    pub flight_len: u32,
    /// From our hello sent to the first byte of the answer, less one round trip to the front:
    /// the front's own time to answer. Zero until the prober sets it.
    pub first_byte: Duration,
}

impl FrontProfile {
    pub fn extensions(&self) -> &[u16] {
        let count = usize::from(self.extension_count).min(MAX_EXTENSIONS);
        self.extensions.get(..count).unwrap_or_default()
    }

    /// The record lengths kept (at most MAX_FLIGHT_RECORDS of `record_count`).
    pub fn records(&self) -> &[u16] {
        let count = usize::from(self.record_count).min(MAX_FLIGHT_RECORDS);
        self.records.get(..count).unwrap_or_default()
    }

    /// Our one certificate record's length: the front's whole encrypted flight, cut to the
    /// 10 240 bytes iOS accepts (PROTOCOL.md §3.2).
    pub fn cert_len(&self) -> usize {
        (self.flight_len as usize).clamp(1, MAX_CERT_LEN)
    }

    /// True if the front names supported_versions before key_share, as nginx does.
    pub fn supported_versions_first(&self) -> bool {
        let position = |kind| self.extensions().iter().position(|&e| e == kind);
        match (
            position(EXTENSION_SUPPORTED_VERSIONS),
            position(EXTENSION_KEY_SHARE),
        ) {
            (Some(versions), Some(share)) => versions < share,
            _ => false,
        }
    }
}

impl fmt::Display for FrontProfile {
    /// One line: cipher, group, extension order, record sizes and time to the first byte.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let [high, low] = self.cipher_suite;
        write!(f, "cipher {high:02x}{low:02x}, group ")?;
        match self.group {
            GROUP_X25519 => f.write_str("x25519")?,
            GROUP_X25519_MLKEM768 => f.write_str("x25519mlkem768")?,
            other => write!(f, "{other:04x}")?,
        }
        write!(f, " ({}-byte share), extensions", self.key_share_len)?;
        for (i, kind) in self.extensions().iter().enumerate() {
            let separator = if i == 0 { " " } else { ", " };
            match *kind {
                EXTENSION_SUPPORTED_VERSIONS => write!(f, "{separator}supported_versions")?,
                EXTENSION_KEY_SHARE => write!(f, "{separator}key_share")?,
                other => write!(f, "{separator}{other:04x}")?,
            }
        }
        write!(f, "; ServerHello {} bytes, flight ", self.server_hello_len)?;
        for (i, len) in self.records().iter().enumerate() {
            write!(f, "{}{len}", if i == 0 { "" } else { " + " })?;
        }
        if usize::from(self.record_count) > MAX_FLIGHT_RECORDS {
            write!(f, " + ...")?;
        }
        let records = if self.record_count == 1 {
            "record"
        } else {
            "records"
        };
        write!(
            f,
            " = {} bytes in {} {records}; first byte after {:.1} ms",
            self.flight_len,
            self.record_count,
            self.first_byte.as_secs_f64() * 1000.0
        )
    }
}

/// Why the bytes are not (yet) a TLS 1.3 first flight.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FlightError {
    /// The bytes end before the ServerHello or the first ApplicationData record is whole.
    Truncated,
    /// The first record is not a well-formed ServerHello, or a record that cannot follow it.
    Malformed,
    /// The front asked for another key share (RFC 8446 §4.1.4): it takes neither of ours.
    HelloRetryRequest,
    /// The ServerHello does not select TLS 1.3.
    NotTls13,
    /// An alert where the flight should be.
    Alert,
}

impl fmt::Display for FlightError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            FlightError::Truncated => "the answer ends early",
            FlightError::Malformed => "not a TLS ServerHello",
            FlightError::HelloRetryRequest => "a HelloRetryRequest",
            FlightError::NotTls13 => "not TLS 1.3",
            FlightError::Alert => "an alert",
        })
    }
}

/// Reads the front's answer so far: the ServerHello record, an optional CCS, then every whole
/// ApplicationData record up to the first other record or the end. `first_byte` is left zero.
/// Never panics; a partial record at the end is ignored.
pub fn parse_flight(bytes: &[u8]) -> Result<FrontProfile, FlightError> {
    // The first byte decides between garbage, an alert and a handshake.
    match bytes.first() {
        None => return Err(FlightError::Truncated),
        Some(&HANDSHAKE) => {}
        Some(&ALERT) => return Err(FlightError::Alert),
        Some(_) => return Err(FlightError::Malformed),
    }
    let (_, server_hello, mut rest) = split_record(bytes).ok_or(FlightError::Truncated)?;
    let mut profile = read_server_hello(server_hello)?;
    let mut change_cipher_spec_seen = false;
    while let Some((kind, payload, after)) = split_record(rest) {
        match kind {
            CHANGE_CIPHER_SPEC if !change_cipher_spec_seen && profile.record_count == 0 => {
                change_cipher_spec_seen = true;
            }
            APPLICATION_DATA if (1..=MAX_ENCRYPTED_RECORD_LEN).contains(&payload.len()) => {
                let len = u16::try_from(payload.len()).map_err(|_| FlightError::Malformed)?;
                if let Some(slot) = profile.records.get_mut(usize::from(profile.record_count)) {
                    *slot = len;
                }
                profile.record_count = profile.record_count.saturating_add(1);
                profile.flight_len = profile.flight_len.saturating_add(u32::from(len));
            }
            ALERT if profile.record_count == 0 => return Err(FlightError::Alert),
            _ if profile.record_count == 0 => return Err(FlightError::Malformed),
            // Anything after the flight (an alert, say) ends it.
            _ => break,
        }
        rest = after;
    }
    if profile.record_count == 0 {
        return Err(FlightError::Truncated);
    }
    Ok(profile)
}

/// The first whole record of `bytes`: content type, payload and what follows. None if the
/// record is not whole yet.
fn split_record(bytes: &[u8]) -> Option<(u8, &[u8], &[u8])> {
    let &[kind, _, _, high, low] = bytes.get(..HEADER_LEN)? else {
        return None;
    };
    let len = usize::from(u16::from_be_bytes([high, low]));
    let payload = bytes.get(HEADER_LEN..HEADER_LEN + len)?;
    Some((kind, payload, bytes.get(HEADER_LEN + len..)?))
}

/// Reads a ServerHello record's payload (RFC 8446 §4.1.3) into a profile with no records yet.
fn read_server_hello(record: &[u8]) -> Result<FrontProfile, FlightError> {
    let malformed = FlightError::Malformed;
    let mut r = Reader(record);
    if r.u8()? != SERVER_HELLO {
        return Err(malformed);
    }
    let len = r.take(3)?;
    if len
        .iter()
        .fold(0usize, |acc, &b| (acc << 8) | usize::from(b))
        != r.0.len()
    {
        return Err(malformed);
    }
    r.take(2)?; // legacy_version, 03 03 in TLS 1.3
    if r.take(32)? == HELLO_RETRY_RANDOM {
        return Err(FlightError::HelloRetryRequest);
    }
    let session_id_len = usize::from(r.u8()?);
    if session_id_len > 32 {
        return Err(malformed);
    }
    r.take(session_id_len)?;
    let cipher_suite: [u8; 2] = r.take(2)?.try_into().map_err(|_| malformed)?;
    r.take(1)?; // legacy_compression_method
    let extensions_len = r.u16()?;
    let mut extensions = Reader(r.take(extensions_len)?);
    if !r.0.is_empty() {
        return Err(malformed);
    }

    let mut profile = FrontProfile {
        server_hello_len: u16::try_from(record.len()).map_err(|_| malformed)?,
        cipher_suite,
        extensions: [0; MAX_EXTENSIONS],
        extension_count: 0,
        group: 0,
        key_share_len: 0,
        records: [0; MAX_FLIGHT_RECORDS],
        record_count: 0,
        flight_len: 0,
        first_byte: Duration::ZERO,
    };
    let mut tls13 = false;
    while !extensions.0.is_empty() {
        let kind = u16::try_from(extensions.u16()?).map_err(|_| malformed)?;
        let body_len = extensions.u16()?;
        let mut body = Reader(extensions.take(body_len)?);
        let slot = profile
            .extensions
            .get_mut(usize::from(profile.extension_count))
            .ok_or(malformed)?;
        *slot = kind;
        profile.extension_count += 1;
        match kind {
            EXTENSION_SUPPORTED_VERSIONS => tls13 = body.0 == TLS13,
            EXTENSION_KEY_SHARE => {
                profile.group = u16::try_from(body.u16()?).map_err(|_| malformed)?;
                let share_len = body.u16()?;
                body.take(share_len)?;
                if !body.0.is_empty() {
                    return Err(malformed);
                }
                profile.key_share_len = u16::try_from(share_len).map_err(|_| malformed)?;
            }
            _ => {}
        }
    }
    if !tls13 {
        return Err(FlightError::NotTls13);
    }
    Ok(profile)
}

/// Reads a ServerHello front to back; a length that does not fit is Malformed.
struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn take(&mut self, len: usize) -> Result<&'a [u8], FlightError> {
        if len > self.0.len() {
            return Err(FlightError::Malformed);
        }
        let (taken, rest) = self.0.split_at(len);
        self.0 = rest;
        Ok(taken)
    }

    fn u8(&mut self) -> Result<u8, FlightError> {
        let (&byte, rest) = self.0.split_first().ok_or(FlightError::Malformed)?;
        self.0 = rest;
        Ok(byte)
    }

    fn u16(&mut self) -> Result<usize, FlightError> {
        let high = self.u8()?;
        let low = self.u8()?;
        Ok(usize::from(u16::from_be_bytes([high, low])))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proto::testdata::{NGINX_FLIGHT, TDLIB_CAPTURES, TDLIB_HELLO_LEN};

    fn draws(seed: u8) -> [u8; CLIENT_HELLO_RANDOM_LEN] {
        let mut state = 0x9e37_79b9_7f4a_7c15u64 ^ u64::from(seed);
        std::array::from_fn(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state as u8
        })
    }

    fn hello(domain: &[u8], seed: u8) -> Vec<u8> {
        let mut out = [0; MAX_CLIENT_HELLO_LEN];
        let len = client_hello(&mut out, domain, &draws(seed)).unwrap();
        out[..len].to_vec()
    }

    /// (type, body) of each extension of a hello record, checked for consistent lengths.
    fn extensions(record: &[u8]) -> Vec<(u16, Vec<u8>)> {
        assert_eq!(record[..3], [0x16, 0x03, 0x01]);
        assert_eq!(
            usize::from(u16::from_be_bytes([record[3], record[4]])) + 5,
            record.len()
        );
        assert_eq!(record[5..7], [0x01, 0x00]);
        assert_eq!(
            usize::from(u16::from_be_bytes([record[7], record[8]])) + 9,
            record.len()
        );
        let mut at = 9 + 2 + 32;
        at += 1 + usize::from(record[at]);
        at += 2 + usize::from(u16::from_be_bytes([record[at], record[at + 1]]));
        at += 1 + usize::from(record[at]);
        let total = usize::from(u16::from_be_bytes([record[at], record[at + 1]]));
        at += 2;
        assert_eq!(at + total, record.len());
        let mut out = Vec::new();
        while at < record.len() {
            let kind = u16::from_be_bytes([record[at], record[at + 1]]);
            let len = usize::from(u16::from_be_bytes([record[at + 2], record[at + 3]]));
            out.push((kind, record[at + 4..at + 4 + len].to_vec()));
            at += 4 + len;
        }
        assert_eq!(at, record.len());
        out
    }

    fn is_grease(kind: u16) -> bool {
        kind & 0x0f0f == 0x0a0a
    }

    #[test]
    fn writes_a_hello_as_long_and_shaped_as_tdlibs() {
        let ours = hello(b"www.example.com", 1);
        let theirs = &TDLIB_CAPTURES[0].bytes[..TDLIB_HELLO_LEN];
        // TDLib's ECH payload is 144 to 240 bytes; the capture has 144.
        let ech = |record: &[u8]| {
            extensions(record)
                .into_iter()
                .find(|(kind, _)| *kind == 0xfe0d)
                .unwrap()
                .1
                .len()
        };
        assert_eq!(ours.len() - ech(&ours), theirs.len() - ech(theirs));
        let kinds = |record: &[u8]| {
            let mut kinds: Vec<u16> = extensions(record)
                .into_iter()
                .map(|(kind, _)| if is_grease(kind) { 0x0a0a } else { kind })
                .collect();
            kinds.sort_unstable();
            kinds
        };
        assert_eq!(kinds(&ours), kinds(theirs));
        assert_eq!(ours[43..44], theirs[43..44]);
        assert_eq!(ours[76..78], theirs[76..78], "the cipher suite list");
        assert_eq!(ours[80..112], theirs[80..112], "the cipher suite list");
    }

    #[test]
    fn our_own_hello_parser_reads_it_up_to_the_digest() {
        let mut record = hello(b"example.com", 5);
        let verified =
            crate::proto::hello::verify(&mut record, &[0; 16], b"example.com", 0, Duration::ZERO);
        assert_eq!(verified, Err(crate::proto::hello::Rejection::BadDigest));
    }

    #[test]
    fn offers_x25519mlkem768_then_x25519_with_valid_shares() {
        let record = hello(b"front.example.org", 2);
        let all = extensions(&record);
        let share = &all.iter().find(|(kind, _)| *kind == 0x0033).unwrap().1;
        assert_eq!(
            usize::from(u16::from_be_bytes([share[0], share[1]])) + 2,
            share.len()
        );
        assert!(is_grease(u16::from_be_bytes([share[2], share[3]])));
        assert_eq!(share[4..7], [0x00, 0x01, 0x00]);
        assert_eq!(share[7..11], [0x11, 0xec, 0x04, 0xc0]);
        let hybrid = &share[11..11 + 1216];
        for three in hybrid[..ML_KEM_COEFFICIENT_BYTES].chunks_exact(3) {
            let low = u16::from(three[0]) | (u16::from(three[1] & 0x0f) << 8);
            let high = u16::from(three[1] >> 4) | (u16::from(three[2]) << 4);
            assert!(low < ML_KEM_Q && high < ML_KEM_Q);
        }
        let draws = draws(2);
        assert_eq!(
            hybrid[1184..],
            x25519::public_key(draws[random::X25519_HYBRID_SCALAR].try_into().unwrap())
        );
        assert_eq!(share[1227..1231], [0x00, 0x1d, 0x00, 0x20]);
        assert_eq!(share.len(), 1231 + 32);
        let sni = &all.iter().find(|(kind, _)| *kind == 0x0000).unwrap().1;
        assert_eq!(sni[5..], *b"front.example.org");
        let groups = &all.iter().find(|(kind, _)| *kind == 0x000a).unwrap().1;
        assert_eq!(groups[4..6], [0x11, 0xec]);
    }

    #[test]
    fn shuffles_the_extensions_with_the_random_input() {
        let order = |seed| -> Vec<u16> {
            extensions(&hello(b"www.example.com", seed))
                .into_iter()
                .map(|(kind, _)| kind)
                .filter(|&kind| !is_grease(kind))
                .collect()
        };
        assert_ne!(order(3), order(4));
        assert_eq!(order(3), order(3));
    }

    #[test]
    fn refuses_empty_and_long_domains_and_short_buffers() {
        let mut out = [0; MAX_CLIENT_HELLO_LEN];
        assert_eq!(client_hello(&mut out, b"", &draws(0)), None);
        assert_eq!(client_hello(&mut out, &[b'a'; 183], &draws(0)), None);
        let longest = client_hello(&mut out, &[b'a'; 182], &[0xff; CLIENT_HELLO_RANDOM_LEN]);
        assert!(longest.is_some_and(|len| len <= MAX_CLIENT_HELLO_LEN));
        assert_eq!(
            client_hello(&mut out[..1000], b"example.com", &draws(0)),
            None
        );
    }

    #[test]
    fn reads_nginxs_answer_to_a_tdlib_hello() {
        let profile = parse_flight(NGINX_FLIGHT).unwrap();
        assert_eq!(profile.server_hello_len, 122);
        assert_eq!(profile.cipher_suite, [0x13, 0x01]);
        assert_eq!(profile.extensions(), [0x002b, 0x0033]);
        assert!(profile.supported_versions_first());
        assert_eq!(profile.group, GROUP_X25519);
        assert_eq!(profile.key_share_len, 32);
        assert_eq!(profile.records(), [42, 851, 281, 53]);
        assert_eq!(profile.flight_len, 1227);
        assert_eq!(profile.cert_len(), 1227);
        assert_eq!(
            profile.to_string(),
            "cipher 1301, group x25519 (32-byte share), extensions supported_versions, \
             key_share; ServerHello 122 bytes, flight 42 + 851 + 281 + 53 = 1227 bytes in 4 \
             records; first byte after 0.0 ms"
        );
    }

    #[test]
    fn reads_whole_records_so_far_and_waits_for_the_first() {
        let server_hello_and_ccs = 5 + 122 + 6;
        for end in 0..server_hello_and_ccs + 5 + 42 {
            assert_eq!(
                parse_flight(&NGINX_FLIGHT[..end]),
                Err(FlightError::Truncated),
                "{end}"
            );
        }
        let first = parse_flight(&NGINX_FLIGHT[..server_hello_and_ccs + 5 + 42]).unwrap();
        assert_eq!(first.records(), [42]);
        let partial = parse_flight(&NGINX_FLIGHT[..NGINX_FLIGHT.len() - 1]).unwrap();
        assert_eq!(partial.records(), [42, 851, 281]);
    }

    #[test]
    fn counts_records_past_the_ones_it_keeps() {
        let mut flight = NGINX_FLIGHT[..5 + 122].to_vec();
        for len in 1..=10u16 {
            flight.extend([0x17, 0x03, 0x03]);
            flight.extend(len.to_be_bytes());
            flight.extend(vec![0; usize::from(len)]);
        }
        // An alert after the flight ends it.
        flight.extend([0x15, 0x03, 0x03, 0x00, 0x02, 0x01, 0x00]);
        let profile = parse_flight(&flight).unwrap();
        assert_eq!(profile.record_count, 10);
        assert_eq!(profile.records(), [1, 2, 3, 4, 5, 6, 7, 8]);
        assert_eq!(profile.flight_len, 55);
    }

    #[test]
    fn names_alerts_retries_and_tls12() {
        assert_eq!(
            parse_flight(&[0x15, 0x03, 0x03, 0x00, 0x02, 0x02, 0x28]),
            Err(FlightError::Alert)
        );
        let mut alert_after_hello = NGINX_FLIGHT[..5 + 122].to_vec();
        alert_after_hello.extend([0x15, 0x03, 0x03, 0x00, 0x02, 0x02, 0x28]);
        assert_eq!(parse_flight(&alert_after_hello), Err(FlightError::Alert));

        let mut retry = NGINX_FLIGHT.to_vec();
        retry[11..43].copy_from_slice(&HELLO_RETRY_RANDOM);
        assert_eq!(parse_flight(&retry), Err(FlightError::HelloRetryRequest));

        // supported_versions naming 03 03 instead of 03 04.
        let mut tls12 = NGINX_FLIGHT.to_vec();
        assert_eq!(tls12[81..87], [0x00, 0x2b, 0x00, 0x02, 0x03, 0x04]);
        tls12[86] = 0x03;
        assert_eq!(parse_flight(&tls12), Err(FlightError::NotTls13));

        assert_eq!(
            parse_flight(b"HTTP/1.1 400 Bad Request\r\n"),
            Err(FlightError::Malformed)
        );
    }

    #[test]
    fn garbage_and_damaged_flights_never_panic() {
        let mut state = 0x2545_f491_4f6c_dd1du64;
        let mut next = move || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        };
        for round in 0..5000 {
            let input: Vec<u8> = if round % 2 == 0 {
                let len = (next() % 600) as usize;
                let mut bytes: Vec<u8> = (0..len).map(|_| next() as u8).collect();
                if let Some(first) = bytes.first_mut() {
                    *first = 0x16;
                }
                bytes
            } else {
                let mut bytes = NGINX_FLIGHT.to_vec();
                for _ in 0..(next() % 4 + 1) {
                    let position = (next() % bytes.len() as u64) as usize;
                    bytes[position] = next() as u8;
                }
                bytes.truncate((next() % (bytes.len() as u64 + 1)) as usize);
                bytes
            };
            if let Ok(profile) = parse_flight(&input) {
                assert!(profile.record_count >= 1);
                assert!(profile.cert_len() <= MAX_CERT_LEN);
                let _ = profile.to_string();
            }
        }
    }
}
