//! A connection's TCP socket, shared by its task and the main thread.
//!
//! The socket is a plain non-blocking `std` stream behind an `Arc`: the main thread writes a
//! frame straight to it when nothing is queued ([`crate::connection`]'s direct send) and reads
//! it in `poll()` when it has input ([`crate::ready`]), each with one system call and no
//! runtime in between. The task waits on it through its own registration with the runtime's
//! reactor, [`TaskSocket`], whose interest in input can be dropped while the main thread is
//! the reader: input the main thread takes then wakes no runtime thread at all. Who may write
//! at a given moment is decided by the connection's write owner, never by these types.

use std::io::{self, Write};
use std::mem::MaybeUninit;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::task::{ready, Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, Interest, ReadBuf};

/// The shared socket (non-blocking).
pub(crate) type Tcp = std::net::TcpStream;

/// Takes a socket out of the runtime's hands: from here on it is shared as a plain stream.
pub(crate) fn share(tcp: tokio::net::TcpStream) -> io::Result<Arc<Tcp>> {
    // `into_std` leaves it non-blocking.
    Ok(Arc::new(tcp.into_std()?))
}

/// One non-blocking read into `buf`.
pub(crate) fn recv(tcp: &Tcp, buf: &mut [MaybeUninit<u8>]) -> io::Result<usize> {
    socket2::SockRef::from(tcp).recv(buf)
}

/// One non-blocking write.
pub(crate) fn send(mut tcp: &Tcp, data: &[u8]) -> io::Result<usize> {
    tcp.write(data)
}

/// Ends our side's output (FIN); a socket already gone counts as done.
pub(crate) fn shutdown_write(tcp: &Tcp) -> io::Result<()> {
    match tcp.shutdown(std::net::Shutdown::Write) {
        Err(e) if e.kind() == io::ErrorKind::NotConnected => Ok(()),
        other => other,
    }
}

#[cfg(unix)]
struct Fd(Arc<Tcp>);

#[cfg(unix)]
impl std::os::fd::AsRawFd for Fd {
    fn as_raw_fd(&self) -> std::os::fd::RawFd {
        self.0.as_raw_fd()
    }
}

#[cfg(unix)]
type Registration = tokio::io::unix::AsyncFd<Fd>;
/// Elsewhere a second handle of the socket is registered, always for input and output.
#[cfg(not(unix))]
type Registration = tokio::net::TcpStream;

/// The task's registration of the shared socket with the runtime's reactor.
pub(crate) struct TaskSocket {
    tcp: Arc<Tcp>,
    reg: Option<Registration>,
    reading: bool,
    /// A read found the socket empty since [`TaskSocket::take_drained`] was last asked.
    drained: AtomicBool,
}

impl TaskSocket {
    /// Registers `tcp` for input and output.
    pub(crate) fn new(tcp: Arc<Tcp>) -> io::Result<TaskSocket> {
        let mut sock = TaskSocket {
            tcp,
            reg: None,
            reading: false,
            drained: AtomicBool::new(false),
        };
        sock.register(true)?;
        Ok(sock)
    }

    pub(crate) fn tcp(&self) -> &Arc<Tcp> {
        &self.tcp
    }

    /// Whether the reactor wakes the task for input; only then may it wait for input.
    pub(crate) fn reading(&self) -> bool {
        self.reading
    }

    /// Turns the reactor's interest in the socket's input on or off (a no-op where the
    /// registration cannot change: there it is always on).
    pub(crate) fn set_reading(&mut self, on: bool) -> io::Result<()> {
        if on != self.reading && cfg!(unix) {
            self.register(on)?;
        }
        Ok(())
    }

    #[cfg(unix)]
    fn register(&mut self, reading: bool) -> io::Result<()> {
        let interest = if reading {
            Interest::READABLE | Interest::WRITABLE
        } else {
            Interest::WRITABLE
        };
        // The reactor takes a descriptor once: the old registration goes first.
        self.reg = None;
        // SAFETY: the descriptor stays open while registered: `Fd` holds the socket.
        let reg = unsafe {
            tokio::io::unix::AsyncFd::register_with_interest(Fd(self.tcp.clone()), interest)
        }?;
        self.reg = Some(reg);
        self.reading = reading;
        Ok(())
    }

    #[cfg(not(unix))]
    fn register(&mut self, _reading: bool) -> io::Result<()> {
        self.reg = Some(tokio::net::TcpStream::from_std(self.tcp.try_clone()?)?);
        self.reading = true;
        Ok(())
    }

    fn reg(&self) -> io::Result<&Registration> {
        self.reg
            .as_ref()
            .ok_or_else(|| io::Error::other("the socket is not registered"))
    }

    /// Whether a read has found the socket empty since the last call.
    pub(crate) fn take_drained(&self) -> bool {
        self.drained.swap(false, Ordering::AcqRel)
    }

    /// Runs `op` (a read of the socket, possibly through TLS), and when it would block,
    /// waits for input: `Pending` until the reactor reports some. Only while reading.
    pub(crate) fn poll_input<R>(
        &self,
        cx: &mut Context<'_>,
        op: impl FnMut(&Tcp) -> io::Result<R>,
    ) -> Poll<io::Result<R>> {
        self.poll_io(cx, Interest::READABLE, op)
    }

    /// Runs `op` (a write of the socket), and when it would block, waits for room: `Pending`
    /// until the socket has some.
    pub(crate) fn poll_output<R>(
        &self,
        cx: &mut Context<'_>,
        op: impl FnMut(&Tcp) -> io::Result<R>,
    ) -> Poll<io::Result<R>> {
        self.poll_io(cx, Interest::WRITABLE, op)
    }

    /// Tries `op` first (the socket may be ready before the reactor has said so: the main
    /// thread was its reader until now), then waits for `interest` as often as it would block.
    fn poll_io<R>(
        &self,
        cx: &mut Context<'_>,
        interest: Interest,
        mut op: impl FnMut(&Tcp) -> io::Result<R>,
    ) -> Poll<io::Result<R>> {
        let mut res = op(&self.tcp);
        loop {
            match res {
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    if interest == Interest::READABLE {
                        self.drained.store(true, Ordering::Release);
                    }
                }
                other => return Poll::Ready(other),
            }
            res = ready!(self.poll_ready(cx, interest, &mut op));
        }
    }

    /// Waits for `interest`, then runs `op` once; its `WouldBlock` clears the readiness.
    #[cfg(unix)]
    fn poll_ready<R>(
        &self,
        cx: &mut Context<'_>,
        interest: Interest,
        op: &mut impl FnMut(&Tcp) -> io::Result<R>,
    ) -> Poll<io::Result<R>> {
        let reg = self.reg()?;
        let mut guard = if interest == Interest::READABLE {
            ready!(reg.poll_read_ready(cx))?
        } else {
            ready!(reg.poll_write_ready(cx))?
        };
        Poll::Ready(match guard.try_io(|fd| op(&fd.get_ref().0)) {
            Ok(res) => res,
            Err(_) => Err(io::ErrorKind::WouldBlock.into()),
        })
    }

    #[cfg(not(unix))]
    fn poll_ready<R>(
        &self,
        cx: &mut Context<'_>,
        interest: Interest,
        op: &mut impl FnMut(&Tcp) -> io::Result<R>,
    ) -> Poll<io::Result<R>> {
        let reg = self.reg()?;
        if interest == Interest::READABLE {
            ready!(reg.poll_read_ready(cx))?;
        } else {
            ready!(reg.poll_write_ready(cx))?;
        }
        Poll::Ready(reg.try_io(interest, || op(&self.tcp)))
    }
}

/// The task's reads and writes of a plain connection, as tokio streams.
pub(crate) struct SharedTcp<'a>(pub(crate) &'a TaskSocket);

impl AsyncRead for SharedTcp<'_> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        // SAFETY: `recv` only writes into the slice; the bytes it reports are initialized,
        // and only those are marked filled.
        let unfilled = unsafe { buf.unfilled_mut() };
        let n = ready!(self.0.poll_input(cx, |tcp| recv(tcp, unfilled)))?;
        unsafe { buf.assume_init(n) };
        buf.advance(n);
        Poll::Ready(Ok(()))
    }
}

impl AsyncWrite for SharedTcp<'_> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<io::Result<usize>> {
        self.0.poll_output(cx, |tcp| send(tcp, data))
    }

    fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(shutdown_write(self.0.tcp()))
    }
}
