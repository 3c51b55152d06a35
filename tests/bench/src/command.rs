//! The bench's own request from the load client to the fake DC: the first 16 bytes of the
//! client's (decrypted) stream after the obfs2 header, or the first 16 raw bytes.

pub const COMMAND_LEN: usize = 16;
/// The byte the DC sends when it has taken every byte of an upload.
pub const ACK: u8 = b'A';

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Command {
    /// Echo every byte back; after `close_after` bytes (if non-zero) close the connection, so the
    /// DC and not the client closes first and TIME_WAIT never lands on a client-side port.
    Echo { close_after: u64 },
    /// Read and discard `bytes`, then send one ACK.
    Sink { bytes: u64 },
    /// Send `bytes` of filler.
    Source { bytes: u64 },
    /// Both at once: read `bytes`, send `bytes`, then one ACK once both are done.
    Both { bytes: u64 },
}

impl Command {
    pub fn encode(self) -> [u8; COMMAND_LEN] {
        let (kind, value) = match self {
            Command::Echo { close_after } => (b'E', close_after),
            Command::Sink { bytes } => (b'U', bytes),
            Command::Source { bytes } => (b'D', bytes),
            Command::Both { bytes } => (b'B', bytes),
        };
        let mut out = [0u8; COMMAND_LEN];
        out[..4].copy_from_slice(b"BNCH");
        out[4] = kind;
        out[8..].copy_from_slice(&value.to_le_bytes());
        out
    }

    pub fn decode(bytes: &[u8; COMMAND_LEN]) -> Option<Command> {
        if &bytes[..4] != b"BNCH" {
            return None;
        }
        let value = u64::from_le_bytes(bytes[8..].try_into().expect("8 bytes"));
        Some(match bytes[4] {
            b'E' => Command::Echo { close_after: value },
            b'U' => Command::Sink { bytes: value },
            b'D' => Command::Source { bytes: value },
            b'B' => Command::Both { bytes: value },
            _ => return None,
        })
    }

    /// Payload bytes the client receives in answer.
    pub fn bytes_back(self) -> u64 {
        match self {
            Command::Echo { .. } => 0,
            Command::Sink { .. } => 1,
            Command::Source { bytes } => bytes,
            Command::Both { bytes } => bytes + 1,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn commands_round_trip() {
        for command in [
            Command::Echo { close_after: 1 },
            Command::Sink { bytes: 1 << 33 },
            Command::Source { bytes: 7 },
            Command::Both { bytes: 0 },
        ] {
            assert_eq!(Command::decode(&command.encode()), Some(command));
        }
        assert_eq!(Command::decode(&[0; COMMAND_LEN]), None);
    }
}
