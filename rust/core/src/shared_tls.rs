//! A `wss://` connection's TLS session over the shared socket, once the handshake is done.
//!
//! The session (rustls, which does no I/O of its own) sits behind a lock next to the socket,
//! so that the main thread can use it as it uses a plain socket: read what has arrived in
//! `poll()` and write a frame in `put_packet`, each only if it gets the lock at once
//! (`try_lock`). The task reads and writes through [`SharedTls`], taking the lock for each
//! step and never across an `await`. Encrypted bytes leave the session's own buffer for the
//! socket only under the lock, so records go out in the order they were sealed, whoever
//! writes them.

use std::io::{self, Read, Write};
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{ready, Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio_rustls::rustls;

/// A TLS record's plaintext at most: one read asks for no more, so that little of the
/// buffer is zeroed for it.
pub(crate) const RECORD: usize = 16 * 1024;

/// A connection's TLS session and its socket.
pub(crate) struct TlsSession {
    session: Mutex<rustls::Connection>,
    pub(crate) tcp: Arc<TcpStream>,
}

impl TlsSession {
    /// Takes over a session whose handshake tokio-rustls has completed. Plaintext it has
    /// already received stays in the session.
    pub(crate) fn new(stream: tokio_rustls::TlsStream<TcpStream>) -> Arc<TlsSession> {
        let (tcp, mut session): (TcpStream, rustls::Connection) = match stream {
            tokio_rustls::TlsStream::Client(s) => {
                let (tcp, c) = s.into_inner();
                (tcp, c.into())
            }
            tokio_rustls::TlsStream::Server(s) => {
                let (tcp, c) = s.into_inner();
                (tcp, c.into())
            }
        };
        // The connection's own outbound limits bound what is queued; the session takes what
        // it is given, so a frame is never half accepted.
        session.set_buffer_limit(None);
        Arc::new(TlsSession {
            session: Mutex::new(session),
            tcp: Arc::new(tcp),
        })
    }

    pub(crate) fn lock(&self) -> MutexGuard<'_, rustls::Connection> {
        self.session.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The session if nobody else holds it now.
    pub(crate) fn try_lock(&self) -> Option<MutexGuard<'_, rustls::Connection>> {
        match self.session.try_lock() {
            Ok(s) => Some(s),
            Err(std::sync::TryLockError::Poisoned(e)) => Some(e.into_inner()),
            Err(std::sync::TryLockError::WouldBlock) => None,
        }
    }
}

/// Plaintext into `buf` without waiting: what the session holds, else what one read of the
/// socket brings. `Ok(0)`: the input has ended; `WouldBlock`: nothing there now. `main`: the
/// main thread reads (see [`SocketIo`]).
pub(crate) fn read_plain(
    session: &mut rustls::Connection,
    tcp: &TcpStream,
    main: bool,
    buf: &mut [u8],
) -> io::Result<usize> {
    loop {
        match session.reader().read(buf) {
            Ok(n) => return Ok(n),
            // A close without TLS's close_notify: the input has ended all the same.
            Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => return Ok(0),
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
            Err(e) => return Err(e),
        }
        if session.read_tls(&mut SocketIo { tcp, main })? == 0 {
            return Ok(0);
        }
        session
            .process_new_packets()
            .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))?;
    }
}

/// Writes what the session has sealed, until it is all out or the socket is full.
pub(crate) fn write_sealed(session: &mut rustls::Connection, tcp: &TcpStream) -> io::Result<()> {
    while session.wants_write() {
        if session.write_tls(&mut SocketIo { tcp, main: false })? == 0 {
            return Err(io::ErrorKind::WriteZero.into());
        }
    }
    Ok(())
}

/// Non-blocking reads and writes on the shared socket. The task reads through tokio, which
/// tracks readiness so that its wait for input is never a missed wake-up; the main thread
/// reads with a plain `recv`, since that view of readiness is stale exactly when the runtime
/// has not run since the input arrived.
struct SocketIo<'a> {
    tcp: &'a TcpStream,
    main: bool,
}

impl Read for SocketIo<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if !self.main {
            return self.tcp.try_read(buf);
        }
        let sock = socket2::SockRef::from(self.tcp);
        // SAFETY: `recv` only writes into the slice, whose bytes are initialized already.
        let buf = unsafe { &mut *(buf as *mut [u8] as *mut [std::mem::MaybeUninit<u8>]) };
        sock.recv(buf)
    }
}

impl Write for SocketIo<'_> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.tcp.try_write(buf)
    }

    fn write_vectored(&mut self, bufs: &[io::IoSlice<'_>]) -> io::Result<usize> {
        self.tcp.try_write_vectored(bufs)
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// The task's reading and writing half (both the same), as tokio streams.
#[derive(Clone)]
pub(crate) struct SharedTls(pub(crate) Arc<TlsSession>);

impl AsyncRead for SharedTls {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        loop {
            let res = {
                let mut session = self.0.lock();
                let room = buf.remaining().min(RECORD);
                read_plain(
                    &mut session,
                    &self.0.tcp,
                    false,
                    buf.initialize_unfilled_to(room),
                )
            };
            match res {
                Ok(n) => {
                    buf.advance(n);
                    return Poll::Ready(Ok(()));
                }
                // The read found the socket empty and cleared the runtime's readiness.
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    ready!(self.0.tcp.poll_read_ready(cx))?;
                }
                Err(e) => return Poll::Ready(Err(e)),
            }
        }
    }
}

impl SharedTls {
    /// Writes the sealed records; `Pending` until the socket has taken them all.
    fn poll_sealed(&self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        loop {
            match write_sealed(&mut self.0.lock(), &self.0.tcp) {
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    ready!(self.0.tcp.poll_write_ready(cx))?;
                }
                other => return Poll::Ready(other),
            }
        }
    }
}

impl AsyncWrite for SharedTls {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<io::Result<usize>> {
        // What was sealed before goes first; then all of `data` is sealed (the session has
        // no limit) and as much of it written as the socket takes: the rest by the flush.
        ready!(self.poll_sealed(cx))?;
        let mut session = self.0.lock();
        session.writer().write_all(data)?;
        match write_sealed(&mut session, &self.0.tcp) {
            Err(e) if e.kind() != io::ErrorKind::WouldBlock => Poll::Ready(Err(e)),
            _ => Poll::Ready(Ok(data.len())),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.poll_sealed(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        {
            let mut session = self.0.lock();
            if !session.wants_write() {
                session.send_close_notify();
            }
        }
        ready!(self.poll_sealed(cx))?;
        let sock = socket2::SockRef::from(self.0.tcp.as_ref());
        Poll::Ready(match sock.shutdown(std::net::Shutdown::Write) {
            Err(e) if e.kind() == io::ErrorKind::NotConnected => Ok(()),
            other => other,
        })
    }
}
