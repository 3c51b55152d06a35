//! TLS record headers and the deframer for the client's stream after the handshake
//! (docs/PROTOCOL.md §4). Works in place on caller buffers; never allocates.

pub const HEADER_LEN: usize = 5;
pub const CHANGE_CIPHER_SPEC: u8 = 0x14;
pub const ALERT: u8 = 0x15;
pub const HANDSHAKE: u8 = 0x16;
pub const APPLICATION_DATA: u8 = 0x17;
/// Largest payload feint puts in one record to the client (RFC 8446 §5.1: 2^14).
pub const MAX_PAYLOAD_LEN: usize = 16384;
/// Smallest ApplicationData payload a real TLS 1.3 server sends: one byte of content, the inner
/// content type and the 16-byte AEAD tag (RFC 8446 §5.2). feint sends no smaller record when
/// it can help it.
pub const MIN_PAYLOAD_LEN: usize = 18;
/// Largest ApplicationData payload accepted from a client (2^14 + 256, as telemt).
pub const MAX_CLIENT_RECORD_LEN: usize = 16640;
/// The record version of every record after the hello (RFC 8446 §5.1).
pub const TLS12_VERSION: [u8; 2] = [0x03, 0x03];
/// The one CCS body a client may send (RFC 8446 §5: middlebox compatibility).
pub const CHANGE_CIPHER_SPEC_BODY: u8 = 0x01;

/// Writes `17 03 03` and the BE length into `out`.
pub fn write_application_data_header(out: &mut [u8; HEADER_LEN], payload_len: u16) {
    let [high, low] = payload_len.to_be_bytes();
    *out = [
        APPLICATION_DATA,
        TLS12_VERSION[0],
        TLS12_VERSION[1],
        high,
        low,
    ];
}

/// Why the client's record stream was refused after the handshake; the connection is closed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RecordError {
    /// A content type other than one leading CCS and then ApplicationData.
    UnexpectedType,
    /// A record version other than `03 03`.
    BadVersion,
    /// A zero length or one over MAX_CLIENT_RECORD_LEN.
    BadLength,
    /// A CCS whose body is not the single byte `01`.
    BadChangeCipherSpec,
}

impl std::fmt::Display for RecordError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            RecordError::UnexpectedType => "unexpected record type",
            RecordError::BadVersion => "bad record version",
            RecordError::BadLength => "bad record length",
            RecordError::BadChangeCipherSpec => "bad change cipher spec",
        })
    }
}

/// Where the deframer stands in the client's stream.
#[derive(Clone, Copy, Default, PartialEq, Eq)]
enum Phase {
    /// Nothing yet: a CCS or the first ApplicationData may come.
    #[default]
    Start,
    /// The CCS was seen; only ApplicationData may follow.
    AfterChangeCipherSpec,
    /// ApplicationData was seen; only ApplicationData may follow.
    Data,
    /// An error was returned; the stream stays refused.
    Failed(RecordError),
}

/// Strips record framing from the client's byte stream, across reads of any size.
/// Accepts at most one CCS (body `01`) before the first ApplicationData, then ApplicationData only.
#[derive(Clone, Default)]
pub struct Deframer {
    /// The header being read; `header_len` of its bytes are valid.
    header: [u8; HEADER_LEN],
    header_len: u8,
    /// Body bytes still to come in the current record; 0 while reading a header.
    body_left: u16,
    /// Content type of the record whose body is being read.
    body_type: u8,
    phase: Phase,
}

impl Deframer {
    pub fn new() -> Self {
        Self::default()
    }

    /// Takes the raw bytes just read in `buf`, moves their ApplicationData payload bytes to the
    /// front of `buf` in order and returns how many there are. Partial headers and CCS bodies
    /// are remembered for the next call. After an error every later call fails the same way.
    pub fn deframe(&mut self, buf: &mut [u8]) -> Result<usize, RecordError> {
        self.deframe_with(buf, |buf, from, to, len| {
            buf.copy_within(from..from + len, to)
        })
    }

    /// `deframe`, with the moving done by `take(buf, from, to, len)`, which must leave at
    /// `buf[to..to + len]` what is to be kept of `buf[from..from + len]`. The deframer calls
    /// it with `to ≤ from` and `from + len ≤ buf.len()`, for each run of payload in order, so
    /// a relay can decrypt, re-encrypt and move the payload in one pass.
    pub fn deframe_with(
        &mut self,
        buf: &mut [u8],
        take: impl FnMut(&mut [u8], usize, usize, usize),
    ) -> Result<usize, RecordError> {
        if let Phase::Failed(error) = self.phase {
            return Err(error);
        }
        match self.deframe_unchecked(buf, take) {
            Ok(len) => Ok(len),
            Err(error) => {
                self.phase = Phase::Failed(error);
                Err(error)
            }
        }
    }

    fn deframe_unchecked(
        &mut self,
        buf: &mut [u8],
        mut take: impl FnMut(&mut [u8], usize, usize, usize),
    ) -> Result<usize, RecordError> {
        // Payload goes to buf[..written]; `read` never falls behind `written`, so moving bytes
        // down never overwrites bytes not yet read.
        let mut read = 0;
        let mut written = 0;
        while read < buf.len() {
            if self.body_left == 0 {
                let Some(&byte) = buf.get(read) else { break };
                read += 1;
                self.push_header_byte(byte)?;
                continue;
            }
            let run = usize::from(self.body_left).min(buf.len() - read);
            if self.body_type == APPLICATION_DATA {
                take(buf, read, written, run);
                written += run;
            } else if buf.get(read) != Some(&CHANGE_CIPHER_SPEC_BODY) {
                return Err(RecordError::BadChangeCipherSpec);
            }
            read += run;
            // `run` is at most `body_left`, a u16.
            self.body_left -= run as u16;
        }
        Ok(written)
    }

    fn push_header_byte(&mut self, byte: u8) -> Result<(), RecordError> {
        let slot = self
            .header
            .get_mut(usize::from(self.header_len))
            .ok_or(RecordError::BadLength)?;
        *slot = byte;
        self.header_len += 1;
        if usize::from(self.header_len) < HEADER_LEN {
            return Ok(());
        }
        self.header_len = 0;
        let [content_type, major, minor, high, low] = self.header;
        let length = u16::from_be_bytes([high, low]);
        let next_phase = match (content_type, self.phase) {
            (CHANGE_CIPHER_SPEC, Phase::Start) => Phase::AfterChangeCipherSpec,
            (APPLICATION_DATA, Phase::Start | Phase::AfterChangeCipherSpec | Phase::Data) => {
                Phase::Data
            }
            _ => return Err(RecordError::UnexpectedType),
        };
        if [major, minor] != TLS12_VERSION {
            return Err(RecordError::BadVersion);
        }
        match content_type {
            CHANGE_CIPHER_SPEC if length != 1 => return Err(RecordError::BadChangeCipherSpec),
            APPLICATION_DATA if length == 0 || usize::from(length) > MAX_CLIENT_RECORD_LEN => {
                return Err(RecordError::BadLength)
            }
            _ => {}
        }
        self.phase = next_phase;
        self.body_type = content_type;
        self.body_left = length;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const CCS: [u8; 6] = [0x14, 0x03, 0x03, 0x00, 0x01, 0x01];

    fn application_data(payload: &[u8]) -> Vec<u8> {
        let mut header = [0; HEADER_LEN];
        write_application_data_header(&mut header, payload.len() as u16);
        [&header[..], payload].concat()
    }

    /// A CCS and three ApplicationData records, the last one of the largest size allowed.
    fn sample_stream() -> (Vec<u8>, Vec<u8>) {
        let payloads: Vec<Vec<u8>> = [70usize, 1, MAX_CLIENT_RECORD_LEN]
            .iter()
            .enumerate()
            .map(|(n, &len)| (0..len).map(|i| (i * 7 + n * 13) as u8).collect())
            .collect();
        let mut stream = CCS.to_vec();
        for payload in &payloads {
            stream.extend(application_data(payload));
        }
        (stream, payloads.concat())
    }

    fn deframe_in_chunks(stream: &[u8], cuts: &[usize]) -> Result<Vec<u8>, RecordError> {
        let mut deframer = Deframer::new();
        let mut output = Vec::new();
        let mut start = 0;
        for &end in cuts.iter().chain([&stream.len()]) {
            let mut chunk = stream[start..end].to_vec();
            let len = deframer.deframe(&mut chunk)?;
            output.extend_from_slice(&chunk[..len]);
            start = end;
        }
        Ok(output)
    }

    #[test]
    fn writes_application_data_header() {
        let mut header = [0; HEADER_LEN];
        write_application_data_header(&mut header, 0x1234);
        assert_eq!(header, [0x17, 0x03, 0x03, 0x12, 0x34]);
    }

    #[test]
    fn deframes_a_stream_read_in_one_piece() {
        let (stream, payload) = sample_stream();
        assert_eq!(deframe_in_chunks(&stream, &[]).unwrap(), payload);
    }

    #[test]
    fn deframes_a_stream_split_at_every_byte() {
        let (stream, payload) = sample_stream();
        for cut in 0..=stream.len() {
            assert_eq!(
                deframe_in_chunks(&stream, &[cut]).unwrap(),
                payload,
                "cut {cut}"
            );
        }
    }

    #[test]
    fn deframes_a_stream_fed_one_byte_at_a_time() {
        let (stream, payload) = sample_stream();
        let cuts: Vec<usize> = (1..stream.len()).collect();
        assert_eq!(deframe_in_chunks(&stream, &cuts).unwrap(), payload);
    }

    #[test]
    fn deframes_application_data_without_a_change_cipher_spec() {
        let stream = [application_data(b"abc"), application_data(b"de")].concat();
        assert_eq!(deframe_in_chunks(&stream, &[4]).unwrap(), b"abcde");
    }

    #[test]
    fn rejects_a_second_change_cipher_spec() {
        let stream = [CCS, CCS].concat();
        assert_eq!(
            deframe_in_chunks(&stream, &[]),
            Err(RecordError::UnexpectedType)
        );
    }

    #[test]
    fn rejects_change_cipher_spec_after_application_data() {
        let stream = [application_data(b"x"), CCS.to_vec()].concat();
        assert_eq!(
            deframe_in_chunks(&stream, &[]),
            Err(RecordError::UnexpectedType)
        );
    }

    #[test]
    fn rejects_handshake_alert_and_unknown_records() {
        for content_type in [HANDSHAKE, ALERT, 0x18, 0x00] {
            let stream = [content_type, 0x03, 0x03, 0x00, 0x01, 0x00];
            assert_eq!(
                deframe_in_chunks(&stream, &[]),
                Err(RecordError::UnexpectedType)
            );
        }
    }

    #[test]
    fn rejects_versions_other_than_tls12() {
        for version in [[0x03, 0x01], [0x03, 0x04], [0x00, 0x00]] {
            let stream = [0x17, version[0], version[1], 0x00, 0x01, 0x00];
            assert_eq!(
                deframe_in_chunks(&stream, &[]),
                Err(RecordError::BadVersion)
            );
        }
    }

    #[test]
    fn rejects_empty_and_oversized_application_data() {
        let too_long = (MAX_CLIENT_RECORD_LEN + 1) as u16;
        for length in [0, too_long, u16::MAX] {
            let [high, low] = length.to_be_bytes();
            let stream = [0x17, 0x03, 0x03, high, low];
            assert_eq!(deframe_in_chunks(&stream, &[]), Err(RecordError::BadLength));
        }
    }

    #[test]
    fn rejects_malformed_change_cipher_spec() {
        let wrong_body = [0x14, 0x03, 0x03, 0x00, 0x01, 0x02];
        let wrong_length = [0x14, 0x03, 0x03, 0x00, 0x02, 0x01, 0x01];
        for stream in [&wrong_body[..], &wrong_length[..]] {
            assert_eq!(
                deframe_in_chunks(stream, &[]),
                Err(RecordError::BadChangeCipherSpec)
            );
        }
    }

    #[test]
    fn stays_failed_after_an_error() {
        let mut deframer = Deframer::new();
        assert_eq!(
            deframer.deframe(&mut [0x16, 0x03, 0x03, 0x00, 0x01]),
            Err(RecordError::UnexpectedType)
        );
        let mut valid = application_data(b"ok");
        assert_eq!(
            deframer.deframe(&mut valid),
            Err(RecordError::UnexpectedType)
        );
    }

    #[test]
    fn an_empty_read_yields_nothing() {
        assert_eq!(Deframer::new().deframe(&mut []), Ok(0));
    }

    #[test]
    fn deframer_state_is_small() {
        assert!(std::mem::size_of::<Deframer>() <= 16);
    }

    #[test]
    fn garbage_never_panics() {
        let mut state = 0x2545_f491_4f6c_dd1du64;
        for _ in 0..2000 {
            let mut deframer = Deframer::new();
            for _ in 0..4 {
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                let len = (state % 64) as usize;
                let mut chunk: Vec<u8> = (0..len)
                    .map(|i| {
                        // Mostly plausible headers, so deeper states get exercised.
                        let byte = (state >> (i % 8 * 8)) as u8;
                        match i % 5 {
                            0 => [0x17, 0x14, byte][(byte % 3) as usize],
                            1 => 0x03,
                            2 => [0x03, byte][(byte % 2) as usize],
                            3 => 0x00,
                            _ => byte,
                        }
                    })
                    .collect();
                let _ = deframer.deframe(&mut chunk);
            }
        }
    }
}
