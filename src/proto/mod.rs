//! Sans-I/O protocol code: bytes, time and randomness come in as arguments.
//! Nothing here may touch a socket, a clock or an RNG.

pub mod cipher;
pub mod dc;
pub mod front_flight;
pub mod hello;
pub mod mtproto;
pub mod obfs2;
pub mod proxy_protocol;
pub mod record;
pub mod replay;
pub mod server_hello;
pub mod socks5;
#[cfg(test)]
pub(crate) mod testdata;
pub mod x25519;
