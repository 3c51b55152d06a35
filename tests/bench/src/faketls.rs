//! The client's side of FakeTLS (docs/PROTOCOL.md §2–§4): a Chrome-like 517-byte ClientHello signed
//! with key16, the check of the server's reply, and record framing after the handshake.

use std::io::{self, Read};
use std::time::{SystemTime, UNIX_EPOCH};

use crate::crypto::{hmac_sha256, random, random_array};

pub const HEADER_LEN: usize = 5;
/// Largest record payload real clients send (docs/PROTOCOL.md §4).
pub const CLIENT_RECORD_LEN: usize = 2878;
/// The client's ChangeCipherSpec, sent once before its first data record.
pub const CHANGE_CIPHER_SPEC: [u8; 6] = [0x14, 0x03, 0x03, 0x00, 0x01, 0x01];
const HELLO_LEN: usize = 517;
/// The largest reply record we accept (iOS's limit, docs/PROTOCOL.md §3.2).
const MAX_REPLY_RECORD: usize = 10240;

/// `17 03 03` and the BE length.
pub fn data_header(payload_len: usize) -> [u8; HEADER_LEN] {
    let len = u16::try_from(payload_len).expect("record payload fits 16 bits");
    let [hi, lo] = len.to_be_bytes();
    [0x17, 0x03, 0x03, hi, lo]
}

/// A ClientHello record for `domain`, signed with key16 at unix time `now`, as in docs/PROTOCOL.md
/// §2.2. Returns the record and its client random.
pub fn client_hello(key16: &[u8; 16], domain: &[u8], now: u32) -> (Vec<u8>, [u8; 32]) {
    let grease = |b: u8| (b & 0xf0) | 0x0a;
    let g: [u8; 4] = random_array();
    let mut extensions = Vec::with_capacity(512);
    let mut push_extension = |kind: [u8; 2], body: &[u8]| {
        extensions.extend_from_slice(&kind);
        extensions.extend_from_slice(&(body.len() as u16).to_be_bytes());
        extensions.extend_from_slice(body);
    };
    push_extension([grease(g[0]), grease(g[0])], &[]);
    let mut sni = Vec::with_capacity(domain.len() + 5);
    sni.extend_from_slice(&((domain.len() + 3) as u16).to_be_bytes());
    sni.push(0);
    sni.extend_from_slice(&(domain.len() as u16).to_be_bytes());
    sni.extend_from_slice(domain);
    push_extension([0x00, 0x00], &sni);
    push_extension([0x00, 0x17], &[]);
    push_extension([0xff, 0x01], &[0x00]);
    push_extension(
        [0x00, 0x0a],
        &[
            0x00,
            0x08,
            grease(g[1]),
            grease(g[1]),
            0x00,
            0x1d,
            0x00,
            0x17,
            0x00,
            0x18,
        ],
    );
    push_extension([0x00, 0x0b], &[0x01, 0x00]);
    push_extension([0x00, 0x10], b"\x00\x0c\x02h2\x08http/1.1");
    push_extension(
        [0x00, 0x0d],
        &[0x00, 0x08, 0x04, 0x03, 0x08, 0x04, 0x04, 0x01, 0x05, 0x03],
    );
    let mut key_share = vec![0x00, 0x29, grease(g[1]), grease(g[1]), 0x00, 0x01, 0x00];
    key_share.extend_from_slice(&[0x00, 0x1d, 0x00, 0x20]);
    key_share.extend_from_slice(&random_array::<32>());
    push_extension([0x00, 0x33], &key_share);
    push_extension([0x00, 0x2d], &[0x01, 0x01]);
    push_extension(
        [0x00, 0x2b],
        &[0x06, grease(g[2]), grease(g[2]), 0x03, 0x04, 0x03, 0x03],
    );
    push_extension([grease(g[3]), grease(g[3])], &[0x00]);

    let mut body = Vec::with_capacity(HELLO_LEN);
    body.extend_from_slice(&[0x03, 0x03]);
    body.extend_from_slice(&[0; 32]);
    body.push(32);
    body.extend_from_slice(&random_array::<32>());
    let suites = [
        grease(g[0]),
        grease(g[0]),
        0x13,
        0x01,
        0x13,
        0x02,
        0x13,
        0x03,
        0xc0,
        0x2b,
        0xc0,
        0x2f,
    ];
    body.extend_from_slice(&(suites.len() as u16).to_be_bytes());
    body.extend_from_slice(&suites);
    body.extend_from_slice(&[0x01, 0x00]);
    // Pad with extension 00 15 to 517 bytes, as clients did before ML-KEM (docs/PROTOCOL.md §2.3).
    let fixed = HEADER_LEN + 4 + body.len() + 2 + extensions.len() + 4;
    let padding = HELLO_LEN.saturating_sub(fixed);
    let mut padded = extensions;
    padded.extend_from_slice(&[0x00, 0x15]);
    padded.extend_from_slice(&(padding as u16).to_be_bytes());
    padded.resize(padded.len() + padding, 0);
    body.extend_from_slice(&(padded.len() as u16).to_be_bytes());
    body.extend_from_slice(&padded);

    let mut record = Vec::with_capacity(HEADER_LEN + 4 + body.len());
    record.extend_from_slice(&[0x16, 0x03, 0x01]);
    record.extend_from_slice(&((body.len() + 4) as u16).to_be_bytes());
    record.push(0x01);
    record.extend_from_slice(&(body.len() as u32).to_be_bytes()[1..]);
    record.extend_from_slice(&body);

    let mut digest = hmac_sha256(key16, &[&record]);
    for (d, t) in digest[28..].iter_mut().zip(now.to_le_bytes()) {
        *d ^= t;
    }
    record[11..43].copy_from_slice(&digest);
    (record, digest)
}

pub fn unix_now() -> u32 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as u32)
}

/// Reads the server's reply (ServerHello, CCS, one ApplicationData record; docs/PROTOCOL.md §3)
/// from a blocking stream and checks its HMAC. Reads exactly the reply, nothing after it.
pub fn read_reply(
    stream: &mut impl Read,
    key16: &[u8; 16],
    client_random: &[u8; 32],
) -> io::Result<()> {
    let mut reply = Vec::with_capacity(4096);
    let take = |stream: &mut dyn Read, reply: &mut Vec<u8>, len: usize| -> io::Result<()> {
        let start = reply.len();
        reply.resize(start + len, 0);
        stream.read_exact(&mut reply[start..])
    };
    take(stream, &mut reply, HEADER_LEN)?;
    if reply[..3] != [0x16, 0x03, 0x03] {
        return Err(invalid("reply does not start with 16 03 03"));
    }
    let hello_len = u16::from_be_bytes([reply[3], reply[4]]) as usize;
    if !(38..=MAX_REPLY_RECORD).contains(&hello_len) {
        return Err(invalid("ServerHello length out of range"));
    }
    take(stream, &mut reply, hello_len + 11)?;
    let tail = &reply[HEADER_LEN + hello_len..];
    if tail[..9] != [0x14, 0x03, 0x03, 0x00, 0x01, 0x01, 0x17, 0x03, 0x03] {
        return Err(invalid("reply lacks CCS and one ApplicationData record"));
    }
    let cert_len = u16::from_be_bytes([tail[9], tail[10]]) as usize;
    if !(1..=MAX_REPLY_RECORD).contains(&cert_len) {
        return Err(invalid("fake certificate length out of range"));
    }
    take(stream, &mut reply, cert_len)?;
    let server_random: [u8; 32] = reply[11..43].try_into().expect("32 bytes");
    reply[11..43].fill(0);
    if hmac_sha256(key16, &[client_random, &reply]) != server_random {
        return Err(invalid(
            "server random is not HMAC(key, client random ‖ reply)",
        ));
    }
    Ok(())
}

fn invalid(what: &'static str) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, what)
}

/// Walks the server's `17 03 03` records across reads of any size and hands out payload slices
/// in place, without copying.
#[derive(Default)]
pub struct RecordReader {
    header: [u8; HEADER_LEN],
    header_have: usize,
    payload_left: usize,
}

impl RecordReader {
    /// Calls `payload` for each run of payload bytes in `data`, in order.
    pub fn walk(&mut self, data: &mut [u8], mut payload: impl FnMut(&mut [u8])) -> io::Result<()> {
        let mut at = 0;
        while at < data.len() {
            if self.payload_left > 0 {
                let n = self.payload_left.min(data.len() - at);
                payload(&mut data[at..at + n]);
                self.payload_left -= n;
                at += n;
                continue;
            }
            let n = (HEADER_LEN - self.header_have).min(data.len() - at);
            self.header[self.header_have..self.header_have + n].copy_from_slice(&data[at..at + n]);
            self.header_have += n;
            at += n;
            if self.header_have == HEADER_LEN {
                if self.header[..3] != [0x17, 0x03, 0x03] {
                    return Err(invalid("server record is not 17 03 03"));
                }
                let len = u16::from_be_bytes([self.header[3], self.header[4]]) as usize;
                if len == 0 || len > 16384 {
                    return Err(invalid("server record length out of range"));
                }
                self.payload_left = len;
                self.header_have = 0;
            }
        }
        Ok(())
    }
}

/// `count` bytes of payload wrapped in records of at most `record_len` bytes.
pub fn frame_records(payload: &[u8], record_len: usize) -> Vec<u8> {
    let mut out = Vec::with_capacity(payload.len() + payload.len() / record_len * 5 + 5);
    for chunk in payload.chunks(record_len) {
        out.extend_from_slice(&data_header(chunk.len()));
        out.extend_from_slice(chunk);
    }
    out
}

/// Bytes that are never read for meaning: bulk payload.
pub fn filler(len: usize) -> Vec<u8> {
    let mut out = vec![0u8; len];
    random(&mut out);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hello_is_517_bytes_and_carries_the_digest() {
        let key16 = [9u8; 16];
        let (mut record, client_random) = client_hello(&key16, b"example.com", 1_700_000_000);
        assert_eq!(record.len(), 517);
        assert_eq!(
            record[..11],
            [0x16, 0x03, 0x01, 0x02, 0x00, 0x01, 0x00, 0x01, 0xfc, 0x03, 0x03]
        );
        record[11..43].fill(0);
        let digest = hmac_sha256(&key16, &[&record]);
        let mut x = [0u8; 32];
        for i in 0..32 {
            x[i] = digest[i] ^ client_random[i];
        }
        assert_eq!(x[..28], [0; 28]);
        assert_eq!(
            u32::from_le_bytes(x[28..].try_into().unwrap()),
            1_700_000_000
        );
    }

    #[test]
    fn reply_with_the_right_hmac_is_accepted_and_a_flipped_byte_is_not() {
        let key16 = [3u8; 16];
        let client_random = [5u8; 32];
        let mut reply = vec![0x16, 0x03, 0x03, 0x00, 0x7a];
        reply.extend_from_slice(&[0x02, 0x00, 0x00, 0x76, 0x03, 0x03]);
        reply.extend_from_slice(&[0; 32]);
        reply.resize(5 + 0x7a, 0x42);
        reply.extend_from_slice(&[
            0x14, 0x03, 0x03, 0x00, 0x01, 0x01, 0x17, 0x03, 0x03, 0x00, 0x10,
        ]);
        reply.extend_from_slice(&[0x77; 16]);
        let server_random = hmac_sha256(&key16, &[&client_random, &reply]);
        reply[11..43].copy_from_slice(&server_random);
        read_reply(&mut &reply[..], &key16, &client_random).unwrap();
        reply[100] ^= 1;
        assert!(read_reply(&mut &reply[..], &key16, &client_random).is_err());
    }

    #[test]
    fn record_reader_survives_any_split() {
        let payload: Vec<u8> = (0..10_000u32).map(|i| i as u8).collect();
        let wire = frame_records(&payload, 777);
        for split in [1, 2, 5, 6, 100, 4096] {
            let mut reader = RecordReader::default();
            let mut got = Vec::new();
            let mut wire = wire.clone();
            for chunk in wire.chunks_mut(split) {
                reader.walk(chunk, |p| got.extend_from_slice(p)).unwrap();
            }
            assert_eq!(got, payload);
        }
    }
}
