//! The venues tickflow speaks to, interned to stable `VenueId`s (u16) for records and the ABI.
//!
//! The table is fixed at compile time: a venue is code (a decoder, a keep-alive rule, a planner),
//! so there is nothing to grow at run time.

use crate::records::VenueId;

/// A supported exchange. The discriminant is its `VenueId` and never changes.
#[repr(u16)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Venue {
    Binance = 0,
    Bybit = 1,
    Okx = 2,
    Mexc = 3,
    Gate = 4,
    Kucoin = 5,
    Bitget = 6,
    Htx = 7,
}

/// How many venues exist; dense per-venue arrays are sized by it.
pub const VENUE_COUNT: usize = 8;

impl Venue {
    pub const ALL: [Venue; VENUE_COUNT] = [
        Venue::Binance,
        Venue::Bybit,
        Venue::Okx,
        Venue::Mexc,
        Venue::Gate,
        Venue::Kucoin,
        Venue::Bitget,
        Venue::Htx,
    ];

    pub fn id(self) -> VenueId {
        VenueId(self as u16)
    }

    pub fn index(self) -> usize {
        self as usize
    }

    pub fn from_id(id: VenueId) -> Option<Venue> {
        Venue::ALL.get(id.0 as usize).copied()
    }

    pub fn name(self) -> &'static str {
        match self {
            Venue::Binance => "binance",
            Venue::Bybit => "bybit",
            Venue::Okx => "okx",
            Venue::Mexc => "mexc",
            Venue::Gate => "gate",
            Venue::Kucoin => "kucoin",
            Venue::Bitget => "bitget",
            Venue::Htx => "htx",
        }
    }

    /// Parses a venue name (case-insensitive).
    pub fn from_name(name: &str) -> Option<Venue> {
        Venue::ALL
            .iter()
            .copied()
            .find(|venue| venue.name().eq_ignore_ascii_case(name))
    }
}

impl std::fmt::Display for Venue {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter.write_str(self.name())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_and_names_round_trip() {
        for venue in Venue::ALL {
            assert_eq!(Venue::from_id(venue.id()), Some(venue));
            assert_eq!(Venue::from_name(venue.name()), Some(venue));
            assert_eq!(Venue::from_name(&venue.name().to_uppercase()), Some(venue));
        }
        assert_eq!(Venue::from_id(VenueId(8)), None);
        assert_eq!(Venue::from_name("ftx"), None);
    }
}
