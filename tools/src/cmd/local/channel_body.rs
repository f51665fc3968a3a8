//! An HTTP body whose frames arrive through a channel, for answers whose length is not known
//! when their head is sent (a streamed response forwarded as it comes).
//!
//! The sender must say the body is complete ([`BodySender::finish`]). A sender that fails or
//! is dropped before that (the stream broke, a deadline passed, `scar local` was stopped)
//! fails the body: hyper then closes the connection without the chunked encoding's last chunk,
//! which is how a client learns that the response it was reading is incomplete. A body that
//! simply stopped would look whole.

use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use hyper::body::{Body, Frame, SizeHint};
use tokio::sync::mpsc;

/// What travels through the channel.
#[derive(Debug)]
enum Piece {
    Frame(Frame<Bytes>),
    Failed(std::io::Error),
    End,
}

/// The reader went away: nothing sent now reaches anyone.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReaderGone;

/// A body read from a channel, or one already whole.
#[derive(Debug)]
pub struct ChannelBody {
    kind: Kind,
}

#[derive(Debug)]
enum Kind {
    /// All of it, sent with a `Content-Length`.
    Whole(Option<Bytes>),
    /// Frames as they come, until the end or a failure.
    Channel(mpsc::Receiver<Piece>),
    /// Ended, or failed and reported.
    Done,
}

/// The sending half of a channel body.
#[derive(Debug)]
pub struct BodySender {
    sender: mpsc::Sender<Piece>,
}

impl BodySender {
    /// Send `bytes`, waiting while the reader is `depth` frames behind.
    pub async fn data(&self, bytes: Bytes) -> Result<(), ReaderGone> {
        self.frame(Frame::data(bytes)).await
    }

    /// Send any frame (trailers end an HTTP/1.1 chunked body once [`Self::finish`] follows).
    pub async fn frame(&self, frame: Frame<Bytes>) -> Result<(), ReaderGone> {
        self.sender
            .send(Piece::Frame(frame))
            .await
            .map_err(|_| ReaderGone)
    }

    /// The body is complete.
    pub async fn finish(self) {
        let _ = self.sender.send(Piece::End).await;
    }

    /// The body broke: its reader gets `error`.
    pub async fn fail(self, error: std::io::Error) {
        let _ = self.sender.send(Piece::Failed(error)).await;
    }
}

impl ChannelBody {
    /// A body of `bytes`, whose length is known up front.
    pub fn whole(bytes: impl Into<Bytes>) -> Self {
        let bytes = bytes.into();
        Self {
            kind: Kind::Whole((!bytes.is_empty()).then_some(bytes)),
        }
    }

    /// A body fed through the returned sender, `depth` frames ahead of the reader at most.
    pub fn channel(depth: usize) -> (BodySender, Self) {
        let (sender, receiver) = mpsc::channel(depth.max(1));
        (
            BodySender { sender },
            Self {
                kind: Kind::Channel(receiver),
            },
        )
    }
}

impl Body for ChannelBody {
    type Data = Bytes;
    type Error = std::io::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, std::io::Error>>> {
        let piece = match &mut self.kind {
            Kind::Whole(bytes) => return Poll::Ready(bytes.take().map(|b| Ok(Frame::data(b)))),
            Kind::Done => return Poll::Ready(None),
            Kind::Channel(receiver) => match receiver.poll_recv(cx) {
                Poll::Pending => return Poll::Pending,
                Poll::Ready(piece) => piece,
            },
        };
        Poll::Ready(match piece {
            Some(Piece::Frame(frame)) => Some(Ok(frame)),
            Some(Piece::End) => {
                self.kind = Kind::Done;
                None
            }
            Some(Piece::Failed(error)) => {
                self.kind = Kind::Done;
                Some(Err(error))
            }
            None => {
                self.kind = Kind::Done;
                Some(Err(std::io::Error::other(
                    "the answer was cut short before its end",
                )))
            }
        })
    }

    fn is_end_stream(&self) -> bool {
        matches!(&self.kind, Kind::Whole(None) | Kind::Done)
    }

    fn size_hint(&self) -> SizeHint {
        match &self.kind {
            Kind::Whole(bytes) => {
                SizeHint::with_exact(bytes.as_ref().map_or(0, |b| b.len() as u64))
            }
            Kind::Done => SizeHint::with_exact(0),
            Kind::Channel(_) => SizeHint::default(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::BodyExt;

    #[tokio::test]
    async fn a_whole_body_has_an_exact_length_and_one_frame() {
        let body = ChannelBody::whole(Bytes::from_static(b"hello"));
        assert_eq!(body.size_hint().exact(), Some(5));
        assert_eq!(body.collect().await.unwrap().to_bytes(), "hello");
        assert!(ChannelBody::whole(Bytes::new()).is_end_stream());
    }

    #[tokio::test]
    async fn a_channel_body_yields_what_was_sent_until_it_is_finished() {
        let (sender, body) = ChannelBody::channel(2);
        assert_eq!(body.size_hint().exact(), None);
        tokio::spawn(async move {
            for piece in ["a", "b", "c"] {
                sender.data(Bytes::from(piece)).await.unwrap();
            }
            sender.finish().await;
        });
        assert_eq!(body.collect().await.unwrap().to_bytes(), "abc");
    }

    #[tokio::test]
    async fn a_failed_or_abandoned_channel_body_is_an_error_not_a_short_body() {
        let (sender, body) = ChannelBody::channel(2);
        sender.data(Bytes::from("a")).await.unwrap();
        sender.fail(std::io::Error::other("stream broke")).await;
        assert!(body.collect().await.is_err());

        let (sender, body) = ChannelBody::channel(2);
        sender.data(Bytes::from("a")).await.unwrap();
        drop(sender);
        assert!(body.collect().await.is_err());
    }
}
