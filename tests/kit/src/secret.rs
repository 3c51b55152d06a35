//! The `ee` secret as the tests hold it: key16 and the domain (docs/PROTOCOL.md §1.1).

use crate::crypto::{fill_random, hex};

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Secret {
    pub key: [u8; 16],
    pub domain: String,
}

impl Secret {
    pub fn new(key: [u8; 16], domain: &str) -> Secret {
        Secret {
            key,
            domain: domain.to_string(),
        }
    }

    /// A fresh random key for `domain`.
    pub fn random(domain: &str) -> Secret {
        let mut key = [0; 16];
        fill_random(&mut key);
        Secret::new(key, domain)
    }

    /// `ee` ‖ hex(key) ‖ hex(domain), the form feint's command line takes.
    pub fn to_hex(&self) -> String {
        format!("ee{}{}", hex(&self.key), hex(self.domain.as_bytes()))
    }
}
