//! Why a connection ended: it picks how the sockets are closed and feeds the log line. It never
//! reaches the wire as bytes.

use super::net::Side;
use crate::proto::record::RecordError;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum End {
    /// Both directions finished.
    Done,
    /// A side failed or reset; when fronting, the other side gets a reset too.
    Failed(Side),
    /// The client left before sending anything and there was no front to hand it to.
    ClientLeft,
    /// The front closed before the client's hello was decided: the client sees the same close.
    FrontClosed,
    /// The front reset before the client's hello was decided: the client sees a reset too.
    FrontReset,
    /// The client's address has `--max-connections-per-ip` connections open already.
    AddressLimit,
    /// `--proxy-protocol`: the connection did not open with a valid header.
    BadProxyHeader,
    BadRecord(RecordError),
    BadTag,
    UnknownDc,
    Unreachable,
    HandshakeTimeout,
    IdleTimeout,
    /// The event loop is stopping.
    Stopped,
    Internal,
}

impl std::fmt::Display for End {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            End::Done => f.write_str("done"),
            End::Failed(Side::Client) => f.write_str("the client failed"),
            End::Failed(Side::Upstream) => f.write_str("the upstream failed"),
            End::ClientLeft => f.write_str("the client left"),
            End::FrontClosed => f.write_str("the front closed first"),
            End::FrontReset => f.write_str("the front reset first"),
            End::AddressLimit => f.write_str("too many connections from one address"),
            End::BadProxyHeader => f.write_str("no valid PROXY protocol header"),
            End::BadRecord(e) => write!(f, "bad record: {e}"),
            End::BadTag => f.write_str("bad obfs2 tag"),
            End::UnknownDc => f.write_str("unknown DC"),
            End::Unreachable => f.write_str("upstream unreachable"),
            End::HandshakeTimeout => f.write_str("handshake timeout"),
            End::IdleTimeout => f.write_str("idle timeout"),
            End::Stopped => f.write_str("feint stopped"),
            End::Internal => f.write_str("internal error"),
        }
    }
}
