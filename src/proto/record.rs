//! TLS record headers and the deframer for the client's stream after the handshake
//! (PROTOCOL.md §4). Works in place on caller buffers; never allocates.

pub const HEADER_LEN: usize = 5;
pub const CHANGE_CIPHER_SPEC: u8 = 0x14;
pub const ALERT: u8 = 0x15;
pub const HANDSHAKE: u8 = 0x16;
pub const APPLICATION_DATA: u8 = 0x17;
/// Largest payload feint puts in one record to the client (RFC 8446 §5.1: 2^14).
pub const MAX_PAYLOAD_LEN: usize = 16384;
/// Largest ApplicationData payload accepted from a client (2^14 + 256, as telemt).
pub const MAX_CLIENT_RECORD_LEN: usize = 16640;

/// Writes `17 03 03` and the BE length into `out`.
pub fn write_application_data_header(out: &mut [u8; HEADER_LEN], payload_len: u16) {
    todo!()
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
        todo!()
    }
}

/// Strips record framing from the client's byte stream, across reads of any size.
/// Accepts at most one CCS (body `01`) before the first ApplicationData, then ApplicationData only.
#[derive(Clone, Default)]
pub struct Deframer {
    // private state: header bytes seen so far, payload bytes left in the current record, phase
}

impl Deframer {
    pub fn new() -> Self {
        todo!()
    }

    /// Takes the raw bytes just read in `buf`, moves their ApplicationData payload bytes to the
    /// front of `buf` in order and returns how many there are. Partial headers and CCS bodies
    /// are remembered for the next call.
    pub fn deframe(&mut self, buf: &mut [u8]) -> Result<usize, RecordError> {
        todo!()
    }
}
