//! Schedules: a job's `schedule` and `scheduleTimeZone` fields parsed once into a
//! [`Schedule`] that answers "when is the next run after this instant?" with no clock.
//!
//! Two syntaxes share the `schedule` field, as in Chronos:
//!
//! - **ISO 8601 repeating intervals**, `R[n]/start/period` (`R/…` repeats forever, `R0`
//!   never runs). Occurrence `k` is `start + k × period`, always computed from the start
//!   so that months do not drift (`P1M` from January 31 gives February 29, then March 31).
//!   Years, months, weeks and days are calendar units in the schedule's zone, so a `P1D`
//!   job at 02:00 stays at 02:00 across DST; hours, minutes and seconds are exact
//!   durations. A calendar step that lands in a spring-forward gap moves forward by the
//!   gap's length (02:30 becomes 03:30 in New York) and one that lands in a repeated hour
//!   takes its first pass, as RFC 5545 and Temporal do. With `scheduleTimeZone` set, the
//!   start's date and time are read as wall-clock time in that zone and a written offset is
//!   ignored (Chronos keeps the fields and swaps the zone); without it, the start's own
//!   offset fixes the zone (UTC when it has none). An empty start means the time the job
//!   is created: the caller passes that instant in, and [`Schedule::canonical`] writes it
//!   back so that the stored schedule no longer depends on when it is read.
//! - **Cron expressions** of 5 fields (minute, hour, day of month, month, day of week) or
//!   `@yearly`, `@annually`, `@monthly`, `@weekly`, `@daily`, `@midnight`, `@hourly`;
//!   lists, ranges, steps and month and weekday names. The syntax is read by the `croner`
//!   crate (which also accepts its extensions `L`, `W` and `#` in the day fields); which
//!   instants a wall-clock match becomes is decided here, by this DST rule:
//!
//!   > A job whose minute and hour fields hold no `*` runs once at each of its wall-clock
//!   > times; when a spring-forward gap skips such a time, it runs once at the first
//!   > instant after the gap; when a fall-back repeats it, it runs at the first occurrence
//!   > only. A job with `*` in its minute or hour field runs at every real instant whose
//!   > wall-clock time matches (none inside a gap, both passes of a repeated hour).
//!
//!   Several wall-clock times that fall in one gap run once, at the end of the gap.
//!
//! Time zones come from the IANA database bundled into the binary, never from the host.

use std::fmt;

use croner::parser::{CronParser, Seconds, Year};
use jiff::civil::{Date, DateTime, Time};
use jiff::fmt::temporal::{Pieces, PiecesOffset};
use jiff::tz::{AmbiguousOffset, Offset, TimeZone};
use jiff::{SignedDuration, Span, Timestamp, Unit};

/// The longest `schedule` text accepted.
pub const MAX_SCHEDULE_LEN: usize = 256;
/// The longest `scheduleTimeZone` text accepted.
pub const MAX_TIME_ZONE_LEN: usize = 64;
/// The most times [`Schedule::next_n`] answers in one call.
pub const MAX_NEXT_COUNT: usize = 1000;
/// How far ahead a cron expression is searched for its next match. Thirty years holds
/// every combination of day of month, month and weekday (February 29 on a given weekday
/// included), so an expression that matches nothing in that span matches nothing ever.
const CRON_SEARCH_YEARS: i16 = 30;
/// Longer than any offset change in the database (the 1867 Alaska change was a day), so
/// an offset change further than this after an instant cannot bring the clocks back
/// before the instant's own wall-clock time.
const OFFSET_CHANGE_BOUND: SignedDuration = SignedDuration::from_hours(48);
/// Bounds the walk that corrects the estimated index of an ISO 8601 occurrence; the
/// estimate is off by a step or two at most.
const MAX_ISO_ADJUST_STEPS: u32 = 10_000;

/// Why a `schedule` or `scheduleTimeZone` was refused, naming the field, the value and
/// the problem: `schedule: 61 * * * *: minute 61 is out of range 0-59`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ScheduleError {
    /// The `schedule` field is malformed or impossible.
    #[error("schedule: {value}: {problem}")]
    Schedule {
        /// The schedule as given.
        value: String,
        /// What is wrong with it.
        problem: String,
    },
    /// The `scheduleTimeZone` field names no zone we know.
    #[error("scheduleTimeZone: {value}: {problem}")]
    TimeZone {
        /// The time zone as given.
        value: String,
        /// What is wrong with it.
        problem: String,
    },
}

impl ScheduleError {
    /// The JSON field the error is about, in Chronos' spelling.
    pub fn field(&self) -> &'static str {
        match self {
            ScheduleError::Schedule { .. } => "schedule",
            ScheduleError::TimeZone { .. } => "scheduleTimeZone",
        }
    }

    fn schedule(value: &str, problem: impl Into<String>) -> Self {
        ScheduleError::Schedule { value: truncate(value), problem: problem.into() }
    }
}

/// Keeps an echoed value short, so an error about a huge input stays small.
fn truncate(value: &str) -> String {
    const ECHO_LEN: usize = 80;
    match value.char_indices().nth(ECHO_LEN) {
        Some((at, _)) => format!("{}…", &value[..at]),
        None => value.to_string(),
    }
}

/// A parsed, validated schedule with its time zone.
#[derive(Debug, Clone)]
pub struct Schedule {
    kind: Kind,
    zone: TimeZone,
    zone_text: String,
}

#[derive(Debug, Clone)]
enum Kind {
    Repeating(Repeating),
    Cron(Box<CronSchedule>),
}

#[derive(Debug, Clone)]
struct Repeating {
    /// `None` repeats forever.
    count: Option<u64>,
    start: jiff::ZonedDateTime,
    period: Span,
    /// The period's rough length in seconds, used to estimate an occurrence's index.
    approx_period_secs: f64,
    /// The start as written back by [`Schedule::canonical`].
    start_text: String,
    period_text: String,
}

#[derive(Debug, Clone)]
struct CronSchedule {
    text: String,
    pattern: croner::CronPattern,
    minutes: Vec<i8>,
    hours: Vec<i8>,
    months: [bool; 13],
    /// `*` in the minute or hour field: every real matching instant runs.
    wildcard_time: bool,
}

impl Schedule {
    /// Parses Chronos' `schedule` and `scheduleTimeZone` fields. An empty or absent zone
    /// means UTC for cron expressions and the start's own offset for ISO 8601 intervals;
    /// `created_at` stands in for an ISO 8601 interval's empty start.
    pub fn parse(schedule: &str, time_zone: Option<&str>, created_at: Timestamp) -> Result<Schedule, ScheduleError> {
        let zone_text = time_zone.map(str::trim).unwrap_or("").to_string();
        let zone = parse_zone(&zone_text)?;
        let text = schedule.trim();
        if text.is_empty() {
            return Err(ScheduleError::schedule(schedule, "the schedule is empty"));
        }
        if text.len() > MAX_SCHEDULE_LEN {
            return Err(ScheduleError::schedule(
                schedule,
                format!("the schedule is longer than {MAX_SCHEDULE_LEN} characters"),
            ));
        }
        if is_iso8601(text) {
            let (repeating, zone) = parse_repeating(text, zone, !zone_text.is_empty(), created_at)?;
            Ok(Schedule { kind: Kind::Repeating(repeating), zone, zone_text })
        } else {
            let cron = parse_cron(text)?;
            let schedule = Schedule { kind: Kind::Cron(Box::new(cron)), zone, zone_text };
            schedule.check_cron_matches(text)?;
            Ok(schedule)
        }
    }

    /// The schedule as it should be stored: an ISO 8601 start filled in and written in
    /// full, a cron expression as given.
    pub fn canonical(&self) -> String {
        match &self.kind {
            Kind::Repeating(r) => {
                let count = r.count.map(|n| n.to_string()).unwrap_or_default();
                format!("R{count}/{}/{}", r.start_text, r.period_text)
            }
            Kind::Cron(c) => c.text.clone(),
        }
    }

    /// The `scheduleTimeZone` as given (empty when none was).
    pub fn time_zone_text(&self) -> &str {
        &self.zone_text
    }

    /// The zone the schedule's wall-clock times are read in.
    pub fn time_zone(&self) -> &TimeZone {
        &self.zone
    }

    /// The first scheduled time strictly after `after`, or `None` when the schedule has
    /// ended (an `R5` interval after its fifth run, or past the representable range).
    pub fn next_after(&self, after: Timestamp) -> Option<Timestamp> {
        match &self.kind {
            Kind::Repeating(r) => r.next_after(after),
            Kind::Cron(c) => c.next_after(&self.zone, after),
        }
    }

    /// Up to `n` (at most [`MAX_NEXT_COUNT`]) consecutive scheduled times strictly after
    /// `after`, in order.
    pub fn next_n(&self, after: Timestamp, n: usize) -> Vec<Timestamp> {
        let mut times = Vec::with_capacity(n.min(MAX_NEXT_COUNT));
        let mut cursor = after;
        while times.len() < n.min(MAX_NEXT_COUNT) {
            match self.next_after(cursor) {
                Some(next) => {
                    times.push(next);
                    cursor = next;
                }
                None => break,
            }
        }
        times
    }

    fn check_cron_matches(&self, text: &str) -> Result<(), ScheduleError> {
        let Kind::Cron(cron) = &self.kind else {
            return Ok(());
        };
        // Any fixed point works: thirty years from it hold every date combination.
        let from = jiff::civil::date(2000, 1, 1).at(0, 0, 0, 0);
        match cron.next_civil_match(from, from.date()) {
            Some(_) => Ok(()),
            None => Err(ScheduleError::schedule(text, "the expression matches no date (such as February 30)")),
        }
    }
}

impl fmt::Display for Schedule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.canonical())
    }
}

fn parse_zone(text: &str) -> Result<TimeZone, ScheduleError> {
    if text.is_empty() {
        return Ok(TimeZone::UTC);
    }
    let refuse = |problem: &str| ScheduleError::TimeZone { value: truncate(text), problem: problem.to_string() };
    if text.len() > MAX_TIME_ZONE_LEN {
        return Err(refuse("the time zone name is too long"));
    }
    TimeZone::get(text).map_err(|_| refuse("unknown time zone"))
}

/// Chronos tells the two syntaxes apart by this shape: `R`, digits, then `/`.
fn is_iso8601(text: &str) -> bool {
    let Some(rest) = text.strip_prefix('R') else {
        return false;
    };
    let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
    rest.as_bytes().get(digits) == Some(&b'/')
}

fn parse_repeating(
    text: &str,
    zone: TimeZone,
    zone_given: bool,
    created_at: Timestamp,
) -> Result<(Repeating, TimeZone), ScheduleError> {
    let refuse = |problem: String| ScheduleError::schedule(text, problem);
    let parts: Vec<&str> = text.split('/').collect();
    let [repeat, start, period] = parts.as_slice() else {
        return Err(refuse("an ISO 8601 repeating interval has three parts, R[n]/start/period".to_string()));
    };
    let count = match &repeat[1..] {
        "" => None,
        digits => {
            Some(digits.parse::<u64>().map_err(|_| refuse(format!("the repetition count {digits} is too large")))?)
        }
    };
    let (start, zone) = parse_start(start, zone, zone_given, created_at).map_err(refuse)?;
    let period_span = parse_period(period).map_err(refuse)?;
    let approx_period_secs = approx_seconds(&period_span);
    let start_text = start.strftime(if zone_given { "%Y-%m-%dT%H:%M:%S" } else { "%Y-%m-%dT%H:%M:%S%:z" }).to_string();
    Ok((
        Repeating {
            count,
            start,
            period: period_span,
            approx_period_secs,
            start_text,
            period_text: period.to_string(),
        },
        zone,
    ))
}

fn parse_start(
    text: &str,
    zone: TimeZone,
    zone_given: bool,
    created_at: Timestamp,
) -> Result<(jiff::ZonedDateTime, TimeZone), String> {
    if text.is_empty() {
        // Whole seconds, so that the stored schedule reads like one a person wrote, and
        // rounded up, so that the first run is not before the job existed.
        let start = created_at
            .round(jiff::TimestampRound::new().smallest(Unit::Second).mode(jiff::RoundMode::Ceil))
            .map_err(|e| format!("the creation time cannot be a start: {e}"))?;
        return Ok((start.to_zoned_datetime(zone.clone()), zone));
    }
    let pieces = Pieces::parse(text).map_err(|_| format!("the start {text} is not an ISO 8601 date-time"))?;
    let civil = pieces.date().to_datetime(pieces.time().unwrap_or(Time::midnight()));
    let zone = if zone_given {
        zone
    } else {
        match pieces.offset() {
            Some(PiecesOffset::Numeric(n)) => TimeZone::fixed(n.offset()),
            _ => TimeZone::UTC,
        }
    };
    let start = civil.to_zoned_datetime(zone.clone()).map_err(|e| format!("the start {text} is out of range: {e}"))?;
    Ok((start, zone))
}

fn parse_period(text: &str) -> Result<Span, String> {
    // jiff also reads a friendly form ("1 day"); Chronos' periods are ISO 8601 only.
    if !text.trim_start_matches(['-', '+']).starts_with('P') {
        return Err(format!("the period {text} is not an ISO 8601 duration"));
    }
    let span: Span = text.parse().map_err(|_| format!("the period {text} is not an ISO 8601 duration"))?;
    if span.is_negative() {
        return Err("the period must be longer than zero".to_string());
    }
    if span.is_zero() {
        return Err("the period must be longer than zero".to_string());
    }
    if span.get_milliseconds() != 0 || span.get_microseconds() != 0 || span.get_nanoseconds() != 0 {
        return Err("the period must be a whole number of seconds".to_string());
    }
    Ok(span)
}

fn approx_seconds(span: &Span) -> f64 {
    const DAY: f64 = 86_400.0;
    f64::from(span.get_years()) * 365.2425 * DAY
        + f64::from(span.get_months()) * 30.436875 * DAY
        + f64::from(span.get_weeks()) * 7.0 * DAY
        + f64::from(span.get_days()) * DAY
        + f64::from(span.get_hours()) * 3600.0
        + span.get_minutes() as f64 * 60.0
        + span.get_seconds() as f64
}

impl Repeating {
    /// Occurrence `k`, or `None` past the representable range.
    fn occurrence(&self, k: u64) -> Option<Timestamp> {
        let k = i64::try_from(k).ok()?;
        let step = self.period.checked_mul(k).ok()?;
        self.start.checked_add(step).ok().map(|z| z.timestamp())
    }

    fn within_count(&self, k: u64) -> bool {
        self.count.is_none_or(|n| k < n)
    }

    fn next_after(&self, after: Timestamp) -> Option<Timestamp> {
        let start = self.start.timestamp();
        if after < start {
            return self.within_count(0).then_some(start);
        }
        let elapsed = after.duration_since(start).as_secs() as f64;
        // The float estimate is within a step or two of the answer for any period.
        let mut k = (elapsed / self.approx_period_secs).floor().max(0.0) as u64;
        let mut steps = 0;
        while k > 0 && self.occurrence(k - 1).is_some_and(|t| t > after) {
            k -= 1;
            steps += 1;
            if steps > MAX_ISO_ADJUST_STEPS {
                return None;
            }
        }
        loop {
            let t = self.occurrence(k)?;
            if t > after {
                return self.within_count(k).then_some(t);
            }
            k += 1;
            steps += 1;
            if steps > MAX_ISO_ADJUST_STEPS {
                return None;
            }
        }
    }
}

/// The cron fields in order, with their names in errors and their ranges.
const CRON_FIELDS: [(&str, u32, u32); 5] =
    [("minute", 0, 59), ("hour", 0, 23), ("day-of-month", 1, 31), ("month", 1, 12), ("day-of-week", 0, 7)];

fn expand_nickname(text: &str) -> Result<&str, ScheduleError> {
    let expanded = match text.to_ascii_lowercase().as_str() {
        "@yearly" | "@annually" => "0 0 1 1 *",
        "@monthly" => "0 0 1 * *",
        "@weekly" => "0 0 * * 0",
        "@daily" | "@midnight" => "0 0 * * *",
        "@hourly" => "0 * * * *",
        _ => {
            return Err(ScheduleError::schedule(
                text,
                "unknown name; one of @yearly, @annually, @monthly, @weekly, @daily, \
                 @midnight, @hourly",
            ));
        }
    };
    Ok(expanded)
}

fn parse_cron(text: &str) -> Result<CronSchedule, ScheduleError> {
    let expression = if text.starts_with('@') { expand_nickname(text)? } else { text };
    let fields: Vec<&str> = expression.split_whitespace().collect();
    if fields.len() != CRON_FIELDS.len() {
        return Err(ScheduleError::schedule(
            text,
            format!(
                "expected an ISO 8601 repeating interval (R[n]/start/period) or a cron \
                 expression of 5 fields (minute hour day-of-month month day-of-week), \
                 found {} field{}",
                fields.len(),
                if fields.len() == 1 { "" } else { "s" }
            ),
        ));
    }
    for (field, &(name, min, max)) in fields.iter().zip(CRON_FIELDS.iter()) {
        check_field_numbers(field, name, min, max).map_err(|p| ScheduleError::schedule(text, p))?;
    }
    let parser = CronParser::builder().seconds(Seconds::Disallowed).year(Year::Disallowed).build();
    let cron = parser.parse(expression).map_err(|e| {
        // Parse each field alone to say which one is wrong.
        let culprit = (0..fields.len()).find(|&i| {
            let mut alone = ["*"; 5];
            alone[i] = fields[i];
            parser.parse(&alone.join(" ")).is_err()
        });
        let problem = match culprit {
            Some(i) => format!("{} {}: {e}", CRON_FIELDS[i].0, fields[i]),
            None => e.to_string(),
        };
        ScheduleError::schedule(text, problem)
    })?;
    let pattern = cron.pattern;
    let minutes = pattern.minutes.values().into_iter().filter_map(|m| i8::try_from(m).ok()).collect();
    let hours = pattern.hours.values().into_iter().filter_map(|h| i8::try_from(h).ok()).collect();
    let mut months = [false; 13];
    for m in pattern.months.values() {
        if let Some(slot) = months.get_mut(usize::from(m)) {
            *slot = true;
        }
    }
    Ok(CronSchedule {
        text: text.to_string(),
        wildcard_time: fields[0].contains('*') || fields[1].contains('*'),
        pattern,
        minutes,
        hours,
        months,
    })
}

/// Checks the plain numbers of a field against its range, so that the error names the
/// field and the number; the parser checks everything else.
fn check_field_numbers(field: &str, name: &str, min: u32, max: u32) -> Result<(), String> {
    for item in field.split(',') {
        let (range, step) = match item.split_once('/') {
            Some((range, step)) => (range, Some(step)),
            None => (item, None),
        };
        if let Some(step) = step
            && let Ok(step) = step.parse::<u64>()
            && step == 0
        {
            return Err(format!("{name} step 0 must be at least 1"));
        }
        let range = range.split('#').next().unwrap_or(range);
        let range = range.trim_end_matches(['W', 'w']);
        for bound in range.split('-') {
            if let Ok(value) = bound.parse::<u64>()
                && !(u64::from(min)..=u64::from(max)).contains(&value)
            {
                return Err(format!("{name} {value} is out of range {min}-{max}"));
            }
        }
    }
    Ok(())
}

fn croner_weekday(date: Date) -> croner::Weekday {
    use jiff::civil::Weekday as W;
    match date.weekday() {
        W::Sunday => croner::Weekday::Sunday,
        W::Monday => croner::Weekday::Monday,
        W::Tuesday => croner::Weekday::Tuesday,
        W::Wednesday => croner::Weekday::Wednesday,
        W::Thursday => croner::Weekday::Thursday,
        W::Friday => croner::Weekday::Friday,
        W::Saturday => croner::Weekday::Saturday,
    }
}

impl CronSchedule {
    fn date_matches(&self, date: Date) -> bool {
        let month = date.month() as usize;
        self.months.get(month).copied().unwrap_or(false)
            && self
                .pattern
                .day_match(
                    i32::from(date.year()),
                    u32::from(date.month().unsigned_abs()),
                    u32::from(date.day().unsigned_abs()),
                    croner_weekday(date),
                )
                .unwrap_or(false)
    }

    /// The first wall-clock time at or after `from` (whole minutes) that matches, searching
    /// [`CRON_SEARCH_YEARS`] past `horizon_from`.
    fn next_civil_match(&self, from: DateTime, horizon_from: Date) -> Option<DateTime> {
        let last_date = horizon_from.checked_add(Span::new().years(CRON_SEARCH_YEARS)).unwrap_or(Date::MAX);
        let mut date = from.date();
        let mut earliest = (from.hour(), from.minute());
        loop {
            if date > last_date {
                return None;
            }
            if self.date_matches(date) {
                for &h in self.hours.iter().filter(|&&h| h >= earliest.0) {
                    let min_minute = if h == earliest.0 { earliest.1 } else { 0 };
                    if let Some(&m) = self.minutes.iter().find(|&&m| m >= min_minute) {
                        return Some(date.at(h, m, 0, 0));
                    }
                }
            }
            date = date.tomorrow().ok()?;
            earliest = (0, 0);
        }
    }

    /// The civil match after `w`, at the next whole minute or later.
    fn civil_match_after(&self, w: DateTime, horizon_from: Date) -> Option<DateTime> {
        let next = w.checked_add(SignedDuration::from_mins(1)).ok()?;
        self.next_civil_match(next, horizon_from)
    }

    fn next_after(&self, zone: &TimeZone, after: Timestamp) -> Option<Timestamp> {
        let horizon_from = zone.to_datetime(after).date();
        let mut w = self.next_civil_match(earliest_civil_after(zone, after), horizon_from)?;
        if !self.wildcard_time {
            // Fixed times map to instants in wall-clock order (a gap's times all go to its
            // end, a fold's to its first pass), so the first past `after` is the answer.
            loop {
                if let Some(t) = resolve_first(zone, w)
                    && t > after
                {
                    return Some(t);
                }
                w = self.civil_match_after(w, horizon_from)?;
            }
        }
        // Every real instant of a matching time runs. A fold's second pass comes after
        // later wall-clock times of its first pass, so the first find may not be the
        // earliest: look on until no instant before it can have a later wall-clock time.
        let mut best: Option<(Timestamp, DateTime)> = None;
        loop {
            for t in resolve_all(zone, w).into_iter().flatten() {
                if t > after && best.is_none_or(|(b, _)| t < b) {
                    best = Some((t, latest_civil_until(zone, after, t)));
                }
            }
            let next = self.civil_match_after(w, horizon_from);
            match (best, next) {
                (Some((found, until)), Some(next)) if next > until => return Some(found),
                (_, Some(next)) => w = next,
                (found, None) => return found.map(|(t, _)| t),
            }
        }
    }
}

/// The most offset changes looked at around one instant; the database has a few a year.
const MAX_CHANGES_SCANNED: usize = 512;

/// The earliest wall-clock time (whole minutes) of any instant after `after`: its own,
/// unless a fall-back soon after turns the clocks back further.
fn earliest_civil_after(zone: &TimeZone, after: Timestamp) -> DateTime {
    let horizon = after.checked_add(OFFSET_CHANGE_BOUND).unwrap_or(Timestamp::MAX);
    let mut earliest = zone.to_datetime(after);
    for change in zone.following(after).take(MAX_CHANGES_SCANNED) {
        if change.timestamp() > horizon {
            break;
        }
        earliest = earliest.min(zone.to_datetime(change.timestamp()));
    }
    earliest.with().second(0).subsec_nanosecond(0).build().unwrap_or(earliest)
}

/// The latest wall-clock time of any instant in `(after, until]`: `until`'s own, unless
/// the clocks were turned back in between from a later one.
fn latest_civil_until(zone: &TimeZone, after: Timestamp, until: Timestamp) -> DateTime {
    let mut latest = zone.to_datetime(until);
    for change in zone.following(after).take(MAX_CHANGES_SCANNED) {
        let at = change.timestamp();
        if at > until {
            break;
        }
        if let Ok(just_before) = at.checked_sub(SignedDuration::from_nanos(1)) {
            latest = latest.max(zone.to_datetime(just_before));
        }
    }
    latest
}

fn at_offset(w: DateTime, offset: Offset) -> Option<Timestamp> {
    offset.to_timestamp(w).ok()
}

/// The one instant a fixed wall-clock time runs at: itself, the end of the gap that
/// skips it, or the first pass of the fold that repeats it.
fn resolve_first(zone: &TimeZone, w: DateTime) -> Option<Timestamp> {
    match zone.to_ambiguous_timestamp(w).offset() {
        AmbiguousOffset::Unambiguous { offset } => at_offset(w, offset),
        AmbiguousOffset::Gap { before, after } => {
            // Read with the later offset, the time falls before the change; the change
            // itself is the first instant after the gap.
            let probe = at_offset(w, after)?;
            match zone.following(probe).next() {
                Some(change) => Some(change.timestamp()),
                None => at_offset(w, before),
            }
        }
        AmbiguousOffset::Fold { before, .. } => at_offset(w, before),
    }
}

/// Every real instant whose wall-clock time is `w`: none in a gap, two in a fold.
fn resolve_all(zone: &TimeZone, w: DateTime) -> [Option<Timestamp>; 2] {
    match zone.to_ambiguous_timestamp(w).offset() {
        AmbiguousOffset::Unambiguous { offset } => [at_offset(w, offset), None],
        AmbiguousOffset::Gap { .. } => [None, None],
        AmbiguousOffset::Fold { before, after } => [at_offset(w, before), at_offset(w, after)],
    }
}
