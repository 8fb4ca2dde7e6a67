//! Symbol resolution: a venue's spelling to its `SymbolId` through the shared registry's listings
//! of that venue, and the memory of the last unknown spelling. Lookups only: no registration, no
//! I/O, no allocation.

use super::{DecodeError, DecodeErrorKind};
use tickflow_core::record::SymbolId;
use tickflow_core::registry::SymbolRegistry;
use tickflow_core::venue::Venue;

/// Longest symbol spelling remembered for [`super::Decoder::unknown_symbol`].
pub(crate) const UNKNOWN_SYMBOL_CAPACITY_BYTES: usize = 32;

/// Resolves symbols through the registry and remembers the spelling of the last unknown one.
pub struct SymbolResolver {
    venue: Venue,
    registry: std::sync::Arc<SymbolRegistry>,
    unknown: [u8; UNKNOWN_SYMBOL_CAPACITY_BYTES],
    unknown_len: usize,
}

impl SymbolResolver {
    pub(crate) fn new(venue: Venue, registry: std::sync::Arc<SymbolRegistry>) -> SymbolResolver {
        SymbolResolver {
            venue,
            registry,
            unknown: [0; UNKNOWN_SYMBOL_CAPACITY_BYTES],
            unknown_len: 0,
        }
    }

    #[inline]
    pub(crate) fn resolve(&mut self, spelling: &[u8]) -> Result<SymbolId, DecodeError> {
        match self.registry.lookup_on(self.venue, spelling) {
            Some(id) => Ok(id),
            None => {
                let len = spelling.len().min(UNKNOWN_SYMBOL_CAPACITY_BYTES);
                self.unknown[..len].copy_from_slice(&spelling[..len]);
                self.unknown_len = len;
                Err(DecodeError::new(
                    DecodeErrorKind::UnknownSymbol,
                    "symbol is not registered",
                ))
            }
        }
    }

    pub(crate) fn last_unknown(&self) -> Option<&[u8]> {
        (self.unknown_len > 0).then(|| &self.unknown[..self.unknown_len])
    }

    pub(crate) fn clear_unknown(&mut self) {
        self.unknown_len = 0;
    }
}
