//! Fetching over a real local HTTP server: every venue's path and fixture, 429 with Retry-After,
//! bans, the body cap, a server that never answers, and discovery keeping a failing venue's list.

use std::collections::BTreeMap;

use tickflow_core::venue::Venue;
use tickflow_universe::{
    FetchError, Fetcher, Listing, UniverseConfig, discover, parse_instruments, request_path,
    select_discovered,
};

use crate::fixture;
use crate::server::{Reply, TestServer};

/// A config whose venues all live under `base_url/<venue>`.
fn config_for(base_url: &str, extra: &str) -> UniverseConfig {
    let mut text = format!("retry_backoff_ms = 10\nretry_backoff_max_ms = 2000\n{extra}\n");
    for venue in Venue::ALL {
        text.push_str(&format!("[venue.{venue}]\nurl = \"{base_url}/{venue}/\"\n"));
    }
    let config: UniverseConfig = toml::from_str(&text).expect("parses");
    config.validate(1_000_000).expect("valid");
    config
}

fn new_fetcher(config: &UniverseConfig) -> Fetcher {
    Fetcher::new(config, None).expect("webpki roots")
}

/// The venue a request path is for (`/<venue>/...`).
fn venue_of(path: &str) -> Venue {
    let name = path.trim_start_matches('/').split('/').next().unwrap_or("");
    Venue::from_name(name).unwrap_or_else(|| panic!("no venue in {path}"))
}

#[tokio::test]
async fn every_venue_is_fetched_from_its_documented_path_and_parsed() {
    let server = TestServer::start(|path, _| Reply::ok(fixture(venue_of(path)))).await;
    let config = config_for(&server.base_url, "");
    let fetcher = new_fetcher(&config);
    let discovery = discover(&fetcher, &Venue::ALL, &BTreeMap::new(), 1).await;
    assert_eq!(discovery.answered, Venue::ALL);
    assert!(discovery.failed.is_empty(), "{:?}", discovery.failed);
    for venue in Venue::ALL {
        let expected = parse_instruments(venue, &fixture(venue)).expect("parses");
        assert_eq!(discovery.lists[&venue], expected.listings, "{venue}");
    }
    let mut asked = server.requests();
    asked.sort();
    let mut expected: Vec<String> = Venue::ALL
        .iter()
        .map(|&venue| format!("/{venue}{}", request_path(venue)))
        .collect();
    expected.sort();
    assert_eq!(asked, expected);
    let universe = select_discovered(&config, &discovery, None);
    assert_eq!(universe.names(), ["BTC-USDT", "DOGE-USDT", "ETH-USDT"]);
    assert_eq!(universe.venues_answered, Venue::ALL);
}

#[tokio::test]
async fn a_429_with_retry_after_is_honoured_then_the_list_is_fetched() {
    let rate_limited_first = |_: &str, index: usize| {
        if index == 0 {
            Reply {
                status: 429,
                retry_after: Some("1"),
                body: br#"{"code":"50011","msg":"Too Many Requests"}"#.to_vec(),
            }
        } else {
            Reply::ok(fixture(Venue::Okx))
        }
    };
    let server = TestServer::start(rate_limited_first).await;
    let config = config_for(&server.base_url, "");
    let fetcher = new_fetcher(&config);
    let error = fetcher.fetch(Venue::Okx).await.expect_err("429 first");
    assert!(
        matches!(
            error,
            FetchError::RateLimited {
                venue: Venue::Okx,
                status: 429,
                retry_after_s: 1
            }
        ),
        "{error}"
    );
    // The next request waits out the second (not checked: timing) and gets the list.
    let instruments = fetcher.fetch(Venue::Okx).await.expect("answered");
    assert_eq!(instruments.listings.len(), 5);
    assert_eq!(server.requests().len(), 2);

    // Discovery retries the same way.
    let server = TestServer::start(rate_limited_first).await;
    let config = config_for(&server.base_url, "");
    let fetcher = new_fetcher(&config);
    let discovery = discover(&fetcher, &[Venue::Okx], &BTreeMap::new(), 3).await;
    assert_eq!(discovery.answered, [Venue::Okx]);
    assert_eq!(discovery.lists[&Venue::Okx].len(), 5);
    assert_eq!(server.requests().len(), 2);
}

#[tokio::test]
async fn a_ban_longer_than_the_backoff_cap_is_not_asked_again() {
    let server = TestServer::start(|_, _| Reply {
        status: 418,
        retry_after: Some("3600"),
        body: br#"{"code":-1003,"msg":"Way too many requests; IP banned."}"#.to_vec(),
    })
    .await;
    let config = config_for(&server.base_url, "");
    let fetcher = new_fetcher(&config);
    let error = fetcher.fetch(Venue::Binance).await.expect_err("banned");
    assert!(
        matches!(
            error,
            FetchError::RateLimited {
                status: 418,
                retry_after_s: 3600,
                ..
            }
        ),
        "{error}"
    );
    let error = fetcher
        .fetch(Venue::Binance)
        .await
        .expect_err("still banned");
    assert!(
        matches!(
            error,
            FetchError::Banned {
                venue: Venue::Binance,
                ..
            }
        ),
        "{error}"
    );
    assert_eq!(server.requests().len(), 1, "a banned venue is not asked");
    // Another venue is not affected.
    let error = fetcher
        .fetch(Venue::Mexc)
        .await
        .expect_err("the server bans everyone");
    assert!(
        matches!(
            error,
            FetchError::RateLimited {
                venue: Venue::Mexc,
                ..
            }
        ),
        "{error}"
    );
}

#[tokio::test]
async fn bybit_403_counts_as_its_rate_limit_and_other_4xx_are_not_retried() {
    let server = TestServer::start(|path, _| match venue_of(path) {
        Venue::Bybit => Reply::status(403, "access too frequent"),
        _ => Reply::status(404, "no such path"),
    })
    .await;
    let config = config_for(&server.base_url, "");
    let fetcher = new_fetcher(&config);
    let error = fetcher.fetch(Venue::Bybit).await.expect_err("403");
    assert!(
        matches!(
            error,
            FetchError::RateLimited {
                status: 403,
                retry_after_s: 600,
                ..
            }
        ),
        "{error}"
    );
    let error = fetcher
        .fetch_with_retries(Venue::Gate, 3)
        .await
        .expect_err("404");
    match &error {
        FetchError::Status { status, detail, .. } => {
            assert_eq!((*status, detail.as_str()), (404, "no such path"));
        }
        other => panic!("expected a status error, got {other}"),
    }
    let gate_requests = server
        .requests()
        .iter()
        .filter(|path| path.starts_with("/gate/"))
        .count();
    assert_eq!(gate_requests, 1, "a 404 is not retried");
}

#[tokio::test]
async fn a_body_over_the_cap_is_refused() {
    let big = {
        let mut body = b"[".to_vec();
        body.resize(100 << 10, b' ');
        body.push(b']');
        body
    };
    let server = TestServer::start(move |_, _| Reply::ok(big.clone())).await;
    let config = config_for(&server.base_url, "max_response_bytes = 65536");
    let fetcher = new_fetcher(&config);
    let error = fetcher.fetch(Venue::Gate).await.expect_err("over the cap");
    assert!(
        matches!(
            error,
            FetchError::TooLarge {
                venue: Venue::Gate,
                max_bytes: 65536
            }
        ),
        "{error}"
    );
    // The same body under a larger cap is read (and is an empty list).
    let config = config_for(&server.base_url, "max_response_bytes = 1048576");
    let instruments = new_fetcher(&config).fetch(Venue::Gate).await.expect("read");
    assert!(instruments.listings.is_empty());
}

#[tokio::test]
async fn a_server_that_never_answers_times_out() {
    // Connections are queued by the kernel and never accepted: the request gets no answer.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let base_url = format!("http://{}", listener.local_addr().expect("address"));
    let config = config_for(&base_url, "request_timeout_ms = 300");
    let fetcher = new_fetcher(&config);
    let error = fetcher.fetch(Venue::Kucoin).await.expect_err("no answer");
    assert!(
        matches!(
            error,
            FetchError::Timeout {
                venue: Venue::Kucoin,
                timeout_ms: 300
            }
        ),
        "{error}"
    );
    drop(listener);
}

#[tokio::test]
async fn discovery_keeps_the_last_list_of_a_venue_that_fails() {
    let server = TestServer::start(|path, _| match venue_of(path) {
        Venue::Okx => Reply::status(500, "internal error"),
        Venue::Htx => Reply::ok(br#"{"status":"error","err-code":"x","err-msg":"down"}"#.to_vec()),
        venue => Reply::ok(fixture(venue)),
    })
    .await;
    let config = config_for(&server.base_url, "");
    let fetcher = new_fetcher(&config);
    let okx_last = vec![Listing {
        venue: Venue::Okx,
        venue_symbol: "BTC-USDT".into(),
        base: "BTC".into(),
        quote: "USDT".into(),
        trading: true,
    }];
    let gate_last = parse_instruments(Venue::Gate, &fixture(Venue::Gate))
        .expect("parses")
        .listings;
    let last = BTreeMap::from([(Venue::Okx, okx_last.clone()), (Venue::Gate, gate_last)]);
    let discovery = discover(
        &fetcher,
        &[Venue::Okx, Venue::Binance, Venue::Htx],
        &last,
        2,
    )
    .await;
    assert_eq!(discovery.answered, [Venue::Binance]);
    let failed: Vec<Venue> = discovery.failed.iter().map(|(venue, _)| *venue).collect();
    assert_eq!(failed, [Venue::Okx, Venue::Htx]);
    assert!(
        discovery.failed[0].1.contains("HTTP 500"),
        "{:?}",
        discovery.failed
    );
    assert!(
        discovery.failed[1].1.contains("down"),
        "{:?}",
        discovery.failed
    );
    assert_eq!(discovery.kept, [Venue::Okx]);
    assert_eq!(discovery.lists[&Venue::Okx], okx_last);
    // HTX had no last list; Gate was not asked, so its old list is not used either.
    assert_eq!(
        discovery.lists.keys().copied().collect::<Vec<_>>(),
        [Venue::Binance, Venue::Okx]
    );
    let okx_requests = server
        .requests()
        .iter()
        .filter(|path| path.starts_with("/okx/"))
        .count();
    assert_eq!(okx_requests, 2, "a 500 is retried up to the attempts");
    let universe = select_discovered(&config, &discovery, None);
    assert_eq!(universe.venues_answered, [Venue::Binance]);
    assert_eq!(universe.venues_failed.len(), 2);
    assert!(
        universe.venues_failed[0]
            .1
            .contains("its last list is used")
    );
    assert!(universe.summary().contains("venue failed: okx"));
}

#[tokio::test]
async fn a_chunked_body_without_a_length_is_cut_off_at_the_cap() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let base_url = format!("http://{}", listener.local_addr().expect("address"));
    let server = tokio::spawn(async move {
        let (mut stream, _) = listener.accept().await.expect("accept");
        let mut request = Vec::new();
        let mut buffer = [0u8; 1024];
        while !request.windows(4).any(|window| window == b"\r\n\r\n") {
            let read = stream.read(&mut buffer).await.expect("read");
            if read == 0 {
                return;
            }
            request.extend_from_slice(&buffer[..read]);
        }
        let _ = stream
            .write_all(b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n")
            .await;
        // 1 MiB in 8 KiB chunks, never ended: the client must stop at its cap on its own.
        let chunk = [b' '; 8192];
        for _ in 0..128 {
            let header = format!("{:x}\r\n", chunk.len());
            if stream.write_all(header.as_bytes()).await.is_err()
                || stream.write_all(&chunk).await.is_err()
                || stream.write_all(b"\r\n").await.is_err()
            {
                return;
            }
        }
    });
    let config = config_for(&base_url, "max_response_bytes = 65536");
    let error = new_fetcher(&config)
        .fetch(Venue::Bitget)
        .await
        .expect_err("over the cap");
    assert!(
        matches!(
            error,
            FetchError::TooLarge {
                max_bytes: 65536,
                ..
            }
        ),
        "{error}"
    );
    server.abort();
}
