//! yamux, with every stream's receive window held at yamux's default of 256 KiB.
//!
//! Why not libp2p's own `yamux::Config::default`: rust-yamux grows a busy stream's receive
//! window (up to 16 MiB) but refuses any data frame over 1 MiB and closes the whole
//! connection when one arrives. js-yamux (Helia) sends frames as large as the window it was
//! granted, so after a few fast megabytes a Helia peer's 2 MiB frame kills the connection
//! (seen here: `Header Data (len 2097140)`, then ECONNRESET on Helia's side). Capping the
//! connection's total window at 256 KiB per stream stops the growth, so no peer is ever
//! granted room for a frame rust-yamux would refuse. Bitswap spreads its answers over
//! several streams at once (`bitswap::peer`), so the per-stream window bounds each stream,
//! not a peer's throughput.
//!
//! libp2p-yamux does not expose that setting, hence this small muxer: the same protocol name
//! and behaviour over the same `yamux` crate.

use std::{
    collections::VecDeque,
    io,
    pin::Pin,
    task::{Context, Poll, Waker},
};

use futures::{future, AsyncRead, AsyncWrite};
use libp2p::core::{
    muxing::{StreamMuxer, StreamMuxerEvent},
    upgrade::{InboundConnectionUpgrade, OutboundConnectionUpgrade, UpgradeInfo},
};

/// Streams per connection (yamux's default is 512). Each may hold a window of data received
/// and not yet read, so this bounds what a peer can make us buffer per connection:
/// 64 × 256 KiB = 16 MiB, whatever it does with its streams. Bitswap reads at most 16 streams
/// of a connection at once and writes at most 16.
const MAX_STREAMS: usize = 64;
/// yamux's initial (and, here, final) window of a stream.
pub(crate) const STREAM_WINDOW: usize = 256 << 10;
/// All streams of a connection together (yamux requires room for every stream's window).
const CONNECTION_WINDOW: usize = MAX_STREAMS * STREAM_WINDOW;
/// Inbound streams accepted but not yet taken by the swarm.
const MAX_PENDING_INBOUND: usize = 64;

/// The muxer upgrade: `/yamux/1.0.0`.
#[derive(Debug, Clone)]
pub struct Yamux(yamux::Config);

impl Default for Yamux {
    fn default() -> Self {
        let mut c = yamux::Config::default();
        c.set_max_num_streams(MAX_STREAMS);
        c.set_max_connection_receive_window(Some(CONNECTION_WINDOW));
        Yamux(c)
    }
}

impl UpgradeInfo for Yamux {
    type Info = &'static str;
    type InfoIter = std::iter::Once<&'static str>;

    fn protocol_info(&self) -> Self::InfoIter {
        std::iter::once("/yamux/1.0.0")
    }
}

impl<C> InboundConnectionUpgrade<C> for Yamux
where
    C: AsyncRead + AsyncWrite + Send + Unpin + 'static,
{
    type Output = Muxer<C>;
    type Error = io::Error;
    type Future = future::Ready<Result<Muxer<C>, io::Error>>;

    fn upgrade_inbound(self, io: C, _: Self::Info) -> Self::Future {
        future::ready(Ok(Muxer::new(yamux::Connection::new(
            io,
            self.0,
            yamux::Mode::Server,
        ))))
    }
}

impl<C> OutboundConnectionUpgrade<C> for Yamux
where
    C: AsyncRead + AsyncWrite + Send + Unpin + 'static,
{
    type Output = Muxer<C>;
    type Error = io::Error;
    type Future = future::Ready<Result<Muxer<C>, io::Error>>;

    fn upgrade_outbound(self, io: C, _: Self::Info) -> Self::Future {
        future::ready(Ok(Muxer::new(yamux::Connection::new(
            io,
            self.0,
            yamux::Mode::Client,
        ))))
    }
}

/// One yamux connection, as the swarm sees a muxer.
pub struct Muxer<C> {
    connection: yamux::Connection<C>,
    inbound: VecDeque<yamux::Stream>,
    waker: Option<Waker>,
}

impl<C> Muxer<C> {
    fn new(connection: yamux::Connection<C>) -> Self {
        Muxer {
            connection,
            inbound: VecDeque::new(),
            waker: None,
        }
    }
}

impl<C> Muxer<C>
where
    C: AsyncRead + AsyncWrite + Unpin + 'static,
{
    /// Drives the connection; the next inbound stream, if one arrived.
    fn poll_next(
        &mut self,
        cx: &mut Context<'_>,
    ) -> Poll<Result<yamux::Stream, yamux::ConnectionError>> {
        match self.connection.poll_next_inbound(cx) {
            Poll::Ready(Some(r)) => Poll::Ready(r),
            Poll::Ready(None) => Poll::Ready(Err(yamux::ConnectionError::Closed)),
            Poll::Pending => Poll::Pending,
        }
    }
}

impl<C> StreamMuxer for Muxer<C>
where
    C: AsyncRead + AsyncWrite + Unpin + 'static,
{
    type Substream = yamux::Stream;
    type Error = yamux::ConnectionError;

    fn poll_inbound(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Result<Self::Substream, Self::Error>> {
        let this = self.get_mut();
        if let Some(s) = this.inbound.pop_front() {
            return Poll::Ready(Ok(s));
        }
        if let Poll::Ready(r) = this.poll_next(cx) {
            return Poll::Ready(r);
        }
        this.waker = Some(cx.waker().clone());
        Poll::Pending
    }

    fn poll_outbound(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Result<Self::Substream, Self::Error>> {
        self.get_mut().connection.poll_new_outbound(cx)
    }

    fn poll_close(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.get_mut().connection.poll_close(cx)
    }

    fn poll(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Result<StreamMuxerEvent, Self::Error>> {
        let this = self.get_mut();
        let stream = match this.poll_next(cx) {
            Poll::Ready(r) => r?,
            Poll::Pending => return Poll::Pending,
        };
        if this.inbound.len() >= MAX_PENDING_INBOUND {
            log::warn!("yamux: dropping an inbound stream, {MAX_PENDING_INBOUND} already wait");
        } else {
            this.inbound.push_back(stream);
            if let Some(w) = this.waker.take() {
                w.wake();
            }
        }
        // Let other work run, then come back for more.
        cx.waker().wake_by_ref();
        Poll::Pending
    }
}
