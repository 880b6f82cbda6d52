//! One connection: a byte stream (plain TCP or TLS, boxed) split into a
//! frame reader and a frame writer, with a count of the bytes it moved.

use std::collections::VecDeque;
use std::io::{self, IoSlice};
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use futures::StreamExt;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf, ReadHalf, WriteHalf};
use tokio_util::codec::FramedRead;

use bytes::{Buf, Bytes};

use crate::codec::{CodecError, FrameCodec, Message, Packet};

use super::pace::{Gate, Pacer};

/// A byte stream a connection can run over.
pub trait Io: AsyncRead + AsyncWrite + Unpin + Send + 'static {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send + 'static> Io for T {}

/// The byte stream of a connection, boxed: plain TCP or TLS.
pub type BoxIo = Box<dyn Io>;

/// Reads frames off one connection.
pub struct Reader {
    framed: FramedRead<ReadHalf<BoxIo>, FrameCodec>,
}

/// Writes frames onto one connection. Frames can be queued and then sent
/// together, headers and payloads alike, in vectored writes: a burst of
/// small frames costs one system call, and payloads are never copied.
pub struct Writer {
    inner: WriteHalf<BoxIo>,
    queue: VecDeque<Bytes>,
    queued: usize,
    /// A write that makes no progress for this long fails.
    stall: Option<Duration>,
    /// The session's `--bwlimit`, once it is known.
    gate: Option<Gate>,
}

/// Slices handed to one vectored write at most.
const IOV_BATCH: usize = 64;

/// Splits a stream into a frame reader (with the handshake's limits: no
/// payload and small headers, until [`Reader::open`]) and a frame writer.
pub fn split(io: BoxIo) -> (Reader, Writer) {
    let (read, write) = tokio::io::split(io);
    let writer = Writer { inner: write, queue: VecDeque::new(), queued: 0, stall: None, gate: None };
    (Reader { framed: FramedRead::new(read, FrameCodec::handshake()) }, writer)
}

impl Reader {
    /// The next packet; `None` at a clean end of stream.
    pub async fn next(&mut self) -> Option<Result<Packet, CodecError>> {
        self.framed.next().await
    }

    /// Bytes of the header of the packet [`Reader::next`] gave last.
    pub fn last_header_len(&self) -> usize {
        self.framed.decoder().last_header_len()
    }

    /// Ends the handshake: accepts payloads of up to `max_payload` bytes
    /// and full-size headers from now on.
    pub fn open(&mut self, max_payload: usize) {
        self.framed.decoder_mut().open(max_payload);
    }

    /// The bytes received but not yet decoded (to recognise what a peer
    /// that does not speak our protocol sent).
    pub fn buffered(&self) -> &[u8] {
        self.framed.read_buffer()
    }
}

impl Writer {
    /// Makes a write that the peer does not take a single byte of for
    /// `stall` fail, so that a peer that stops reading cannot hold this
    /// side forever.
    pub fn set_stall_timeout(&mut self, stall: Duration) {
        self.stall = Some(stall);
    }

    /// Sends no faster than `pacer` allows from now on (see
    /// [`super::pace`]): a frame goes out in slices, each when its time
    /// comes.
    pub fn pace(&mut self, pacer: Arc<Pacer>) {
        self.gate = Some(Gate::new(pacer));
    }

    /// Runs one write step under the stall timeout, if any.
    async fn timed<T>(
        stall: Option<Duration>,
        write: impl std::future::Future<Output = io::Result<T>>,
    ) -> io::Result<T> {
        match stall {
            None => write.await,
            Some(stall) => tokio::time::timeout(stall, write).await.unwrap_or_else(|_| {
                Err(io::Error::new(
                    io::ErrorKind::TimedOut,
                    format!("the peer took no data for {}", humantime::format_duration(stall)),
                ))
            }),
        }
    }

    /// Queues a frame to be sent by the next [`flush`](Writer::flush).
    pub fn queue(&mut self, packet: &Packet) -> Result<(), CodecError> {
        let head = packet.encode_head()?;
        self.queued += head.len() + packet.payload.len();
        self.queue.push_back(head);
        if !packet.payload.is_empty() {
            self.queue.push_back(packet.payload.clone());
        }
        Ok(())
    }

    /// Bytes queued and not yet sent.
    pub fn queued(&self) -> usize {
        self.queued
    }

    /// Sends everything queued.
    pub async fn flush(&mut self) -> Result<(), CodecError> {
        use tokio::io::AsyncWriteExt;
        while !self.queue.is_empty() {
            // What the pacer allows now (waiting for it is not a stall).
            let mut allowed = match &mut self.gate {
                Some(gate) => gate.allow(self.queued).await,
                None => self.queued,
            };
            let mut slices = [IoSlice::new(&[]); IOV_BATCH];
            let mut count = 0;
            for (slice, bytes) in slices.iter_mut().zip(&self.queue) {
                if allowed == 0 {
                    break;
                }
                let take = bytes.len().min(allowed);
                *slice = IoSlice::new(&bytes[..take]);
                allowed -= take;
                count += 1;
            }
            let stall = self.stall;
            let write = self.inner.write_vectored(&slices[..count]);
            let mut written = Writer::timed(stall, write).await?;
            if written == 0 {
                return Err(io::Error::from(io::ErrorKind::WriteZero).into());
            }
            if let Some(gate) = &mut self.gate {
                gate.sent(written);
            }
            self.queued -= written;
            while written > 0 {
                let Some(front) = self.queue.front_mut() else { break };
                if written >= front.len() {
                    written -= front.len();
                    self.queue.pop_front();
                } else {
                    front.advance(written);
                    written = 0;
                }
            }
        }
        // TLS takes the bytes into its own buffer and may not have passed
        // them all to the socket yet: push them out, or the peer might wait
        // for them forever. (A no-op on plain TCP.)
        let stall = self.stall;
        Writer::timed(stall, self.inner.flush()).await?;
        Ok(())
    }

    /// Sends one frame (and anything queued before it).
    pub async fn send(&mut self, packet: &Packet) -> Result<(), CodecError> {
        self.queue(packet)?;
        self.flush().await
    }

    /// Sends one frame without a payload (and anything queued before it).
    pub async fn send_msg(&mut self, id: u32, msg: Message) -> Result<(), CodecError> {
        self.send(&Packet::new(id, msg)).await
    }

    /// Shuts down the sending side of the stream; errors are ignored.
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
    /// Counts the bytes that pass through `inner` into `total`.
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::codec::{Message, Packet};

    /// Queued frames, a big payload among them, arrive whole and in order.
    #[tokio::test]
    async fn queued_frames_arrive_in_order() {
        let (a, b) = tokio::io::duplex(64 << 10);
        let (_, mut writer) = split(Box::new(a));
        let (mut reader, _keep) = split(Box::new(b));
        reader.open(2 << 20);
        let big = Bytes::from(vec![7u8; 1 << 20]);
        let packets = [
            Packet::new(1, Message::Ping),
            Packet::with_payload(2, Message::Write { handle: 1, offset: 0, digest: Default::default() }, big),
            Packet::new(3, Message::Done),
        ];
        let sending = async {
            for p in &packets {
                writer.queue(p).unwrap();
            }
            assert_eq!(
                writer.queued(),
                packets.iter().map(|p| p.encode_head().unwrap().len() + p.payload.len()).sum::<usize>()
            );
            writer.flush().await.unwrap();
            assert_eq!(writer.queued(), 0);
        };
        let receiving = async {
            let mut got = Vec::new();
            for _ in 0..packets.len() {
                got.push(reader.next().await.unwrap().unwrap());
            }
            got
        };
        let ((), got) = tokio::join!(sending, receiving);
        assert_eq!(got, packets);
    }
}
