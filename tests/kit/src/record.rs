//! TLS record framing after the handshake (docs/PROTOCOL.md §4).

use std::io::{self, Read};

pub const HANDSHAKE: u8 = 0x16;
pub const CHANGE_CIPHER_SPEC: u8 = 0x14;
pub const ALERT: u8 = 0x15;
pub const APPLICATION_DATA: u8 = 0x17;

/// The client's one ChangeCipherSpec record.
pub const CCS: [u8; 6] = [0x14, 0x03, 0x03, 0x00, 0x01, 0x01];

/// The largest record payload Telegram clients send (docs/PROTOCOL.md §4).
pub const MAX_CLIENT_PAYLOAD: usize = 2878;

/// The largest payload feint may put in a record towards the client (docs/PROTOCOL.md §4).
pub const MAX_SERVER_PAYLOAD: usize = 16384;

/// `payload` cut into `17 03 03` records of at most `max` bytes each.
pub fn frame_app_data(payload: &[u8], max: usize) -> Vec<u8> {
    let mut out = Vec::with_capacity(payload.len() + payload.len() / max * 5 + 5);
    for chunk in payload.chunks(max) {
        out.extend_from_slice(&[APPLICATION_DATA, 0x03, 0x03]);
        out.extend_from_slice(&(chunk.len() as u16).to_be_bytes());
        out.extend_from_slice(chunk);
    }
    out
}

/// One record read from a stream.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Record {
    pub kind: u8,
    pub version: [u8; 2],
    pub payload: Vec<u8>,
}

/// Reads one record. `Ok(None)` on a clean EOF before its first byte; an error on EOF inside it.
pub fn read_record(r: &mut impl Read) -> io::Result<Option<Record>> {
    let mut header = [0u8; 5];
    let mut got = 0;
    while got < header.len() {
        match r.read(&mut header[got..]) {
            Ok(0) if got == 0 => return Ok(None),
            Ok(0) => return Err(io::ErrorKind::UnexpectedEof.into()),
            Ok(n) => got += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    let len = u16::from_be_bytes([header[3], header[4]]) as usize;
    let mut payload = vec![0; len];
    r.read_exact(&mut payload)?;
    Ok(Some(Record {
        kind: header[0],
        version: [header[1], header[2]],
        payload,
    }))
}

/// The (content type, length) of each whole record in `bytes`, and the number of trailing bytes
/// that do not make a whole record. Used to compare the shape of two TLS answers whose contents
/// differ (fresh randoms and keys) but whose structure must not.
pub fn structure(bytes: &[u8]) -> (Vec<(u8, usize)>, usize) {
    let mut out = Vec::new();
    let mut at = 0;
    while at + 5 <= bytes.len() {
        let len = u16::from_be_bytes([bytes[at + 3], bytes[at + 4]]) as usize;
        if at + 5 + len > bytes.len() {
            break;
        }
        out.push((bytes[at], len));
        at += 5 + len;
    }
    (out, bytes.len() - at)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_and_reads_back() {
        let data: Vec<u8> = (0..7000u32).map(|i| i as u8).collect();
        let framed = frame_app_data(&data, MAX_CLIENT_PAYLOAD);
        let (shape, rest) = structure(&framed);
        assert_eq!(shape, vec![(0x17, 2878), (0x17, 2878), (0x17, 1244)]);
        assert_eq!(rest, 0);
        let mut r = &framed[..];
        let mut back = Vec::new();
        while let Some(rec) = read_record(&mut r).unwrap() {
            back.extend(rec.payload);
        }
        assert_eq!(back, data);
    }
}
