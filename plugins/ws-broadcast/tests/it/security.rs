//! Limits and security: bad messages get error frames, token and Origin refusals, the loopback
//! rule, the stated memory bound.

use fastwebsockets::{Frame, Payload, WebSocketError};
use tickflow_sdk::{Sink, SinkError};
use tickflow_ws_broadcast::{WsBroadcast, WsConfig};

use crate::support;

const TOKEN: &str = "s3cret-token-0123456789";

fn error_code(value: &serde_json::Value) -> String {
    value["code"].as_str().unwrap_or_default().to_string()
}

#[test]
fn bad_json_unknown_channels_oversized_and_too_frequent_messages_get_error_frames() {
    let runtime = support::runtime();
    let sink = support::start(WsConfig {
        client_message_bytes_max: 256,
        client_messages_per_s: 5.0,
        ..support::config()
    });
    let addr = sink.local_addr();
    runtime.block_on(async {
        let mut client = support::connect(addr).await;
        support::send(&mut client, "{not json").await;
        assert_eq!(
            error_code(&support::next_json(&mut client).await),
            "bad_json"
        );
        support::send(&mut client, r#"{"op":"dance"}"#).await;
        assert_eq!(
            error_code(&support::next_json(&mut client).await),
            "unknown_op"
        );
        support::send(
            &mut client,
            r#"{"op":"subscribe","channels":["candles:BTC-USDT"]}"#,
        )
        .await;
        assert_eq!(
            error_code(&support::next_json(&mut client).await),
            "unknown_channel"
        );
        let oversized = format!(
            r#"{{"op":"subscribe","channels":["quotes:BTC-USDT"],"pad":"{}"}}"#,
            "x".repeat(1000)
        );
        support::send(&mut client, &oversized).await;
        assert_eq!(
            error_code(&support::next_json(&mut client).await),
            "message_too_large"
        );
        client
            .write_frame(Frame::binary(Payload::Owned(vec![1, 2, 3])))
            .await
            .expect("writes");
        assert_eq!(
            error_code(&support::next_json(&mut client).await),
            "binary_not_supported"
        );
        // A fresh client: 5 messages of burst, then refusals.
        let mut flooding = support::connect(addr).await;
        for _ in 0..20 {
            support::send(&mut flooding, r#"{"op":"subscribe","channels":["gaps"]}"#).await;
        }
        let mut acks = 0;
        let mut rate_limited = 0;
        for _ in 0..20 {
            let reply = support::next_json(&mut flooding).await;
            if reply["op"] == "subscribed" {
                acks += 1;
            } else if error_code(&reply) == "rate_limited" {
                rate_limited += 1;
            }
        }
        assert_eq!(acks + rate_limited, 20);
        assert!(
            rate_limited >= 10,
            "most of a 20-message burst is refused: {rate_limited}"
        );
        // The client is still served after all that.
        support::send(&mut client, r#"{"op":"subscribe","channels":["gaps"]}"#).await;
        assert_eq!(support::next_json(&mut client).await["op"], "subscribed");
        // Counted while both are connected: once this block ends they disconnect, and the
        // server may have counted that before a look after it.
        assert_eq!(sink.counters().clients, 2);
    });
    assert!(sink.counters().errors_sent >= 15);
    drop(sink);
}

fn status(result: Result<impl Sized, WebSocketError>) -> u16 {
    match result {
        Ok(_) => 101,
        Err(WebSocketError::InvalidStatusCode(status)) => status,
        Err(error) => panic!("expected an HTTP refusal, got {error}"),
    }
}

#[test]
fn token_and_origin_are_checked_on_upgrade() {
    let runtime = support::runtime();
    let sink = support::start(WsConfig {
        token: Some(TOKEN.to_string()),
        allowed_origins: vec!["https://dashboard.example".to_string()],
        ..support::config()
    });
    let addr = sink.local_addr();
    runtime.block_on(async {
        assert_eq!(status(support::try_connect(addr, "/ws", &[]).await), 401);
        assert_eq!(
            status(support::try_connect(addr, "/ws?token=wrong-token-0123456789", &[]).await),
            401
        );
        let by_query = format!("/ws?token={TOKEN}");
        assert_eq!(
            status(support::try_connect(addr, &by_query, &[]).await),
            101
        );
        // The browser form: the token as a subprotocol entry; ours is echoed back.
        let protocols = format!("tickflow.v1, tickflow.token.{TOKEN}");
        let (_, response) = support::try_connect(
            addr,
            "/ws",
            &[("Sec-WebSocket-Protocol", protocols.as_str())],
        )
        .await
        .expect("the subprotocol token is accepted");
        assert_eq!(response.headers()["sec-websocket-protocol"], "tickflow.v1");
        assert_eq!(
            status(
                support::try_connect(addr, &by_query, &[("Origin", "https://evil.example")]).await
            ),
            403
        );
        assert_eq!(
            status(
                support::try_connect(addr, &by_query, &[("Origin", "https://dashboard.example")])
                    .await
            ),
            101
        );
        assert_eq!(status(support::try_connect(addr, "/other", &[]).await), 404);
    });
    let counters = sink.counters();
    assert_eq!(counters.refused_token, 2);
    assert_eq!(counters.refused_origin, 1);
    drop(sink);
}

#[test]
fn the_default_origins_admit_the_dashboard_only() {
    let runtime = support::runtime();
    let sink = support::start(support::config());
    let addr = sink.local_addr();
    runtime.block_on(async {
        assert_eq!(
            status(support::try_connect(addr, "/ws", &[("Origin", "http://localhost:8080")]).await),
            101
        );
        assert_eq!(
            status(support::try_connect(addr, "/ws", &[("Origin", "http://elsewhere:3000")]).await),
            403
        );
    });
    drop(sink);
}

#[test]
fn a_non_loopback_bind_without_a_token_is_refused_at_start_and_the_memory_bound_is_stated() {
    let refused = WsBroadcast::create(
        support::host(),
        WsConfig {
            bind: "0.0.0.0:0".to_string(),
            ..WsConfig::default()
        },
    );
    match refused {
        Err(SinkError::Config(message)) => assert!(message.contains("token"), "{message}"),
        Err(other) => panic!("expected a config refusal, got {other}"),
        Ok(_) => panic!("a non-loopback bind without a token must be refused"),
    }
    let config = WsConfig::default();
    let bound = WsBroadcast::memory_bound_bytes(&config)
        .expect("a valid config")
        .expect("a stated bound");
    // At least every client's queue, twice (queued and being written).
    assert!(bound >= config.clients_max as u64 * 2 * config.client_queue_bytes_max as u64);
    let bigger = WsBroadcast::memory_bound_bytes(&WsConfig {
        clients_max: config.clients_max * 2,
        ..WsConfig::default()
    })
    .expect("valid")
    .expect("stated");
    assert!(bigger > bound);
}

#[test]
fn with_tls_the_sink_serves_wss_and_publishes_a_wss_url() {
    let key = rcgen::KeyPair::generate().expect("a key");
    let certificate = rcgen::CertificateParams::new(vec!["localhost".to_string()])
        .expect("params")
        .self_signed(&key)
        .expect("a self-signed certificate");
    let dir = tempfile::tempdir().expect("a temp dir");
    let cert_path = dir.path().join("cert.pem");
    let key_path = dir.path().join("key.pem");
    std::fs::write(&cert_path, certificate.pem()).expect("writes");
    std::fs::write(&key_path, key.serialize_pem()).expect("writes");
    let runtime = support::runtime();
    let sink = support::start(WsConfig {
        tls_cert_path: Some(cert_path),
        tls_key_path: Some(key_path),
        ..support::config()
    });
    let addr = sink.local_addr();
    assert_eq!(sink.url(), format!("wss://{addr}/ws"));
    let hello = runtime.block_on(async {
        let mut roots = rustls::RootCertStore::empty();
        roots
            .add(certificate.der().clone())
            .expect("the root is taken");
        let config = rustls::ClientConfig::builder_with_provider(std::sync::Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .expect("TLS versions")
        .with_root_certificates(roots)
        .with_no_client_auth();
        let connector = tokio_rustls::TlsConnector::from(std::sync::Arc::new(config));
        let tcp = tokio::net::TcpStream::connect(addr)
            .await
            .expect("connects");
        let name = rustls::pki_types::ServerName::try_from("localhost").expect("a name");
        let tls = connector
            .connect(name, tcp)
            .await
            .expect("the TLS handshake succeeds");
        let (mut socket, _) = support::connect_over(tls, addr, "/ws")
            .await
            .expect("upgrades");
        support::next_json(&mut socket).await
    });
    assert_eq!(hello["hello"], "tickflow");
    // A plain-text client gets no WebSocket from a TLS listener.
    let plain = runtime.block_on(support::try_connect(addr, "/ws", &[]));
    assert!(plain.is_err());
    drop(sink);
}
