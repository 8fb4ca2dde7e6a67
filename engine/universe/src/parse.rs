//! The eight venues' spot instrument-list responses → `Listing`s: each venue's own spelling (as its
//! WebSocket subscriptions use it), base and quote from the metadata fields, and whether it trades.
//! Nothing is split out of a spelling. Only the trading, base, quote and symbol fields are
//! required; unknown fields are ignored. A malformed instrument is skipped and counted; a wrong
//! envelope (an error code, not JSON, truncated) fails the whole response. No I/O.

use serde::Deserialize;
use serde_json::value::RawValue;

use tickflow_core::venue::Venue;

/// One instrument of a venue's list.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Listing {
    pub venue: Venue,
    /// Exactly as the venue spells it in WebSocket subscriptions (`BTCUSDT`, `BTC-USDT`,
    /// `BTC_USDT`, `btcusdt`).
    pub venue_symbol: String,
    /// The base asset from the metadata, upper-cased (`BSV` for KuCoin's `BCHSV-USDT`).
    pub base: String,
    /// The quote asset from the metadata, upper-cased.
    pub quote: String,
    /// The venue's status field says it trades (see `request_path`'s table in the README).
    pub trading: bool,
}

/// A parsed list: the instruments, and how many were skipped as malformed.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Instruments {
    pub listings: Vec<Listing>,
    /// Instruments lacking a required field (or with one of the wrong type): skipped.
    pub malformed: usize,
    /// Instruments beyond `universe.max_instruments_per_venue`: dropped.
    pub over_cap: usize,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ParseError {
    #[error("{venue}: instrument list is not JSON: {detail}")]
    NotJson { venue: Venue, detail: String },
    #[error("{venue}: instrument list is not in the documented envelope: {detail}")]
    Envelope { venue: Venue, detail: String },
    #[error("{venue}: venue answered with error {code}: {message}")]
    VenueError {
        venue: Venue,
        code: String,
        message: String,
    },
}

/// The path and query of `venue`'s public spot instrument list, appended to its REST base URL.
pub fn request_path(venue: Venue) -> &'static str {
    tickflow_feed::protocol::instruments_path(venue)
}

/// Parses `venue`'s instrument-list response body.
pub fn parse_instruments(venue: Venue, body: &[u8]) -> Result<Instruments, ParseError> {
    match venue {
        Venue::Binance => exchange_info::<BinanceInstrument>(venue, body),
        Venue::Mexc => exchange_info::<MexcInstrument>(venue, body),
        Venue::Bybit => bybit(body),
        Venue::Okx => coded::<OkxInstrument>(venue, body, "0"),
        Venue::Kucoin => coded::<KucoinInstrument>(venue, body, "200000"),
        Venue::Bitget => coded::<BitgetInstrument>(venue, body, "00000"),
        Venue::Gate => gate(body),
        Venue::Htx => htx(body),
    }
}

/// One instrument object of a venue, with only the fields discovery needs.
trait Instrument: for<'de> Deserialize<'de> {
    /// `None` when a required value is empty.
    fn listing(self, venue: Venue) -> Option<Listing>;
}

fn listing(
    venue: Venue,
    symbol: String,
    base: &str,
    quote: &str,
    trading: bool,
) -> Option<Listing> {
    if symbol.is_empty() || base.is_empty() || quote.is_empty() {
        return None;
    }
    Some(Listing {
        venue,
        venue_symbol: symbol,
        base: base.to_ascii_uppercase(),
        quote: quote.to_ascii_uppercase(),
        trading,
    })
}

/// Parses each raw instrument on its own, so one bad object costs only itself.
fn instruments<T: Instrument>(venue: Venue, raw: Vec<&RawValue>) -> Instruments {
    let mut parsed = Instruments {
        listings: Vec::with_capacity(raw.len()),
        malformed: 0,
        over_cap: 0,
    };
    for item in raw {
        match serde_json::from_str::<T>(item.get())
            .ok()
            .and_then(|instrument| instrument.listing(venue))
        {
            Some(listing) => parsed.listings.push(listing),
            None => parsed.malformed += 1,
        }
    }
    parsed
}

fn json_error(venue: Venue, error: serde_json::Error) -> ParseError {
    match error.classify() {
        serde_json::error::Category::Data => ParseError::Envelope {
            venue,
            detail: error.to_string(),
        },
        _ => ParseError::NotJson {
            venue,
            detail: error.to_string(),
        },
    }
}

/// An error code as the venue sends it: a string (`"51000"`) or a number (`-1121`).
#[derive(Deserialize)]
#[serde(untagged)]
enum Code {
    Text(String),
    Number(i64),
}

impl Code {
    fn text(&self) -> String {
        match self {
            Code::Text(text) => text.clone(),
            Code::Number(number) => number.to_string(),
        }
    }
}

/// Binance and MEXC `GET /api/v3/exchangeInfo`: `{..., "symbols": [...]}`, or
/// `{"code": -1121, "msg": "..."}`.
#[derive(Deserialize)]
struct ExchangeInfo<'a> {
    #[serde(borrow)]
    symbols: Option<Vec<&'a RawValue>>,
    code: Option<Code>,
    msg: Option<String>,
}

fn exchange_info<T: Instrument>(venue: Venue, body: &[u8]) -> Result<Instruments, ParseError> {
    let envelope: ExchangeInfo<'_> =
        serde_json::from_slice(body).map_err(|error| json_error(venue, error))?;
    match (envelope.symbols, envelope.code) {
        (Some(symbols), _) => Ok(instruments::<T>(venue, symbols)),
        (None, Some(code)) => Err(ParseError::VenueError {
            venue,
            code: code.text(),
            message: envelope.msg.unwrap_or_default(),
        }),
        (None, None) => Err(ParseError::Envelope {
            venue,
            detail: "no `symbols` array".to_owned(),
        }),
    }
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct BinanceInstrument {
    symbol: String,
    status: String,
    base_asset: String,
    quote_asset: String,
    /// `false` on leveraged tokens (`BTCUPUSDT`); absent counts as allowed.
    #[serde(default)]
    is_spot_trading_allowed: Option<bool>,
}

impl Instrument for BinanceInstrument {
    fn listing(self, venue: Venue) -> Option<Listing> {
        let trading = self.status == "TRADING" && self.is_spot_trading_allowed != Some(false);
        listing(
            venue,
            self.symbol,
            &self.base_asset,
            &self.quote_asset,
            trading,
        )
    }
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct MexcInstrument {
    symbol: String,
    /// `"1"` online, `"2"` paused, `"3"` offline (a string per the docs; a number is accepted).
    /// `isSpotTradingAllowed` means API trading and is false on live markets: not used.
    status: Code,
    base_asset: String,
    quote_asset: String,
}

impl Instrument for MexcInstrument {
    fn listing(self, venue: Venue) -> Option<Listing> {
        // "ENABLED" is what the docs showed before the 2024-08-16 change to "1".
        let trading = matches!(&self.status, Code::Number(1))
            || matches!(&self.status, Code::Text(text) if text == "1" || text == "ENABLED");
        listing(
            venue,
            self.symbol,
            &self.base_asset,
            &self.quote_asset,
            trading,
        )
    }
}

/// Bybit `{"retCode": 0, "retMsg": "OK", "result": {"category": "spot", "list": [...]}}`.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct BybitEnvelope<'a> {
    ret_code: i64,
    #[serde(default)]
    ret_msg: String,
    #[serde(borrow)]
    result: Option<BybitResult<'a>>,
}

#[derive(Deserialize)]
struct BybitResult<'a> {
    #[serde(borrow)]
    list: Option<Vec<&'a RawValue>>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct BybitInstrument {
    symbol: String,
    status: String,
    base_coin: String,
    quote_coin: String,
}

impl Instrument for BybitInstrument {
    fn listing(self, venue: Venue) -> Option<Listing> {
        let trading = self.status == "Trading";
        listing(
            venue,
            self.symbol,
            &self.base_coin,
            &self.quote_coin,
            trading,
        )
    }
}

fn bybit(body: &[u8]) -> Result<Instruments, ParseError> {
    let venue = Venue::Bybit;
    let envelope: BybitEnvelope<'_> =
        serde_json::from_slice(body).map_err(|error| json_error(venue, error))?;
    if envelope.ret_code != 0 {
        return Err(ParseError::VenueError {
            venue,
            code: envelope.ret_code.to_string(),
            message: envelope.ret_msg,
        });
    }
    let list = envelope
        .result
        .and_then(|result| result.list)
        .ok_or_else(|| ParseError::Envelope {
            venue,
            detail: "no `result.list` array".to_owned(),
        })?;
    Ok(instruments::<BybitInstrument>(venue, list))
}

/// OKX, KuCoin and Bitget: `{"code": "<success code>", "msg": "...", "data": [...]}`.
#[derive(Deserialize)]
struct CodedEnvelope<'a> {
    code: Code,
    #[serde(default)]
    msg: Option<String>,
    #[serde(borrow)]
    data: Option<Vec<&'a RawValue>>,
}

fn coded<T: Instrument>(
    venue: Venue,
    body: &[u8],
    success_code: &str,
) -> Result<Instruments, ParseError> {
    let envelope: CodedEnvelope<'_> =
        serde_json::from_slice(body).map_err(|error| json_error(venue, error))?;
    let code = envelope.code.text();
    if code != success_code {
        return Err(ParseError::VenueError {
            venue,
            code,
            message: envelope.msg.unwrap_or_default(),
        });
    }
    let data = envelope.data.ok_or_else(|| ParseError::Envelope {
        venue,
        detail: "no `data` array".to_owned(),
    })?;
    Ok(instruments::<T>(venue, data))
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct OkxInstrument {
    inst_id: String,
    state: String,
    base_ccy: String,
    quote_ccy: String,
}

impl Instrument for OkxInstrument {
    fn listing(self, venue: Venue) -> Option<Listing> {
        let trading = self.state == "live";
        listing(
            venue,
            self.inst_id,
            &self.base_ccy,
            &self.quote_ccy,
            trading,
        )
    }
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct KucoinInstrument {
    /// Kept across renames (`BCHSV-USDT` is `BSV`): the subscription spelling.
    symbol: String,
    enable_trading: bool,
    base_currency: String,
    quote_currency: String,
}

impl Instrument for KucoinInstrument {
    fn listing(self, venue: Venue) -> Option<Listing> {
        let trading = self.enable_trading;
        listing(
            venue,
            self.symbol,
            &self.base_currency,
            &self.quote_currency,
            trading,
        )
    }
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct BitgetInstrument {
    symbol: String,
    status: String,
    base_coin: String,
    quote_coin: String,
}

impl Instrument for BitgetInstrument {
    fn listing(self, venue: Venue) -> Option<Listing> {
        let trading = self.status == "online";
        listing(
            venue,
            self.symbol,
            &self.base_coin,
            &self.quote_coin,
            trading,
        )
    }
}

/// Gate's error object (`{"label": "INVALID_PARAM_VALUE", "message": "..."}`); a list is a bare
/// array.
#[derive(Deserialize)]
struct GateError {
    label: String,
    #[serde(default)]
    message: String,
}

#[derive(Deserialize)]
struct GateInstrument {
    id: String,
    trade_status: String,
    base: String,
    quote: String,
}

impl Instrument for GateInstrument {
    fn listing(self, venue: Venue) -> Option<Listing> {
        // `buyable` / `sellable` are one-sided (a listing starting or winding down).
        let trading = self.trade_status == "tradable";
        listing(venue, self.id, &self.base, &self.quote, trading)
    }
}

fn gate(body: &[u8]) -> Result<Instruments, ParseError> {
    let venue = Venue::Gate;
    match serde_json::from_slice::<Vec<&RawValue>>(body) {
        Ok(list) => Ok(instruments::<GateInstrument>(venue, list)),
        Err(error) if error.classify() != serde_json::error::Category::Data => {
            Err(json_error(venue, error))
        }
        Err(_) => match serde_json::from_slice::<GateError>(body) {
            Ok(error) => Err(ParseError::VenueError {
                venue,
                code: error.label,
                message: error.message,
            }),
            Err(_) => Err(ParseError::Envelope {
                venue,
                detail: "neither an array of currency pairs nor an error object".to_owned(),
            }),
        },
    }
}

/// HTX `{"status": "ok", "data": [...]}` or `{"status": "error", "err-code": ..., "err-msg": ...}`.
#[derive(Deserialize)]
struct HtxEnvelope<'a> {
    status: String,
    #[serde(borrow)]
    data: Option<Vec<&'a RawValue>>,
    #[serde(rename = "err-code")]
    error_code: Option<Code>,
    #[serde(rename = "err-msg")]
    error_message: Option<String>,
}

#[derive(Deserialize)]
struct HtxInstrument {
    /// Lower case, as HTX's WebSocket topics spell it (`market.btcusdt.bbo`).
    symbol: String,
    state: String,
    #[serde(rename = "base-currency")]
    base: String,
    #[serde(rename = "quote-currency")]
    quote: String,
}

impl Instrument for HtxInstrument {
    fn listing(self, venue: Venue) -> Option<Listing> {
        let trading = self.state == "online";
        listing(venue, self.symbol, &self.base, &self.quote, trading)
    }
}

fn htx(body: &[u8]) -> Result<Instruments, ParseError> {
    let venue = Venue::Htx;
    let envelope: HtxEnvelope<'_> =
        serde_json::from_slice(body).map_err(|error| json_error(venue, error))?;
    if envelope.status != "ok" {
        return Err(ParseError::VenueError {
            venue,
            code: envelope
                .error_code
                .map(|code| code.text())
                .unwrap_or_else(|| format!("status {}", envelope.status)),
            message: envelope.error_message.unwrap_or_default(),
        });
    }
    let data = envelope.data.ok_or_else(|| ParseError::Envelope {
        venue,
        detail: "no `data` array".to_owned(),
    })?;
    Ok(instruments::<HtxInstrument>(venue, data))
}
