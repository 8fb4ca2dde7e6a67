//! A small JSON structure scanner for the mutators: where the values, object members, array
//! elements and keys of a well-formed text are, so a mutation can swap a number for an edge
//! case, drop or repeat a member, or nest a value deeply. Iterative (a deeply nested mutant
//! cannot overflow the stack) and capped in depth; `None` for text that is not JSON.

/// Deepest nesting the scanner follows (mutants nest deeper; they are then mutated as bytes).
const MAX_DEPTH: usize = 256;

/// What a value is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    String,
    Number,
    /// `true`, `false`, `null`.
    Literal,
    Object,
    Array,
}

/// A byte range of the text, `start..end`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Span {
    pub start: usize,
    pub end: usize,
}

/// A value: its range (strings include their quotes) and kind.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Value {
    pub span: Span,
    pub kind: Kind,
}

/// Where a well-formed JSON text's parts are.
#[derive(Debug, Default)]
pub struct Scan {
    pub values: Vec<Value>,
    /// Object keys, quotes included.
    pub keys: Vec<Span>,
    /// Object members (key through value) and array elements: what can be dropped or repeated.
    pub items: Vec<Span>,
}

impl Scan {
    /// The values of one kind.
    pub fn of_kind(&self, kind: Kind) -> impl Iterator<Item = &Value> {
        self.values.iter().filter(move |value| value.kind == kind)
    }
}

struct Container {
    is_object: bool,
    start: usize,
}

fn skip_whitespace(text: &[u8], mut at: usize) -> usize {
    while at < text.len() && matches!(text[at], b' ' | b'\t' | b'\n' | b'\r') {
        at += 1;
    }
    at
}

/// The end (one past the closing quote) of the string starting at `at`.
fn string_end(text: &[u8], at: usize) -> Option<usize> {
    let mut index = at + 1;
    while index < text.len() {
        match text[index] {
            b'"' => return Some(index + 1),
            b'\\' => index += 2,
            byte if byte < 0x20 => return None,
            _ => index += 1,
        }
    }
    None
}

fn number_end(text: &[u8], at: usize) -> Option<usize> {
    let mut index = at;
    while index < text.len()
        && matches!(text[index], b'0'..=b'9' | b'-' | b'+' | b'.' | b'e' | b'E')
    {
        index += 1;
    }
    (index > at).then_some(index)
}

/// Scans `text`; `None` when it is not one well-formed JSON value (or nests past the cap).
pub fn scan(text: &[u8]) -> Option<Scan> {
    let mut scan = Scan::default();
    let mut stack: Vec<Container> = Vec::new();
    // Where the current object member or array element began.
    let mut item_starts: Vec<usize> = Vec::new();
    let mut at = skip_whitespace(text, 0);
    loop {
        // Expect a value (after a key's colon, an array's `[` or `,`, or at the top).
        if let Some(top) = stack.last() {
            if top.is_object {
                if text.get(at) != Some(&b'"') {
                    return None;
                }
                let end = string_end(text, at)?;
                scan.keys.push(Span { start: at, end });
                item_starts.push(at);
                at = skip_whitespace(text, end);
                if text.get(at) != Some(&b':') {
                    return None;
                }
                at = skip_whitespace(text, at + 1);
            } else {
                item_starts.push(at);
            }
        }
        let start = at;
        let mut closed_value = match text.get(at)? {
            b'{' | b'[' => {
                let is_object = text[at] == b'{';
                if stack.len() >= MAX_DEPTH {
                    return None;
                }
                at = skip_whitespace(text, at + 1);
                let close = if is_object { b'}' } else { b']' };
                if text.get(at) == Some(&close) {
                    at += 1;
                    Some(Value {
                        span: Span { start, end: at },
                        kind: if is_object { Kind::Object } else { Kind::Array },
                    })
                } else {
                    stack.push(Container { is_object, start });
                    continue;
                }
            }
            b'"' => {
                at = string_end(text, at)?;
                Some(Value {
                    span: Span { start, end: at },
                    kind: Kind::String,
                })
            }
            b'-' | b'0'..=b'9' => {
                at = number_end(text, at)?;
                Some(Value {
                    span: Span { start, end: at },
                    kind: Kind::Number,
                })
            }
            b't' | b'f' | b'n' => {
                let word: &[u8] = match text[at] {
                    b't' => b"true",
                    b'f' => b"false",
                    _ => b"null",
                };
                if !text[at..].starts_with(word) {
                    return None;
                }
                at += word.len();
                Some(Value {
                    span: Span { start, end: at },
                    kind: Kind::Literal,
                })
            }
            _ => return None,
        };
        // A value ended: close items and containers until one expects another value.
        while let Some(value) = closed_value.take() {
            scan.values.push(value);
            let Some(top) = stack.last() else {
                // The top-level value: nothing may follow it.
                return (skip_whitespace(text, at) == text.len()).then_some(scan);
            };
            let item_start = item_starts.pop()?;
            scan.items.push(Span {
                start: item_start,
                end: at,
            });
            at = skip_whitespace(text, at);
            let close = if top.is_object { b'}' } else { b']' };
            match text.get(at)? {
                b',' => at = skip_whitespace(text, at + 1),
                &byte if byte == close => {
                    at += 1;
                    let container = stack.pop()?;
                    closed_value = Some(Value {
                        span: Span {
                            start: container.start,
                            end: at,
                        },
                        kind: if container.is_object {
                            Kind::Object
                        } else {
                            Kind::Array
                        },
                    });
                }
                _ => return None,
            }
        }
    }
}

/// The text with `span` replaced by `with`.
pub fn replace(text: &[u8], span: Span, with: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(text.len() - (span.end - span.start) + with.len());
    out.extend_from_slice(&text[..span.start]);
    out.extend_from_slice(with);
    out.extend_from_slice(&text[span.end..]);
    out
}

/// The text without the item `span` and one comma beside it, so it stays well-formed.
pub fn drop_item(text: &[u8], span: Span) -> Vec<u8> {
    let after = skip_whitespace(text, span.end);
    if text.get(after) == Some(&b',') {
        return replace(
            text,
            Span {
                start: span.start,
                end: after + 1,
            },
            b"",
        );
    }
    // The last item: take the comma before it, if any.
    let mut before = span.start;
    while before > 0 && matches!(text[before - 1], b' ' | b'\t' | b'\n' | b'\r') {
        before -= 1;
    }
    if before > 0 && text[before - 1] == b',' {
        return replace(
            text,
            Span {
                start: before - 1,
                end: span.end,
            },
            b"",
        );
    }
    replace(text, span, b"")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_values_keys_and_items() {
        let text = br#"{"a":[1,"x",{"b":null}],"c":true}"#;
        let scan = scan(text).unwrap();
        assert_eq!(scan.keys.len(), 3);
        assert_eq!(scan.of_kind(Kind::Number).count(), 1);
        assert_eq!(scan.of_kind(Kind::Object).count(), 2);
        // Members a, b, c; elements 1, "x", {...}.
        assert_eq!(scan.items.len(), 6);
        let number = scan.of_kind(Kind::Number).next().unwrap();
        assert_eq!(&text[number.span.start..number.span.end], b"1");
        for item in &scan.items {
            let dropped = drop_item(text, *item);
            assert!(
                super::scan(&dropped).is_some(),
                "{}",
                String::from_utf8_lossy(&dropped)
            );
        }
    }

    #[test]
    fn refuses_what_is_not_json() {
        for text in [
            &b""[..],
            b"{",
            b"[1,]",
            b"{\"a\" 1}",
            b"{} x",
            b"\"\x01\"",
            b"tru",
        ] {
            assert!(scan(text).is_none(), "{:?}", String::from_utf8_lossy(text));
        }
        let deep = [vec![b'['; 5000], vec![b']'; 5000]].concat();
        assert!(scan(&deep).is_none());
        assert!(scan(b" [ [ ] , { } ] ").is_some());
    }
}
