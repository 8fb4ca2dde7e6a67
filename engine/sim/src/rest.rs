//! The simulated venues' spot instrument-list REST endpoints, served on each venue's listener at
//! the real path in the real response format (envelope, field names and JSON types of the
//! trimmed real responses in the fixtures; a realistic subset of the optional fields), built from
//! the current listings on every request. Also the REST fault control (429 with `Retry-After`,
//! 500, or no answer for the next N requests) and the request counters.

use std::sync::Arc;
use std::sync::atomic::Ordering;

use bytes::Bytes;
use http_body_util::Full;
use hyper::{Response, StatusCode};
use serde_json::{Value, json};

use super::listings::{Instrument, ListingState};
use super::{SimShared, VenueControl};
use tickflow_core::venue::Venue;

/// A fault the next REST requests of a venue get (`VenueControl::fail_next_rest_requests`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RestFault {
    /// HTTP 429 with `Retry-After: retry_after_s` and the venue's rate-limit body.
    TooManyRequests { retry_after_s: u64 },
    /// HTTP 500.
    ServerError,
    /// No answer at all: the request is held until the simulator stops (the client's timeout is
    /// what ends it on the client side).
    Hang,
}

/// Pending REST faults of one venue (a field of `VenueControl`).
#[derive(Debug, Default)]
pub(crate) struct RestFaults {
    pending: std::sync::Mutex<Option<(RestFault, u64)>>,
    /// (minute since the simulator started, request weight used in it): Binance's
    /// `X-MBX-USED-WEIGHT-1M`.
    used_weight: std::sync::Mutex<(u64, u64)>,
}

impl RestFaults {
    fn lock(&self) -> std::sync::MutexGuard<'_, Option<(RestFault, u64)>> {
        // A poisoned lock only means a test thread panicked mid-update; the count stays valid.
        self.pending
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Adds `weight` to the current minute's and returns the minute's total.
    fn use_weight(&self, minute: u64, weight: u64) -> u64 {
        let mut used = self
            .used_weight
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        if used.0 != minute {
            *used = (minute, 0);
        }
        used.1 += weight;
        used.1
    }

    /// Takes one pending fault, if any.
    fn take(&self) -> Option<RestFault> {
        let mut pending = self.lock();
        let (fault, left) = pending.as_mut()?;
        let fault = *fault;
        *left -= 1;
        if *left == 0 {
            *pending = None;
        }
        Some(fault)
    }
}

impl VenueControl {
    /// The next `count` instrument-list requests of this venue get `fault` (replacing any fault
    /// still pending; `count` 0 clears it). Counted in `rest_requests` and `rest_faults`.
    pub fn fail_next_rest_requests(&self, count: u64, fault: RestFault) {
        *self.rest_faults_pending.lock() = (count > 0).then_some((fault, count));
    }
}

/// Binance's request weight of `exchangeInfo`.
const BINANCE_EXCHANGE_INFO_WEIGHT: u64 = 20;

pub use tickflow_feed::protocol::instruments_path;

/// Whether `path` (without query) is `venue`'s instrument-list path.
pub(crate) fn is_instruments_path(venue: Venue, path: &str) -> bool {
    let expected = instruments_path(venue);
    let expected = expected.split_once('?').map_or(expected, |(path, _)| path);
    path == expected
}

fn query_value<'a>(query: Option<&'a str>, key: &str) -> Option<&'a str> {
    query?.split('&').find_map(|pair| {
        let (name, value) = pair.split_once('=')?;
        (name == key).then_some(value)
    })
}

fn json_response(status: StatusCode, body: &Value) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(Bytes::from(body.to_string())));
    *response.status_mut() = status;
    response.headers_mut().insert(
        hyper::header::CONTENT_TYPE,
        hyper::header::HeaderValue::from_static("application/json"),
    );
    response
}

/// Serves one instrument-list request of `venue` (already matched on its path).
pub(crate) async fn serve(
    shared: Arc<SimShared>,
    venue: Venue,
    method: hyper::Method,
    query: Option<String>,
) -> Response<Full<Bytes>> {
    let control = &shared.controls[venue.index()];
    control.rest_requests.fetch_add(1, Ordering::SeqCst);
    if method != hyper::Method::GET {
        let mut response = Response::new(Full::new(Bytes::new()));
        *response.status_mut() = StatusCode::METHOD_NOT_ALLOWED;
        return response;
    }
    if let Some(fault) = control.rest_faults_pending.take() {
        control.rest_faults.fetch_add(1, Ordering::SeqCst);
        match fault {
            RestFault::TooManyRequests { retry_after_s } => {
                let mut response =
                    json_response(StatusCode::TOO_MANY_REQUESTS, &rate_limit_body(venue));
                response.headers_mut().insert(
                    hyper::header::RETRY_AFTER,
                    hyper::header::HeaderValue::from(retry_after_s),
                );
                return response;
            }
            RestFault::ServerError => {
                let mut response =
                    Response::new(Full::new(Bytes::from_static(b"Internal Server Error")));
                *response.status_mut() = StatusCode::INTERNAL_SERVER_ERROR;
                return response;
            }
            RestFault::Hang => {
                shared.cancel.cancelled().await;
                let mut response = Response::new(Full::new(Bytes::new()));
                *response.status_mut() = StatusCode::SERVICE_UNAVAILABLE;
                return response;
            }
        }
    }
    let query = query.as_deref();
    let now_ms = tickflow_core::record::now_ns() / 1_000_000;
    let (status, body) = instrument_list(&shared, venue, query, now_ms);
    let mut response = json_response(status, &body);
    if venue == Venue::Binance {
        // exchangeInfo weighs 20 (faulted requests are not counted).
        let minute = shared.started.elapsed().as_secs() / 60;
        let used = control
            .rest_faults_pending
            .use_weight(minute, BINANCE_EXCHANGE_INFO_WEIGHT);
        response.headers_mut().insert(
            "x-mbx-used-weight-1m",
            hyper::header::HeaderValue::from(used),
        );
    }
    response
}

/// The status and body of `venue`'s instrument list now.
fn instrument_list(
    shared: &SimShared,
    venue: Venue,
    query: Option<&str>,
    now_ms: i64,
) -> (StatusCode, Value) {
    let listings = shared.listings();
    let listed = listings.listed(venue);
    match venue {
        Venue::Binance => {
            let only = query_value(query, "symbolStatus");
            let symbols: Vec<Value> = listed
                .filter(|instrument| {
                    only.is_none_or(|status| binance_status(instrument, venue) == status)
                })
                .map(|instrument| binance_symbol(instrument, venue))
                .collect();
            // Smart order routing groups BTC's trading stablecoin pairs, as in the docs' example.
            let sor: Vec<&str> = listings
                .listed(venue)
                .filter(|instrument| {
                    instrument.base == "BTC"
                        && matches!(instrument.quote.as_str(), "USDT" | "USDC")
                        && is_trading(instrument, venue)
                })
                .map(|instrument| instrument.rest_symbol[venue.index()].as_str())
                .collect();
            (StatusCode::OK, binance_envelope(now_ms, symbols, &sor))
        }
        Venue::Mexc => {
            let symbols: Vec<Value> = listed
                .map(|instrument| mexc_symbol(instrument, venue))
                .collect();
            (
                StatusCode::OK,
                json!({
                    "timezone": "CST",
                    "serverTime": now_ms,
                    "rateLimits": [],
                    "exchangeFilters": [],
                    "symbols": symbols,
                }),
            )
        }
        Venue::Bybit => match query_value(query, "category") {
            Some("spot") => {
                // Bybit's spot list shows trading instruments only.
                let list: Vec<Value> = listed
                    .filter(|instrument| instrument.state(venue) == ListingState::Trading)
                    .map(bybit_symbol)
                    .collect();
                (
                    StatusCode::OK,
                    json!({
                        "retCode": 0,
                        "retMsg": "OK",
                        "result": {"category": "spot", "list": list},
                        "retExtInfo": {},
                        "time": now_ms,
                    }),
                )
            }
            _ => (
                StatusCode::OK,
                json!({
                    "retCode": 10001,
                    "retMsg": "params error: Category is invalid",
                    "result": {},
                    "retExtInfo": {},
                    "time": now_ms,
                }),
            ),
        },
        Venue::Okx => match query_value(query, "instType") {
            Some("SPOT") => {
                let data: Vec<Value> = listed
                    .map(|instrument| okx_symbol(instrument, venue))
                    .collect();
                (
                    StatusCode::OK,
                    json!({"code": "0", "msg": "", "data": data}),
                )
            }
            None => (
                StatusCode::BAD_REQUEST,
                json!({"code": "50014", "msg": "Parameter instType can not be empty.", "data": []}),
            ),
            Some(_) => (
                StatusCode::BAD_REQUEST,
                json!({"code": "51000", "msg": "Parameter instType error", "data": []}),
            ),
        },
        Venue::Gate => {
            let pairs: Vec<Value> = listed
                .map(|instrument| gate_symbol(instrument, venue))
                .collect();
            (StatusCode::OK, Value::Array(pairs))
        }
        Venue::Kucoin => {
            let data: Vec<Value> = listed
                .map(|instrument| kucoin_symbol(instrument, venue))
                .collect();
            (StatusCode::OK, json!({"code": "200000", "data": data}))
        }
        Venue::Bitget => {
            let data: Vec<Value> = listed
                .map(|instrument| bitget_symbol(instrument, venue))
                .collect();
            (
                StatusCode::OK,
                json!({"code": "00000", "msg": "success", "requestTime": now_ms, "data": data}),
            )
        }
        Venue::Htx => {
            let data: Vec<Value> = listed
                .map(|instrument| htx_symbol(instrument, venue))
                .collect();
            (StatusCode::OK, json!({"status": "ok", "data": data}))
        }
    }
}

/// The body a venue sends with a 429.
fn rate_limit_body(venue: Venue) -> Value {
    match venue {
        Venue::Binance => {
            json!({"code": -1003, "msg": "Too much request weight used; current limit is 6000 request weight per 1 MINUTE. Please use WebSocket Streams for live updates to avoid polling the API."})
        }
        Venue::Mexc => json!({"code": 429, "msg": "Too Many Requests"}),
        Venue::Bybit => json!({"retCode": 10006, "retMsg": "Too many visits!"}),
        Venue::Okx => json!({"code": "50011", "msg": "Too Many Requests", "data": []}),
        Venue::Gate => {
            json!({"label": "TOO_MANY_REQUESTS", "message": "Request Rate limit Exceeded"})
        }
        Venue::Kucoin => json!({"code": "429000", "msg": "Too Many Requests"}),
        Venue::Bitget => {
            json!({"code": "429", "msg": "Too Many Requests", "requestTime": 0, "data": null})
        }
        Venue::Htx => {
            json!({"status": "error", "err-code": "too-many-request", "err-msg": "Too many requests"})
        }
    }
}

/// Decimals of the price tick: about 5 significant digits (1..=8).
fn price_decimals(instrument: &Instrument) -> usize {
    let price = instrument.price.mid(0.0).max(1e-12);
    (5 - price.log10().floor() as i64).clamp(1, 8) as usize
}

/// Decimals of the quantity step: coarser for cheaper instruments (0..=8).
fn quantity_decimals(instrument: &Instrument) -> usize {
    let price = instrument.price.mid(0.0).max(1e-12);
    (price.log10().floor() as i64 + 1).clamp(0, 8) as usize
}

/// `10^-decimals` written with `width` decimals (`0.01000000`).
fn step(decimals: usize, width: usize) -> String {
    let width = width.max(decimals);
    if decimals == 0 {
        return format!("{:.width$}", 1.0);
    }
    format!("{:.width$}", 10f64.powi(-(decimals as i32)))
}

fn is_trading(instrument: &Instrument, venue: Venue) -> bool {
    instrument.state(venue) == ListingState::Trading
}

fn binance_status(instrument: &Instrument, venue: Venue) -> &'static str {
    if is_trading(instrument, venue) {
        "TRADING"
    } else {
        "BREAK"
    }
}

fn binance_envelope(now_ms: i64, symbols: Vec<Value>, sor: &[&str]) -> Value {
    let sors = if sor.len() >= 2 {
        json!([{"baseAsset": "BTC", "symbols": sor}])
    } else {
        json!([])
    };
    json!({
        "timezone": "UTC",
        "serverTime": now_ms,
        "rateLimits": [
            {"rateLimitType": "REQUEST_WEIGHT", "interval": "MINUTE", "intervalNum": 1, "limit": 6000},
            {"rateLimitType": "ORDERS", "interval": "SECOND", "intervalNum": 10, "limit": 100},
            {"rateLimitType": "RAW_REQUESTS", "interval": "MINUTE", "intervalNum": 5, "limit": 61000},
        ],
        "exchangeFilters": [],
        "symbols": symbols,
        "sors": sors,
    })
}

fn binance_symbol(instrument: &Instrument, venue: Venue) -> Value {
    let tick = step(price_decimals(instrument), 8);
    let lot = step(quantity_decimals(instrument), 8);
    json!({
        "symbol": instrument.rest_symbol[venue.index()],
        "status": binance_status(instrument, venue),
        "baseAsset": instrument.base,
        "baseAssetPrecision": 8,
        "quoteAsset": instrument.quote,
        "quotePrecision": 8,
        "quoteAssetPrecision": 8,
        "baseCommissionPrecision": 8,
        "quoteCommissionPrecision": 8,
        "orderTypes": ["LIMIT", "LIMIT_MAKER", "MARKET", "STOP_LOSS_LIMIT", "TAKE_PROFIT_LIMIT"],
        "icebergAllowed": true,
        "ocoAllowed": true,
        "otoAllowed": true,
        "opoAllowed": true,
        "quoteOrderQtyMarketAllowed": true,
        "allowTrailingStop": true,
        "cancelReplaceAllowed": true,
        "amendAllowed": true,
        "pegInstructionsAllowed": true,
        "isSpotTradingAllowed": true,
        "isMarginTradingAllowed": false,
        "filters": [
            {"filterType": "PRICE_FILTER", "minPrice": tick, "maxPrice": "1000000.00000000", "tickSize": tick},
            {"filterType": "LOT_SIZE", "minQty": lot, "maxQty": "9000000.00000000", "stepSize": lot},
            {"filterType": "NOTIONAL", "minNotional": "5.00000000", "applyMinToMarket": true, "maxNotional": "9000000.00000000", "applyMaxToMarket": false, "avgPriceMins": 5},
        ],
        "permissions": [],
        "permissionSets": [["SPOT"]],
        "defaultSelfTradePreventionMode": "EXPIRE_MAKER",
        "allowedSelfTradePreventionModes": ["NONE", "EXPIRE_TAKER", "EXPIRE_MAKER", "EXPIRE_BOTH", "DECREMENT"],
    })
}

fn mexc_symbol(instrument: &Instrument, venue: Venue) -> Value {
    let price_decimals = price_decimals(instrument);
    let quantity_decimals = quantity_decimals(instrument);
    json!({
        "symbol": instrument.rest_symbol[venue.index()],
        "status": if is_trading(instrument, venue) { "1" } else { "3" },
        "baseAsset": instrument.base,
        "baseAssetPrecision": quantity_decimals,
        "quoteAsset": instrument.quote,
        "quotePrecision": price_decimals,
        "quoteAssetPrecision": price_decimals,
        "baseCommissionPrecision": quantity_decimals,
        "quoteCommissionPrecision": price_decimals,
        "orderTypes": ["LIMIT", "MARKET", "LIMIT_MAKER"],
        "isSpotTradingAllowed": true,
        "isMarginTradingAllowed": false,
        "quoteAmountPrecision": "1.000000000000000000000000000000",
        "baseSizePrecision": step(quantity_decimals, 0),
        "permissions": ["SPOT"],
        "filters": [],
        "maxQuoteAmount": "2000000.000000000000000000000000000000",
        "makerCommission": "0",
        "takerCommission": "0.0005",
        "quoteAmountPrecisionMarket": "1.000000000000000000000000000000",
        "maxQuoteAmountMarket": "100000.000000000000000000000000000000",
        "fullName": instrument.base,
        "tradeSideType": "1",
    })
}

fn bybit_symbol(instrument: &Arc<Instrument>) -> Value {
    json!({
        "symbolId": instrument.id + 1,
        "symbol": instrument.rest_symbol[Venue::Bybit.index()],
        "baseCoin": instrument.base,
        "quoteCoin": instrument.quote,
        "innovation": "0",
        "status": "Trading",
        "marginTrading": "none",
        "stTag": "0",
        "lotSizeFilter": {
            "basePrecision": step(quantity_decimals(instrument), 0),
            "quotePrecision": "0.0000001",
            "minOrderQty": step(quantity_decimals(instrument), 0),
            "maxOrderQty": "1000000",
            "minOrderAmt": "5",
            "maxOrderAmt": "4000000",
        },
        "priceFilter": {"tickSize": step(price_decimals(instrument), 0)},
        "riskParameters": {"priceLimitRatioX": "0.05", "priceLimitRatioY": "0.1"},
        "symbolType": "",
    })
}

fn okx_symbol(instrument: &Instrument, venue: Venue) -> Value {
    let lot = step(quantity_decimals(instrument), 0);
    json!({
        "alias": "",
        "auctionEndTime": "",
        "baseCcy": instrument.base,
        "category": "1",
        "ctMult": "",
        "ctType": "",
        "ctVal": "",
        "ctValCcy": "",
        "contTdSwTime": "",
        "expTime": "",
        "futureSettlement": false,
        "groupId": "1",
        "instFamily": "",
        "instId": instrument.rest_symbol[venue.index()],
        "instIdCode": 1_000_000_000u64 + instrument.id as u64,
        "instType": "SPOT",
        "lever": "",
        "listTime": instrument.listed_at_ms.to_string(),
        "lotSz": lot,
        "maxIcebergSz": "9999999999.0000000000000000",
        "maxLmtAmt": "20000000",
        "maxLmtSz": "9999999999",
        "maxMktAmt": "1000000",
        "maxMktSz": "1000000",
        "maxStopSz": "1000000",
        "maxTriggerSz": "9999999999.0000000000000000",
        "maxTwapSz": "9999999999.0000000000000000",
        "minSz": lot,
        "optType": "",
        "openType": "",
        "preMktSwTime": "",
        "quoteCcy": instrument.quote,
        "tradeQuoteCcyList": [instrument.quote],
        "ruleType": "normal",
        "settleCcy": "",
        "state": if is_trading(instrument, venue) { "live" } else { "suspend" },
        "stk": "",
        "tickSz": step(price_decimals(instrument), 0),
        "uly": "",
    })
}

fn gate_symbol(instrument: &Instrument, venue: Venue) -> Value {
    let id = &instrument.rest_symbol[venue.index()];
    json!({
        "id": id,
        "base": instrument.base,
        "base_name": instrument.base,
        "quote": instrument.quote,
        "quote_name": instrument.quote,
        "fee": "0.2",
        "min_base_amount": step(quantity_decimals(instrument), 0),
        "min_quote_amount": "3",
        "max_base_amount": "",
        "max_quote_amount": "5000000",
        "amount_precision": quantity_decimals(instrument),
        "precision": price_decimals(instrument),
        "trade_status": if is_trading(instrument, venue) { "tradable" } else { "untradable" },
        "sell_start": 0,
        "buy_start": instrument.listed_at_ms / 1000,
        "delisting_time": 0,
        "type": "normal",
        "trade_url": format!("https://www.gate.com/trade/{id}"),
        "st_tag": false,
    })
}

fn kucoin_symbol(instrument: &Instrument, venue: Venue) -> Value {
    let market = match instrument.quote.as_str() {
        "USDT" | "USDC" | "USD" | "FDUSD" => "USDS",
        "BTC" => "BTC",
        _ => "ALTS",
    };
    json!({
        "symbol": instrument.rest_symbol[venue.index()],
        "name": instrument.canonical,
        "baseCurrency": instrument.base,
        "quoteCurrency": instrument.quote,
        "feeCurrency": instrument.quote,
        "market": market,
        "baseMinSize": step(quantity_decimals(instrument), 0),
        "quoteMinSize": "0.1",
        "baseMaxSize": "10000000000",
        "quoteMaxSize": "99999999",
        "baseIncrement": step(quantity_decimals(instrument), 0),
        "quoteIncrement": "0.000001",
        "priceIncrement": step(price_decimals(instrument), 0),
        "priceLimitRate": "0.1",
        "minFunds": "0.1",
        "isMarginEnabled": false,
        "enableTrading": is_trading(instrument, venue),
        "feeCategory": 1,
        "makerFeeCoefficient": "1.00",
        "takerFeeCoefficient": "1.00",
        "st": false,
        "callauctionIsEnabled": false,
        "callauctionPriceFloor": null,
        "callauctionPriceCeiling": null,
        "callauctionFirstStageStartTime": null,
        "callauctionSecondStageStartTime": null,
        "callauctionThirdStageStartTime": null,
        "tradingStartTime": null,
    })
}

fn bitget_symbol(instrument: &Instrument, venue: Venue) -> Value {
    json!({
        "symbol": instrument.rest_symbol[venue.index()],
        "baseCoin": instrument.base,
        "quoteCoin": instrument.quote,
        "minTradeAmount": "0",
        "maxTradeAmount": "10000000000",
        "takerFeeRate": "0.002",
        "makerFeeRate": "0.002",
        "pricePrecision": price_decimals(instrument).to_string(),
        "quantityPrecision": quantity_decimals(instrument).to_string(),
        "quotePrecision": "6",
        "status": if is_trading(instrument, venue) { "online" } else { "halt" },
        "minTradeUSDT": "1",
        "buyLimitPriceRatio": "0.05",
        "sellLimitPriceRatio": "0.05",
        "areaSymbol": "no",
        "orderQuantity": "200",
        "openTime": instrument.listed_at_ms.to_string(),
        "offTime": "",
    })
}

fn htx_symbol(instrument: &Instrument, venue: Venue) -> Value {
    let amount_precision = quantity_decimals(instrument);
    let min_amount = 10f64.powi(-(amount_precision as i32));
    json!({
        "base-currency": instrument.base.to_ascii_lowercase(),
        "quote-currency": instrument.quote.to_ascii_lowercase(),
        "price-precision": price_decimals(instrument),
        "amount-precision": amount_precision,
        "symbol-partition": "main",
        "symbol": instrument.rest_symbol[venue.index()],
        "state": if is_trading(instrument, venue) { "online" } else { "offline" },
        "value-precision": 8,
        "min-order-amt": min_amount,
        "max-order-amt": 10_000_000,
        "min-order-value": 5,
        "limit-order-min-order-amt": min_amount,
        "limit-order-max-order-amt": 10_000_000,
        "limit-order-max-buy-amt": 10_000_000,
        "limit-order-max-sell-amt": 10_000_000,
        "sell-market-min-order-amt": min_amount,
        "sell-market-max-order-amt": 1_000_000,
        "buy-market-max-order-value": 1_000_000,
        "api-trading": "enabled",
        "tags": "",
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn steps_are_written_with_their_decimals() {
        assert_eq!(step(2, 8), "0.01000000");
        assert_eq!(step(0, 0), "1");
        assert_eq!(step(5, 0), "0.00001");
    }

    #[test]
    fn paths_match_with_or_without_their_query() {
        assert!(is_instruments_path(
            Venue::Bybit,
            "/v5/market/instruments-info"
        ));
        assert!(is_instruments_path(Venue::Binance, "/api/v3/exchangeInfo"));
        assert!(!is_instruments_path(Venue::Gate, "/api/v3/exchangeInfo"));
        assert_eq!(
            query_value(Some("a=1&instType=SPOT"), "instType"),
            Some("SPOT")
        );
        assert_eq!(query_value(None, "instType"), None);
    }

    #[test]
    fn faults_run_out_after_their_count() {
        let faults = RestFaults::default();
        *faults.lock() = Some((RestFault::ServerError, 2));
        assert_eq!(faults.take(), Some(RestFault::ServerError));
        assert_eq!(faults.take(), Some(RestFault::ServerError));
        assert_eq!(faults.take(), None);
    }
}
