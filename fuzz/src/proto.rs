//! A protobuf message as a tree of fields, for mutating MEXC pushes by structure: change a varint
//! to an edge value, a string to an edge string, drop, repeat, renumber or retype a field, and
//! write it back with correct lengths. Reads any wire bytes; nested messages are guessed (a
//! length-delimited field whose bytes parse whole as fields and are not plain text).

use prost::encoding::{WireType, decode_key, decode_varint, encode_key, encode_varint};

/// Deepest nesting read as messages (MEXC nests three levels).
const MAX_DEPTH: usize = 4;

/// One field's value.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Value {
    Varint(u64),
    Fixed64([u8; 8]),
    Fixed32([u8; 4]),
    Bytes(Vec<u8>),
    Message(Vec<Field>),
}

/// One field: its number and value.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Field {
    pub number: u32,
    pub value: Value,
}

/// Reads a message; `None` when the bytes are not a sequence of well-formed fields.
pub fn parse(bytes: &[u8]) -> Option<Vec<Field>> {
    parse_at_depth(bytes, 0)
}

fn parse_at_depth(mut rest: &[u8], depth: usize) -> Option<Vec<Field>> {
    let mut fields = Vec::new();
    while !rest.is_empty() {
        let (number, wire_type) = decode_key(&mut rest).ok()?;
        let value = match wire_type {
            WireType::Varint => Value::Varint(decode_varint(&mut rest).ok()?),
            WireType::SixtyFourBit => {
                let (bytes, tail) = rest.split_first_chunk::<8>()?;
                rest = tail;
                Value::Fixed64(*bytes)
            }
            WireType::ThirtyTwoBit => {
                let (bytes, tail) = rest.split_first_chunk::<4>()?;
                rest = tail;
                Value::Fixed32(*bytes)
            }
            WireType::LengthDelimited => {
                let len = usize::try_from(decode_varint(&mut rest).ok()?).ok()?;
                if len > rest.len() {
                    return None;
                }
                let (bytes, tail) = rest.split_at(len);
                rest = tail;
                let is_text = !bytes.is_empty()
                    && std::str::from_utf8(bytes)
                        .is_ok_and(|text| text.chars().all(|character| !character.is_control()));
                match (depth < MAX_DEPTH && !is_text && !bytes.is_empty())
                    .then(|| parse_at_depth(bytes, depth + 1))
                    .flatten()
                {
                    Some(message) => Value::Message(message),
                    None => Value::Bytes(bytes.to_vec()),
                }
            }
            WireType::StartGroup | WireType::EndGroup => return None,
        };
        fields.push(Field { number, value });
    }
    Some(fields)
}

/// Writes a message back (lengths recomputed).
pub fn write(fields: &[Field]) -> Vec<u8> {
    let mut out = Vec::new();
    write_into(fields, &mut out);
    out
}

fn write_into(fields: &[Field], out: &mut Vec<u8>) {
    for field in fields {
        // Field numbers past prost's range would not encode: keep them in range.
        let number = field.number.clamp(1, (1 << 29) - 1);
        match &field.value {
            Value::Varint(value) => {
                encode_key(number, WireType::Varint, out);
                encode_varint(*value, out);
            }
            Value::Fixed64(bytes) => {
                encode_key(number, WireType::SixtyFourBit, out);
                out.extend_from_slice(bytes);
            }
            Value::Fixed32(bytes) => {
                encode_key(number, WireType::ThirtyTwoBit, out);
                out.extend_from_slice(bytes);
            }
            Value::Bytes(bytes) => {
                encode_key(number, WireType::LengthDelimited, out);
                encode_varint(bytes.len() as u64, out);
                out.extend_from_slice(bytes);
            }
            Value::Message(message) => {
                let inner = write(message);
                encode_key(number, WireType::LengthDelimited, out);
                encode_varint(inner.len() as u64, out);
                out.extend_from_slice(&inner);
            }
        }
    }
}

/// Every field of the tree, depth first, as a path of indexes.
pub fn field_paths(fields: &[Field]) -> Vec<Vec<usize>> {
    let mut paths = Vec::new();
    let mut pending: Vec<(Vec<usize>, &[Field])> = vec![(Vec::new(), fields)];
    while let Some((prefix, fields)) = pending.pop() {
        for (index, field) in fields.iter().enumerate() {
            let mut path = prefix.clone();
            path.push(index);
            if let Value::Message(inner) = &field.value {
                pending.push((path.clone(), inner));
            }
            paths.push(path);
        }
    }
    paths
}

/// The list of fields that holds the field at `path`, and its index in it.
pub fn parent_of<'a>(
    fields: &'a mut Vec<Field>,
    path: &[usize],
) -> Option<(&'a mut Vec<Field>, usize)> {
    let (&last, prefix) = path.split_last()?;
    let mut list = fields;
    for &index in prefix {
        match &mut list.get_mut(index)?.value {
            Value::Message(inner) => list = inner,
            _ => return None,
        }
    }
    (last < list.len()).then_some((list, last))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::input::{Form, fixture_inputs};
    use tickflow_core::venue::Venue;

    #[test]
    fn mexc_pushes_read_and_write_back_unchanged() {
        let pushes: Vec<_> = fixture_inputs(Venue::Mexc)
            .unwrap()
            .into_iter()
            .filter(|input| input.form == Form::Binary)
            .collect();
        assert_eq!(pushes.len(), 2);
        for push in pushes {
            let fields = parse(&push.bytes).unwrap();
            assert!(
                fields
                    .iter()
                    .any(|field| matches!(field.value, Value::Message(_)))
            );
            assert_eq!(write(&fields), push.bytes);
            for path in field_paths(&fields) {
                let mut copy = fields.clone();
                assert!(parent_of(&mut copy, &path).is_some());
            }
        }
        assert!(parse(&[0xff; 3]).is_none());
    }
}
