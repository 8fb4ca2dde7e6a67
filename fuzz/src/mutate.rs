//! Mutations that find bugs in parsers: byte-level (bit flips, interesting bytes, insertion,
//! deletion, repetition, truncation, splicing two inputs), JSON-aware (numbers replaced by huge,
//! negative, NaN-looking and malformed spellings; strings by dictionary words; members dropped,
//! repeated or renamed; values retyped, swapped or nested deeply; array elements repeated past
//! the record limit), protobuf-aware (varints at their edges, strings replaced, fields dropped,
//! repeated, renumbered or retyped) and gzip-aware (mutate the JSON inside, or the member's
//! header, deflate stream and trailer).

use crate::input::{Form, Input};
use crate::json::{self, Kind, Span};
use crate::proto;
use crate::rng::Rng;

/// Longest mutant kept (a bigger one is cut): larger frames say nothing new and cost time.
pub const MAX_INPUT_BYTES: usize = 64 * 1024;

/// Number spellings at the edges of what parsers take.
pub const NUMBER_EDGES: &[&str] = &[
    "0",
    "-0",
    "0.0",
    "-0.0",
    "1",
    "-1",
    "00012",
    "1.",
    ".5",
    "1e",
    "1e5",
    "1E-7",
    "1e30",
    "-1e30",
    "1e308",
    "1e309",
    "-1e309",
    "1e-400",
    "4.9e-324",
    "1.7976931348623157e308",
    "9223372036854775807",
    "9223372036854775808",
    "-9223372036854775808",
    "-9223372036854775809",
    "18446744073709551615",
    "18446744073709551616",
    "99999999999999999999",
    "100000000000000000000000000000",
    "9223372036854",
    "9223372036854.775807",
    "9223372036854.775808",
    "9223372036855",
    "1606292218213.4578",
    "1606292218213.",
    "1606292218213.99999999999",
    "NaN",
    "nan",
    "-NaN",
    "inf",
    "-inf",
    "Infinity",
    "-Infinity",
    "+1",
    " 1",
    "1 ",
    "0x10",
    "1_000",
    "1,5",
    "١٢",
    "",
];

/// Values of another type, dropped in where a value was.
const VALUE_SWAPS: &[&str] = &[
    "null",
    "true",
    "false",
    "0",
    "-1",
    "\"\"",
    "[]",
    "{}",
    "[[]]",
    "[\"\"]",
    "[\"1\"]",
    "[[\"1\"]]",
    "[[\"0\",\"0\"]]",
    "\"0\"",
    "\"NaN\"",
    "1e999",
    "{\"\":null}",
    "[null,null]",
];

/// Strings that parsers trip on (beside the words the seeds hold).
const STRING_EDGES: &[&str] = &[
    "",
    " ",
    "\\u0000",
    "\\ud800",
    "\\\"",
    "\\\\",
    "é",
    "\\u00e9",
    "BTC",
    "BTC-",
    "-USDT",
    "btc-usdt",
    "BTC_USDT",
    "BTCUSDT",
    "USDT",
    "5c24c5da03aa673885cd67aa",
    "20F43950-D8DD-5B31-9112-A178EB6023AF",
    "20f43950-d8dd-5b31-9112-a178eb6023af",
    "123456789012345678901234",
    "snapshot",
    "update",
    "subscribe",
    "error",
    "notice",
    "ping",
    "pong",
    "buy",
    "sell",
    "BUY",
    "Sell",
    "message",
    "welcome",
    "market.btcusdt.bbo",
    "market..bbo",
    "market.btcusdt",
    "spot@public.aggre.bookTicker.v3.api.pb@100ms@",
    "@",
    "/spotMarket/level1:",
    "/market/match:BTC-USDT",
    "orderbook.1.",
    "publicTrade.",
    "bbo-tbt",
    "books1",
    "tickers",
];

/// Bytes that mean something to a JSON, gzip or protobuf parser.
const INTERESTING_BYTES: &[u8] =
    b"\"{}[],:0-+.eE\\ \t\n\x00\x01\x7f\x80\xbf\xc0\xc3\xe2\xef\xf0\xf4\xf5\xff\x08\x1f\x8b";

/// Words the mutators use: the seeds' strings and keys, and [`STRING_EDGES`].
#[derive(Clone, Debug, Default)]
pub struct Dictionary {
    pub words: Vec<Vec<u8>>,
    pub keys: Vec<Vec<u8>>,
}

impl Dictionary {
    /// Collects the strings and keys of every JSON input.
    pub fn from_inputs(inputs: &[Input]) -> Dictionary {
        let mut dictionary = Dictionary {
            words: STRING_EDGES
                .iter()
                .map(|word| word.as_bytes().to_vec())
                .collect(),
            keys: Vec::new(),
        };
        for input in inputs.iter().filter(|input| input.is_json()) {
            let Some(scan) = json::scan(&input.bytes) else {
                continue;
            };
            for key in &scan.keys {
                dictionary
                    .keys
                    .push(input.bytes[key.start + 1..key.end - 1].to_vec());
            }
            for value in scan.of_kind(Kind::String) {
                dictionary
                    .words
                    .push(input.bytes[value.span.start + 1..value.span.end - 1].to_vec());
            }
        }
        dictionary.words.sort();
        dictionary.words.dedup();
        dictionary.keys.sort();
        dictionary.keys.dedup();
        if dictionary.keys.is_empty() {
            dictionary.keys.push(b"data".to_vec());
        }
        dictionary
    }
}

/// Everything a mutation may draw from besides the input itself.
pub struct Mutator<'a> {
    pub rng: &'a mut Rng,
    pub dictionary: &'a Dictionary,
    /// Other inputs (any venue) to splice with.
    pub others: &'a [Input],
}

impl<'a> Mutator<'a> {
    /// Applies one to four mutations to `input`.
    pub fn mutate(&mut self, input: &mut Input) {
        let rounds = self.rng.between(1, 4);
        for _ in 0..rounds {
            self.mutate_once(input);
        }
        input.bytes.truncate(MAX_INPUT_BYTES);
    }

    fn mutate_once(&mut self, input: &mut Input) {
        match input.form {
            Form::Text | Form::TextAsBinary | Form::Gzip => {
                // Now and then the frame changes how it travels.
                if self.rng.chance(1, 40) {
                    input.form = match input.form {
                        Form::Text => Form::TextAsBinary,
                        Form::TextAsBinary => Form::Text,
                        _ => Form::Binary,
                    };
                    if input.form == Form::Binary {
                        input.bytes = crate::input::gzip(&input.bytes);
                    }
                    return;
                }
                if self.rng.chance(3, 5) && self.mutate_json(input) {
                    return;
                }
                self.mutate_bytes(input);
            }
            Form::Binary => {
                if self.rng.chance(1, 2) && self.mutate_protobuf(input) {
                    return;
                }
                if self.rng.chance(1, 4) && self.mutate_inside_gzip(input) {
                    return;
                }
                self.mutate_bytes(input);
            }
        }
    }

    /// Byte-level mutations; always changes something (or leaves an empty input empty).
    pub fn mutate_bytes(&mut self, input: &mut Input) {
        let bytes = &mut input.bytes;
        if bytes.is_empty() {
            let len = self.rng.small_len(16);
            for _ in 0..len {
                bytes.push(*self.rng.pick(INTERESTING_BYTES));
            }
            return;
        }
        let len = bytes.len();
        match self.rng.below(11) {
            0 => {
                let flips = self.rng.between(1, 4);
                for _ in 0..flips {
                    let at = self.rng.below(len);
                    bytes[at] ^= 1 << self.rng.below(8);
                }
            }
            1 => {
                let at = self.rng.below(len);
                bytes[at] = *self.rng.pick(INTERESTING_BYTES);
            }
            2 => {
                let at = self.rng.below(len);
                bytes[at] = self.rng.next_u64() as u8;
            }
            3 => {
                let at = self.rng.below(len);
                let delta = self.rng.between(1, 35) as u8;
                bytes[at] = if self.rng.chance(1, 2) {
                    bytes[at].wrapping_add(delta)
                } else {
                    bytes[at].wrapping_sub(delta)
                };
            }
            4 => {
                // Insert interesting bytes or a dictionary word.
                let at = self.rng.below(len + 1);
                let insert: Vec<u8> = if self.rng.chance(1, 2) {
                    self.rng.pick(&self.dictionary.words).clone()
                } else {
                    (0..self.rng.small_len(8))
                        .map(|_| *self.rng.pick(INTERESTING_BYTES))
                        .collect()
                };
                bytes.splice(at..at, insert);
            }
            5 => {
                let at = self.rng.below(len);
                let remove = self.rng.small_len(len - at);
                bytes.drain(at..at + remove);
            }
            6 => {
                // Repeat a chunk somewhere else.
                let at = self.rng.below(len);
                let chunk_len = self.rng.small_len(len - at);
                let chunk = bytes[at..at + chunk_len].to_vec();
                let to = self.rng.below(len + 1);
                let times = if self.rng.chance(1, 8) {
                    self.rng.between(2, 64)
                } else {
                    1
                };
                for _ in 0..times {
                    bytes.splice(to..to, chunk.iter().copied());
                }
            }
            7 => {
                let keep = self.rng.below(len);
                bytes.truncate(keep);
            }
            8 => {
                // Splice: this input's head, another's tail.
                if let Some(other) = self.other() {
                    let cut = self.rng.below(len + 1);
                    let other_cut = self.rng.below(other.bytes.len() + 1);
                    bytes.truncate(cut);
                    bytes.extend_from_slice(&other.bytes[other_cut..]);
                }
            }
            9 => {
                // Overwrite with a multi-byte edge value (lengths, varints, CRCs).
                let edges: &[&[u8]] = &[
                    &[0xff, 0xff, 0xff, 0xff],
                    &[0x00, 0x00, 0x00, 0x00],
                    &[0x80, 0x00, 0x00, 0x00],
                    &[0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01],
                    &[
                        0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01,
                    ],
                    &[0x7f, 0xff],
                ];
                let edge = *self.rng.pick(edges);
                let at = self.rng.below(len);
                for (offset, &byte) in edge.iter().enumerate() {
                    if let Some(slot) = bytes.get_mut(at + offset) {
                        *slot = byte;
                    }
                }
            }
            _ => {
                // Swap two bytes.
                let first = self.rng.below(len);
                let second = self.rng.below(len);
                bytes.swap(first, second);
            }
        }
    }

    fn other(&mut self) -> Option<&'a Input> {
        let others = self.others;
        (!others.is_empty()).then(|| self.rng.pick(others))
    }

    /// JSON-aware mutations; `false` when the input is not JSON (then bytes are mutated).
    fn mutate_json(&mut self, input: &mut Input) -> bool {
        let Some(scan) = json::scan(&input.bytes) else {
            return false;
        };
        let text = &input.bytes;
        let pick_value = |rng: &mut Rng, kind: Option<Kind>| -> Option<Span> {
            let values: Vec<Span> = scan
                .values
                .iter()
                .filter(|value| kind.is_none_or(|kind| value.kind == kind))
                .map(|value| value.span)
                .collect();
            (!values.is_empty()).then(|| *rng.pick(&values))
        };
        let mutated = match self.rng.below(11) {
            0 | 1 => {
                // A number, bare or in a string, becomes an edge spelling.
                let numeric_strings: Vec<Span> = scan
                    .of_kind(Kind::String)
                    .map(|value| value.span)
                    .filter(|span| {
                        let body = &text[span.start + 1..span.end - 1];
                        !body.is_empty()
                            && body
                                .iter()
                                .all(|byte| byte.is_ascii_digit() || b"-+.eE".contains(byte))
                    })
                    .collect();
                let edge = *self.rng.pick(NUMBER_EDGES);
                if !numeric_strings.is_empty() && self.rng.chance(1, 2) {
                    let span = *self.rng.pick(&numeric_strings);
                    Some(json::replace(
                        text,
                        Span {
                            start: span.start + 1,
                            end: span.end - 1,
                        },
                        edge.as_bytes(),
                    ))
                } else {
                    pick_value(self.rng, Some(Kind::Number)).map(|span| {
                        let spelling = if self.rng.chance(1, 3) || edge.is_empty() {
                            format!("\"{edge}\"")
                        } else {
                            edge.to_string()
                        };
                        json::replace(text, span, spelling.as_bytes())
                    })
                }
            }
            2 => pick_value(self.rng, Some(Kind::String)).map(|span| {
                let word = self.rng.pick(&self.dictionary.words).clone();
                json::replace(
                    text,
                    Span {
                        start: span.start + 1,
                        end: span.end - 1,
                    },
                    &word,
                )
            }),
            3 => pick_value(self.rng, None).map(|span| {
                let swap = *self.rng.pick(VALUE_SWAPS);
                json::replace(text, span, swap.as_bytes())
            }),
            4 => (!scan.items.is_empty()).then(|| {
                let item = *self.rng.pick(&scan.items);
                json::drop_item(text, item)
            }),
            5 => (!scan.items.is_empty()).then(|| {
                // Repeat a member or element: duplicate keys, or many array elements.
                let item = *self.rng.pick(&scan.items);
                let times = if self.rng.chance(1, 4) {
                    self.rng.between(2, 300)
                } else {
                    1
                };
                let mut copies = Vec::new();
                for _ in 0..times {
                    copies.push(b',');
                    copies.extend_from_slice(&text[item.start..item.end]);
                }
                json::replace(
                    text,
                    Span {
                        start: item.end,
                        end: item.end,
                    },
                    &copies,
                )
            }),
            6 => (!scan.keys.is_empty()).then(|| {
                let key = *self.rng.pick(&scan.keys);
                let name = self.rng.pick(&self.dictionary.keys).clone();
                json::replace(
                    text,
                    Span {
                        start: key.start + 1,
                        end: key.end - 1,
                    },
                    &name,
                )
            }),
            7 => pick_value(self.rng, None).map(|span| {
                // Nest deeply: mostly a few levels, sometimes thousands.
                let depth = if self.rng.chance(1, 4) {
                    self.rng.between(100, 5000)
                } else {
                    self.rng.between(1, 8)
                };
                let (open, close): (&[u8], &[u8]) = if self.rng.chance(1, 2) {
                    (b"[", b"]")
                } else {
                    (b"{\"a\":", b"}")
                };
                let mut nested = open.repeat(depth);
                nested.extend_from_slice(&text[span.start..span.end]);
                nested.extend_from_slice(&close.repeat(depth));
                json::replace(text, span, &nested)
            }),
            8 => {
                // Swap in another value of this text.
                match (pick_value(self.rng, None), pick_value(self.rng, None)) {
                    (Some(target), Some(source)) => {
                        Some(json::replace(text, target, &text[source.start..source.end]))
                    }
                    _ => None,
                }
            }
            9 => {
                // Splice a value from another JSON input in.
                let target = pick_value(self.rng, None);
                let source = self
                    .other()
                    .filter(|other| other.is_json())
                    .and_then(|other| {
                        let scan = json::scan(&other.bytes)?;
                        let values: Vec<Span> =
                            scan.values.iter().map(|value| value.span).collect();
                        (!values.is_empty()).then(|| (other.bytes.clone(), values))
                    });
                match (target, source) {
                    (Some(target), Some((other, values))) => {
                        let span = *self.rng.pick(&values);
                        Some(json::replace(text, target, &other[span.start..span.end]))
                    }
                    _ => None,
                }
            }
            _ => {
                // Empty a container, or a side of the book.
                let containers: Vec<Span> = scan
                    .values
                    .iter()
                    .filter(|value| matches!(value.kind, Kind::Array | Kind::Object))
                    .map(|value| value.span)
                    .collect();
                (!containers.is_empty()).then(|| {
                    let span = *self.rng.pick(&containers);
                    let empty: &[u8] = if text[span.start] == b'[' {
                        b"[]"
                    } else {
                        b"{}"
                    };
                    json::replace(text, span, empty)
                })
            }
        };
        match mutated {
            Some(bytes) => {
                input.bytes = bytes;
                true
            }
            None => false,
        }
    }

    /// Protobuf-aware mutations; `false` when the bytes are not a message.
    fn mutate_protobuf(&mut self, input: &mut Input) -> bool {
        let Some(mut fields) = proto::parse(&input.bytes) else {
            return false;
        };
        let paths = proto::field_paths(&fields);
        if paths.is_empty() {
            fields.push(proto::Field {
                number: *self.rng.pick(&[1, 3, 5, 6, 314, 315]),
                value: proto::Value::Bytes(Vec::new()),
            });
            input.bytes = proto::write(&fields);
            return true;
        }
        let path = self.rng.pick(&paths).clone();
        let choice = self.rng.below(8);
        let Some((list, index)) = proto::parent_of(&mut fields, &path) else {
            return false;
        };
        match choice {
            0 | 1 => {
                let field = &mut list[index];
                field.value = match &field.value {
                    proto::Value::Varint(_) => {
                        let edges = [
                            0,
                            1,
                            2,
                            3,
                            127,
                            128,
                            u64::from(u32::MAX),
                            i32::MAX as u64,
                            (-1i32) as i64 as u64,
                            i64::MAX as u64,
                            i64::MIN as u64,
                            u64::MAX,
                            9_223_372_036_854,
                            9_223_372_036_855,
                            1_736_412_092_433,
                            self.rng.next_u64(),
                        ];
                        proto::Value::Varint(*self.rng.pick(&edges))
                    }
                    _ => {
                        let bytes = if self.rng.chance(1, 2) {
                            self.rng.pick(NUMBER_EDGES).as_bytes().to_vec()
                        } else if self.rng.chance(1, 8) {
                            vec![b'9'; self.rng.between(20, 400)]
                        } else {
                            self.rng.pick(&self.dictionary.words).clone()
                        };
                        proto::Value::Bytes(bytes)
                    }
                };
            }
            2 => {
                list.remove(index);
            }
            3 => {
                let copy = list[index].clone();
                let times = if self.rng.chance(1, 4) {
                    self.rng.between(2, 300)
                } else {
                    1
                };
                for _ in 0..times {
                    list.insert(index, copy.clone());
                }
            }
            4 => {
                let numbers = [0, 1, 2, 3, 4, 5, 6, 7, 313, 314, 315, 316, 536_870_911];
                list[index].number = *self.rng.pick(&numbers);
            }
            5 => {
                // Retype: a message or string as a varint, a varint as bytes, ...
                let field = &mut list[index];
                field.value = match self.rng.below(4) {
                    0 => proto::Value::Varint(self.rng.next_u64() >> self.rng.below(64)),
                    1 => proto::Value::Bytes(Vec::new()),
                    2 => proto::Value::Fixed64([0xff; 8]),
                    _ => proto::Value::Fixed32([0; 4]),
                };
            }
            6 => {
                let other = self.rng.below(list.len());
                list.swap(index, other);
            }
            _ => {
                let value = match self.rng.below(3) {
                    0 => proto::Value::Varint(self.rng.next_u64()),
                    1 => proto::Value::Bytes(self.rng.pick(&self.dictionary.words).clone()),
                    _ => proto::Value::Message(Vec::new()),
                };
                let number = *self.rng.pick(&[1, 2, 3, 4, 5, 6, 314, 315]);
                list.insert(index, proto::Field { number, value });
            }
        }
        input.bytes = proto::write(&fields);
        true
    }

    /// Mutates the JSON inside a gzip member and compresses it again; `false` when the bytes are
    /// not gzip of JSON.
    fn mutate_inside_gzip(&mut self, input: &mut Input) -> bool {
        use std::io::Read;
        if !input.bytes.starts_with(&[0x1f, 0x8b]) {
            return false;
        }
        let mut inflated = Vec::new();
        let mut reader =
            flate2::read::GzDecoder::new(&input.bytes[..]).take(MAX_INPUT_BYTES as u64);
        if reader.read_to_end(&mut inflated).is_err() {
            return false;
        }
        let mut inner = Input::new(Form::Text, inflated);
        if !self.mutate_json(&mut inner) {
            self.mutate_bytes(&mut inner);
        }
        input.bytes = crate::input::gzip(&inner.bytes);
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::input::fixture_inputs;
    use tickflow_core::venue::Venue;

    #[test]
    fn mutations_change_inputs_and_keep_them_bounded() {
        let mut seeds = Vec::new();
        for venue in Venue::ALL {
            seeds.extend(fixture_inputs(venue).unwrap());
        }
        let dictionary = Dictionary::from_inputs(&seeds);
        assert!(dictionary.words.len() > STRING_EDGES.len());
        let mut rng = Rng::new(3);
        let mut changed = 0;
        for round in 0..4000 {
            let mut input = seeds[round % seeds.len()].clone();
            let before = input.clone();
            let mut mutator = Mutator {
                rng: &mut rng,
                dictionary: &dictionary,
                others: &seeds,
            };
            mutator.mutate(&mut input);
            assert!(input.bytes.len() <= MAX_INPUT_BYTES);
            changed += usize::from(input != before);
        }
        assert!(changed > 3500, "{changed}");
    }
}
