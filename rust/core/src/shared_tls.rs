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
use tokio_rustls::rustls;

use crate::shared_tcp::{self, TaskSocket, Tcp};

/// A TLS record's plaintext at most: one read asks for no more, so that little of the
/// buffer is zeroed for it.
pub(crate) const RECORD: usize = 16 * 1024;

/// A connection's TLS session and its socket.
pub(crate) struct TlsSession {
    session: Mutex<rustls::Connection>,
    pub(crate) tcp: Arc<Tcp>,
}

impl TlsSession {
    /// Takes over a session whose handshake tokio-rustls has completed. Plaintext it has
    /// already received stays in the session.
    pub(crate) fn new(
        stream: tokio_rustls::TlsStream<tokio::net::TcpStream>,
    ) -> io::Result<Arc<TlsSession>> {
        let (tcp, mut session): (tokio::net::TcpStream, rustls::Connection) = match stream {
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
        Ok(Arc::new(TlsSession {
            session: Mutex::new(session),
            tcp: shared_tcp::share(tcp)?,
        }))
    }

    pub(crate) fn lock(&self) -> MutexGuard<'_, rustls::Connection> {
        self.session.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Whether the session has decrypted input not read yet (or input it cannot decrypt,
    /// which the next read reports).
    pub(crate) fn holds_plaintext(&self) -> bool {
        self.lock()
            .process_new_packets()
            .map_or(true, |s| s.plaintext_bytes_to_read() > 0)
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
/// socket brings. `Ok(0)`: the input has ended; `WouldBlock`: nothing there now.
pub(crate) fn read_plain(
    session: &mut rustls::Connection,
    tcp: &Tcp,
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
        if session.read_tls(&mut SocketIo(tcp))? == 0 {
            return Ok(0);
        }
        session
            .process_new_packets()
            .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))?;
    }
}

/// Writes what the session has sealed, until it is all out or the socket is full.
pub(crate) fn write_sealed(session: &mut rustls::Connection, tcp: &Tcp) -> io::Result<()> {
    while session.wants_write() {
        if session.write_tls(&mut SocketIo(tcp))? == 0 {
            return Err(io::ErrorKind::WriteZero.into());
        }
    }
    Ok(())
}

/// Non-blocking reads and writes on the shared socket, for rustls.
struct SocketIo<'a>(&'a Tcp);

impl Read for SocketIo<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        // SAFETY: `recv` only writes into the slice, whose bytes are initialized already.
        let buf = unsafe { &mut *(buf as *mut [u8] as *mut [std::mem::MaybeUninit<u8>]) };
        shared_tcp::recv(self.0, buf)
    }
}

impl Write for SocketIo<'_> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        shared_tcp::send(self.0, buf)
    }

    fn write_vectored(&mut self, bufs: &[io::IoSlice<'_>]) -> io::Result<usize> {
        (&mut &*self.0).write_vectored(bufs)
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// The task's reads and writes of a `wss://` connection, as tokio streams: each step takes
/// the session's lock and releases it before any wait.
pub(crate) struct SharedTls<'a> {
    pub(crate) tls: &'a TlsSession,
    pub(crate) sock: &'a TaskSocket,
}

impl AsyncRead for SharedTls<'_> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let room = buf.remaining().min(RECORD);
        let unfilled = buf.initialize_unfilled_to(room);
        let tls = self.tls;
        let n = ready!(self
            .sock
            .poll_input(cx, |tcp| read_plain(&mut tls.lock(), tcp, unfilled)))?;
        buf.advance(n);
        Poll::Ready(Ok(()))
    }
}

impl SharedTls<'_> {
    /// Writes the sealed records; `Pending` until the socket has taken them all.
    fn poll_sealed(&self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let tls = self.tls;
        self.sock
            .poll_output(cx, |tcp| write_sealed(&mut tls.lock(), tcp))
    }
}

impl AsyncWrite for SharedTls<'_> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<io::Result<usize>> {
        // What was sealed before goes first; then all of `data` is sealed (the session has
        // no limit) and as much of it written as the socket takes: the rest by the flush.
        ready!(self.poll_sealed(cx))?;
        let mut session = self.tls.lock();
        session.writer().write_all(data)?;
        match write_sealed(&mut session, &self.tls.tcp) {
            Err(e) if e.kind() != io::ErrorKind::WouldBlock => Poll::Ready(Err(e)),
            _ => Poll::Ready(Ok(data.len())),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.poll_sealed(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        {
            let mut session = self.tls.lock();
            if !session.wants_write() {
                session.send_close_notify();
            }
        }
        ready!(self.poll_sealed(cx))?;
        Poll::Ready(shared_tcp::shutdown_write(&self.tls.tcp))
    }
}
