//! Opening a connection: (KuCoin bullet), upgrade, (KuCoin welcome), subscribe. Hands both halves
//! over once subscribed; must not keep, read or ping a connection after that.

use std::sync::Arc;
use std::time::Duration;

use fastwebsockets::{Frame, OpCode, WebSocketError};
use rand::Rng;
use tokio_util::sync::CancellationToken;

use super::SlotSettings;
use super::link::LinkWriter;
use crate::counters::{SlotCounters, bump};
use crate::planner::{SlotEndpoint, SlotPlan};
use crate::protocol;
use crate::ws::{self, ConnectError, WsReader};
use tickflow_core::record::now_ns;
use tickflow_core::venue::Venue;
use tickflow_decode::{ControlEvent, Decoder, FrameEncoding, FrameOutcome, RecordBatch};

/// What opening a connection needs, all shared or cloned, so a rotation's open runs as its own
/// future in the session's `select!` while the slot keeps reading the primary.
#[derive(Clone)]
pub(super) struct Opener {
    plan: Arc<SlotPlan>,
    counters: Arc<SlotCounters>,
    tls: tokio_rustls::TlsConnector,
    connect_timeout: Duration,
    max_frame_bytes: usize,
    cancel: CancellationToken,
    /// Reused between opens; locked only between awaits (one open runs at a time).
    scratch: Arc<std::sync::Mutex<OpenScratch>>,
}

/// An opener's reusable state.
struct OpenScratch {
    /// KuCoin only: decodes the `welcome` (the slot's own decoder serves the primary meanwhile).
    welcome: Option<(Box<dyn Decoder>, RecordBatch)>,
    requests: Vec<String>,
    request_id: u64,
}

/// An open, subscribed connection.
pub(super) struct Opened {
    pub(super) reader: WsReader,
    pub(super) writer: LinkWriter,
    /// KuCoin's ping interval from its bullet, unless one is configured.
    pub(super) ping_interval: Option<Duration>,
}

impl Opener {
    pub(super) fn new(
        plan: &Arc<SlotPlan>,
        counters: &Arc<SlotCounters>,
        settings: &SlotSettings,
        welcome_decoder: Option<Box<dyn Decoder>>,
        cancel: &CancellationToken,
    ) -> Opener {
        let limits = settings.limits;
        Opener {
            plan: Arc::clone(plan),
            counters: Arc::clone(counters),
            tls: settings.tls.clone(),
            connect_timeout: settings.timings.connect_timeout,
            max_frame_bytes: limits.max_frame_bytes,
            cancel: cancel.clone(),
            scratch: Arc::new(std::sync::Mutex::new(OpenScratch {
                welcome: welcome_decoder.map(|decoder| {
                    (
                        decoder,
                        RecordBatch::with_capacity(limits.max_records_per_frame),
                    )
                }),
                requests: Vec::new(),
                request_id: 0,
            })),
        }
    }

    fn scratch(&self) -> std::sync::MutexGuard<'_, OpenScratch> {
        // Poisoned only if a decoder panicked mid-welcome; the scratch is still usable.
        self.scratch
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Opens a connection: (KuCoin bullet), upgrade, (KuCoin welcome), subscribe.
    pub(super) async fn open(self) -> Result<Opened, ConnectError> {
        let timeout = self.connect_timeout;
        let connect = async {
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
            let (mut reader, writer) =
                ws::connect(&url, timeout, self.max_frame_bytes, &self.tls).await?;
            let mut writer = LinkWriter::new(writer);
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
            })
        };
        tokio::select! {
            result = connect => result,
            _ = self.cancel.cancelled() => Err(ConnectError::Cancelled),
        }
    }

    /// Reads frames until KuCoin's `welcome`; the connection is unusable before it.
    async fn wait_welcome(&self, reader: &mut WsReader) -> Result<(), ConnectError> {
        let mut no_obligated_send =
            |_frame: Frame<'_>| async { Ok::<(), std::convert::Infallible>(()) };
        loop {
            let frame = reader.read_frame(&mut no_obligated_send).await?;
            bump(&self.counters.frames);
            let encoding = match frame.opcode {
                OpCode::Text => FrameEncoding::Text,
                OpCode::Binary => FrameEncoding::Binary,
                OpCode::Close => {
                    return Err(ConnectError::WebSocket(WebSocketError::ConnectionClosed));
                }
                _ => continue,
            };
            let mut payload = frame.payload;
            let mut scratch = self.scratch();
            let Some((decoder, batch)) = scratch.welcome.as_mut() else {
                // Only a KuCoin slot waits for a welcome, and it has the decoder for it.
                return Ok(());
            };
            batch.clear();
            let outcome = decoder.decode(payload.to_mut(), encoding, now_ns(), batch);
            batch.clear();
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
            protocol::subscribe_requests(
                self.plan.venue,
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
            writer.write_text(request).await?;
        }
        requests.clear();
        self.scratch().requests = requests;
        Ok(())
    }
}
