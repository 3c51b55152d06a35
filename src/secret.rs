//! The `ee` secret: 16-byte key and fronting domain; parsing from hex or base64url and
//! formatting for links (PROTOCOL.md §1). Never prints the key on its own.

/// A FakeTLS secret. `Debug` does not show the key.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret {
    pub key: [u8; 16],
    /// A valid lowercase DNS name of 4..=182 bytes.
    pub domain: String,
}

/// Why a secret was refused; each Display is one line for the user.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SecretError {
    /// A `dd` or plain 16-byte secret.
    NotFakeTls,
    /// Neither hex nor base64url/base64.
    BadEncoding,
    /// Too short to hold a key and a domain.
    TooShort,
    /// The domain part is not a DNS name of 4..=182 bytes.
    BadDomain,
}

impl Secret {
    /// Parses hex (first) or base64url / standard base64, padding optional.
    pub fn parse(text: &str) -> Result<Secret, SecretError> {
        todo!()
    }

    /// Validates a domain for `generate-secret` (lowercased first).
    pub fn with_domain(key: [u8; 16], domain: &str) -> Result<Secret, SecretError> {
        todo!()
    }

    /// `ee` + hex(key) + hex(domain).
    pub fn to_hex(&self) -> String {
        todo!()
    }

    /// base64url without padding of the binary form.
    pub fn to_base64(&self) -> String {
        todo!()
    }
}

/// The `tg://proxy` and `https://t.me/proxy` links for `host:port`, secret in hex.
pub fn links(secret: &Secret, host: &str, port: u16) -> [String; 2] {
    todo!()
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Secret")
            .field("domain", &self.domain)
            .finish_non_exhaustive()
    }
}
