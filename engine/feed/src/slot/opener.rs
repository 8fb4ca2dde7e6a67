//! Opening a connection: (KuCoin bullet), upgrade, (KuCoin welcome), subscribe. Hands both halves
//! over once subscribed; must not keep, read or ping a connection after that.

use std::sync::Arc;
use std::time::Duration;

use rand::Rng;
use tokio_util::sync::CancellationToken;

use super::SlotSettings;
use super::decode_pool::DecodePool;
use super::link::LinkWriter;
use crate::counters::{SlotCounters, bump};
use crate::framing::{self, Incoming};
use crate::pacer::ConnectPacer;
use crate::planner::{SlotEndpoint, SlotPlan};
use crate::protocol;
use crate::ws::{self, ConnectError, WsReader};
use tickflow_core::record::now_ns;
use tickflow_core::venue::Venue;
use tickflow_decode::{ControlEvent, FrameEncoding, FrameOutcome};

/// Which seat an open is for. A replacement reads only messages that fit its first buffer
/// until it takes over: its primary, still open and read, delivers everything meanwhile, so a
/// slot needs one large message buffer at a time, not two (see the frame buffers budget line).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum SeatRole {
    Primary,
    Replacement,
}

/// The message limit of a replacement's reader: what its first buffer holds (with a control frame
/// between fragments at the limit).
pub(crate) fn replacement_message_bytes(max_frame_bytes: usize) -> usize {
    (framing::RECEIVE_BUFFER_BYTES - framing::MAX_BUFFER_OVERHEAD_BYTES).min(max_frame_bytes)
}

/// What opening a connection needs, all shared or cloned, so a rotation's open runs as its own
/// future in the session's `select!` while the slot keeps reading the primary.
#[derive(Clone)]
pub(super) struct Opener {
    plan: Arc<SlotPlan>,
    /// The venue's connection-rate bucket (shared by its slots).
    pacer: Arc<ConnectPacer>,
    counters: Arc<SlotCounters>,
    tls: tokio_rustls::TlsConnector,
    connect_timeout: Duration,
    write_timeout: Duration,
    max_frame_bytes: usize,
    /// Decodes KuCoin's `welcome` (a slot's decoding scratch is shared, see `DecodePool`).
    decode_pool: Arc<DecodePool>,
    cancel: CancellationToken,
    /// Reused between opens; locked only between awaits (one open runs at a time).
    scratch: Arc<std::sync::Mutex<OpenScratch>>,
}

/// An opener's reusable state.
struct OpenScratch {
    requests: Vec<String>,
    request_id: u64,
}

/// An open, subscribed connection.
pub(super) struct Opened {
    pub(super) reader: WsReader,
    pub(super) writer: LinkWriter,
    /// KuCoin's ping interval from its bullet, unless one is configured.
    pub(super) ping_interval: Option<Duration>,
    /// The plan whose topics it subscribed: the slot's plan once it is the primary.
    pub(super) plan: Arc<SlotPlan>,
}

impl Opener {
    pub(super) fn new(
        plan: &Arc<SlotPlan>,
        counters: &Arc<SlotCounters>,
        settings: &SlotSettings,
        cancel: &CancellationToken,
    ) -> Opener {
        Opener {
            plan: Arc::clone(plan),
            pacer: Arc::clone(&settings.pacers[plan.venue.index()]),
            counters: Arc::clone(counters),
            tls: settings.tls.clone(),
            connect_timeout: settings.timings.connect_timeout,
            write_timeout: settings.timings.write_timeout,
            max_frame_bytes: settings.max_frame_bytes,
            decode_pool: Arc::clone(&settings.decode_pool),
            cancel: cancel.clone(),
            scratch: Arc::new(std::sync::Mutex::new(OpenScratch {
                requests: Vec::new(),
                request_id: 0,
            })),
        }
    }

    /// The same opener for `plan` (a plan change: the next connection subscribes to its topics).
    pub(super) fn with_plan(&self, plan: &Arc<SlotPlan>) -> Opener {
        Opener {
            plan: Arc::clone(plan),
            ..self.clone()
        }
    }

    /// The plan the next open subscribes to.
    pub(super) fn plan(&self) -> &Arc<SlotPlan> {
        &self.plan
    }

    fn scratch(&self) -> std::sync::MutexGuard<'_, OpenScratch> {
        // Poisoned only if a decoder panicked mid-welcome; the scratch is still usable.
        self.scratch
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Opens a connection for `role`: (KuCoin bullet), upgrade, (KuCoin welcome), subscribe.
    pub(super) async fn open(self, role: SeatRole) -> Result<Opened, ConnectError> {
        let timeout = self.connect_timeout;
        let connect = async {
            // The venue's connection-rate limit, before anything is dialled (not part of the
            // connect timeout: waiting for a token is not a slow venue).
            self.pacer.take().await;
            let mut ping_interval = None;
            let url = match &self.plan.endpoint {
                SlotEndpoint::Url(url) => url.clone(),
                SlotEndpoint::KucoinBullet(bullet_url) => {
                    let connect_id: u64 = rand::rng().random();
                    let bullet =
                        ws::kucoin_bullet(bullet_url, connect_id, timeout, &self.tls).await?;
                    if !self.plan.ping_interval_configured {
                        ping_interval = Some(Duration::from_millis(bullet.ping_interval_ms));
                    }
                    bullet.url
                }
            };
            let max_message_bytes = match role {
                SeatRole::Primary => self.max_frame_bytes,
                SeatRole::Replacement => replacement_message_bytes(self.max_frame_bytes),
            };
            let (mut reader, writer) =
                ws::connect(&url, timeout, max_message_bytes, &self.tls).await?;
            let mut writer = LinkWriter::new(writer, self.write_timeout);
            if self.plan.venue == Venue::Kucoin {
                tokio::time::timeout(timeout, self.wait_welcome(&mut reader))
                    .await
                    .map_err(|_| ConnectError::Timeout)??;
            }
            self.subscribe(&mut writer).await?;
            Ok::<_, ConnectError>(Opened {
                reader,
                writer,
                ping_interval,
                plan: Arc::clone(&self.plan),
            })
        };
        tokio::select! {
            result = connect => result,
            _ = self.cancel.cancelled() => Err(ConnectError::Cancelled),
        }
    }

    /// Reads frames until KuCoin's `welcome`; the connection is unusable before it.
    async fn wait_welcome(&self, reader: &mut WsReader) -> Result<(), ConnectError> {
        loop {
            let incoming = reader.next().await.map_err(ConnectError::Read)?;
            bump(&self.counters.frames);
            let encoding = match incoming {
                Incoming::Message { binary: false } => FrameEncoding::Text,
                Incoming::Message { binary: true } => FrameEncoding::Binary,
                Incoming::Close => return Err(ConnectError::Read(framing::ReadError::Closed)),
                Incoming::Oversized { .. } => {
                    bump(&self.counters.oversized_frames);
                    continue;
                }
                Incoming::Ping(_) | Incoming::Pong => continue,
            };
            // Decoded in one go: the scratch is never held across an await.
            let outcome = self
                .decode_pool
                .lock(self.plan.connection_id as usize)
                .decode(self.plan.venue, reader.message_mut(), encoding, now_ns());
            match outcome {
                Ok(FrameOutcome::Control(ControlEvent::Welcome)) => return Ok(()),
                Ok(_) => {}
                Err(error) => bump(&self.counters.decode_errors[error.kind.index()]),
            }
        }
    }

    /// Sends the slot's subscription set, paced by the venue's request rate.
    async fn subscribe(&self, writer: &mut LinkWriter) -> Result<(), ConnectError> {
        let unix_s = now_ns() / 1_000_000_000;
        // Taken out while writing (no lock across an await), put back for the next open.
        let mut requests = {
            let mut scratch = self.scratch();
            let mut requests = std::mem::take(&mut scratch.requests);
            requests.clear();
            protocol::subscribe_requests_for(
                self.plan.venue,
                self.plan.rules.api,
                &self.plan.topics,
                unix_s,
                &mut scratch.request_id,
                &mut requests,
            );
            requests
        };
        let interval = Duration::from_millis(self.plan.rules.min_request_interval_ms);
        for (index, request) in requests.iter().enumerate() {
            if index > 0 {
                // Rate limiting, not synchronization: venues cut clients that send too fast.
                tokio::time::sleep(interval).await;
            }
            writer
                .send_text(request)
                .await
                .map_err(ConnectError::Write)?;
        }
        requests.clear();
        self.scratch().requests = requests;
        Ok(())
    }
}
