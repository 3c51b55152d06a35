//! feint: a FakeTLS MTProto proxy with domain fronting.
//! `proto` is sans-I/O protocol code; `proxy` owns sockets, clocks and randomness.
#![deny(unsafe_code)]

pub mod cli;
pub mod doctor;
pub mod links;
pub mod proto;
pub mod proxy;
pub mod qr;
pub mod secret;
pub mod settings;
