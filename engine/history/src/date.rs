//! `Date`: a UTC calendar day, the `date=YYYY-MM-DD` partition of the history.

use std::fmt;

use crate::HistoryError;

/// A UTC calendar day (proleptic Gregorian).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Date {
    pub year: i32,
    pub month: u32,
    pub day: u32,
}

impl Date {
    /// Parses `YYYY-MM-DD` (four-digit year, two-digit month and day, a real calendar day).
    pub fn parse(input: &str) -> Result<Date, HistoryError> {
        let bad = |reason| HistoryError::BadDate {
            input: input.chars().take(64).collect(),
            reason,
        };
        let bytes = input.as_bytes();
        if bytes.len() != 10 || bytes[4] != b'-' || bytes[7] != b'-' {
            return Err(bad("not of the form YYYY-MM-DD"));
        }
        let digits = |range: std::ops::Range<usize>| -> Result<u32, HistoryError> {
            let part = &bytes[range];
            if !part.iter().all(u8::is_ascii_digit) {
                return Err(bad("not of the form YYYY-MM-DD"));
            }
            Ok(part
                .iter()
                .fold(0u32, |value, digit| value * 10 + u32::from(digit - b'0')))
        };
        let year = digits(0..4)? as i32;
        let month = digits(5..7)?;
        let day = digits(8..10)?;
        if !(1..=12).contains(&month) {
            return Err(bad("month out of 01..=12"));
        }
        let date = Date { year, month, day };
        if day == 0 || day > days_in_month(year, month) {
            return Err(bad("no such day in that month"));
        }
        Ok(date)
    }

    /// Days since 1970-01-01.
    pub fn days_since_epoch(self) -> i64 {
        tickflow_formats::layout::days_from_civil(i64::from(self.year), self.month, self.day)
    }

    /// 00:00:00 UTC of the day, in ms since the epoch.
    pub fn start_ms(self) -> i64 {
        self.days_since_epoch() * 86_400_000
    }

    /// The day holding `ms` (ms since the epoch, UTC).
    pub fn of_ms(ms: i64) -> Date {
        let (year, month, day) =
            tickflow_formats::layout::civil_from_days(ms.div_euclid(86_400_000));
        Date {
            year: year as i32,
            month,
            day,
        }
    }

    /// The partition directory component, `date=YYYY-MM-DD`.
    pub fn partition_component(self) -> String {
        format!("date={self}")
    }
}

fn days_in_month(year: i32, month: u32) -> u32 {
    match month {
        4 | 6 | 9 | 11 => 30,
        2 if (year % 4 == 0 && year % 100 != 0) || year % 400 == 0 => 29,
        2 => 28,
        _ => 31,
    }
}

impl fmt::Display for Date {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            formatter,
            "{:04}-{:02}-{:02}",
            self.year, self.month, self.day
        )
    }
}
