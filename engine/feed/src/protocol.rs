//! Each venue's connection rules as data and message builders: default endpoint, symbol spelling,
//! subscribe requests, client keep-alive, limits, and which channels legitimately go quiet.
//! Pure functions: no I/O, no state.

use std::fmt::Write as _;

use crate::config::Channel;
use tickflow_core::venue::Venue;

/// How the client proves the connection alive.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ClientPing {
    /// A WebSocket ping frame, answered by a ws pong (Binance, Gate: servers ping us too).
    WsFrame,
    /// A text frame; the decoder reports the reply as `ControlEvent::Pong`.
    Text,
    /// No client ping: the server pings in-band (HTX) and silence is the dead signal.
    None,
}

pub use crate::config::{SocketApi, default_socket_api, socket_apis};

/// A venue's connection facts.
#[derive(Clone, Copy, Debug)]
pub struct VenueRules {
    pub default_url: &'static str,
    /// The socket these rules are for (`None`: the venue has one).
    pub api: Option<SocketApi>,
    /// Subscriptions (symbol × channel) one connection may carry.
    pub max_streams_per_connection: usize,
    /// Topics one subscribe request may carry.
    pub max_topics_per_request: usize,
    /// Least time between two client requests on one connection.
    pub min_request_interval_ms: u64,
    /// Subscribe requests one connection may send per hour, where the venue documents a limit
    /// (OKX: 480); 0 = none documented. The planner refuses a slot whose subscription set
    /// needs more requests than this.
    pub max_subscribe_requests_per_hour: usize,
    pub client_ping: ClientPing,
    pub ping_interval_ms: u64,
    /// Every frame the server sends is a gzip binary frame (HTX).
    pub gzip_frames: bool,
    /// New connections the venue accepts per IP in a window (its documented connection-rate
    /// limit); every slot of the venue draws from one bucket that never lets more into any
    /// window (`ConnectPacer`).
    pub connect_rate: ConnectRate,
}

/// At most `max` new connections in any window of `window_ms` (`ConnectPacer`: a tenth of
/// `max` at once, the rest refilled evenly over the window).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ConnectRate {
    pub max: u32,
    pub window_ms: u64,
}

pub(crate) const KUCOIN_BULLET_URL: &str = "https://api.kucoin.com/api/v1/bullet-public";

/// `venue`'s rules on its default socket ([`default_socket_api`]).
pub fn rules(venue: Venue) -> VenueRules {
    rules_for(venue, default_socket_api(venue))
}

/// `venue`'s rules on socket `api` (ignored for venues with one socket; `None` = the default).
pub fn rules_for(venue: Venue, api: Option<SocketApi>) -> VenueRules {
    let api = if socket_apis(venue).is_empty() {
        None
    } else {
        api.or(default_socket_api(venue))
    };
    let mut rules = native_rules(venue);
    rules.api = api;
    if api == Some(SocketApi::V3) {
        // Same host, same limits and keep-alive (the v3 pages restate none of them).
        rules.default_url = "wss://ws.bitget.com/v3/ws/public";
    }
    rules
}

fn native_rules(venue: Venue) -> VenueRules {
    match venue {
        Venue::Binance => VenueRules {
            default_url: "wss://stream.binance.com:9443/ws",
            api: None,
            max_streams_per_connection: 1024,
            max_topics_per_request: 200,
            min_request_interval_ms: 250,
            max_subscribe_requests_per_hour: 0,
            client_ping: ClientPing::WsFrame,
            ping_interval_ms: 20_000,
            gzip_frames: false,
            // 300 connections per 5 minutes per IP.
            connect_rate: ConnectRate {
                max: 300,
                window_ms: 300_000,
            },
        },
        Venue::Bybit => VenueRules {
            default_url: "wss://stream.bybit.com/v5/public/spot",
            api: None,
            max_streams_per_connection: 200,
            max_topics_per_request: 10,
            min_request_interval_ms: 50,
            max_subscribe_requests_per_hour: 0,
            client_ping: ClientPing::Text,
            ping_interval_ms: 20_000,
            gzip_frames: false,
            // 500 connections per 5 minutes.
            connect_rate: ConnectRate {
                max: 500,
                window_ms: 300_000,
            },
        },
        Venue::Okx => VenueRules {
            default_url: "wss://ws.okx.com:8443/ws/v5/public",
            api: None,
            max_streams_per_connection: 240,
            max_topics_per_request: 60,
            // 480 subscribe requests per hour per connection: a connection sends its few
            // requests (≤ 240 streams / 60 per request) once, at connect.
            min_request_interval_ms: 350,
            max_subscribe_requests_per_hour: 480,
            client_ping: ClientPing::Text,
            ping_interval_ms: 25_000,
            gzip_frames: false,
            // 3 connection requests per second per IP.
            connect_rate: ConnectRate {
                max: 3,
                window_ms: 1_000,
            },
        },
        Venue::Mexc => VenueRules {
            default_url: "wss://wbs-api.mexc.com/ws",
            api: None,
            max_streams_per_connection: 30,
            max_topics_per_request: 30,
            min_request_interval_ms: 100,
            max_subscribe_requests_per_hour: 0,
            client_ping: ClientPing::Text,
            ping_interval_ms: 20_000,
            gzip_frames: false,
            // no documented figure: a conservative 5 per second.
            connect_rate: ConnectRate {
                max: 5,
                window_ms: 1_000,
            },
        },
        Venue::Gate => VenueRules {
            default_url: "wss://api.gateio.ws/ws/v4/",
            api: None,
            max_streams_per_connection: 200,
            max_topics_per_request: 100,
            min_request_interval_ms: 50,
            max_subscribe_requests_per_hour: 0,
            client_ping: ClientPing::WsFrame,
            ping_interval_ms: 20_000,
            gzip_frames: false,
            // no documented figure: a conservative 5 per second.
            connect_rate: ConnectRate {
                max: 5,
                window_ms: 1_000,
            },
        },
        Venue::Kucoin => VenueRules {
            default_url: "",
            api: None,
            max_streams_per_connection: 200,
            max_topics_per_request: 100,
            min_request_interval_ms: 100,
            max_subscribe_requests_per_hour: 0,
            client_ping: ClientPing::Text,
            ping_interval_ms: 18_000,
            gzip_frames: false,
            // 30 connections per minute.
            connect_rate: ConnectRate {
                max: 30,
                window_ms: 60_000,
            },
        },
        Venue::Bitget => VenueRules {
            default_url: "wss://ws.bitget.com/v2/ws/public",
            api: None,
            max_streams_per_connection: 50,
            max_topics_per_request: 50,
            min_request_interval_ms: 100,
            max_subscribe_requests_per_hour: 0,
            client_ping: ClientPing::Text,
            // Bitget cuts a connection that sends no ping for 30 s; a ping goes out up to one
            // housekeeping tick (≤ 1 s) after it is due, so 20 s leaves a third of the window
            // for a slow tick or a lost ping.
            ping_interval_ms: 20_000,
            gzip_frames: false,
            // 300 connection requests per 5 minutes per IP.
            connect_rate: ConnectRate {
                max: 300,
                window_ms: 300_000,
            },
        },
        Venue::Htx => VenueRules {
            default_url: "wss://api.huobi.pro/ws",
            api: None,
            max_streams_per_connection: 100,
            max_topics_per_request: 1,
            min_request_interval_ms: 10,
            max_subscribe_requests_per_hour: 0,
            client_ping: ClientPing::None,
            ping_interval_ms: 5_000,
            gzip_frames: true,
            // no documented figure: a conservative 5 per second.
            connect_rate: ConnectRate {
                max: 5,
                window_ms: 1_000,
            },
        },
    }
}

/// True when `channel` on `venue` re-sends even when nothing changed, so silence means trouble.
/// Everything else (Binance bookTicker, KuCoin level1, every trade channel) only pushes on change.
pub fn channel_resends_when_unchanged(venue: Venue, channel: Channel) -> bool {
    matches!(
        (venue, channel),
        (Venue::Bybit, Channel::Bbo) | (Venue::Bitget, Channel::Bbo)
    )
}

/// Writes `canonical` (`BTC-USDT`) the way `venue` spells it into `out`.
pub fn write_venue_symbol(venue: Venue, base: &str, quote: &str, out: &mut String) {
    match venue {
        Venue::Binance | Venue::Htx => {
            out.extend(base.chars().map(|c| c.to_ascii_lowercase()));
            out.extend(quote.chars().map(|c| c.to_ascii_lowercase()));
        }
        Venue::Bybit | Venue::Mexc | Venue::Bitget => {
            out.push_str(base);
            out.push_str(quote);
        }
        Venue::Okx | Venue::Kucoin => {
            out.push_str(base);
            out.push('-');
            out.push_str(quote);
        }
        Venue::Gate => {
            out.push_str(base);
            out.push('_');
            out.push_str(quote);
        }
    }
}

/// The path and query of `venue`'s public spot instrument list (its REST API), which discovery
/// asks and the simulators serve.
pub fn instruments_path(venue: Venue) -> &'static str {
    match venue {
        Venue::Binance => "/api/v3/exchangeInfo",
        Venue::Bybit => "/v5/market/instruments-info?category=spot",
        Venue::Okx => "/api/v5/public/instruments?instType=SPOT",
        Venue::Mexc => "/api/v3/exchangeInfo",
        Venue::Gate => "/api/v4/spot/currency_pairs",
        Venue::Kucoin => "/api/v2/symbols",
        Venue::Bitget => "/api/v2/spot/public/symbols",
        Venue::Htx => "/v1/common/symbols",
    }
}

/// The spelling a venue's subscriptions use for a symbol its instrument list spells `listed`
/// (Binance lists `DOTUSD` but streams `dotusd@bookTicker`; HTX lists and streams lower case; the
/// others subscribe exactly as they list).
pub fn subscription_spelling(venue: Venue, listed: &str) -> String {
    match venue {
        Venue::Binance | Venue::Htx => listed.to_ascii_lowercase(),
        _ => listed.to_owned(),
    }
}

/// One subscription: a symbol (already in the venue's spelling) on a channel.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Topic {
    pub venue_symbol: String,
    pub channel: Channel,
}

/// Builds the subscribe requests for `topics` on `venue`'s default socket (see
/// [`subscribe_requests_for`]).
pub fn subscribe_requests(
    venue: Venue,
    topics: &[Topic],
    unix_s: i64,
    request_id: &mut u64,
    requests: &mut Vec<String>,
) {
    subscribe_requests_for(
        venue,
        default_socket_api(venue),
        topics,
        unix_s,
        request_id,
        requests,
    );
}

/// Builds the subscribe requests for `topics` (already within the venue's per-connection limit)
/// on socket `api` (`VenueRules::api`), `max_topics_per_request` at a time, appending one text
/// message per request to `requests`. `unix_s` is the client time Gate wants in its requests;
/// `request_id` numbers requests.
pub fn subscribe_requests_for(
    venue: Venue,
    api: Option<SocketApi>,
    topics: &[Topic],
    unix_s: i64,
    request_id: &mut u64,
    requests: &mut Vec<String>,
) {
    let per_request = rules(venue).max_topics_per_request.max(1);
    match venue {
        // One request per channel: the request names the channel once and lists symbols.
        Venue::Gate | Venue::Kucoin => {
            for channel in [Channel::Bbo, Channel::Trades] {
                let symbols: Vec<&str> = topics
                    .iter()
                    .filter(|topic| topic.channel == channel)
                    .map(|topic| topic.venue_symbol.as_str())
                    .collect();
                for chunk in symbols.chunks(per_request) {
                    *request_id += 1;
                    requests.push(channel_request(venue, channel, chunk, unix_s, *request_id));
                }
            }
        }
        _ => {
            for chunk in topics.chunks(per_request) {
                *request_id += 1;
                requests.push(topic_request(venue, api, chunk, *request_id));
            }
        }
    }
}

/// How many requests `subscribe_requests` sends for `topics` on `venue` under `rules`.
pub(crate) fn subscribe_request_count(venue: Venue, rules: &VenueRules, topics: &[Topic]) -> usize {
    let per_request = rules.max_topics_per_request.max(1);
    match venue {
        Venue::Gate | Venue::Kucoin => [Channel::Bbo, Channel::Trades]
            .into_iter()
            .map(|channel| {
                topics
                    .iter()
                    .filter(|topic| topic.channel == channel)
                    .count()
                    .div_ceil(per_request)
            })
            .sum(),
        _ => topics.len().div_ceil(per_request),
    }
}

fn channel_request(
    venue: Venue,
    channel: Channel,
    symbols: &[&str],
    unix_s: i64,
    id: u64,
) -> String {
    let mut message = String::with_capacity(64 + symbols.len() * 12);
    match venue {
        Venue::Gate => {
            let name = match channel {
                Channel::Bbo => "spot.book_ticker",
                Channel::Trades => "spot.trades",
            };
            let _ = write!(
                message,
                r#"{{"time":{unix_s},"channel":"{name}","event":"subscribe","payload":["#
            );
            for (index, symbol) in symbols.iter().enumerate() {
                if index > 0 {
                    message.push(',');
                }
                let _ = write!(message, r#""{symbol}""#);
            }
            message.push_str("]}");
        }
        _ => {
            let prefix = match channel {
                Channel::Bbo => "/spotMarket/level1:",
                Channel::Trades => "/market/match:",
            };
            let _ = write!(
                message,
                r#"{{"id":"{id}","type":"subscribe","topic":"{prefix}"#
            );
            for (index, symbol) in symbols.iter().enumerate() {
                if index > 0 {
                    message.push(',');
                }
                message.push_str(symbol);
            }
            message.push_str(r#"","response":true}"#);
        }
    }
    message
}

fn topic_request(venue: Venue, api: Option<SocketApi>, topics: &[Topic], id: u64) -> String {
    let mut message = String::with_capacity(64 + topics.len() * 48);
    let list = |message: &mut String, each: &dyn Fn(&mut String, &Topic)| {
        for (index, topic) in topics.iter().enumerate() {
            if index > 0 {
                message.push(',');
            }
            each(message, topic);
        }
    };
    match venue {
        Venue::Binance => {
            message.push_str(r#"{"method":"SUBSCRIBE","params":["#);
            list(&mut message, &|message, topic| {
                let stream = match topic.channel {
                    Channel::Bbo => "bookTicker",
                    Channel::Trades => "trade",
                };
                let _ = write!(message, r#""{}@{stream}""#, topic.venue_symbol);
            });
            let _ = write!(message, r#"],"id":{id}}}"#);
        }
        Venue::Bybit => {
            message.push_str(r#"{"op":"subscribe","args":["#);
            list(&mut message, &|message, topic| {
                let prefix = match topic.channel {
                    Channel::Bbo => "orderbook.1",
                    Channel::Trades => "publicTrade",
                };
                let _ = write!(message, r#""{prefix}.{}""#, topic.venue_symbol);
            });
            message.push_str("]}");
        }
        Venue::Okx | Venue::Bitget => {
            message.push_str(r#"{"op":"subscribe","args":["#);
            list(&mut message, &|message, topic| {
                if venue == Venue::Okx {
                    let channel = match topic.channel {
                        Channel::Bbo => "bbo-tbt",
                        Channel::Trades => "trades",
                    };
                    let _ = write!(
                        message,
                        r#"{{"channel":"{channel}","instId":"{}"}}"#,
                        topic.venue_symbol
                    );
                } else if api == Some(SocketApi::V3) {
                    // v3: `books1` is its best bid/ask stream (every push a snapshot).
                    let topic_name = match topic.channel {
                        Channel::Bbo => "books1",
                        Channel::Trades => "publicTrade",
                    };
                    let _ = write!(
                        message,
                        r#"{{"instType":"spot","topic":"{topic_name}","symbol":"{}"}}"#,
                        topic.venue_symbol
                    );
                } else {
                    let channel = match topic.channel {
                        Channel::Bbo => "books1",
                        Channel::Trades => "trade",
                    };
                    let _ = write!(
                        message,
                        r#"{{"instType":"SPOT","channel":"{channel}","instId":"{}"}}"#,
                        topic.venue_symbol
                    );
                }
            });
            message.push_str("]}");
        }
        Venue::Mexc => {
            message.push_str(r#"{"method":"SUBSCRIPTION","params":["#);
            list(&mut message, &|message, topic| {
                let stream = match topic.channel {
                    Channel::Bbo => "spot@public.aggre.bookTicker.v3.api.pb@10ms@",
                    Channel::Trades => "spot@public.aggre.deals.v3.api.pb@10ms@",
                };
                let _ = write!(message, r#""{stream}{}""#, topic.venue_symbol);
            });
            message.push_str("]}");
        }
        Venue::Htx => {
            // HTX takes one topic per request.
            for topic in topics {
                let suffix = match topic.channel {
                    Channel::Bbo => "bbo",
                    Channel::Trades => "trade.detail",
                };
                let _ = write!(
                    message,
                    r#"{{"sub":"market.{}.{suffix}","id":"id{id}"}}"#,
                    topic.venue_symbol
                );
            }
        }
        Venue::Gate | Venue::Kucoin => unreachable!("gate and kucoin build per-channel requests"),
    }
    message
}

/// The client keep-alive text message for `venue` (`ClientPing::Text` venues), written into `out`.
pub(crate) fn write_client_ping(venue: Venue, nonce: u64, out: &mut String) {
    out.clear();
    match venue {
        Venue::Okx | Venue::Bitget => out.push_str("ping"),
        Venue::Bybit => out.push_str(r#"{"op":"ping"}"#),
        Venue::Mexc => out.push_str(r#"{"method":"PING"}"#),
        Venue::Kucoin => {
            let _ = write!(out, r#"{{"id":"{nonce}","type":"ping"}}"#);
        }
        Venue::Gate => {
            let _ = write!(out, r#"{{"time":{nonce},"channel":"spot.ping"}}"#);
        }
        Venue::Binance | Venue::Htx => {}
    }
}

/// The reply to an in-band server ping (HTX `{"ping":n}` → `{"pong":n}`).
pub(crate) fn write_server_pong(nonce: u64, out: &mut String) {
    out.clear();
    let _ = write!(out, r#"{{"pong":{nonce}}}"#);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subscribe_request_count_matches_the_requests_built() {
        let symbols: Vec<(String, &str)> =
            (0..25).map(|index| (format!("C{index}"), "USDT")).collect();
        for venue in Venue::ALL {
            let mut topics = Vec::new();
            for (base, quote) in &symbols {
                for channel in [Channel::Bbo, Channel::Trades] {
                    let mut venue_symbol = String::new();
                    write_venue_symbol(venue, base, quote, &mut venue_symbol);
                    topics.push(Topic {
                        venue_symbol,
                        channel,
                    });
                }
            }
            let mut requests = Vec::new();
            subscribe_requests(venue, &topics, 0, &mut 0, &mut requests);
            assert_eq!(
                subscribe_request_count(venue, &rules(venue), &topics),
                requests.len(),
                "{venue}"
            );
        }
        assert_eq!(rules(Venue::Okx).max_subscribe_requests_per_hour, 480);
    }

    #[test]
    fn client_pings_leave_room_before_the_venues_cut() {
        // (venue, seconds without a client ping after which the venue cuts the connection)
        for (venue, cut_s) in [(Venue::Bitget, 30), (Venue::Okx, 30), (Venue::Bybit, 30)] {
            let interval_ms = rules(venue).ping_interval_ms;
            assert!(
                (20_000..=25_000).contains(&interval_ms) && interval_ms + 1_000 < cut_s * 1_000,
                "{venue}: a ping every {interval_ms} ms (+ a tick) is too close to the {cut_s} s cut"
            );
        }
    }

    fn topics(venue: Venue, channel: Channel, symbols: &[(&str, &str)]) -> Vec<Topic> {
        symbols
            .iter()
            .map(|(base, quote)| {
                let mut venue_symbol = String::new();
                write_venue_symbol(venue, base, quote, &mut venue_symbol);
                Topic {
                    venue_symbol,
                    channel,
                }
            })
            .collect()
    }

    fn check(venue: Venue, channel: Channel, expected: &[&str]) {
        let topics = topics(venue, channel, &[("BTC", "USDT"), ("ETH", "USDT")]);
        let mut requests = Vec::new();
        let mut request_id = 0;
        subscribe_requests(
            venue,
            &topics,
            1_700_000_000,
            &mut request_id,
            &mut requests,
        );
        assert_eq!(requests, expected, "{venue}");
        for request in &requests {
            if venue != Venue::Htx {
                serde_json::from_str::<serde_json::Value>(request).expect("request is JSON");
            }
        }
    }

    #[test]
    fn subscribe_requests_per_venue() {
        check(
            Venue::Binance,
            Channel::Bbo,
            &[
                r#"{"method":"SUBSCRIBE","params":["btcusdt@bookTicker","ethusdt@bookTicker"],"id":1}"#,
            ],
        );
        check(
            Venue::Bybit,
            Channel::Trades,
            &[r#"{"op":"subscribe","args":["publicTrade.BTCUSDT","publicTrade.ETHUSDT"]}"#],
        );
        check(
            Venue::Okx,
            Channel::Bbo,
            &[
                r#"{"op":"subscribe","args":[{"channel":"bbo-tbt","instId":"BTC-USDT"},{"channel":"bbo-tbt","instId":"ETH-USDT"}]}"#,
            ],
        );
        check(
            Venue::Gate,
            Channel::Bbo,
            &[
                r#"{"time":1700000000,"channel":"spot.book_ticker","event":"subscribe","payload":["BTC_USDT","ETH_USDT"]}"#,
            ],
        );
        check(
            Venue::Kucoin,
            Channel::Bbo,
            &[
                r#"{"id":"1","type":"subscribe","topic":"/spotMarket/level1:BTC-USDT,ETH-USDT","response":true}"#,
            ],
        );
        check(
            Venue::Htx,
            Channel::Bbo,
            &[
                r#"{"sub":"market.btcusdt.bbo","id":"id1"}"#,
                r#"{"sub":"market.ethusdt.bbo","id":"id2"}"#,
            ],
        );
        check(
            Venue::Mexc,
            Channel::Bbo,
            &[
                r#"{"method":"SUBSCRIPTION","params":["spot@public.aggre.bookTicker.v3.api.pb@10ms@BTCUSDT","spot@public.aggre.bookTicker.v3.api.pb@10ms@ETHUSDT"]}"#,
            ],
        );
        // Bitget's default socket is v3.
        check(
            Venue::Bitget,
            Channel::Trades,
            &[
                r#"{"op":"subscribe","args":[{"instType":"spot","topic":"publicTrade","symbol":"BTCUSDT"},{"instType":"spot","topic":"publicTrade","symbol":"ETHUSDT"}]}"#,
            ],
        );
    }

    fn bitget_requests(api: SocketApi, channel: Channel) -> Vec<String> {
        let topics = topics(Venue::Bitget, channel, &[("BTC", "USDT")]);
        let mut requests = Vec::new();
        subscribe_requests_for(Venue::Bitget, Some(api), &topics, 0, &mut 0, &mut requests);
        requests
    }

    #[test]
    fn bitget_speaks_v2_or_v3_as_configured_and_defaults_to_v3() {
        assert_eq!(default_socket_api(Venue::Bitget), Some(SocketApi::V3));
        assert_eq!(
            rules(Venue::Bitget).default_url,
            "wss://ws.bitget.com/v3/ws/public"
        );
        assert_eq!(
            rules_for(Venue::Bitget, Some(SocketApi::V2)).default_url,
            "wss://ws.bitget.com/v2/ws/public"
        );
        assert_eq!(rules_for(Venue::Okx, Some(SocketApi::V3)).api, None);
        // The documentation's requests (Tickers Channel: spot; Depth and Trades: the same shape
        // with instType spot).
        assert_eq!(
            bitget_requests(SocketApi::V3, Channel::Bbo),
            [
                r#"{"op":"subscribe","args":[{"instType":"spot","topic":"books1","symbol":"BTCUSDT"}]}"#
            ]
        );
        assert_eq!(
            bitget_requests(SocketApi::V3, Channel::Trades),
            [
                r#"{"op":"subscribe","args":[{"instType":"spot","topic":"publicTrade","symbol":"BTCUSDT"}]}"#
            ]
        );
        assert_eq!(
            bitget_requests(SocketApi::V2, Channel::Bbo),
            [
                r#"{"op":"subscribe","args":[{"instType":"SPOT","channel":"books1","instId":"BTCUSDT"}]}"#
            ]
        );
        // Same keep-alive on both: a text ping within the 30 s cut.
        for api in [SocketApi::V2, SocketApi::V3] {
            let rules = rules_for(Venue::Bitget, Some(api));
            assert_eq!(rules.client_ping, ClientPing::Text);
            assert!(rules.ping_interval_ms <= 25_000);
        }
    }
}
