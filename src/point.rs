//! Points in history: the one parser and resolver behind every option that
//! names a point (`--at`, `--since`, `--until`, both ends of `A..B`).
//!
//! | form | meaning |
//! |---|---|
//! | `42`, `#42` | a sequence number |
//! | `2026-11-27T05:01:23.839012Z` | RFC 3339, as `dump --json` prints it: exact |
//! | `2026-11-27 05:01:23`, `2026-11-27`, `05:01`, `05:01:23` | local time (a bare time is today; a bare date its midnight) |
//! | `-10min`, `10 min ago`, `2h ago`, `+5min` | relative to now (jiff's friendly spans, as systemd.time(7) writes them) |
//! | `yesterday`, `today`, `now` | midnight yesterday, midnight today, this moment |
//! | `@NAME` | the record written by `mark NAME` |
//!
//! Parsing ([`parse`]) needs only the clock and the time zone; resolving
//! ([`resolve`]) needs the records a ring holds. A time resolves to the
//! newest record at or before it. A point before the oldest kept record,
//! in the future, or a mark no record carries, is an error naming the
//! oldest and newest kept seq and time.

use std::fmt;

use jiff::civil::{Date, DateTime, Time};
use jiff::tz::TimeZone;
use jiff::{Span, Timestamp, Zoned};

/// A point as the user wrote it, parsed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Point {
    /// A sequence number.
    Seq(u64),
    /// The newest record at or before this moment.
    Time(Timestamp),
    /// The record written by `mark NAME`.
    Mark(String),
}

impl fmt::Display for Point {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Point::Seq(seq) => write!(f, "seq {seq}"),
            Point::Time(ts) => write!(f, "{}", crate::render::rfc3339_us(ts.as_microsecond().max(0) as u64)),
            Point::Mark(name) => write!(f, "@{name}"),
        }
    }
}

/// A point that cannot be parsed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "cannot understand the point {text:?}: give a seq (42, #42), a time (2026-11-27T05:01:23Z, \
     \"2026-11-27 05:01:23\", 05:01), a relative time (-10min, \"10 min ago\", yesterday, now) or @MARK{hint}"
)]
pub struct ParseError {
    /// What was given.
    pub text: String,
    /// A more precise hint, starting with "; " (or empty).
    hint: String,
}

fn parse_error(text: &str, hint: &str) -> ParseError {
    ParseError { text: text.to_string(), hint: hint.to_string() }
}

/// Parse `text` as a point, with `now` as the present (and its time zone
/// for local times).
///
/// # Errors
/// [`ParseError`] when `text` is none of the forms.
pub fn parse(text: &str, now: &Zoned) -> Result<Point, ParseError> {
    let text = text.trim();
    if let Some(name) = text.strip_prefix('@') {
        if name.is_empty() {
            return Err(parse_error(text, "; @ needs a mark name"));
        }
        return Ok(Point::Mark(name.to_string()));
    }
    let digits = text.strip_prefix('#').unwrap_or(text);
    if !digits.is_empty() && digits.bytes().all(|b| b.is_ascii_digit()) {
        return digits.parse().map(Point::Seq).map_err(|_| parse_error(text, "; that seq is too large"));
    }
    let tz = now.time_zone();
    let local = |dt: DateTime| {
        dt.to_zoned(tz.clone()).map(|z| Point::Time(z.timestamp())).map_err(|_| parse_error(text, ""))
    };
    match text {
        "now" => return Ok(Point::Time(now.timestamp())),
        "today" => return local(now.date().to_datetime(Time::midnight())),
        "yesterday" => {
            let date = now.date().yesterday().map_err(|_| parse_error(text, ""))?;
            return local(date.to_datetime(Time::midnight()));
        }
        _ => {}
    }
    if let Ok(ts) = text.parse::<Timestamp>() {
        return Ok(Point::Time(ts));
    }
    if let Ok(dt) = text.parse::<DateTime>() {
        return local(dt);
    }
    if let Ok(date) = text.parse::<Date>() {
        return local(date.to_datetime(Time::midnight()));
    }
    if text.contains(':')
        && let Ok(time) = text.parse::<Time>()
    {
        return local(now.date().to_datetime(time));
    }
    if let Ok(span) = text.parse::<Span>() {
        let signed = text.starts_with(['-', '+']) || text.ends_with("ago");
        if !signed {
            return Err(parse_error(
                text,
                &format!("; a duration needs a direction: -{text} or \"{text} ago\""),
            ));
        }
        let then = now.checked_add(span).map_err(|_| parse_error(text, "; that is out of range"))?;
        return Ok(Point::Time(then.timestamp()));
    }
    Err(parse_error(text, ""))
}

/// [`parse`] against the system clock and time zone.
///
/// # Errors
/// [`ParseError`].
pub fn parse_now(text: &str) -> Result<Point, ParseError> {
    parse(text, &Zoned::now().with_time_zone(TimeZone::system()))
}

/// Every mark name among `records` (oldest first) and the seq of the
/// newest record carrying it.
pub fn marks<'a>(
    records: impl IntoIterator<Item = (u64, &'a crate::journal::record::Record)>,
) -> std::collections::HashMap<String, u64> {
    let mut found = std::collections::HashMap::new();
    for (seq, record) in records {
        if let crate::journal::record::Body::Mark { name } = &record.body {
            found.insert(name.clone(), seq);
        }
    }
    found
}

/// Every mark among `frames` (only the mark frames are decoded): name →
/// the seq of its newest record.
pub fn marks_in(frames: &[crate::journal::Frame<'_>]) -> std::collections::HashMap<String, u64> {
    let decoded = crate::journal::record::decode_kind(frames, crate::journal::record::Kind::Mark);
    marks(decoded.iter().map(|(seq, r)| (*seq, r)))
}

/// A record as the resolver sees it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Held {
    /// Its sequence number.
    pub seq: u64,
    /// Its time, microseconds since the epoch.
    pub time_us: u64,
}

/// A point that names no record the ring holds.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ResolveError {
    /// The ring holds no record at all.
    #[error("{point}: the ring holds no record yet")]
    Empty {
        /// The point.
        point: String,
    },
    /// Before the oldest kept record.
    #[error("{point} is before the oldest record kept ({span})")]
    BeforeOldest {
        /// The point.
        point: String,
        /// What the ring holds.
        span: String,
    },
    /// After the newest record (a seq not yet written, a future time).
    #[error("{point} is after the newest record ({span})")]
    AfterNewest {
        /// The point.
        point: String,
        /// What the ring holds.
        span: String,
    },
    /// A seq that was never written, between kept records (lost to damage).
    #[error("{point} is not among the intact records ({span})")]
    NotHeld {
        /// The point.
        point: String,
        /// What the ring holds.
        span: String,
    },
    /// No kept record carries that mark.
    #[error("@{name}: no record kept carries that mark ({span})")]
    NoMark {
        /// The mark's name.
        name: String,
        /// What the ring holds.
        span: String,
    },
}

/// "the ring holds seq A (time) .. seq B (time)".
fn span(records: &[Held]) -> String {
    match (records.first(), records.last()) {
        (Some(first), Some(last)) => format!(
            "the ring holds seq {} ({}) .. seq {} ({})",
            first.seq,
            crate::render::rfc3339_us(first.time_us),
            last.seq,
            crate::render::rfc3339_us(last.time_us)
        ),
        _ => "the ring is empty".to_string(),
    }
}

/// The seq `point` names among `records` (oldest first), with `mark`
/// giving the seq of a mark's record and `now` the present.
///
/// # Errors
/// [`ResolveError`] when the point names no held record.
pub fn resolve(
    point: &Point,
    records: &[Held],
    now: Timestamp,
    mark: impl Fn(&str) -> Option<u64>,
) -> Result<u64, ResolveError> {
    let (Some(first), Some(last)) = (records.first(), records.last()) else {
        return Err(ResolveError::Empty { point: point.to_string() });
    };
    let shown = || point.to_string();
    match point {
        Point::Seq(seq) if *seq < first.seq => {
            Err(ResolveError::BeforeOldest { point: shown(), span: span(records) })
        }
        Point::Seq(seq) if *seq > last.seq => {
            Err(ResolveError::AfterNewest { point: shown(), span: span(records) })
        }
        Point::Seq(seq) => match records.binary_search_by_key(seq, |r| r.seq) {
            Ok(_) => Ok(*seq),
            Err(_) => Err(ResolveError::NotHeld { point: shown(), span: span(records) }),
        },
        Point::Time(ts) => {
            if *ts > now && ts.as_microsecond() > last.time_us as i64 {
                return Err(ResolveError::AfterNewest { point: shown(), span: span(records) });
            }
            let limit = ts.as_microsecond();
            // Records are in seq order, and so in time order.
            let after = records.partition_point(|r| (r.time_us as i64) <= limit);
            match after {
                0 => Err(ResolveError::BeforeOldest { point: shown(), span: span(records) }),
                n => Ok(records[n - 1].seq),
            }
        }
        Point::Mark(name) => match mark(name) {
            Some(seq) if records.binary_search_by_key(&seq, |r| r.seq).is_ok() => Ok(seq),
            _ => Err(ResolveError::NoMark { name: name.clone(), span: span(records) }),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// 2026-11-27 10:30:00 in UTC+1 (Europe/Paris has no DST in November).
    fn now() -> Zoned {
        "2026-11-27T10:30:00+01:00[Europe/Paris]".parse().unwrap()
    }

    fn ts(text: &str) -> Timestamp {
        text.parse().unwrap()
    }

    #[test]
    fn every_form_parses_to_its_point() {
        let table: &[(&str, Point)] = &[
            ("42", Point::Seq(42)),
            ("#42", Point::Seq(42)),
            ("  7 ", Point::Seq(7)),
            ("0", Point::Seq(0)),
            ("2026-11-27T05:01:23.839012Z", Point::Time(ts("2026-11-27T05:01:23.839012Z"))),
            ("2026-11-27T06:01:23+01:00", Point::Time(ts("2026-11-27T05:01:23Z"))),
            ("2026-11-27 05:01:23", Point::Time(ts("2026-11-27T04:01:23Z"))),
            ("2026-11-27 05:01", Point::Time(ts("2026-11-27T04:01:00Z"))),
            ("2026-11-26", Point::Time(ts("2026-11-25T23:00:00Z"))),
            ("05:01", Point::Time(ts("2026-11-27T04:01:00Z"))),
            ("05:01:02.5", Point::Time(ts("2026-11-27T04:01:02.5Z"))),
            ("now", Point::Time(ts("2026-11-27T09:30:00Z"))),
            ("today", Point::Time(ts("2026-11-26T23:00:00Z"))),
            ("yesterday", Point::Time(ts("2026-11-25T23:00:00Z"))),
            ("-10min", Point::Time(ts("2026-11-27T09:20:00Z"))),
            ("10 min ago", Point::Time(ts("2026-11-27T09:20:00Z"))),
            ("2h ago", Point::Time(ts("2026-11-27T07:30:00Z"))),
            ("1 day ago", Point::Time(ts("2026-11-26T09:30:00Z"))),
            ("+5min", Point::Time(ts("2026-11-27T09:35:00Z"))),
            ("@build", Point::Mark("build".to_string())),
            ("@before the test", Point::Mark("before the test".to_string())),
        ];
        for (text, want) in table {
            assert_eq!(&parse(text, &now()).unwrap_or_else(|e| panic!("{text}: {e}")), want, "{text}");
        }
    }

    #[test]
    fn garbage_is_a_one_line_error() {
        for text in [
            "",
            "#",
            "@",
            "soon",
            "10min",
            "5 apples ago",
            "2026-13-01",
            "25:00",
            "-",
            "#-1",
            "1e3",
            "99999999999999999999999",
            "2026-11-27T05:01:23",
            "\u{0}",
            "yesterday-ish",
        ] {
            match parse(text, &now()) {
                Err(e) => {
                    let message = e.to_string();
                    assert!(!message.contains('\n'), "{message}");
                    assert!(message.contains("cannot understand the point"), "{message}");
                }
                Ok(point) => {
                    // A naive RFC 3339 time without offset is a local time.
                    assert_eq!(text, "2026-11-27T05:01:23", "{text:?} parsed as {point:?}");
                }
            }
        }
        assert!(parse("10min", &now()).unwrap_err().to_string().contains("-10min"));
    }

    fn records() -> Vec<Held> {
        // Seqs 5..=9 a second apart from 09:00:00Z, seq 8 lost to damage.
        [5, 6, 7, 9]
            .into_iter()
            .map(|seq| Held {
                seq,
                time_us: (ts("2026-11-27T09:00:00Z").as_second() as u64 + seq - 5) * 1_000_000,
            })
            .collect()
    }

    #[test]
    fn points_resolve_to_held_records_and_the_boundaries_are_errors() {
        let held = records();
        let now = ts("2026-11-27T09:30:00Z");
        let marks = |name: &str| match name {
            "kept" => Some(6),
            "gone" => Some(2),
            _ => None,
        };
        let at = |p: Point| resolve(&p, &held, now, marks);
        assert_eq!(at(Point::Seq(5)), Ok(5));
        assert_eq!(at(Point::Seq(9)), Ok(9));
        assert!(matches!(at(Point::Seq(4)), Err(ResolveError::BeforeOldest { .. })));
        assert!(matches!(at(Point::Seq(0)), Err(ResolveError::BeforeOldest { .. })));
        assert!(matches!(at(Point::Seq(10)), Err(ResolveError::AfterNewest { .. })));
        assert!(matches!(at(Point::Seq(8)), Err(ResolveError::NotHeld { .. })));
        // Exactly a record's time, between two records, after the newest.
        assert_eq!(at(Point::Time(ts("2026-11-27T09:00:01Z"))), Ok(6));
        assert_eq!(at(Point::Time(ts("2026-11-27T09:00:01.5Z"))), Ok(6));
        assert_eq!(at(Point::Time(ts("2026-11-27T09:20:00Z"))), Ok(9));
        assert!(matches!(
            at(Point::Time(ts("2026-11-27T08:59:59.999999Z"))),
            Err(ResolveError::BeforeOldest { .. })
        ));
        assert!(matches!(at(Point::Time(ts("2099-01-01T00:00:00Z"))), Err(ResolveError::AfterNewest { .. })));
        assert_eq!(at(Point::Mark("kept".into())), Ok(6));
        assert!(matches!(at(Point::Mark("gone".into())), Err(ResolveError::NoMark { .. })));
        assert!(matches!(at(Point::Mark("never".into())), Err(ResolveError::NoMark { .. })));
        let message = at(Point::Seq(10)).unwrap_err().to_string();
        assert!(
            message.contains("seq 5 (2026-11-27T09:00:00.000000Z)") && message.contains("seq 9"),
            "{message}"
        );
        assert!(matches!(resolve(&Point::Seq(1), &[], now, marks), Err(ResolveError::Empty { .. })));
    }
}
