//! obfuscated2 frames (PROTOCOL.md §5): the client's 64-byte header, read with the secret, and
//! the header feint sends to the DC, made without it.

use super::cipher::CtrState;

pub const FRAME_LEN: usize = 64;
/// Padded intermediate, the only tag accepted inside FakeTLS (PROTOCOL.md §5.3).
pub const TAG_PADDED_INTERMEDIATE: [u8; 4] = [0xdd; 4];

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Obfs2Error {
    /// The decrypted tag is not `dd dd dd dd`.
    BadTag,
}

impl std::fmt::Display for Obfs2Error {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        todo!()
    }
}

/// The client's frame, decoded.
pub struct ClientFrame {
    /// Signed DC id (PROTOCOL.md §5.4).
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
    todo!()
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
    todo!()
}
