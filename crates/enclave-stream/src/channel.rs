//! The seed's encrypted channel on a byte stream: an [`EncryptedChannel`] (the keys and
//! nonces, from `enclave-crypto`) tied to any tokio `AsyncRead + AsyncWrite`, with `send`,
//! an `on_message` callback and a [`Stream`] of received messages.
//!
//! Each message is written as one frame: a 4-byte big-endian length, then the sealed message
//! (`nonce || ciphertext || tag`, the channel's own format; see
//! [`enclave_crypto::EncryptedChannel`]). Frames over [`MAX_FRAME_LEN`] are refused both
//! ways, so a peer cannot make us buffer more than that. This framing is this crate's own:
//! TypeScript peers speak the `enc` envelopes of the event protocol, not this.

use std::fmt;
use std::io;
use std::marker::PhantomData;
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use enclave_crypto::EncryptedChannel;
use futures::{SinkExt, Stream, StreamExt as _};
use serde::de::DeserializeOwned;
use serde::Serialize;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio_util::codec::{Framed, LengthDelimitedCodec};

/// The longest sealed message a link sends or accepts, in bytes: 16 MiB, the NDJSON
/// layer's line limit.
pub const MAX_FRAME_LEN: usize = 16 * 1024 * 1024;

/// What a [`ChannelLink`] reports.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ChannelError {
    /// One message could not be sealed (not JSON-writable, key expired) or opened (forged,
    /// replayed, not the JSON expected). Nothing was sent for a refused send; a refused
    /// received message is dropped and the link goes on.
    #[error("{direction} message {number}: {source}")]
    Message {
        /// `"outgoing"` or `"incoming"`.
        direction: &'static str,
        /// The message's number in its direction, from 1.
        number: u64,
        /// The encryption layer's error, with its `ENCRYPTION_*` code.
        #[source]
        source: enclave_crypto::Error,
    },
    /// The byte stream failed, or a frame was over [`MAX_FRAME_LEN`]: the link is done.
    #[error("channel link: {0}")]
    Io(#[from] io::Error),
}

impl ChannelError {
    /// `true` when the link cannot go on (an I/O fault); a message error leaves it going.
    pub fn is_terminal(&self) -> bool {
        matches!(self, Self::Io(_))
    }
}

/// An [`EncryptedChannel`] on a byte stream: [`send`](Self::send) seals and writes a message,
/// received messages come out of the link as a [`Stream`], by [`recv`](Self::recv), or through
/// the [`on_message`](Self::on_message) callback while [`run`](Self::run) drives it. `T` is
/// what the peer sends (any JSON by default).
///
/// ```
/// use enclave_stream::channel::ChannelLink;
/// use enclave_stream::crypto::{create_encrypted_channel, PendingChannel, Role};
/// use futures::StreamExt;
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let server = PendingChannel::new(Role::Server)?;
/// let client = create_encrypted_channel(Role::Client, server.public_key())?;
/// let server = server.accept(client.public_key().expect("generated"))?;
///
/// let (client_io, server_io) = tokio::io::duplex(4096);
/// let mut client: ChannelLink<_> = ChannelLink::new(client, client_io);
/// let mut server: ChannelLink<_> = ChannelLink::new(server, server_io);
/// client.send(&serde_json::json!({"n": 1})).await?;
/// client.close().await?;
/// let first = server.next().await.expect("one message")?;
/// assert_eq!(first["n"], 1);
/// assert!(server.next().await.is_none(), "the client closed");
/// # Ok(())
/// # }
/// ```
pub struct ChannelLink<IO, T = serde_json::Value> {
    framed: Framed<IO, LengthDelimitedCodec>,
    channel: EncryptedChannel,
    on_message: Option<Box<dyn FnMut(T) + Send>>,
    sent: u64,
    received: u64,
    _item: PhantomData<fn() -> T>,
}

impl<IO, T> ChannelLink<IO, T>
where
    IO: AsyncRead + AsyncWrite + Unpin,
    T: DeserializeOwned,
{
    /// Ties `channel` to `io`. Both ends of `io` must be [`ChannelLink`]s whose channels
    /// agreed with each other.
    pub fn new(channel: EncryptedChannel, io: IO) -> Self {
        let codec = LengthDelimitedCodec::builder()
            .max_frame_length(MAX_FRAME_LEN)
            .new_codec();
        Self {
            framed: Framed::new(io, codec),
            channel,
            on_message: None,
            sent: 0,
            received: 0,
            _item: PhantomData,
        }
    }

    /// Calls `f` with each message [`run`](Self::run) receives.
    pub fn on_message(&mut self, f: impl FnMut(T) + Send + 'static) {
        self.on_message = Some(Box::new(f));
    }

    /// Seals `message` as JSON and writes it. A message that cannot be sealed is refused
    /// ([`ChannelError::Message`]) with nothing written.
    pub async fn send<M: Serialize + ?Sized>(&mut self, message: &M) -> Result<(), ChannelError> {
        let number = self.sent + 1;
        let sealed = self
            .channel
            .seal_json(message)
            .map_err(|source| ChannelError::Message {
                direction: "outgoing",
                number,
                source,
            })?;
        self.framed.send(Bytes::from(sealed)).await?;
        self.sent = number;
        Ok(())
    }

    /// The next message; `None` once the peer has closed its side.
    pub async fn recv(&mut self) -> Option<Result<T, ChannelError>> {
        self.next().await
    }

    /// Receives until the peer closes, handing each message to the
    /// [`on_message`](Self::on_message) callback (without one, messages are only counted);
    /// returns how many it handed over. Stops at the first error, which it returns; after a
    /// [`ChannelError::Message`] the link can be run again.
    pub async fn run(&mut self) -> Result<u64, ChannelError> {
        let mut count = 0;
        while let Some(message) = self.next().await {
            let message = message?;
            count += 1;
            if let Some(on_message) = &mut self.on_message {
                on_message(message);
            }
        }
        Ok(count)
    }

    /// Flushes what was sent and shuts our writing side down; the peer's stream then ends.
    pub async fn close(&mut self) -> Result<(), ChannelError> {
        SinkExt::<Bytes>::close(&mut self.framed).await?;
        Ok(())
    }

    /// The channel: its public key and how many messages it sealed.
    pub fn channel(&self) -> &EncryptedChannel {
        &self.channel
    }

    /// Messages sent so far.
    pub fn sent(&self) -> u64 {
        self.sent
    }
}

impl<IO, T> Stream for ChannelLink<IO, T>
where
    IO: AsyncRead + AsyncWrite + Unpin,
    T: DeserializeOwned,
{
    type Item = Result<T, ChannelError>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        // Every field is Unpin (the byte stream is required to be), so no projection.
        let this = self.get_mut();
        let frame = match futures::ready!(this.framed.poll_next_unpin(cx)) {
            None => return Poll::Ready(None),
            Some(Err(err)) => return Poll::Ready(Some(Err(ChannelError::Io(err)))),
            Some(Ok(frame)) => frame,
        };
        this.received += 1;
        let number = this.received;
        Poll::Ready(Some(this.channel.open_json(&frame).map_err(|source| {
            ChannelError::Message {
                direction: "incoming",
                number,
                source,
            }
        })))
    }
}

impl<IO, T> fmt::Debug for ChannelLink<IO, T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ChannelLink")
            .field("channel", &self.channel)
            .field("sent", &self.sent)
            .field("received", &self.received)
            .field("on_message", &self.on_message.is_some())
            .finish_non_exhaustive()
    }
}
