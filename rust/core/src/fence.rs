//! A stream wrapper that lets tungstenite's handshake read the HTTP head and nothing after it.
//!
//! tungstenite keeps whatever it read past the head in its own buffer, out of our reach; a
//! server's id message often arrives in the same segment as its `101`. Behind the fence those
//! bytes stay here, and [`HeadFence::open`] hands them to the frame reader, then gets out of
//! the way. On the server it also replays the head the admission step already read.

use std::io;
use std::pin::Pin;
use std::task::{ready, Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

// The largest HTTP head let through: a server's 101 response here; requests are read and
// capped before, in `http`, with the same limit.
use crate::http::MAX_HEAD;

pub struct HeadFence<S> {
    inner: Option<S>,
    /// Read from `inner`, not yet handed out (from `pos`).
    buf: Vec<u8>,
    pos: usize,
    /// End of the HTTP head in `buf`, once seen.
    head_end: Option<usize>,
    /// After the handshake: hand out everything.
    open: bool,
}

impl<S> HeadFence<S> {
    /// `prefix`: bytes already read from `inner` (the request head on a server).
    pub fn new(prefix: Vec<u8>, inner: S) -> Self {
        let mut fence = HeadFence {
            inner: Some(inner),
            buf: prefix,
            pos: 0,
            head_end: None,
            open: false,
        };
        fence.scan(0);
        fence
    }

    /// Takes the stream out (leaving an empty shell behind in tungstenite), with the bytes
    /// read past the head still to come first.
    pub fn open(&mut self) -> HeadFence<S> {
        HeadFence {
            inner: self.inner.take(),
            buf: std::mem::take(&mut self.buf),
            pos: std::mem::take(&mut self.pos),
            head_end: None,
            open: true,
        }
    }

    /// After [`HeadFence::open`]: the stream and the bytes read past the head, not yet handed
    /// out. `None` on the shell `open` left behind.
    pub fn into_parts(mut self) -> Option<(S, Vec<u8>)> {
        let inner = self.inner.take()?;
        let rest = self.buf.split_off(self.pos.min(self.buf.len()));
        Some((inner, rest))
    }

    /// Finds the end of the head in `buf`, looking from about `from`: its first empty line,
    /// ended by CRLF or by a bare LF as httparse (and so tungstenite) reads it; otherwise
    /// tungstenite reads past the head and keeps or refuses what follows. Empty lines before
    /// the first line do not count.
    fn scan(&mut self, from: usize) {
        if self.head_end.is_some() {
            return;
        }
        let b = &self.buf;
        let start = b.iter().position(|&c| c != b'\r' && c != b'\n');
        let Some(start) = start else { return };
        let from = from.saturating_sub(2).max(start);
        self.head_end = (from..b.len()).find_map(|i| match &b[i..] {
            [b'\n', b'\n', ..] => Some(i + 2),
            [b'\n', b'\r', b'\n', ..] => Some(i + 3),
            _ => None,
        });
    }

    /// How far into `buf` may be handed out now.
    fn limit(&self) -> usize {
        match (self.open, self.head_end) {
            (false, Some(end)) => end,
            _ => self.buf.len(),
        }
    }

    fn inner(&mut self) -> io::Result<&mut S> {
        self.inner.as_mut().ok_or_else(taken)
    }
}

/// What the shell left behind by [`HeadFence::open`] answers if it is used.
fn taken() -> io::Error {
    io::Error::new(io::ErrorKind::NotConnected, "stream taken")
}

impl<S: AsyncRead + Unpin> AsyncRead for HeadFence<S> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        out: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        loop {
            let limit = this.limit();
            if this.pos < limit {
                let n = out.remaining().min(limit - this.pos);
                out.put_slice(&this.buf[this.pos..this.pos + n]);
                this.pos += n;
                if this.open && this.pos == this.buf.len() {
                    // Give the memory back: an idle connection should not keep its request.
                    this.buf = Vec::new();
                    this.pos = 0;
                }
                return Poll::Ready(Ok(()));
            }
            if this.open {
                return Pin::new(this.inner()?).poll_read(cx, out);
            }
            if this.head_end.is_some() {
                // The whole head went out; the handshake reads nothing more before `open`.
                return Poll::Ready(Ok(()));
            }
            // Head incomplete: read on into `buf` to find its end.
            let len = this.buf.len();
            if len >= MAX_HEAD {
                return Poll::Ready(Err(io::Error::new(
                    io::ErrorKind::InvalidData,
                    format!("HTTP head over {MAX_HEAD} bytes"),
                )));
            }
            let Some(inner) = this.inner.as_mut() else {
                return Poll::Ready(Err(taken()));
            };
            this.buf.resize(len + 4096, 0);
            let mut rb = ReadBuf::new(&mut this.buf[len..]);
            let res = Pin::new(inner).poll_read(cx, &mut rb);
            let n = rb.filled().len();
            this.buf.truncate(len + n);
            ready!(res)?;
            if n == 0 {
                return Poll::Ready(Ok(())); // End of stream.
            }
            this.scan(len);
        }
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for HeadFence<S> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(self.get_mut().inner()?).poll_write(cx, data)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(self.get_mut().inner()?).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(self.get_mut().inner()?).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    #[tokio::test]
    async fn an_endless_head_is_an_error_not_a_growing_buffer() {
        let (mut a, b) = tokio::io::duplex(1 << 16);
        let writer = tokio::spawn(async move {
            let line = [b'a'; 4096];
            while a.write_all(&line).await.is_ok() {}
        });
        let mut fence = HeadFence::new(Vec::new(), b);
        let mut sink = vec![0u8; 8192];
        let err = loop {
            match fence.read(&mut sink).await {
                Ok(n) => assert!(n > 0),
                Err(e) => break e,
            }
        };
        assert_eq!(err.kind(), io::ErrorKind::InvalidData);
        assert!(fence.buf.len() <= MAX_HEAD + 4096);
        drop(fence);
        writer.await.unwrap();
    }

    #[tokio::test]
    async fn a_head_ending_in_bare_line_feeds_is_fenced_too() {
        // Seen reviewing the http fuzz targets: the fence knew only CRLF CRLF, so a server's
        // 101 with bare LFs let tungstenite keep the id message that followed it.
        for (head, rest) in [
            (&b"HTTP/1.1 101 OK\nA: b\n\n"[..], &b"ID"[..]),
            (b"HTTP/1.1 101 OK\nA: b\n\r\n", b"ID\r\n\r\n"),
            (b"\r\nGET / HTTP/1.1\r\nA: b\r\n\r\n", b"\n\nID"),
        ] {
            let (a, b) = tokio::io::duplex(64);
            drop(a);
            let mut fence = HeadFence::new([head, rest].concat(), b);
            let mut got = vec![0u8; 256];
            let n = fence.read(&mut got).await.unwrap();
            assert_eq!(&got[..n], head);
            assert_eq!(fence.read(&mut got).await.unwrap(), 0);
            let mut after = Vec::new();
            fence.open().read_to_end(&mut after).await.unwrap();
            assert_eq!(after, rest);
        }
    }

    #[tokio::test]
    async fn hands_out_the_head_then_the_rest_once_open() {
        let (mut a, b) = tokio::io::duplex(1024);
        a.write_all(b"ead\r\n\r\nFRAMES").await.unwrap();
        let mut fence = HeadFence::new(b"GET / HTTP/1.1\r\nH".to_vec(), b);
        let mut head = vec![0u8; 64];
        let mut got = Vec::new();
        while !got.ends_with(b"\r\n\r\n") {
            let n = fence.read(&mut head).await.unwrap();
            assert!(n > 0);
            got.extend_from_slice(&head[..n]);
        }
        assert_eq!(got, b"GET / HTTP/1.1\r\nHead\r\n\r\n");
        // The fence holds back the frame bytes until it is opened.
        assert_eq!(fence.read(&mut head).await.unwrap(), 0);
        let mut open = fence.open();
        a.write_all(b"MORE").await.unwrap();
        drop(a);
        let mut rest = Vec::new();
        open.read_to_end(&mut rest).await.unwrap();
        assert_eq!(rest, b"FRAMESMORE");
    }
}
