//! `real-rates`: the simulator's paced mode over TLS (one frame per TLS record, counted on the
//! wire by a client that parses the record headers it reads) and the run's input checks. A tiny
//! run against the real `tickflow` binary is in the engine's tests (engine/cli/tests/it), where
//! cargo builds that binary for the test.

use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use fastwebsockets::{Frame, OpCode, Payload, Role, WebSocket};
use tickflow_core::venue::Venue;
use tickflow_load::pki::TestPki;
use tickflow_load::real_rates::{self, RealRatesError, RealRatesSettings};
use tickflow_sim::{SimConfig, SimVenues, VenueControl};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::net::TcpStream;
use tokio_util::sync::CancellationToken;

/// Bounds every wait of these tests (a hung simulator fails the test instead of hanging it).
const WAIT: Duration = Duration::from_secs(20);

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("a tokio runtime starts")
}

/// A TCP stream that counts the TLS application-data records (content type 23) it reads, by
/// following the 5-byte record headers in the raw bytes.
struct RecordCounter {
    inner: TcpStream,
    header: [u8; 5],
    header_filled: usize,
    body_left: usize,
    application_data_records: Arc<AtomicU64>,
}

impl RecordCounter {
    fn count(&mut self, mut bytes: &[u8]) {
        while !bytes.is_empty() {
            if self.body_left > 0 {
                let skipped = self.body_left.min(bytes.len());
                self.body_left -= skipped;
                bytes = &bytes[skipped..];
                continue;
            }
            self.header[self.header_filled] = bytes[0];
            self.header_filled += 1;
            bytes = &bytes[1..];
            if self.header_filled == self.header.len() {
                self.header_filled = 0;
                if self.header[0] == 23 {
                    self.application_data_records.fetch_add(1, Ordering::SeqCst);
                }
                self.body_left = u16::from_be_bytes([self.header[3], self.header[4]]) as usize;
            }
        }
    }
}

impl AsyncRead for RecordCounter {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let before = buf.filled().len();
        let polled = Pin::new(&mut self.inner).poll_read(cx, buf);
        if let Poll::Ready(Ok(())) = polled {
            let read = buf.filled()[before..].to_vec();
            self.count(&read);
        }
        polled
    }
}

impl AsyncWrite for RecordCounter {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }
    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }
    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

type Client = WebSocket<tokio_rustls::client::TlsStream<RecordCounter>>;

/// Opens `wss://127.0.0.1:port/ws/binance` trusting only `pki`'s CA.
async fn connect_binance(sim: &SimVenues, pki: &TestPki, records: Arc<AtomicU64>) -> Client {
    let address = sim.address(Venue::Binance).expect("binance is simulated");
    let stream = TcpStream::connect(address)
        .await
        .expect("the simulator accepts");
    let counter = RecordCounter {
        inner: stream,
        header: [0; 5],
        header_filled: 0,
        body_left: 0,
        application_data_records: records,
    };
    let mut roots = rustls::RootCertStore::empty();
    roots
        .add(pki.ca_der.clone())
        .expect("the test CA is a valid root");
    let config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .expect("ring supports the default versions")
    .with_root_certificates(roots)
    .with_no_client_auth();
    let name = rustls::pki_types::ServerName::try_from("127.0.0.1")
        .expect("an IP address is a server name")
        .to_owned();
    let mut tls = tokio_rustls::TlsConnector::from(Arc::new(config))
        .connect(name, counter)
        .await
        .expect("the TLS handshake with the test CA succeeds");
    let request = format!(
        "GET /ws/binance HTTP/1.1\r\nHost: {address}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
    );
    tls.write_all(request.as_bytes())
        .await
        .expect("upgrade sent");
    tls.flush().await.expect("upgrade flushed");
    // Byte by byte, so that nothing after the response head is taken from the WebSocket.
    let mut head = Vec::new();
    while !head.ends_with(b"\r\n\r\n") {
        assert!(head.len() < 8_192, "response head too long");
        head.push(tls.read_u8().await.expect("upgrade response"));
    }
    assert!(
        head.starts_with(b"HTTP/1.1 101"),
        "{}",
        String::from_utf8_lossy(&head)
    );
    WebSocket::after_handshake(tls, Role::Client)
}

#[test]
fn paced_mode_sends_every_frame_in_its_own_tls_record() {
    let pki = TestPki::generate().expect("test certificates");
    runtime().block_on(async {
        let sim = SimVenues::start_tls(
            SimConfig {
                venues: vec![Venue::Binance],
                symbols: tickflow_load::symbol_names(3),
                paced: true,
                ..SimConfig::default()
            },
            Arc::clone(&pki.server_config),
        )
        .await
        .expect("the simulator binds loopback");
        let records = Arc::new(AtomicU64::new(0));
        let mut client = connect_binance(&sim, &pki, Arc::clone(&records)).await;
        let subscribe = br#"{"method":"SUBSCRIBE","params":["btcusdt@bookTicker","ethusdt@bookTicker"],"id":1}"#;
        client
            .write_frame(Frame::text(Payload::Borrowed(subscribe)))
            .await
            .expect("subscribe sent");
        client.flush().await.expect("subscribe flushed");
        tokio::time::timeout(WAIT, async {
            loop {
                let frame = client.read_frame().await.expect("the session stays up");
                if frame.opcode == OpCode::Text && frame.payload.starts_with(br#"{"result""#) {
                    break;
                }
            }
        })
        .await
        .expect("the subscribe is acknowledged");
        let control = sim.control(Venue::Binance);
        assert_eq!(VenueControl::get(&control.live_session_topics), 2);
        assert_eq!(sim.data_frames_sent(), 0, "no data before a rate is set");

        let records_before = records.load(Ordering::SeqCst);
        sim.set_paced_frames_per_s(2_000.0);
        let mut data_frames = 0u64;
        tokio::time::timeout(WAIT, async {
            while data_frames < 200 {
                let frame = client.read_frame().await.expect("the session stays up");
                if frame.opcode == OpCode::Text && frame.payload.starts_with(br#"{"u":"#) {
                    data_frames += 1;
                }
            }
        })
        .await
        .expect("paced data arrives");
        sim.set_paced_frames_per_s(0.0);
        let data_records = records.load(Ordering::SeqCst) - records_before;
        // Batched writes would put many frames in one record; paced mode never does.
        assert!(
            data_records >= data_frames,
            "{data_frames} data frames arrived in only {data_records} TLS records"
        );
        // The simulator counts a frame after its flush returns, which can be after the client
        // read it: wait (bounded) for the count to catch up.
        tokio::time::timeout(WAIT, async {
            while sim.data_frames_sent() < data_frames {
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
        })
        .await
        .expect("the simulator counts every frame it sent");
        drop(client);
        sim.shutdown().await;
    });
}

#[test]
fn a_run_needs_two_venues_and_positive_rates() {
    let runtime = runtime();
    let cancel = CancellationToken::new();
    let one_venue = RealRatesSettings {
        venues: vec![Venue::Okx, Venue::Okx],
        ..RealRatesSettings::default()
    };
    assert!(matches!(
        real_rates::run(&one_venue, &runtime, &cancel),
        Err(RealRatesError::TooFewVenues(1))
    ));
    let zero_rate = RealRatesSettings {
        rates_frames_per_s: vec![1_000, 0],
        ..RealRatesSettings::default()
    };
    assert!(matches!(
        real_rates::run(&zero_rate, &runtime, &cancel),
        Err(RealRatesError::BadRates)
    ));
}
