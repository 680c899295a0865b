//! A passive reader of the frames a WebSocket client sends, under the WebSocket codec: it
//! records when the client message being received began, so a message that is not finished
//! in time (a fragmented one whose last fragment never comes, or one frame trickling in) can
//! be closed instead of held. The codec itself only hands over whole messages.
//!
//! It reads frame headers (RFC 6455 §5.2) from the bytes the codec reads and skips payloads,
//! so it costs a few operations per frame, not per byte. It sees every byte the codec sees:
//! it wraps the upgraded connection, whose reads start with whatever the HTTP layer had
//! read past the upgrade request. Control frames (ping, pong, close) may come between the
//! fragments of a message and neither start nor end one.

use std::io;
use std::pin::Pin;
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll};
use std::time::Instant;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// When the client message being received began, if one is under way.
#[derive(Debug, Default)]
pub(crate) struct MessageClock(Mutex<Option<Instant>>);

impl MessageClock {
    /// When the message under way began (its first frame's header arrived); `None` between
    /// messages.
    pub(crate) fn started(&self) -> Option<Instant> {
        *self.0.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn set(&self, at: Option<Instant>) {
        *self.0.lock().unwrap_or_else(PoisonError::into_inner) = at;
    }
}

/// Where the reader is in the client's frames.
#[derive(Debug)]
struct FrameReader {
    /// The header read so far (at most 2 + 8 length bytes + 4 mask bytes).
    header: [u8; 14],
    /// Header bytes read so far.
    have: usize,
    /// The header's length, once its second byte says (2 until then).
    need: usize,
    /// Payload bytes of the current frame still to come; a header is next when 0.
    remaining: u64,
    /// The current frame is the last of a data message (FIN set).
    ends_message: bool,
    /// A data message began and has not ended.
    in_message: bool,
}

impl FrameReader {
    fn new() -> Self {
        Self {
            header: [0; 14],
            have: 0,
            need: 2,
            remaining: 0,
            ends_message: false,
            in_message: false,
        }
    }

    /// Follows `bytes`, the next ones the client sent, telling `clock` when a message begins
    /// and ends.
    fn feed(&mut self, mut bytes: &[u8], clock: &MessageClock) {
        while !bytes.is_empty() {
            if self.remaining > 0 {
                let skip = usize::try_from(self.remaining)
                    .unwrap_or(usize::MAX)
                    .min(bytes.len());
                bytes = &bytes[skip..];
                self.remaining -= skip as u64;
                if self.remaining == 0 {
                    self.frame_done(clock);
                }
                continue;
            }
            self.header[self.have] = bytes[0];
            self.have += 1;
            bytes = &bytes[1..];
            if self.have == 2 {
                let masked = self.header[1] & 0x80 != 0;
                let length_bytes = match self.header[1] & 0x7F {
                    0x7E => 2,
                    0x7F => 8,
                    _ => 0,
                };
                self.need = 2 + length_bytes + if masked { 4 } else { 0 };
            }
            if self.have >= 2 && self.have == self.need {
                self.header_done(clock);
            }
        }
    }

    fn header_done(&mut self, clock: &MessageClock) {
        let fin = self.header[0] & 0x80 != 0;
        // 0 continuation, 1 text, 2 binary (3–7 reserved: the codec refuses them); 8 and up
        // are control frames.
        let data = self.header[0] & 0x0F < 8;
        let length = match self.header[1] & 0x7F {
            0x7E => u64::from(u16::from_be_bytes([self.header[2], self.header[3]])),
            0x7F => {
                let mut be = [0; 8];
                be.copy_from_slice(&self.header[2..10]);
                u64::from_be_bytes(be)
            }
            short => u64::from(short),
        };
        if data && !self.in_message {
            self.in_message = true;
            clock.set(Some(Instant::now()));
        }
        self.ends_message = data && fin;
        self.have = 0;
        self.need = 2;
        self.remaining = length;
        if length == 0 {
            self.frame_done(clock);
        }
    }

    fn frame_done(&mut self, clock: &MessageClock) {
        if std::mem::take(&mut self.ends_message) {
            self.in_message = false;
            clock.set(None);
        }
    }
}

/// A connection whose incoming WebSocket frames are followed by a [`MessageClock`].
#[derive(Debug)]
pub(crate) struct Watched<S> {
    inner: S,
    reader: FrameReader,
    clock: Arc<MessageClock>,
}

impl<S> Watched<S> {
    /// `inner`, its incoming frames followed by `clock`.
    pub(crate) fn new(inner: S, clock: Arc<MessageClock>) -> Self {
        Self {
            inner,
            reader: FrameReader::new(),
            clock,
        }
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for Watched<S> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let before = buf.filled().len();
        let poll = Pin::new(&mut this.inner).poll_read(cx, buf);
        if let Poll::Ready(Ok(())) = &poll {
            this.reader.feed(&buf.filled()[before..], &this.clock);
        }
        poll
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Watched<S> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write(cx, buf)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A masked client frame: `fin`, `opcode`, `payload`.
    fn frame(fin: bool, opcode: u8, payload: &[u8]) -> Vec<u8> {
        let mut out = vec![if fin { 0x80 } else { 0 } | opcode];
        let n = payload.len();
        if let Ok(short) =
            u8::try_from(n)
                .map_err(drop)
                .and_then(|n| if n < 0x7E { Ok(n) } else { Err(()) })
        {
            out.push(0x80 | short);
        } else if let Ok(medium) = u16::try_from(n) {
            out.push(0x80 | 0x7E);
            out.extend_from_slice(&medium.to_be_bytes());
        } else {
            out.push(0x80 | 0x7F);
            out.extend_from_slice(&(n as u64).to_be_bytes());
        }
        out.extend_from_slice(&[1, 2, 3, 4]);
        out.extend_from_slice(payload);
        out
    }

    #[test]
    fn a_message_is_under_way_from_its_first_frame_to_its_last() {
        let clock = MessageClock::default();
        let mut reader = FrameReader::new();
        // A whole message in one frame, fed a byte at a time: under way from the end of its
        // header (2 bytes, a 2-byte length, a 4-byte mask) until its last byte.
        let whole = frame(true, 1, &[b'x'; 300]);
        for (i, byte) in whole.iter().enumerate() {
            reader.feed(std::slice::from_ref(byte), &clock);
            let read = i + 1;
            assert_eq!(
                clock.started().is_some(),
                (8..whole.len()).contains(&read),
                "byte {i}"
            );
        }
        // Fragments with a ping and a pong between them: the controls change nothing.
        reader.feed(&frame(false, 1, b"[1,"), &clock);
        let began = clock.started().expect("under way");
        reader.feed(&frame(true, 9, b"ping"), &clock);
        reader.feed(&frame(true, 10, b""), &clock);
        reader.feed(&frame(false, 0, &vec![b' '; 70_000]), &clock);
        assert_eq!(clock.started(), Some(began));
        let mut last = frame(true, 0, b"2]");
        let tail = last.split_off(3);
        reader.feed(&last, &clock);
        assert_eq!(clock.started(), Some(began), "the last frame is not in yet");
        reader.feed(&tail, &clock);
        assert_eq!(clock.started(), None);
        // An empty message and several frames in one read.
        let mut both = frame(true, 2, b"");
        both.extend(frame(false, 1, b"a"));
        reader.feed(&both, &clock);
        assert!(clock.started().is_some(), "the second one is under way");
    }
}
