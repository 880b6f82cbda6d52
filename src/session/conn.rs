//! One connection: a byte stream (plain TCP or TLS, boxed) split into a
//! frame reader and a frame writer, with a count of the bytes it moved.

use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};

use futures::StreamExt;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf, ReadHalf, WriteHalf};
use tokio_util::codec::FramedRead;

use crate::codec::{write_packet, CodecError, FrameCodec, Message, Packet};

/// A byte stream a connection can run over.
pub trait Io: AsyncRead + AsyncWrite + Unpin + Send + 'static {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send + 'static> Io for T {}

pub type BoxIo = Box<dyn Io>;

/// Reads frames off one connection.
pub struct Reader {
    framed: FramedRead<ReadHalf<BoxIo>, FrameCodec>,
}

/// Writes frames onto one connection.
pub struct Writer {
    inner: WriteHalf<BoxIo>,
}

/// Splits a stream into a frame reader (accepting no payload until the
/// handshake raises the limit) and a frame writer.
pub fn split(io: BoxIo) -> (Reader, Writer) {
    let (read, write) = tokio::io::split(io);
    (Reader { framed: FramedRead::new(read, FrameCodec::new(0)) }, Writer { inner: write })
}

impl Reader {
    /// The next packet; `None` at a clean end of stream.
    pub async fn next(&mut self) -> Option<Result<Packet, CodecError>> {
        self.framed.next().await
    }

    pub fn set_max_payload(&mut self, max: usize) {
        self.framed.decoder_mut().set_max_payload(max);
    }

    /// The bytes received but not yet decoded (to recognise what a peer
    /// that does not speak our protocol sent).
    pub fn buffered(&self) -> &[u8] {
        self.framed.read_buffer()
    }
}

impl Writer {
    pub async fn send(&mut self, packet: &Packet) -> Result<u64, CodecError> {
        write_packet(&mut self.inner, packet).await
    }

    pub async fn send_msg(&mut self, id: u32, msg: Message) -> Result<u64, CodecError> {
        self.send(&Packet::new(id, msg)).await
    }

    pub async fn shutdown(&mut self) {
        use tokio::io::AsyncWriteExt;
        let _ = self.inner.shutdown().await;
    }
}

/// Counts the bytes that pass through a stream, both ways, into one total.
pub struct Counted<S> {
    inner: S,
    total: Arc<AtomicU64>,
}

impl<S> Counted<S> {
    pub fn new(inner: S, total: Arc<AtomicU64>) -> Self {
        Counted { inner, total }
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for Counted<S> {
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let before = buf.filled().len();
        let poll = Pin::new(&mut this.inner).poll_read(cx, buf);
        this.total.fetch_add((buf.filled().len() - before) as u64, Ordering::Relaxed);
        poll
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Counted<S> {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let poll = Pin::new(&mut this.inner).poll_write(cx, buf);
        if let Poll::Ready(Ok(n)) = &poll {
            this.total.fetch_add(*n as u64, Ordering::Relaxed);
        }
        poll
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let poll = Pin::new(&mut this.inner).poll_write_vectored(cx, bufs);
        if let Poll::Ready(Ok(n)) = &poll {
            this.total.fetch_add(*n as u64, Ordering::Relaxed);
        }
        poll
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }
}

/// What a peer that does not speak pareco sent instead, when it can be
/// told from its first bytes.
pub fn foreign_protocol(first: &[u8]) -> Option<&'static str> {
    match first {
        [0x16, 0x03, ..] => Some("a TLS handshake"),
        [0x15, 0x03, ..] => Some("a TLS alert"),
        [b'G', b'E', b'T', b' ', ..]
        | [b'P', b'O', b'S', b'T', ..]
        | [b'P', b'U', b'T', b' ', ..]
        | [b'H', b'E', b'A', b'D', ..]
        | [b'H', b'T', b'T', b'P', ..] => Some("HTTP"),
        [b'S', b'S', b'H', b'-', ..] => Some("SSH"),
        _ => None,
    }
}
