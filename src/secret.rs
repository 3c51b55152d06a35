//! The `ee` secret: 16-byte key and fronting domain; parsing from hex or base64url and
//! formatting for links (docs/PROTOCOL.md §1). Never prints the key on its own: only `to_hex`,
//! `to_base64` and `links` show it, for the commands whose job is to print a secret.

use std::fmt;

/// The first byte of a FakeTLS secret (docs/PROTOCOL.md §1.1).
const FAKE_TLS_TAG: u8 = 0xee;
/// The first byte of a `dd` secret, which feint refuses with its own message.
const SECURE_TAG: u8 = 0xdd;
pub const KEY_LEN: usize = 16;
/// The desktop client asserts at least 21 secret bytes, so 4 domain bytes (docs/PROTOCOL.md §1.1).
pub const MIN_DOMAIN_LEN: usize = 4;
/// TDLib refuses longer secrets so the hello length cannot overflow (docs/PROTOCOL.md §1.1).
pub const MAX_DOMAIN_LEN: usize = 182;
const MAX_LABEL_LEN: usize = 63;

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

impl fmt::Display for SecretError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            SecretError::NotFakeTls => {
                "not an ee secret: feint only speaks FakeTLS; \
                 make an ee secret with `feint generate-secret DOMAIN`"
            }
            SecretError::BadEncoding => "the secret is neither hex nor base64",
            SecretError::TooShort => {
                "the secret is too short to hold ee, a 16-byte key and a domain"
            }
            SecretError::BadDomain => {
                "the secret's domain is not a lowercase DNS name of 4 to 182 bytes"
            }
        })
    }
}

impl std::error::Error for SecretError {}

impl fmt::Debug for Secret {
    /// Shows the domain only: a `{:?}` in a log line must not leak the key.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Secret")
            .field("domain", &self.domain)
            .finish_non_exhaustive()
    }
}

impl Secret {
    /// Parses hex (first) or base64url / standard base64, padding optional.
    pub fn parse(text: &str) -> Result<Secret, SecretError> {
        // Pasted secrets often carry a newline. TDLib tries hex first (docs/PROTOCOL.md §1.2); text
        // of hex digits only is never read as base64, so a hex secret cut short is reported as
        // bad hex. No ee secret in base64 is all hex digits: it starts with `7` and `g`..`v`.
        let text = text.trim();
        let bytes = if text.bytes().all(|b| b.is_ascii_hexdigit()) {
            hex_decode(text)
        } else {
            // Most words are valid base64. Unless the bytes look like some kind of secret, the
            // text is more likely a mistyped hex secret than a base64 one: say so.
            base64_decode(text).filter(|bytes| {
                matches!(bytes.first(), Some(&FAKE_TLS_TAG | &SECURE_TAG)) || bytes.len() == KEY_LEN
            })
        };
        let bytes = bytes.ok_or(SecretError::BadEncoding)?;
        Secret::from_bytes(&bytes)
    }

    /// The binary form: `0xee` ‖ key ‖ domain.
    fn from_bytes(bytes: &[u8]) -> Result<Secret, SecretError> {
        match bytes.first() {
            Some(&FAKE_TLS_TAG) if bytes.len() > 1 + KEY_LEN => {}
            Some(&FAKE_TLS_TAG) => return Err(SecretError::TooShort),
            _ => return Err(SecretError::NotFakeTls),
        }
        let mut key = [0u8; KEY_LEN];
        key.copy_from_slice(&bytes[1..1 + KEY_LEN]);
        let domain =
            std::str::from_utf8(&bytes[1 + KEY_LEN..]).map_err(|_| SecretError::BadDomain)?;
        // Uppercase is refused rather than folded: clients send the SNI exactly as stored, so a
        // secret with "Example.com" would make them send a name no browser sends.
        if !is_dns_name(domain) {
            return Err(SecretError::BadDomain);
        }
        Ok(Secret {
            key,
            domain: domain.to_owned(),
        })
    }

    /// Validates a domain for `generate-secret` (lowercased first).
    pub fn with_domain(key: [u8; 16], domain: &str) -> Result<Secret, SecretError> {
        let domain = domain.to_ascii_lowercase();
        if !is_dns_name(&domain) {
            return Err(SecretError::BadDomain);
        }
        Ok(Secret { key, domain })
    }

    /// `ee` + hex(key) + hex(domain).
    pub fn to_hex(&self) -> String {
        hex_encode(&self.to_bytes())
    }

    /// base64url without padding of the binary form.
    pub fn to_base64(&self) -> String {
        base64url_encode(&self.to_bytes())
    }

    fn to_bytes(&self) -> Vec<u8> {
        let mut bytes = Vec::with_capacity(1 + KEY_LEN + self.domain.len());
        bytes.push(FAKE_TLS_TAG);
        bytes.extend_from_slice(&self.key);
        bytes.extend_from_slice(self.domain.as_bytes());
        bytes
    }
}

/// The `tg://proxy` and `https://t.me/proxy` links for `host:port`, secret in hex.
///
/// `host` is a DNS name or an IP address; IPv6 may come with or without brackets and is written
/// bare with `:` escaped, as mtg does, because the `server` value is a host, not a URL authority.
/// The secret is hex because base64 links are reported broken on iOS.
pub fn links(secret: &Secret, host: &str, port: u16) -> [String; 2] {
    let host = host
        .strip_prefix('[')
        .and_then(|h| h.strip_suffix(']'))
        .unwrap_or(host);
    let query = format!(
        "server={}&port={}&secret={}",
        host.replace(':', "%3A"),
        port,
        secret.to_hex()
    );
    [
        format!("tg://proxy?{query}"),
        format!("https://t.me/proxy?{query}"),
    ]
}

/// True for a lowercase DNS name of 4..=182 bytes: dot-separated labels of 1..=63 bytes of
/// `a-z`, `0-9` and `-`, not starting or ending with `-`, no trailing dot.
///
/// A name without a dot (`localhost`) passes if long enough. An all-digit last label is
/// refused: RFC 6066 §3 forbids IP literals in SNI, so no browser would send `1.2.3.4`.
pub fn is_dns_name(name: &str) -> bool {
    if !(MIN_DOMAIN_LEN..=MAX_DOMAIN_LEN).contains(&name.len()) {
        return false;
    }
    let labels_ok = name.split('.').all(|label| {
        (1..=MAX_LABEL_LEN).contains(&label.len())
            && !label.starts_with('-')
            && !label.ends_with('-')
            && label
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
    });
    let last_is_numeric = name
        .rsplit('.')
        .next()
        .is_some_and(|label| label.bytes().all(|b| b.is_ascii_digit()));
    labels_ok && !last_is_numeric
}

const HEX_DIGITS: &[u8; 16] = b"0123456789abcdef";

fn hex_encode(bytes: &[u8]) -> String {
    let mut text = String::with_capacity(bytes.len() * 2);
    for &b in bytes {
        text.push(char::from(HEX_DIGITS[usize::from(b >> 4)]));
        text.push(char::from(HEX_DIGITS[usize::from(b & 0x0f)]));
    }
    text
}

/// Either case; `None` unless every character is a hex digit and the count is even.
fn hex_decode(text: &str) -> Option<Vec<u8>> {
    fn nibble(c: u8) -> Option<u8> {
        match c {
            b'0'..=b'9' => Some(c - b'0'),
            b'a'..=b'f' => Some(c - b'a' + 10),
            b'A'..=b'F' => Some(c - b'A' + 10),
            _ => None,
        }
    }
    let text = text.as_bytes();
    if text.is_empty() || !text.len().is_multiple_of(2) {
        return None;
    }
    text.chunks_exact(2)
        .map(|pair| Some(nibble(pair[0])? << 4 | nibble(pair[1])?))
        .collect()
}

const BASE64URL_ALPHABET: &[u8; 64] =
    b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

fn base64url_encode(bytes: &[u8]) -> String {
    let mut text = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for chunk in bytes.chunks(3) {
        let mut group = [0u8; 3];
        group[..chunk.len()].copy_from_slice(chunk);
        let bits = u32::from(group[0]) << 16 | u32::from(group[1]) << 8 | u32::from(group[2]);
        // n bytes carry 8n bits: 2, 3 or 4 characters of 6 bits.
        for i in 0..=chunk.len() {
            let index = (bits >> (18 - 6 * i)) & 0x3f;
            text.push(char::from(BASE64URL_ALPHABET[index as usize]));
        }
    }
    text
}

/// base64url or standard base64 (not mixed), with or without `=` padding, as TDLib accepts
/// (docs/PROTOCOL.md §1.2; we are laxer in allowing standard base64 without padding). Leftover bits
/// in the last character are ignored.
fn base64_decode(text: &str) -> Option<Vec<u8>> {
    let body = text.trim_end_matches('=');
    let padding = text.len() - body.len();
    if padding > 2 || (padding > 0 && !text.len().is_multiple_of(4)) {
        return None;
    }
    let url = body.contains(['-', '_']);
    let standard = body.contains(['+', '/']);
    if url && standard {
        return None;
    }
    let mut bytes = Vec::with_capacity(body.len() * 3 / 4);
    let mut bits: u32 = 0;
    let mut bit_count = 0;
    for c in body.bytes() {
        let value = match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'-' | b'+' => 62,
            b'_' | b'/' => 63,
            _ => return None,
        };
        bits = (bits << 6 | u32::from(value)) & 0xffff;
        bit_count += 6;
        if bit_count >= 8 {
            bit_count -= 8;
            bytes.push((bits >> bit_count) as u8);
        }
    }
    // One character past a full group carries only 6 bits: not a whole byte.
    if body.is_empty() || body.len() % 4 == 1 {
        return None;
    }
    Some(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// docs/PROTOCOL.md §10.
    const VECTOR_HEX: &str = "ee000102030405060708090a0b0c0d0e0f6578616d706c652e636f6d";
    const VECTOR_BASE64URL: &str = "7gABAgMEBQYHCAkKCwwNDg9leGFtcGxlLmNvbQ";

    fn vector() -> Secret {
        let mut key = [0u8; 16];
        for (i, b) in key.iter_mut().enumerate() {
            *b = i as u8;
        }
        Secret {
            key,
            domain: "example.com".into(),
        }
    }

    #[test]
    fn formats_the_protocol_vector() {
        assert_eq!(vector().to_hex(), VECTOR_HEX);
        assert_eq!(vector().to_base64(), VECTOR_BASE64URL);
    }

    #[test]
    fn parses_the_protocol_vector_in_every_encoding() {
        for text in [
            VECTOR_HEX,
            &VECTOR_HEX.to_uppercase(),
            VECTOR_BASE64URL,
            "7gABAgMEBQYHCAkKCwwNDg9leGFtcGxlLmNvbQ==",
            " 7gABAgMEBQYHCAkKCwwNDg9leGFtcGxlLmNvbQ\n",
        ] {
            assert_eq!(Secret::parse(text), Ok(vector()), "{text:?}");
        }
    }

    #[test]
    fn round_trips_keys_that_use_every_alphabet_difference() {
        // 0xfb 0xff bytes produce '-'/'_' in base64url and '+'/'/' in standard base64.
        for domain in ["abcd", "abcde.io", "abcdef.org"] {
            let secret = Secret::with_domain(
                [
                    0xfb, 0xff, 0xbf, 0xfe, 0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 0xfc, 0xff,
                ],
                domain,
            )
            .unwrap();
            let url = secret.to_base64();
            assert!(!url.contains('='));
            assert_eq!(Secret::parse(&url), Ok(secret.clone()));
            assert_eq!(Secret::parse(&secret.to_hex()), Ok(secret.clone()));
            let standard = url.replace('-', "+").replace('_', "/");
            let padded = format!("{standard}{}", "=".repeat((4 - standard.len() % 4) % 4));
            assert_eq!(Secret::parse(&standard), Ok(secret.clone()));
            assert_eq!(Secret::parse(&padded), Ok(secret.clone()));
        }
    }

    #[test]
    fn rejects_dd_and_plain_secrets() {
        assert_eq!(
            Secret::parse("dd000102030405060708090a0b0c0d0e0f"),
            Err(SecretError::NotFakeTls)
        );
        assert_eq!(
            Secret::parse("000102030405060708090a0b0c0d0e0f"),
            Err(SecretError::NotFakeTls)
        );
        // The same plain key in base64url.
        assert_eq!(
            Secret::parse("AAECAwQFBgcICQoLDA0ODw"),
            Err(SecretError::NotFakeTls)
        );
    }

    #[test]
    fn rejects_text_that_is_neither_hex_nor_base64() {
        for text in [
            "",
            "ee0",
            "ee00zz!",
            "7gAB*AgM",
            "7gABAgMEB",
            "7gA-Ag+M",
            "7gABAgM===",
            "7gABAg=M",
        ] {
            assert_eq!(
                Secret::parse(text),
                Err(SecretError::BadEncoding),
                "{text:?}"
            );
        }
    }

    #[test]
    fn rejects_an_ee_secret_without_a_domain() {
        assert_eq!(
            Secret::parse("ee000102030405060708090a0b0c0d0e0f"),
            Err(SecretError::TooShort)
        );
        assert_eq!(Secret::parse("ee0001"), Err(SecretError::TooShort));
    }

    #[test]
    fn rejects_secrets_with_bad_domains() {
        let prefix = &VECTOR_HEX[..34];
        for domain in [
            "abc",
            "Example.com",
            "-example.com",
            "example-.com",
            "exa_mple.com",
            "example..com",
            "example.com.",
            "1.2.3.4",
            "caf\u{e9}.com",
        ] {
            let text = format!("{prefix}{}", hex_encode(domain.as_bytes()));
            assert_eq!(
                Secret::parse(&text),
                Err(SecretError::BadDomain),
                "{domain}"
            );
        }
        let invalid_utf8 = format!("{prefix}ff6578616d706c65");
        assert_eq!(Secret::parse(&invalid_utf8), Err(SecretError::BadDomain));
    }

    #[test]
    fn accepts_domains_from_4_to_182_bytes() {
        let label = "a".repeat(63);
        let longest = format!("{label}.{label}.{}", "b".repeat(54));
        assert_eq!(longest.len(), 182);
        for domain in [
            "abcd",
            "localhost",
            "a-b.c0",
            "xn--80ak6aa92e.com",
            &longest,
        ] {
            let secret = Secret::with_domain([7; 16], domain).unwrap();
            assert_eq!(Secret::parse(&secret.to_hex()), Ok(secret));
        }
        let too_long = format!("{longest}b");
        assert_eq!(
            Secret::with_domain([7; 16], &too_long),
            Err(SecretError::BadDomain)
        );
        let long_label = format!("{}.com", "a".repeat(64));
        assert_eq!(
            Secret::with_domain([7; 16], &long_label),
            Err(SecretError::BadDomain)
        );
    }

    #[test]
    fn with_domain_lowercases_its_argument() {
        let secret = Secret::with_domain([0; 16], "Example.COM").unwrap();
        assert_eq!(secret.domain, "example.com");
    }

    #[test]
    fn debug_shows_the_domain_but_not_the_key() {
        let shown = format!(
            "{:?}",
            Secret::with_domain([0xab; 16], "example.com").unwrap()
        );
        assert!(shown.contains("example.com"));
        assert!(!shown.contains("171") && !shown.contains("ab") && !shown.contains("key"));
    }

    #[test]
    fn links_carry_host_port_and_hex_secret() {
        let [tg, tme] = links(&vector(), "203.0.113.7", 443);
        assert_eq!(
            tg,
            format!("tg://proxy?server=203.0.113.7&port=443&secret={VECTOR_HEX}")
        );
        assert_eq!(
            tme,
            format!("https://t.me/proxy?server=203.0.113.7&port=443&secret={VECTOR_HEX}")
        );
    }

    #[test]
    fn links_write_ipv6_bare_and_escaped() {
        for host in ["2001:db8::1", "[2001:db8::1]"] {
            let [tg, _] = links(&vector(), host, 8443);
            assert!(
                tg.starts_with("tg://proxy?server=2001%3Adb8%3A%3A1&port=8443&"),
                "{tg}"
            );
        }
    }
}
