//! libc at the edge: SO_REUSEPORT listeners, connects with an internet-sized TCP segment
//! (TCP_MAXSEG), the open-file limit, SO_LINGER, this process's and this thread's CPU time.

use std::io;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::time::Duration;

/// The segment size of an Ethernet path (1500-byte MTU less the IPv4 and TCP headers): what
/// `scripts/bench` asks for unless told to keep loopback's 64 KiB segments.
pub const INTERNET_SEGMENT: u32 = 1460;

/// A fresh TCP socket for `addr`'s family, owned (closed on drop).
fn tcp_socket(addr: SocketAddr) -> io::Result<OwnedFd> {
    let family = match addr {
        SocketAddr::V4(_) => libc::AF_INET,
        SocketAddr::V6(_) => libc::AF_INET6,
    };
    // SAFETY: plain socket(2); the fd is owned by the OwnedFd below.
    let fd = unsafe { libc::socket(family, libc::SOCK_STREAM | libc::SOCK_CLOEXEC, 0) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: fd is a fresh socket nothing else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// TCP_MAXSEG: the largest segment this socket sends and the MSS it announces in its SYN (or,
/// on a listener, in every SYN-ACK; accepted sockets inherit it), so the peer sends no larger
/// segments either. Takes effect only when set before connect or before accept.
pub fn set_max_segment(socket: &impl AsRawFd, bytes: u32) -> io::Result<()> {
    let value = bytes as libc::c_int;
    // SAFETY: option value is a live c_int of the stated size.
    let rc = unsafe {
        libc::setsockopt(
            socket.as_raw_fd(),
            libc::IPPROTO_TCP,
            libc::TCP_MAXSEG,
            &value as *const libc::c_int as *const libc::c_void,
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// The segment size a connected socket uses now (TCP_MAXSEG read back: the MSS both ends agreed
/// on, less TCP options such as timestamps).
pub fn max_segment(socket: &impl AsRawFd) -> io::Result<u32> {
    let mut value: libc::c_int = 0;
    let mut len = std::mem::size_of::<libc::c_int>() as libc::socklen_t;
    // SAFETY: value and len are live and len holds value's size.
    let rc = unsafe {
        libc::getsockopt(
            socket.as_raw_fd(),
            libc::IPPROTO_TCP,
            libc::TCP_MAXSEG,
            &mut value as *mut libc::c_int as *mut libc::c_void,
            &mut len,
        )
    };
    if rc == 0 {
        Ok(value.max(0) as u32)
    } else {
        Err(io::Error::last_os_error())
    }
}

/// A blocking connect to `addr` within `timeout`, with TCP_MAXSEG `segment` set first when given.
pub fn connect(addr: SocketAddr, segment: Option<u32>, timeout: Duration) -> io::Result<TcpStream> {
    let Some(segment) = segment else {
        return TcpStream::connect_timeout(&addr, timeout);
    };
    let fd = tcp_socket(addr)?;
    set_max_segment(&fd, segment)?;
    // Linux bounds a blocking connect by SO_SNDTIMEO; std resets the timeouts after.
    let stream = TcpStream::from(fd);
    stream.set_write_timeout(Some(timeout))?;
    let (storage, len) = sockaddr(addr);
    // SAFETY: storage holds a sockaddr of `len` bytes for this family.
    let rc = unsafe {
        libc::connect(
            stream.as_raw_fd(),
            &storage as *const _ as *const libc::sockaddr,
            len,
        )
    };
    if rc != 0 {
        let error = io::Error::last_os_error();
        return Err(match error.raw_os_error() {
            Some(libc::EINPROGRESS) | Some(libc::EAGAIN) => {
                io::Error::new(io::ErrorKind::TimedOut, "connect timed out")
            }
            _ => error,
        });
    }
    Ok(stream)
}

/// A listening socket with SO_REUSEADDR and SO_REUSEPORT, so several loops can bind one port,
/// with a backlog of 4096 (a burst of 10,000 connects must not overflow it for long), and
/// TCP_MAXSEG `segment` set before listen when given.
pub fn reuseport_listener(addr: SocketAddr, segment: Option<u32>) -> io::Result<TcpListener> {
    let listener = TcpListener::from(tcp_socket(addr)?);
    let fd = listener.as_raw_fd();
    if let Some(segment) = segment {
        set_max_segment(&listener, segment)?;
    }
    let one: libc::c_int = 1;
    for option in [libc::SO_REUSEADDR, libc::SO_REUSEPORT] {
        // SAFETY: option value is a live c_int of the stated size.
        let rc = unsafe {
            libc::setsockopt(
                fd,
                libc::SOL_SOCKET,
                option,
                &one as *const libc::c_int as *const libc::c_void,
                std::mem::size_of::<libc::c_int>() as libc::socklen_t,
            )
        };
        if rc != 0 {
            return Err(io::Error::last_os_error());
        }
    }
    let (storage, len) = sockaddr(addr);
    // SAFETY: storage holds a sockaddr of `len` bytes for this family.
    if unsafe { libc::bind(fd, &storage as *const _ as *const libc::sockaddr, len) } != 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: listen(2) on our socket.
    if unsafe { libc::listen(fd, 4096) } != 0 {
        return Err(io::Error::last_os_error());
    }
    listener.set_nonblocking(true)?;
    Ok(listener)
}

fn sockaddr(addr: SocketAddr) -> (libc::sockaddr_storage, libc::socklen_t) {
    // SAFETY: all-zero is a valid sockaddr_storage.
    let mut storage: libc::sockaddr_storage = unsafe { std::mem::zeroed() };
    let len = match addr {
        SocketAddr::V4(v4) => {
            // SAFETY: sockaddr_storage is large enough and aligned for sockaddr_in.
            let sin = unsafe { &mut *(&mut storage as *mut _ as *mut libc::sockaddr_in) };
            sin.sin_family = libc::AF_INET as libc::sa_family_t;
            sin.sin_port = v4.port().to_be();
            sin.sin_addr.s_addr = u32::from_ne_bytes(v4.ip().octets());
            std::mem::size_of::<libc::sockaddr_in>()
        }
        SocketAddr::V6(v6) => {
            // SAFETY: sockaddr_storage is large enough and aligned for sockaddr_in6.
            let sin6 = unsafe { &mut *(&mut storage as *mut _ as *mut libc::sockaddr_in6) };
            sin6.sin6_family = libc::AF_INET6 as libc::sa_family_t;
            sin6.sin6_port = v6.port().to_be();
            sin6.sin6_addr.s6_addr = v6.ip().octets();
            std::mem::size_of::<libc::sockaddr_in6>()
        }
    };
    (storage, len as libc::socklen_t)
}

/// Raises RLIMIT_NOFILE's soft limit to the hard limit. Returns (soft, hard) after the change.
pub fn raise_open_file_limit() -> io::Result<(u64, u64)> {
    // SAFETY: getrlimit/setrlimit with a live rlimit struct.
    unsafe {
        let mut limit: libc::rlimit = std::mem::zeroed();
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) != 0 {
            return Err(io::Error::last_os_error());
        }
        limit.rlim_cur = limit.rlim_max;
        if libc::setrlimit(libc::RLIMIT_NOFILE, &limit) != 0 {
            return Err(io::Error::last_os_error());
        }
        Ok((limit.rlim_cur as u64, limit.rlim_max as u64))
    }
}

/// SO_LINGER 0: close sends RST and leaves no TIME_WAIT behind.
pub fn set_linger_zero(socket: &impl AsRawFd) -> io::Result<()> {
    let linger = libc::linger {
        l_onoff: 1,
        l_linger: 0,
    };
    // SAFETY: option value is a live linger struct of the stated size.
    let rc = unsafe {
        libc::setsockopt(
            socket.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_LINGER,
            &linger as *const libc::linger as *const libc::c_void,
            std::mem::size_of::<libc::linger>() as libc::socklen_t,
        )
    };
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// User + system CPU time of this whole process (getrusage), for the load client's share.
pub fn own_cpu_time() -> Duration {
    // SAFETY: getrusage fills a live rusage struct.
    let usage = unsafe {
        let mut usage: libc::rusage = std::mem::zeroed();
        if libc::getrusage(libc::RUSAGE_SELF, &mut usage) != 0 {
            return Duration::ZERO;
        }
        usage
    };
    let micros = |t: libc::timeval| t.tv_sec.max(0) as u64 * 1_000_000 + t.tv_usec.max(0) as u64;
    Duration::from_micros(micros(usage.ru_utime) + micros(usage.ru_stime))
}

/// CPU time the calling thread has used (CLOCK_THREAD_CPUTIME_ID): timing in-process work by
/// it leaves out the time other processes on a shared machine take from us.
pub fn thread_cpu_time() -> Duration {
    let mut now = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime fills a live timespec.
    unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut now) };
    Duration::new(
        now.tv_sec.max(0) as u64,
        now.tv_nsec.clamp(0, 999_999_999) as u32,
    )
}

/// Clock ticks per second for /proc/PID/stat.
pub fn clock_ticks() -> u64 {
    // SAFETY: sysconf has no preconditions.
    let ticks = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    if ticks > 0 {
        ticks as u64
    } else {
        100
    }
}

/// Asks the kernel to SIGKILL this process when its parent dies, so no bench helper outlives
/// the run that started it.
pub fn die_with_parent() {
    // SAFETY: prctl(PR_SET_PDEATHSIG) takes a signal number and has no memory effects.
    unsafe {
        libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL, 0, 0, 0);
    }
}
