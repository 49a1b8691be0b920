//! The task's way to its socket, plain or through TLS, as one tokio stream type.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

use crate::shared_tcp::{SharedTcp, TaskSocket};
use crate::shared_tls::{SharedTls, TlsSession};

pub(super) enum TaskIo<'a> {
    Tcp(SharedTcp<'a>),
    Tls(SharedTls<'a>),
}

impl<'a> TaskIo<'a> {
    pub(super) fn new(sock: &'a TaskSocket, tls: Option<&'a TlsSession>) -> TaskIo<'a> {
        match tls {
            None => TaskIo::Tcp(SharedTcp(sock)),
            Some(tls) => TaskIo::Tls(SharedTls { tls, sock }),
        }
    }

    pub(super) fn socket(&self) -> &'a TaskSocket {
        match self {
            TaskIo::Tcp(io) => io.0,
            TaskIo::Tls(io) => io.sock,
        }
    }
}

impl AsyncRead for TaskIo<'_> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match self.get_mut() {
            TaskIo::Tcp(io) => Pin::new(io).poll_read(cx, buf),
            TaskIo::Tls(io) => Pin::new(io).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for TaskIo<'_> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            TaskIo::Tcp(io) => Pin::new(io).poll_write(cx, data),
            TaskIo::Tls(io) => Pin::new(io).poll_write(cx, data),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            TaskIo::Tcp(io) => Pin::new(io).poll_flush(cx),
            TaskIo::Tls(io) => Pin::new(io).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            TaskIo::Tcp(io) => Pin::new(io).poll_shutdown(cx),
            TaskIo::Tls(io) => Pin::new(io).poll_shutdown(cx),
        }
    }
}
