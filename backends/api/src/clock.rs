//! The hub's clock: how the datetimes a hub stores map to instants.
//!
//! PostgreSQL keeps `timestamptz`: instants, read as UTC. SQLite and MySQL/MariaDB keep Django's naive
//! datetimes, which are UTC when the hub runs with `USE_TZ = True` and the hub's `TIME_ZONE` when it runs
//! with `USE_TZ = False`; the XML-RPC task exports are naive too. [`HubZone`] is that zone (the `time_zone`
//! key). Times are whole microseconds ([`Micros`]), as the databases keep them.
//!
//! A naive time in the hour that a change back from daylight saving time repeats is ambiguous: it is read as
//! the first of the two instants, so that reading is monotonic in the stored text (a later text is never an
//! earlier instant) and a lower bound on the text selects every instant at or after the bound's
//! ([`HubZone::read_bound`]).

use jiff::Timestamp;
use jiff::civil::DateTime;
use jiff::tz::TimeZone;

/// Microseconds since the Unix epoch.
pub type Micros = i64;

/// The zone a hub's naive datetimes are in.
#[derive(Clone, PartialEq)]
pub struct HubZone {
    name: String,
    zone: TimeZone,
}

impl std::fmt::Debug for HubZone {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.name)
    }
}

impl Default for HubZone {
    fn default() -> Self {
        HubZone::utc()
    }
}

impl HubZone {
    pub fn utc() -> Self {
        HubZone {
            name: "UTC".into(),
            zone: TimeZone::UTC,
        }
    }

    /// The zone of this IANA name (`Europe/Prague`); the error says why there is none.
    pub fn named(name: &str) -> Result<Self, String> {
        let zone = TimeZone::get(name)
            .map_err(|e| format!("{name:?} is not a time zone of the tz database ({e})"))?;
        Ok(HubZone {
            name: name.to_string(),
            zone,
        })
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn is_utc(&self) -> bool {
        self.zone == TimeZone::UTC
    }

    /// The instant of a naive time given as microseconds "as if UTC" (the text's fields read as UTC).
    pub fn instant(&self, naive: Micros) -> Micros {
        if self.is_utc() {
            return naive;
        }
        let Ok(as_if) = Timestamp::from_microsecond(naive) else {
            return naive;
        };
        let civil = TimeZone::UTC.to_datetime(as_if);
        match self.zone.to_ambiguous_timestamp(civil).earlier() {
            Ok(at) => at.as_microsecond(),
            Err(_) => naive,
        }
    }

    /// The naive time (microseconds "as if UTC") that the hub writes for an instant.
    pub fn naive(&self, instant: Micros) -> Micros {
        if self.is_utc() {
            return instant;
        }
        let Ok(at) = Timestamp::from_microsecond(instant) else {
            return instant;
        };
        naive_of(self.zone.to_datetime(at))
    }

    /// The lowest bound (an instant, at most `from`) such that every naive time written at an instant from
    /// `from` to `to` reads ([`instant`](Self::instant)) at or after it: `from` itself unless the clocks
    /// went back in between, then the start of the repeated hour read as its first occurrence.
    pub fn read_bound(&self, from: Micros, to: Micros) -> Micros {
        if self.is_utc() || to <= from {
            return from;
        }
        let Ok(start) = Timestamp::from_microsecond(from) else {
            return from;
        };
        let mut bound = from;
        let mut before = self.zone.to_offset(start);
        for transition in self.zone.following(start) {
            let at = transition.timestamp().as_microsecond();
            if at > to {
                break;
            }
            if transition.offset() < before {
                bound = bound.min(self.instant(self.naive(at)));
            }
            before = transition.offset();
        }
        bound
    }
}

fn naive_of(civil: DateTime) -> Micros {
    match TimeZone::UTC.to_timestamp(civil) {
        Ok(at) => at.as_microsecond(),
        Err(_) => 0,
    }
}

/// `YYYY-MM-DD HH:MM:SS` with `.ffffff` when the microseconds are not 0: how Django writes a datetime into
/// SQLite (text compared as text), and a literal MySQL/MariaDB and PostgreSQL read.
pub fn naive_text(naive: Micros) -> String {
    let Ok(at) = Timestamp::from_microsecond(naive) else {
        return "1970-01-01 00:00:00".into();
    };
    let civil = TimeZone::UTC.to_datetime(at);
    let micros = naive.rem_euclid(1_000_000);
    let seconds = format!(
        "{:04}-{:02}-{:02} {:02}:{:02}:{:02}",
        civil.year(),
        civil.month(),
        civil.day(),
        civil.hour(),
        civil.minute(),
        civil.second()
    );
    match micros {
        0 => seconds,
        _ => format!("{seconds}.{micros:06}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tasks::parse_utc_micros;

    fn at(text: &str) -> Micros {
        parse_utc_micros(text).expect(text)
    }

    #[test]
    fn utc_is_the_identity_and_unknown_zones_are_errors() {
        let utc = HubZone::utc();
        let t = at("2026-03-08 02:30:00");
        assert_eq!(
            (utc.instant(t), utc.naive(t), utc.read_bound(t, t + 10)),
            (t, t, t)
        );
        let error = HubZone::named("Mars/Olympus").expect_err("no such zone");
        assert!(error.contains("Mars/Olympus"), "{error}");
    }

    #[test]
    fn naive_times_in_a_zone_across_both_changes() {
        let zone = HubZone::named("America/New_York").expect("zone");
        let instant = |t| zone.instant(t);
        let naive = |t| zone.naive(t);
        type Convert<'a> = &'a dyn Fn(Micros) -> Micros;
        let cases: [(Convert, &str, &str); 5] = [
            // Winter: UTC-5; summer: UTC-4.
            (&instant, "2026-01-15 12:00:00", "2026-01-15 17:00:00"),
            (&instant, "2026-07-15 12:00:00", "2026-07-15 16:00:00"),
            (&naive, "2026-07-15 16:00:00.25", "2026-07-15 12:00:00.25"),
            // 2026-11-01: 01:00-02:00 happens twice; read as the first (EDT).
            (&instant, "2026-11-01 01:30:00", "2026-11-01 05:30:00"),
            (&naive, "2026-11-01 06:30:00", "2026-11-01 01:30:00"),
        ];
        for (convert, from, to) in cases {
            assert_eq!(convert(at(from)), at(to), "{from}");
        }
        // Monotonic in the text across the repeated hour.
        assert!(zone.instant(at("2026-11-01 01:59:59")) < zone.instant(at("2026-11-01 02:00:00")));
    }

    #[test]
    fn the_read_bound_goes_back_to_the_repeated_hour() {
        let zone = HubZone::named("America/New_York").expect("zone");
        // From 01:55 EDT (05:55 UTC) to 01:20 EST (06:20 UTC): hub texts from 01:00 on must be read.
        let bound = zone.read_bound(at("2026-11-01 05:55:00"), at("2026-11-01 06:20:00"));
        assert_eq!(bound, at("2026-11-01 05:00:00"));
        assert_eq!(naive_text(zone.naive(bound)), "2026-11-01 01:00:00");
        // The spring change skips an hour: nothing to go back for.
        let from = at("2026-03-08 06:55:00");
        assert_eq!(zone.read_bound(from, at("2026-03-08 07:20:00")), from);
        // An ordinary day.
        let from = at("2026-07-15 06:55:00");
        assert_eq!(zone.read_bound(from, at("2026-07-15 07:20:00")), from);
    }

    #[test]
    fn texts_as_django_writes_them() {
        assert_eq!(naive_text(at("2026-12-02 21:00:00")), "2026-12-02 21:00:00");
        assert_eq!(
            naive_text(at("2026-12-02 21:00:00.000042")),
            "2026-12-02 21:00:00.000042"
        );
        assert_eq!(
            naive_text(at("1969-12-31 23:59:59.5")),
            "1969-12-31 23:59:59.500000"
        );
    }
}
