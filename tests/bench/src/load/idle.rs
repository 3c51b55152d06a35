//! Many authenticated, silent connections: each does the whole handshake, sends the obfs2
//! header, an echo command and one byte, gets the byte back (so the DC leg is up), then goes
//! quiet. `threads` workers open them in parallel.

use std::io;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use super::{Session, Target};
use crate::command::{Command, COMMAND_LEN};

pub fn open(
    target: &Target,
    count: usize,
    threads: usize,
    limit: Duration,
) -> io::Result<Vec<Session>> {
    let deadline = Instant::now() + limit;
    let next = AtomicUsize::new(0);
    let sessions = Mutex::new(Vec::with_capacity(count));
    let first_error: Mutex<Option<io::Error>> = Mutex::new(None);
    std::thread::scope(|scope| {
        for _ in 0..threads.max(1) {
            scope.spawn(|| {
                let mut first = [0u8; COMMAND_LEN + 1];
                first[..COMMAND_LEN].copy_from_slice(&Command::Echo { close_after: 0 }.encode());
                first[COMMAND_LEN] = 0x5a;
                while next.fetch_add(1, Ordering::Relaxed) < count {
                    if Instant::now() >= deadline {
                        return;
                    }
                    let result = Session::open(target, &first).and_then(|mut session| {
                        let mut echoed = [0u8; 1];
                        session.receive_exact(&mut echoed)?;
                        if echoed[0] != 0x5a {
                            return Err(io::Error::new(
                                io::ErrorKind::InvalidData,
                                "the echoed byte differs",
                            ));
                        }
                        Ok(session)
                    });
                    match result {
                        Ok(session) => sessions.lock().expect("not poisoned").push(session),
                        Err(e) => {
                            first_error.lock().expect("not poisoned").get_or_insert(e);
                            return;
                        }
                    }
                }
            });
        }
    });
    let sessions = sessions.into_inner().expect("not poisoned");
    if sessions.len() < count {
        let error = first_error.into_inner().expect("not poisoned");
        return Err(error.unwrap_or_else(|| {
            io::Error::new(
                io::ErrorKind::TimedOut,
                format!(
                    "only {} of {count} connections opened in time",
                    sessions.len()
                ),
            )
        }));
    }
    Ok(sessions)
}

/// Closes every session with RST (SO_LINGER 0), so 10,000 closes leave no TIME_WAIT behind.
pub fn close(sessions: Vec<Session>) {
    for session in sessions {
        let _ = crate::sys::set_linger_zero(&session.stream);
    }
}
