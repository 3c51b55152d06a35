//! The only unsafe code in feint: libc calls for what std and mio lack (SO_REUSEPORT listeners,
//! TCP keepalive, the listen backlog, blocking SIGINT/SIGTERM/SIGHUP for a waiting thread).
#![allow(unsafe_code)]

use std::io;
use std::mem;
use std::net::{SocketAddr, TcpListener};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::time::Duration;

const LISTEN_BACKLOG: libc::c_int = 4096;

fn check(result: libc::c_int) -> io::Result<libc::c_int> {
    if result < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(result)
    }
}

fn set_int_option(
    fd: libc::c_int,
    level: libc::c_int,
    name: libc::c_int,
    value: libc::c_int,
) -> io::Result<()> {
    // SAFETY: `value` lives across the call and its exact size is passed.
    check(unsafe {
        libc::setsockopt(
            fd,
            level,
            name,
            (&value as *const libc::c_int).cast(),
            mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    })
    .map(drop)
}

/// Whether a socket may share its address with others of the same user.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Sharing {
    /// SO_REUSEADDR only: it still fails while any other socket listens on the address.
    Alone,
    /// SO_REUSEADDR and SO_REUSEPORT.
    ReusePort,
}

/// A non-blocking listener with SO_REUSEADDR and SO_REUSEPORT, so each event loop can own a
/// listening socket on the same address and the kernel spreads connections among them.
/// With `mss`, TCP_MAXSEG caps the segment size that accepted connections announce and use.
pub fn reuseport_listener(addr: SocketAddr, mss: Option<u16>) -> io::Result<TcpListener> {
    let owned = bound_socket(addr, Sharing::ReusePort)?;
    if let Some(mss) = mss {
        // Set before listen, so every accepted socket inherits it and the SYN-ACK announces it.
        set_int_option(
            owned.as_raw_fd(),
            libc::IPPROTO_TCP,
            libc::TCP_MAXSEG,
            libc::c_int::from(mss),
        )?;
    }
    // SAFETY: `owned` is a bound stream socket.
    check(unsafe { libc::listen(owned.as_raw_fd(), LISTEN_BACKLOG) })?;
    Ok(TcpListener::from(owned))
}

/// Binds a socket without SO_REUSEPORT to `addr` and closes it again. Fails with `AddrInUse`
/// while another process listens there, even in an SO_REUSEPORT group that
/// `reuseport_listener` would silently join (the kernel would then split clients between two
/// proxies). SO_REUSEADDR keeps the TIME_WAIT sockets of a previous run from counting.
pub fn check_address_free(addr: SocketAddr) -> io::Result<()> {
    bound_socket(addr, Sharing::Alone).map(drop)
}

fn bound_socket(addr: SocketAddr, sharing: Sharing) -> io::Result<OwnedFd> {
    let family = match addr {
        SocketAddr::V4(_) => libc::AF_INET,
        SocketAddr::V6(_) => libc::AF_INET6,
    };
    // SAFETY: plain socket(2) call; the result is checked before use.
    let fd = check(unsafe {
        libc::socket(
            family,
            libc::SOCK_STREAM | libc::SOCK_NONBLOCK | libc::SOCK_CLOEXEC,
            0,
        )
    })?;
    // SAFETY: `fd` is a fresh descriptor that nothing else owns.
    let owned = unsafe { OwnedFd::from_raw_fd(fd) };
    set_int_option(fd, libc::SOL_SOCKET, libc::SO_REUSEADDR, 1)?;
    if sharing == Sharing::ReusePort {
        set_int_option(fd, libc::SOL_SOCKET, libc::SO_REUSEPORT, 1)?;
    }
    let (storage, len) = socket_address(addr);
    // SAFETY: `storage` holds a sockaddr of `len` bytes for the socket's family.
    check(unsafe { libc::bind(fd, (&storage as *const libc::sockaddr_storage).cast(), len) })?;
    Ok(owned)
}

fn socket_address(addr: SocketAddr) -> (libc::sockaddr_storage, libc::socklen_t) {
    // SAFETY: sockaddr_storage is plain data for which all zero bytes are valid.
    let mut storage: libc::sockaddr_storage = unsafe { mem::zeroed() };
    let len = match addr {
        SocketAddr::V4(v4) => {
            let sin = libc::sockaddr_in {
                sin_family: libc::AF_INET as libc::sa_family_t,
                sin_port: v4.port().to_be(),
                sin_addr: libc::in_addr {
                    s_addr: u32::from_ne_bytes(v4.ip().octets()),
                },
                sin_zero: [0; 8],
            };
            // SAFETY: sockaddr_storage is larger than and aligned for sockaddr_in.
            unsafe { std::ptr::write((&mut storage as *mut libc::sockaddr_storage).cast(), sin) };
            mem::size_of::<libc::sockaddr_in>()
        }
        SocketAddr::V6(v6) => {
            let sin6 = libc::sockaddr_in6 {
                sin6_family: libc::AF_INET6 as libc::sa_family_t,
                sin6_port: v6.port().to_be(),
                sin6_flowinfo: v6.flowinfo(),
                sin6_addr: libc::in6_addr {
                    s6_addr: v6.ip().octets(),
                },
                sin6_scope_id: v6.scope_id(),
            };
            // SAFETY: sockaddr_storage is larger than and aligned for sockaddr_in6.
            unsafe { std::ptr::write((&mut storage as *mut libc::sockaddr_storage).cast(), sin6) };
            mem::size_of::<libc::sockaddr_in6>()
        }
    };
    (storage, len as libc::socklen_t)
}

/// TCP keepalive on a client socket, so peers that vanish without a FIN are found.
pub fn set_keepalive(socket: &impl AsRawFd, idle: Duration) -> io::Result<()> {
    let fd = socket.as_raw_fd();
    let idle_seconds = idle.as_secs().clamp(1, 32767) as libc::c_int;
    set_int_option(fd, libc::SOL_SOCKET, libc::SO_KEEPALIVE, 1)?;
    set_int_option(fd, libc::IPPROTO_TCP, libc::TCP_KEEPIDLE, idle_seconds)?;
    set_int_option(fd, libc::IPPROTO_TCP, libc::TCP_KEEPINTVL, 15)?;
    set_int_option(fd, libc::IPPROTO_TCP, libc::TCP_KEEPCNT, 4)
}

/// Blocks SIGINT, SIGTERM and SIGHUP in the calling thread and the threads it spawns
/// afterwards, so only `wait_for_signal` sees them.
pub fn block_signals() -> io::Result<()> {
    let set = signal_set();
    // SAFETY: `set` is an initialised signal set; the old mask is not needed.
    let result = unsafe { libc::pthread_sigmask(libc::SIG_BLOCK, &set, std::ptr::null_mut()) };
    if result != 0 {
        return Err(io::Error::from_raw_os_error(result));
    }
    Ok(())
}

/// Waits until SIGINT, SIGTERM or SIGHUP arrives (they must be blocked first).
pub fn wait_for_signal() -> io::Result<libc::c_int> {
    let set = signal_set();
    let mut signal: libc::c_int = 0;
    // SAFETY: `set` is initialised and `signal` is a valid place for the result.
    let result = unsafe { libc::sigwait(&set, &mut signal) };
    if result != 0 {
        return Err(io::Error::from_raw_os_error(result));
    }
    Ok(signal)
}

fn signal_set() -> libc::sigset_t {
    // SAFETY: sigemptyset initialises the set before sigaddset uses it.
    unsafe {
        let mut set: libc::sigset_t = mem::zeroed();
        libc::sigemptyset(&mut set);
        libc::sigaddset(&mut set, libc::SIGINT);
        libc::sigaddset(&mut set, libc::SIGTERM);
        libc::sigaddset(&mut set, libc::SIGHUP);
        set
    }
}

/// The soft limit on open files, for sizing advice at start.
pub fn open_file_limit() -> Option<u64> {
    // SAFETY: rlimit is plain data; getrlimit fills it.
    let mut limit: libc::rlimit = unsafe { mem::zeroed() };
    // SAFETY: `limit` is a valid place for the result.
    let result = unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) };
    (result == 0).then_some(limit.rlim_cur as u64)
}

/// Makes the next close of `socket` send RST instead of FIN, to pass a peer's reset through.
pub fn set_linger_zero(socket: &impl AsRawFd) -> io::Result<()> {
    let linger = libc::linger {
        l_onoff: 1,
        l_linger: 0,
    };
    // SAFETY: `linger` lives across the call and its exact size is passed.
    check(unsafe {
        libc::setsockopt(
            socket.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_LINGER,
            (&linger as *const libc::linger).cast(),
            mem::size_of::<libc::linger>() as libc::socklen_t,
        )
    })
    .map(drop)
}
