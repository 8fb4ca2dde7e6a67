//! Buffered records (`Rows`, copied from the engine's batches as they are) and their conversion
//! into Arrow record batches of the dataset schemas of `tickflow-formats`, with symbol and venue
//! names looked up through the host and cached in a bounded map.

use rustc_hash::FxHashMap as HashMap;
use std::sync::Arc;

use arrow_array::builder::{
    BooleanBuilder, Int64Builder, NullBufferBuilder, StringBuilder, UInt32Builder,
};
use arrow_array::types::{
    ArrowPrimitiveType, Float64Type, Int32Type, TimestampNanosecondType, UInt64Type,
};
use arrow_array::{
    ArrayRef, DictionaryArray, Float64Array, Int32Array, PrimitiveArray, RecordBatch,
    TimestampNanosecondArray,
};
use arrow_schema::ArrowError;
use tickflow_formats::Dataset;
use tickflow_formats::schema::{gap_kind_name, opportunity_kind_name};
use tickflow_sdk::HostHandle;
use tickflow_sdk::records::{
    GapEvent, OPPORTUNITY_FLAG_NET, OpportunityEvent, Quote, SPREAD_FLAG_WARMING, SpreadSample,
    SymbolId, Trade, VenueId,
};

/// Records of one dataset, copied verbatim from the engine's batches.
#[derive(Debug)]
pub enum Rows {
    Quotes(Vec<Quote>),
    Trades(Vec<Trade>),
    Spreads(Vec<SpreadSample>),
    Opportunities(Vec<OpportunityEvent>),
    Gaps(Vec<GapEvent>),
}

impl Rows {
    pub fn empty(dataset: Dataset) -> Rows {
        match dataset {
            Dataset::Quotes => Rows::Quotes(Vec::new()),
            Dataset::Trades => Rows::Trades(Vec::new()),
            Dataset::Spreads => Rows::Spreads(Vec::new()),
            Dataset::Opportunities => Rows::Opportunities(Vec::new()),
            Dataset::Gaps => Rows::Gaps(Vec::new()),
        }
    }
    pub fn len(&self) -> usize {
        match self {
            Rows::Quotes(rows) => rows.len(),
            Rows::Trades(rows) => rows.len(),
            Rows::Spreads(rows) => rows.len(),
            Rows::Opportunities(rows) => rows.len(),
            Rows::Gaps(rows) => rows.len(),
        }
    }
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
    /// Bytes held (capacity, not length: what the allocator gave).
    pub fn capacity_bytes(&self) -> u64 {
        let (capacity, size) = match self {
            Rows::Quotes(rows) => (rows.capacity(), size_of::<Quote>()),
            Rows::Trades(rows) => (rows.capacity(), size_of::<Trade>()),
            Rows::Spreads(rows) => (rows.capacity(), size_of::<SpreadSample>()),
            Rows::Opportunities(rows) => (rows.capacity(), size_of::<OpportunityEvent>()),
            Rows::Gaps(rows) => (rows.capacity(), size_of::<GapEvent>()),
        };
        (capacity * size) as u64
    }
}

/// A record kind the sink buffers.
pub trait Record: Copy {
    const DATASET: Dataset;
    /// The time that names the record's hour partition.
    fn partition_ns(&self) -> i64;
    fn rows_mut(rows: &mut Rows) -> Option<&mut Vec<Self>>;
}

impl Record for Quote {
    const DATASET: Dataset = Dataset::Quotes;
    fn partition_ns(&self) -> i64 {
        self.ts_recv_ns
    }
    fn rows_mut(rows: &mut Rows) -> Option<&mut Vec<Self>> {
        match rows {
            Rows::Quotes(rows) => Some(rows),
            _ => None,
        }
    }
}
impl Record for Trade {
    const DATASET: Dataset = Dataset::Trades;
    fn partition_ns(&self) -> i64 {
        self.ts_recv_ns
    }
    fn rows_mut(rows: &mut Rows) -> Option<&mut Vec<Self>> {
        match rows {
            Rows::Trades(rows) => Some(rows),
            _ => None,
        }
    }
}
impl Record for SpreadSample {
    const DATASET: Dataset = Dataset::Spreads;
    fn partition_ns(&self) -> i64 {
        self.bucket_start_ns
    }
    fn rows_mut(rows: &mut Rows) -> Option<&mut Vec<Self>> {
        match rows {
            Rows::Spreads(rows) => Some(rows),
            _ => None,
        }
    }
}
impl Record for OpportunityEvent {
    const DATASET: Dataset = Dataset::Opportunities;
    fn partition_ns(&self) -> i64 {
        self.ts_ns
    }
    fn rows_mut(rows: &mut Rows) -> Option<&mut Vec<Self>> {
        match rows {
            Rows::Opportunities(rows) => Some(rows),
            _ => None,
        }
    }
}
impl Record for GapEvent {
    const DATASET: Dataset = Dataset::Gaps;
    fn partition_ns(&self) -> i64 {
        self.ts_ns
    }
    fn rows_mut(rows: &mut Rows) -> Option<&mut Vec<Self>> {
        match rows {
            Rows::Gaps(rows) => Some(rows),
            _ => None,
        }
    }
}

/// Symbol and venue names by id, looked up through the host once per id. Bounded: when it holds
/// `capacity` names it is cleared (and the reset counted), so memory never grows with the
/// number of symbols ever seen. An id the host does not know is written as `#<id>`.
pub struct NameCache {
    host: HostHandle,
    symbols: HashMap<u32, Arc<str>>,
    venues: HashMap<u16, Arc<str>>,
    capacity: usize,
    pub resets: u64,
}

impl NameCache {
    pub fn new(host: HostHandle, capacity: usize) -> NameCache {
        NameCache {
            host,
            symbols: HashMap::default(),
            venues: HashMap::default(),
            capacity,
            resets: 0,
        }
    }
    fn make_room(&mut self) {
        if self.symbols.len() + self.venues.len() >= self.capacity {
            self.symbols.clear();
            self.venues.clear();
            self.resets += 1;
        }
    }
    pub fn symbol(&mut self, id: SymbolId) -> Arc<str> {
        if let Some(name) = self.symbols.get(&id.0) {
            return name.clone();
        }
        self.make_room();
        let name: Arc<str> = self
            .host
            .symbol_name(id)
            .unwrap_or_else(|| format!("#{}", id.0))
            .into();
        self.symbols.insert(id.0, name.clone());
        name
    }
    pub fn venue(&mut self, id: VenueId) -> Arc<str> {
        if let Some(name) = self.venues.get(&id.0) {
            return name.clone();
        }
        self.make_room();
        let name: Arc<str> = self
            .host
            .venue_name(id)
            .unwrap_or_else(|| format!("#{}", id.0))
            .into();
        self.venues.insert(id.0, name.clone());
        name
    }
    /// Bytes held, roughly (for the memory budget's writer share).
    pub fn approx_bytes(&self) -> usize {
        (self.symbols.len() + self.venues.len()) * 96
    }
}

/// Ids below this are keyed through a table indexed by id (symbol ids are registry slots,
/// venue ids small); larger ones through a map. Bounds the table at 256 KiB.
const DENSE_ID_LIMIT: u32 = 1 << 16;

/// Builds one dictionary-encoded string column: each distinct id is looked up once per batch.
struct DictionaryColumn {
    keys: Vec<i32>,
    /// Key + 1 of each id below [`DENSE_ID_LIMIT`] (0: not seen yet), grown to the largest id.
    dense: Vec<i32>,
    sparse: HashMap<u32, i32>,
    distinct: i32,
    values: StringBuilder,
}

impl DictionaryColumn {
    fn with_capacity(rows: usize) -> DictionaryColumn {
        DictionaryColumn {
            keys: Vec::with_capacity(rows),
            dense: Vec::new(),
            sparse: HashMap::default(),
            distinct: 0,
            values: StringBuilder::new(),
        }
    }
    #[inline]
    fn push(&mut self, id: u32, name: impl FnOnce() -> Arc<str>) {
        let key = if id < DENSE_ID_LIMIT {
            let slot = id as usize;
            if slot >= self.dense.len() {
                self.dense.resize(slot + 1, 0);
            }
            match self.dense[slot] {
                0 => {
                    let key = self.new_key(name);
                    self.dense[slot] = key + 1;
                    key
                }
                key_plus_one => key_plus_one - 1,
            }
        } else if let Some(&key) = self.sparse.get(&id) {
            key
        } else {
            let key = self.new_key(name);
            self.sparse.insert(id, key);
            key
        };
        self.keys.push(key);
    }
    fn new_key(&mut self, name: impl FnOnce() -> Arc<str>) -> i32 {
        self.values.append_value(&*name());
        self.distinct += 1;
        self.distinct - 1
    }
    fn finish(mut self) -> Result<ArrayRef, ArrowError> {
        let array = DictionaryArray::<Int32Type>::try_new(
            Int32Array::from(self.keys),
            Arc::new(self.values.finish()),
        )?;
        Ok(Arc::new(array))
    }
}

fn timestamps(values: impl Iterator<Item = i64>) -> ArrayRef {
    Arc::new(TimestampNanosecondArray::from_iter_values(values).with_timezone("UTC"))
}

/// Values and validity in two passes-free vectors: a value slot is written for a null too (0),
/// and the validity bitmap is only materialised when a null appears.
fn optional_values<T: ArrowPrimitiveType>(
    values: impl Iterator<Item = Option<T::Native>>,
    rows: usize,
) -> PrimitiveArray<T> {
    let mut data = Vec::with_capacity(rows);
    let mut validity = NullBufferBuilder::new(rows);
    for value in values {
        match value {
            Some(value) => {
                data.push(value);
                validity.append_non_null();
            }
            None => {
                data.push(T::Native::default());
                validity.append_null();
            }
        }
    }
    PrimitiveArray::new(data.into(), validity.finish())
}

fn optional_timestamps(values: impl Iterator<Item = Option<i64>>, rows: usize) -> ArrayRef {
    Arc::new(optional_values::<TimestampNanosecondType>(values, rows).with_timezone("UTC"))
}

fn floats(values: impl Iterator<Item = f64>) -> ArrayRef {
    Arc::new(Float64Array::from_iter_values(values))
}

/// A band or window statistic: NaN or infinite (an empty or degenerate window) is written as
/// null, so readers never meet NaN.
fn finite_floats(values: impl Iterator<Item = f64>, rows: usize) -> ArrayRef {
    Arc::new(optional_values::<Float64Type>(
        values.map(|value| value.is_finite().then_some(value)),
        rows,
    ))
}

fn strings<'a>(values: impl Iterator<Item = &'a str>, rows: usize) -> ArrayRef {
    let mut builder = StringBuilder::with_capacity(rows, rows * 8);
    for value in values {
        builder.append_value(value);
    }
    Arc::new(builder.finish())
}

/// The trade id as text: verbatim ASCII, or a packed UUID in canonical lowercase form.
pub fn trade_id_text(trade: &Trade, out: &mut String) {
    out.clear();
    // Writing into a String cannot fail.
    let _ = trade.write_trade_id(out);
}

/// Sorts spread samples by (symbol name, buy venue name, sell venue name, bucket start), the
/// dataset's sort order. Each distinct id is looked up once and ranked by name; the rows are
/// then sorted by ranks (24 bytes of key a row, no string comparisons).
pub fn sort_spreads(rows: &mut [SpreadSample], names: &mut NameCache) {
    fn ranks<K: Copy + Ord + std::hash::Hash>(
        ids: impl Iterator<Item = K>,
        mut name: impl FnMut(K) -> Arc<str>,
    ) -> HashMap<K, u32> {
        let mut distinct: Vec<K> = ids.collect();
        distinct.sort_unstable();
        distinct.dedup();
        let mut named: Vec<(Arc<str>, K)> = distinct.into_iter().map(|id| (name(id), id)).collect();
        named.sort();
        named
            .into_iter()
            .enumerate()
            .map(|(rank, (_, id))| (id, rank as u32))
            .collect()
    }
    let symbol_rank = ranks(rows.iter().map(|row| row.symbol_id), |id| names.symbol(id));
    let venue_rank = ranks(
        rows.iter()
            .flat_map(|row| [row.buy_venue_id, row.sell_venue_id]),
        |id| names.venue(id),
    );
    fn rank<K: Eq + std::hash::Hash>(ranks: &HashMap<K, u32>, id: K) -> u32 {
        ranks.get(&id).copied().unwrap_or(u32::MAX)
    }
    let mut keys: Vec<(u32, u32, u32, i64, u32)> = rows
        .iter()
        .enumerate()
        .map(|(index, row)| {
            (
                rank(&symbol_rank, row.symbol_id),
                rank(&venue_rank, row.buy_venue_id),
                rank(&venue_rank, row.sell_venue_id),
                row.bucket_start_ns,
                index as u32,
            )
        })
        .collect();
    keys.sort_unstable();
    let sorted: Vec<SpreadSample> = keys.iter().map(|key| rows[key.4 as usize]).collect();
    rows.copy_from_slice(&sorted);
}

/// Converts buffered rows into a record batch of `dataset.schema()` (spreads must be sorted
/// first, see [`sort_spreads`]).
pub fn to_record_batch(rows: &Rows, names: &mut NameCache) -> Result<RecordBatch, ArrowError> {
    let dataset = match rows {
        Rows::Quotes(_) => Dataset::Quotes,
        Rows::Trades(_) => Dataset::Trades,
        Rows::Spreads(_) => Dataset::Spreads,
        Rows::Opportunities(_) => Dataset::Opportunities,
        Rows::Gaps(_) => Dataset::Gaps,
    };
    let n = rows.len();
    let columns: Vec<ArrayRef> = match rows {
        Rows::Quotes(rows) => {
            let mut symbol = DictionaryColumn::with_capacity(n);
            let mut venue = DictionaryColumn::with_capacity(n);
            for row in rows {
                symbol.push(row.symbol_id.0, || names.symbol(row.symbol_id));
                venue.push(u32::from(row.venue_id.0), || names.venue(row.venue_id));
            }
            vec![
                timestamps(rows.iter().map(|row| row.ts_recv_ns)),
                optional_timestamps(rows.iter().map(|row| row.ts_exchange()), n),
                symbol.finish()?,
                venue.finish()?,
                floats(rows.iter().map(|row| row.bid)),
                floats(rows.iter().map(|row| row.bid_qty)),
                floats(rows.iter().map(|row| row.ask)),
                floats(rows.iter().map(|row| row.ask_qty)),
                Arc::new(optional_values::<UInt64Type>(
                    rows.iter().map(|row| row.sequence()),
                    n,
                )),
            ]
        }
        Rows::Trades(rows) => {
            let mut symbol = DictionaryColumn::with_capacity(n);
            let mut venue = DictionaryColumn::with_capacity(n);
            let mut trade_id = StringBuilder::with_capacity(n, n * 20);
            let mut text = String::with_capacity(40);
            for row in rows {
                symbol.push(row.symbol_id.0, || names.symbol(row.symbol_id));
                venue.push(u32::from(row.venue_id.0), || names.venue(row.venue_id));
                trade_id_text(row, &mut text);
                trade_id.append_value(&text);
            }
            vec![
                timestamps(rows.iter().map(|row| row.ts_recv_ns)),
                optional_timestamps(rows.iter().map(|row| row.ts_exchange()), n),
                symbol.finish()?,
                venue.finish()?,
                floats(rows.iter().map(|row| row.price)),
                floats(rows.iter().map(|row| row.qty)),
                strings(rows.iter().map(|row| row.side().as_str()), n),
                Arc::new(trade_id.finish()),
            ]
        }
        Rows::Spreads(rows) => {
            let mut symbol = DictionaryColumn::with_capacity(n);
            let mut buy = DictionaryColumn::with_capacity(n);
            let mut sell = DictionaryColumn::with_capacity(n);
            for row in rows {
                symbol.push(row.symbol_id.0, || names.symbol(row.symbol_id));
                buy.push(u32::from(row.buy_venue_id.0), || {
                    names.venue(row.buy_venue_id)
                });
                sell.push(u32::from(row.sell_venue_id.0), || {
                    names.venue(row.sell_venue_id)
                });
            }
            let mut duration = Int64Builder::with_capacity(n);
            let mut samples = UInt32Builder::with_capacity(n);
            let mut warming = BooleanBuilder::with_capacity(n);
            for row in rows {
                duration.append_value(row.bucket_duration_ns);
                samples.append_value(row.samples);
                warming.append_value(row.flags & SPREAD_FLAG_WARMING != 0);
            }
            vec![
                timestamps(rows.iter().map(|row| row.bucket_start_ns)),
                symbol.finish()?,
                buy.finish()?,
                sell.finish()?,
                Arc::new(duration.finish()),
                floats(rows.iter().map(|row| row.last_bp)),
                floats(rows.iter().map(|row| row.min_bp)),
                floats(rows.iter().map(|row| row.max_bp)),
                floats(rows.iter().map(|row| row.mean_bp)),
                finite_floats(rows.iter().map(|row| row.window_mean_bp), n),
                finite_floats(rows.iter().map(|row| row.window_std_bp), n),
                finite_floats(rows.iter().map(|row| row.band_lower_bp), n),
                finite_floats(rows.iter().map(|row| row.band_upper_bp), n),
                Arc::new(samples.finish()),
                Arc::new(warming.finish()),
            ]
        }
        Rows::Opportunities(rows) => {
            let mut symbol = DictionaryColumn::with_capacity(n);
            let mut buy = DictionaryColumn::with_capacity(n);
            let mut sell = DictionaryColumn::with_capacity(n);
            let mut net = BooleanBuilder::with_capacity(n);
            for row in rows {
                symbol.push(row.symbol_id.0, || names.symbol(row.symbol_id));
                buy.push(u32::from(row.buy_venue_id.0), || {
                    names.venue(row.buy_venue_id)
                });
                sell.push(u32::from(row.sell_venue_id.0), || {
                    names.venue(row.sell_venue_id)
                });
                net.append_value(row.flags & OPPORTUNITY_FLAG_NET != 0);
            }
            vec![
                timestamps(rows.iter().map(|row| row.ts_ns)),
                strings(rows.iter().map(|row| opportunity_kind_name(row.kind)), n),
                timestamps(rows.iter().map(|row| row.started_ns)),
                symbol.finish()?,
                buy.finish()?,
                sell.finish()?,
                floats(rows.iter().map(|row| row.threshold_bp)),
                floats(rows.iter().map(|row| row.spread_bp)),
                floats(rows.iter().map(|row| row.peak_bp)),
                Arc::new(net.finish()),
            ]
        }
        Rows::Gaps(rows) => {
            let mut symbol = DictionaryColumn::with_capacity(n);
            let mut venue = DictionaryColumn::with_capacity(n);
            let mut connection = UInt32Builder::with_capacity(n);
            for row in rows {
                symbol.push(row.symbol_id.0, || names.symbol(row.symbol_id));
                venue.push(u32::from(row.venue_id.0), || names.venue(row.venue_id));
                connection.append_value(row.connection_id);
            }
            vec![
                timestamps(rows.iter().map(|row| row.ts_ns)),
                strings(rows.iter().map(|row| gap_kind_name(row.kind)), n),
                symbol.finish()?,
                venue.finish()?,
                Arc::new(connection.finish()),
            ]
        }
    };
    RecordBatch::try_new(dataset.schema(), columns)
}
