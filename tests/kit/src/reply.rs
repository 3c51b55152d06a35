//! The server's FakeTLS reply (docs/PROTOCOL.md §3): read it as TDLib does and check its HMAC.

use std::io::{self, Read};

use crate::crypto::hmac_sha256;
use crate::hello::RANDOM_RANGE;

/// iOS refuses a ServerHello or fake certificate record over this (docs/PROTOCOL.md §3.2).
pub const MAX_REPLY_RECORD: usize = 10240;

/// Reads exactly the three records of a FakeTLS reply the way TDLib does: `16 03 03` + length,
/// then exactly `14 03 03 00 01 01 17 03 03` + length. Fails with `InvalidData` on any other
/// framing and on a record over 10240 bytes.
pub fn read(r: &mut impl Read) -> io::Result<Vec<u8>> {
    let mut out = vec![0u8; 5];
    r.read_exact(&mut out)?;
    if out[..3] != [0x16, 0x03, 0x03] {
        return Err(invalid(format!("reply starts {:02x?}", &out[..5])));
    }
    let hello_len = u16::from_be_bytes([out[3], out[4]]) as usize;
    if hello_len > MAX_REPLY_RECORD {
        return Err(invalid(format!("ServerHello record of {hello_len} bytes")));
    }
    let start = out.len();
    out.resize(start + hello_len + 11, 0);
    r.read_exact(&mut out[start..])?;
    let mid = &out[start + hello_len..];
    if mid[..9] != [0x14, 0x03, 0x03, 0x00, 0x01, 0x01, 0x17, 0x03, 0x03] {
        return Err(invalid(format!(
            "after the ServerHello: {:02x?}",
            &mid[..9]
        )));
    }
    let cert_len = u16::from_be_bytes([mid[9], mid[10]]) as usize;
    if cert_len == 0 || cert_len > MAX_REPLY_RECORD {
        return Err(invalid(format!("certificate record of {cert_len} bytes")));
    }
    let start = out.len();
    out.resize(start + cert_len, 0);
    r.read_exact(&mut out[start..])?;
    Ok(out)
}

/// True if the reply's server random is HMAC-SHA256(key, client_random ‖ reply with the
/// random zeroed) (docs/PROTOCOL.md §3.3).
pub fn verify(reply: &[u8], client_random: &[u8; 32], key: &[u8; 16]) -> bool {
    let Some(random) = reply.get(RANDOM_RANGE) else {
        return false;
    };
    let mut zeroed = reply.to_vec();
    zeroed[RANDOM_RANGE].fill(0);
    let expected = hmac_sha256(key, &[client_random, &zeroed]);
    expected[..] == random[..]
}

fn invalid(message: String) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, message)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crypto::{hex, sha256, unhex};

    /// docs/PROTOCOL.md §10: the reply to the vector hello, with its random parts fixed.
    #[test]
    fn verifies_the_protocol_vector() {
        let key: [u8; 16] = core::array::from_fn(|i| i as u8);
        let client_random: [u8; 32] =
            unhex("fb0d1114fc4c3e01da9ac230d71bf9f27a6aa5cb4f9f0bafa7e6b21ff1eee15a")
                .try_into()
                .unwrap();
        let mut reply = unhex("160303007a 02000076 0303");
        reply.extend_from_slice(&[0; 32]);
        reply.push(0x20);
        reply.extend((0xa0..=0xbf).collect::<Vec<u8>>());
        reply.extend(unhex("1301 00 002e 00330024001d0020"));
        reply.extend(unhex(
            "1cf579aba45a10ba1d1ef06d91fca2aa9ed0a1150515653155405d0b18cb9a67",
        ));
        reply.extend(unhex("002b00020304 140303000101 17030309c4"));
        reply.extend_from_slice(&[0; 2500]);
        assert_eq!(reply.len(), 2638);
        let random = hmac_sha256(&key, &[&client_random, &reply]);
        assert_eq!(
            hex(&random),
            "21e68281f26dede67654ad3715b18473cc5812e8d593c0a90ac147e8971af148"
        );
        reply[RANDOM_RANGE].copy_from_slice(&random);
        assert_eq!(
            hex(&sha256(&[&reply])),
            "81367a2e11dc1142788b37e5f1f202d7fc5b3bf4de2357c53d2f2e4d648053f7"
        );
        assert!(verify(&reply, &client_random, &key));
        assert_eq!(read(&mut &reply[..]).unwrap(), reply);
        reply[20] ^= 1;
        assert!(!verify(&reply, &client_random, &key));
    }
}
