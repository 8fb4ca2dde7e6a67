//! The tape view: simd-json's in-place parser with its reused scratch, and a read-only view for
//! walking objects and arrays on the tape. Navigation only: no number parsing, no I/O, and no
//! allocation in the steady state.

use simd_json::{Buffers, Node, StaticNode, Tape};

use super::{DecodeError, DecodeErrorKind};

/// The simd-json scratch of one decoder: stage-1 buffers and the tape, both reused for every frame.
pub(crate) struct JsonParser {
    buffers: Buffers,
    /// Empty between frames; its allocation is lent to each frame's lifetime and taken back.
    tape: Tape<'static>,
}

impl JsonParser {
    pub(crate) fn new(expected_frame_bytes: usize) -> JsonParser {
        JsonParser {
            buffers: Buffers::new(expected_frame_bytes),
            tape: Tape(Vec::with_capacity(expected_frame_bytes / 4 + 16)),
        }
    }

    /// Parses `frame` in place and hands the root value to `with`.
    pub(crate) fn parse<'f, R>(
        &mut self,
        frame: &'f mut [u8],
        with: impl FnOnce(Json<'_, 'f>) -> Result<R, DecodeError>,
    ) -> Result<R, DecodeError> {
        let mut tape: Tape<'f> = std::mem::replace(&mut self.tape, Tape(Vec::new())).reset();
        let result = match simd_json::fill_tape(frame, &mut self.buffers, &mut tape) {
            Ok(()) => match tape.0.first() {
                Some(_) => with(Json(&tape.0)),
                None => Err(DecodeError::new(
                    DecodeErrorKind::MalformedJson,
                    "empty document",
                )),
            },
            Err(error) => Err(match error.error() {
                simd_json::ErrorType::InvalidUtf8 => {
                    DecodeError::new(DecodeErrorKind::InvalidUtf8, "frame is not UTF-8")
                }
                _ => DecodeError::new(DecodeErrorKind::MalformedJson, "frame is not JSON"),
            }),
        };
        self.tape = tape.reset();
        result
    }
}

/// Nodes a value spans on the tape (itself plus everything nested in it).
#[inline]
fn span(node: &Node<'_>) -> usize {
    match node {
        Node::Object { count, .. } | Node::Array { count, .. } => count + 1,
        _ => 1,
    }
}

/// A read-only view of one value on the tape.
#[derive(Clone, Copy)]
pub struct Json<'t, 'i>(&'t [Node<'i>]);

impl<'t, 'i> Json<'t, 'i> {
    /// The node this value starts with (the typed reads in `number` match on it).
    #[inline]
    pub(super) fn head(self) -> Option<Node<'i>> {
        self.0.first().copied()
    }

    #[inline]
    fn value_at(self, index: usize) -> Option<Json<'t, 'i>> {
        let node = self.0.get(index)?;
        self.0.get(index..index + span(node)).map(Json)
    }

    /// The member `key` of an object; `None` when absent or when this is not an object.
    #[inline]
    pub(crate) fn get(self, key: &str) -> Option<Json<'t, 'i>> {
        let Some(Node::Object { len, .. }) = self.head() else {
            return None;
        };
        let mut index = 1;
        for _ in 0..len {
            let Some(Node::String(name)) = self.0.get(index).copied() else {
                return None;
            };
            index += 1;
            let value = self.value_at(index)?;
            if name == key {
                return Some(value);
            }
            index += value.0.len();
        }
        None
    }

    /// Like [`Json::get`], but absence is a `MissingField` error naming the field.
    #[inline]
    pub(crate) fn field(
        self,
        key: &str,
        detail: &'static str,
    ) -> Result<Json<'t, 'i>, DecodeError> {
        self.get(key)
            .ok_or(DecodeError::new(DecodeErrorKind::MissingField, detail))
    }

    pub(crate) fn is_object(self) -> bool {
        matches!(self.head(), Some(Node::Object { .. }))
    }

    pub(crate) fn is_null(self) -> bool {
        matches!(self.head(), Some(Node::Static(StaticNode::Null)))
    }

    #[inline]
    pub(crate) fn as_str(self) -> Option<&'i str> {
        match self.head() {
            Some(Node::String(text)) => Some(text),
            _ => None,
        }
    }

    #[inline]
    pub(crate) fn str(self, detail: &'static str) -> Result<&'i str, DecodeError> {
        self.as_str()
            .ok_or(DecodeError::new(DecodeErrorKind::WrongType, detail))
    }

    pub(crate) fn as_bool(self) -> Option<bool> {
        match self.head() {
            Some(Node::Static(StaticNode::Bool(value))) => Some(value),
            _ => None,
        }
    }

    /// The elements of an array; `WrongType` when this is not one.
    #[inline]
    pub(crate) fn array(self, detail: &'static str) -> Result<JsonArray<'t, 'i>, DecodeError> {
        match self.head() {
            Some(Node::Array { len, .. }) => Ok(JsonArray {
                rest: &self.0[1..],
                remaining: len,
            }),
            _ => Err(DecodeError::new(DecodeErrorKind::WrongType, detail)),
        }
    }
}

/// Iterator over the elements of a tape array.
pub struct JsonArray<'t, 'i> {
    rest: &'t [Node<'i>],
    remaining: usize,
}

impl<'t, 'i> JsonArray<'t, 'i> {
    pub(crate) fn len(&self) -> usize {
        self.remaining
    }
}

impl<'t, 'i> Iterator for JsonArray<'t, 'i> {
    type Item = Json<'t, 'i>;

    #[inline]
    fn next(&mut self) -> Option<Json<'t, 'i>> {
        if self.remaining == 0 {
            return None;
        }
        let width = span(self.rest.first()?);
        if width > self.rest.len() {
            self.remaining = 0;
            return None;
        }
        let (head, tail) = self.rest.split_at(width);
        self.rest = tail;
        self.remaining -= 1;
        Some(Json(head))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tape_view_reads_nested_values() {
        let mut parser = JsonParser::new(256);
        let mut frame = br#"{"a":{"b":[1,"2",[3]],"c":null},"d":"x\"y"}"#.to_vec();
        parser
            .parse(&mut frame, |root| {
                let a = root.get("a").unwrap();
                let mut items = a.get("b").unwrap().array("b").unwrap();
                assert_eq!(items.len(), 3);
                assert_eq!(items.next().unwrap().u64("1"), Ok(1));
                assert_eq!(items.next().unwrap().f64("2"), Ok(2.0));
                assert!(items.next().unwrap().array("3").is_ok());
                assert!(items.next().is_none());
                assert!(a.get("c").unwrap().is_null());
                assert_eq!(root.get("d").unwrap().as_str(), Some("x\"y"));
                assert!(root.get("zz").is_none());
                Ok(())
            })
            .unwrap();
    }
}
