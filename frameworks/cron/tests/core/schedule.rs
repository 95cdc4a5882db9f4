//! Exact next times for ISO 8601 intervals and cron expressions, across DST transitions
//! in several zones, month ends and leap days, and the errors for bad schedules.

use agora_cron::Schedule;
use agora_cron::schedule::MAX_NEXT_COUNT;

use super::support::{at, next, refusal, schedule, show};

// America/New_York, 2024: spring forward on March 10 at 02:00 EST to 03:00 EDT; fall back
// on November 3 at 02:00 EDT to 01:00 EST.

#[test]
fn a_fixed_time_in_a_spring_forward_gap_runs_once_at_the_end_of_the_gap() {
    assert_eq!(
        next("30 2 * * *", "America/New_York", "2024-03-09T12:00:00-05:00", 3),
        ["2024-03-10T03:00:00-04:00", "2024-03-11T02:30:00-04:00", "2024-03-12T02:30:00-04:00",]
    );
}

#[test]
fn several_fixed_times_in_one_gap_run_once_together() {
    assert_eq!(
        next("0,30 2 * * *", "America/New_York", "2024-03-10T00:00:00-05:00", 3),
        ["2024-03-10T03:00:00-04:00", "2024-03-11T02:00:00-04:00", "2024-03-11T02:30:00-04:00",]
    );
    assert_eq!(
        next("0 2,3 * * *", "America/New_York", "2024-03-10T00:00:00-05:00", 3),
        ["2024-03-10T03:00:00-04:00", "2024-03-11T02:00:00-04:00", "2024-03-11T03:00:00-04:00",]
    );
}

#[test]
fn a_fixed_time_in_a_repeated_hour_runs_on_its_first_pass_only() {
    assert_eq!(
        next("30 1 * * *", "America/New_York", "2024-11-02T12:00:00-04:00", 2),
        ["2024-11-03T01:30:00-04:00", "2024-11-04T01:30:00-05:00"]
    );
}

#[test]
fn during_the_second_pass_of_a_repeated_hour_a_fixed_time_waits_for_the_next_day() {
    assert_eq!(next("15 1 * * *", "America/New_York", "2024-11-03T01:05:00-05:00", 1), ["2024-11-04T01:15:00-05:00"]);
}

#[test]
fn a_job_with_a_star_in_its_hour_runs_on_both_passes_of_a_repeated_hour() {
    assert_eq!(
        next("0,30 * * * *", "America/New_York", "2024-11-03T00:45:00-04:00", 5),
        [
            "2024-11-03T01:00:00-04:00",
            "2024-11-03T01:30:00-04:00",
            "2024-11-03T01:00:00-05:00",
            "2024-11-03T01:30:00-05:00",
            "2024-11-03T02:00:00-05:00",
        ]
    );
}

#[test]
fn a_job_with_a_star_in_its_minute_runs_nowhere_inside_a_gap() {
    assert_eq!(
        next("*/30 * * * *", "America/New_York", "2024-03-10T01:15:00-05:00", 3),
        ["2024-03-10T01:30:00-05:00", "2024-03-10T03:00:00-04:00", "2024-03-10T03:30:00-04:00",]
    );
    assert_eq!(
        next("* 2 * * *", "America/New_York", "2024-03-09T02:58:00-05:00", 2),
        ["2024-03-09T02:59:00-05:00", "2024-03-11T02:00:00-04:00"]
    );
}

#[test]
fn a_daily_iso_interval_keeps_its_wall_clock_time_across_dst_in_new_york() {
    assert_eq!(
        next("R/2024-03-08T09:00:00Z/P1D", "America/New_York", "2024-03-08T00:00:00Z", 4),
        [
            "2024-03-08T09:00:00-05:00",
            "2024-03-09T09:00:00-05:00",
            "2024-03-10T09:00:00-04:00",
            "2024-03-11T09:00:00-04:00",
        ]
    );
}

#[test]
fn an_hourly_iso_interval_is_an_exact_duration_across_dst() {
    assert_eq!(
        next("R/2024-11-03T00:30:00/PT1H", "America/New_York", "2024-11-03T00:00:00-04:00", 4),
        [
            "2024-11-03T00:30:00-04:00",
            "2024-11-03T01:30:00-04:00",
            "2024-11-03T01:30:00-05:00",
            "2024-11-03T02:30:00-05:00",
        ]
    );
}

#[test]
fn a_mixed_iso_period_adds_days_on_the_calendar_and_hours_exactly() {
    // March 9 02:00 EST plus one calendar day is March 10 02:00, which the gap moves to
    // 03:00 EDT; one exact hour later is 04:00 EDT.
    assert_eq!(
        next("R2/2024-03-09T02:00:00/P1DT1H", "America/New_York", "2024-03-01T00:00:00Z", 5),
        ["2024-03-09T02:00:00-05:00", "2024-03-10T04:00:00-04:00"]
    );
}

// Europe/London, 2024: forward on March 31 at 01:00 GMT to 02:00 BST; back on October 27
// at 02:00 BST to 01:00 GMT.

#[test]
fn london_fixed_times_follow_the_dst_rule_both_ways() {
    assert_eq!(
        next("30 1 * * *", "Europe/London", "2024-03-30T12:00:00Z", 2),
        ["2024-03-31T02:00:00+01:00", "2024-04-01T01:30:00+01:00"]
    );
    assert_eq!(
        next("30 1 * * *", "Europe/London", "2024-10-26T12:00:00Z", 2),
        ["2024-10-27T01:30:00+01:00", "2024-10-28T01:30:00+00:00"]
    );
}

#[test]
fn a_daily_iso_time_inside_a_gap_moves_forward_by_the_gap_for_that_day_only() {
    assert_eq!(
        next("R/2024-03-30T01:30:00Z/P1D", "Europe/London", "2024-03-01T00:00:00Z", 3),
        ["2024-03-30T01:30:00+00:00", "2024-03-31T02:30:00+01:00", "2024-04-01T01:30:00+01:00",]
    );
}

#[test]
fn without_a_time_zone_an_iso_start_keeps_its_own_offset() {
    assert_eq!(
        next("R/2024-03-30T01:30:00+05:30/P1D", "", "2024-03-01T00:00:00Z", 2),
        ["2024-03-30T01:30:00+05:30", "2024-03-31T01:30:00+05:30"]
    );
}

// Australia/Lord_Howe, 2024: a 30-minute shift, back on April 7 at 02:00 (+11) to 01:30
// (+10:30), forward on October 6 at 02:00 (+10:30) to 02:30 (+11).

#[test]
fn lord_howe_half_hour_gap_moves_a_fixed_time_to_its_end() {
    assert_eq!(
        next("15 2 * * *", "Australia/Lord_Howe", "2024-10-05T12:00:00+10:30", 2),
        ["2024-10-06T02:30:00+11:00", "2024-10-07T02:15:00+11:00"]
    );
    assert_eq!(
        next("45 2 * * *", "Australia/Lord_Howe", "2024-10-05T12:00:00+10:30", 1),
        ["2024-10-06T02:45:00+11:00"]
    );
}

#[test]
fn lord_howe_half_hour_fold_runs_a_fixed_time_once_and_a_starred_time_twice() {
    assert_eq!(
        next("45 1 * * *", "Australia/Lord_Howe", "2024-04-06T12:00:00+11:00", 2),
        ["2024-04-07T01:45:00+11:00", "2024-04-08T01:45:00+10:30"]
    );
    assert_eq!(
        next("45 * * * *", "Australia/Lord_Howe", "2024-04-07T00:50:00+11:00", 3),
        ["2024-04-07T01:45:00+11:00", "2024-04-07T01:45:00+10:30", "2024-04-07T02:45:00+10:30",]
    );
}

// Pacific/Chatham, 2024: +12:45 standard, +13:45 summer; back on April 7 at 03:45 to
// 02:45, forward on September 29 at 02:45 to 03:45.

#[test]
fn chatham_transitions_at_quarter_hours_follow_the_dst_rule() {
    assert_eq!(
        next("0 3 * * *", "Pacific/Chatham", "2024-09-28T12:00:00+12:45", 2),
        ["2024-09-29T03:45:00+13:45", "2024-09-30T03:00:00+13:45"]
    );
    assert_eq!(
        next("0 3 * * *", "Pacific/Chatham", "2024-04-06T12:00:00+13:45", 2),
        ["2024-04-07T03:00:00+13:45", "2024-04-08T03:00:00+12:45"]
    );
    assert_eq!(
        next("0 * * * *", "Pacific/Chatham", "2024-04-07T02:30:00+13:45", 3),
        ["2024-04-07T03:00:00+13:45", "2024-04-07T03:00:00+12:45", "2024-04-07T04:00:00+12:45",]
    );
}

#[test]
fn a_daily_iso_interval_keeps_its_wall_clock_time_in_chatham() {
    assert_eq!(
        next("R/2024-09-28T03:00:00/P1D", "Pacific/Chatham", "2024-09-01T00:00:00Z", 3),
        ["2024-09-28T03:00:00+12:45", "2024-09-29T04:00:00+13:45", "2024-09-30T03:00:00+13:45",]
    );
}

#[test]
fn the_31st_of_the_month_skips_shorter_months() {
    assert_eq!(
        next("0 0 31 * *", "", "2024-01-31T00:00:00Z", 4),
        [
            "2024-03-31T00:00:00+00:00",
            "2024-05-31T00:00:00+00:00",
            "2024-07-31T00:00:00+00:00",
            "2024-08-31T00:00:00+00:00",
        ]
    );
}

#[test]
fn a_monthly_iso_interval_from_january_31_clamps_without_drifting() {
    assert_eq!(
        next("R/2024-01-31T10:00:00Z/P1M", "", "2024-01-01T00:00:00Z", 5),
        [
            "2024-01-31T10:00:00+00:00",
            "2024-02-29T10:00:00+00:00",
            "2024-03-31T10:00:00+00:00",
            "2024-04-30T10:00:00+00:00",
            "2024-05-31T10:00:00+00:00",
        ]
    );
}

#[test]
fn leap_days_skip_century_years_not_divisible_by_400() {
    assert_eq!(
        next("0 0 29 2 *", "", "2024-03-01T00:00:00Z", 2),
        ["2028-02-29T00:00:00+00:00", "2032-02-29T00:00:00+00:00"]
    );
    assert_eq!(next("0 0 29 2 *", "", "2096-03-01T00:00:00Z", 1), ["2104-02-29T00:00:00+00:00"]);
    assert_eq!(
        next("R/2024-02-29T00:00:00Z/P1Y", "", "2024-03-01T00:00:00Z", 4),
        [
            "2025-02-28T00:00:00+00:00",
            "2026-02-28T00:00:00+00:00",
            "2027-02-28T00:00:00+00:00",
            "2028-02-29T00:00:00+00:00",
        ]
    );
}

#[test]
fn r5_runs_five_times_counted_from_its_start() {
    assert_eq!(
        next("R5/2024-01-01T00:00:00Z/PT1H", "", "2023-12-31T00:00:00Z", 10),
        [
            "2024-01-01T00:00:00+00:00",
            "2024-01-01T01:00:00+00:00",
            "2024-01-01T02:00:00+00:00",
            "2024-01-01T03:00:00+00:00",
            "2024-01-01T04:00:00+00:00",
        ]
    );
    let s = schedule("R5/2024-01-01T00:00:00Z/PT1H", "");
    assert_eq!(s.next_after(at("2024-01-01T02:30:00Z")), Some(at("2024-01-01T03:00:00Z")));
    assert_eq!(s.next_after(at("2024-01-01T04:00:00Z")), None);
    assert_eq!(schedule("R0/2024-01-01T00:00:00Z/PT1H", "").next_after(at("2000-01-01T00:00:00Z")), None);
}

#[test]
fn a_weekly_iso_interval_far_from_its_start_lands_on_its_grid() {
    assert_eq!(
        next("R/2000-01-03T08:00:00Z/P1W", "", "2024-06-05T00:00:00Z", 2),
        ["2024-06-10T08:00:00+00:00", "2024-06-17T08:00:00+00:00"]
    );
}

#[test]
fn steps_ranges_lists_and_names_select_their_times() {
    // 2024-01-05 is a Friday.
    assert_eq!(
        next("0 9-17/4 * * MON-FRI", "", "2024-01-05T10:00:00Z", 3),
        ["2024-01-05T13:00:00+00:00", "2024-01-05T17:00:00+00:00", "2024-01-08T09:00:00+00:00",]
    );
    assert_eq!(
        next("5,35 0 1 jan,JUL *", "", "2024-01-01T00:00:00Z", 3),
        ["2024-01-01T00:05:00+00:00", "2024-01-01T00:35:00+00:00", "2024-07-01T00:05:00+00:00",]
    );
    assert_eq!(next("0 0 * * 7", "", "2024-01-01T00:00:00Z", 1), ["2024-01-07T00:00:00+00:00"]);
}

#[test]
fn a_day_of_month_and_a_weekday_both_given_match_either() {
    assert_eq!(
        next("0 0 13 * FRI", "", "2024-01-01T00:00:00Z", 4),
        [
            "2024-01-05T00:00:00+00:00",
            "2024-01-12T00:00:00+00:00",
            "2024-01-13T00:00:00+00:00",
            "2024-01-19T00:00:00+00:00",
        ]
    );
}

#[test]
fn named_schedules_expand_to_their_expressions() {
    assert_eq!(
        next("@hourly", "", "2024-01-01T00:10:00Z", 2),
        ["2024-01-01T01:00:00+00:00", "2024-01-01T02:00:00+00:00"]
    );
    assert_eq!(next("@weekly", "", "2024-01-01T00:00:00Z", 1), ["2024-01-07T00:00:00+00:00"]);
    assert_eq!(next("@daily", "Europe/London", "2024-06-01T12:00:00Z", 1), ["2024-06-02T00:00:00+01:00"]);
    assert_eq!(next("@yearly", "", "2024-06-01T00:00:00Z", 1), ["2025-01-01T00:00:00+00:00"]);
    assert_eq!(next("@MONTHLY", "", "2024-06-01T00:00:00Z", 1), ["2024-07-01T00:00:00+00:00"]);
}

#[test]
fn the_last_day_of_the_month_is_written_l() {
    assert_eq!(
        next("0 0 L 2 *", "", "2024-01-01T00:00:00Z", 2),
        ["2024-02-29T00:00:00+00:00", "2025-02-28T00:00:00+00:00"]
    );
}

#[test]
fn next_after_is_strictly_after_an_instant_that_is_itself_a_run_time() {
    assert_eq!(next("*/5 * * * *", "", "2024-01-01T00:05:00Z", 1), ["2024-01-01T00:10:00+00:00"]);
    assert_eq!(next("R/2024-01-01T00:00:00Z/PT5M", "", "2024-01-01T00:05:00Z", 1), ["2024-01-01T00:10:00+00:00"]);
}

#[test]
fn next_n_answers_at_most_its_bound() {
    let s = schedule("* * * * *", "");
    assert_eq!(s.next_n(at("2024-01-01T00:00:00Z"), usize::MAX).len(), MAX_NEXT_COUNT);
}

#[test]
fn an_empty_iso_start_is_the_creation_time_rounded_up_and_written_back() {
    let created = at("2024-05-01T10:00:00.2Z");
    let s = Schedule::parse("R//PT1H", None, created).expect("parses");
    assert_eq!(s.canonical(), "R/2024-05-01T10:00:01+00:00/PT1H");
    assert_eq!(s.next_after(created), Some(at("2024-05-01T10:00:01Z")));
    let again = Schedule::parse(&s.canonical(), None, at("2030-01-01T00:00:00Z")).expect("parses");
    assert_eq!(again.canonical(), s.canonical());

    let zoned = Schedule::parse("R3//P1D", Some("Europe/London"), created).expect("parses");
    assert_eq!(zoned.canonical(), "R3/2024-05-01T11:00:01/P1D");
    assert_eq!(show(&zoned, zoned.next_after(created).expect("a time")), "2024-05-01T11:00:01+01:00");
}

#[test]
fn with_a_time_zone_an_iso_start_is_read_as_wall_clock_time_there() {
    let s = schedule("R/2024-07-01T09:00:00Z/P1D", "America/New_York");
    assert_eq!(s.next_after(at("2024-06-01T00:00:00Z")), Some(at("2024-07-01T13:00:00Z")));
    assert_eq!(s.canonical(), "R/2024-07-01T09:00:00/P1D");
    assert_eq!(s.time_zone_text(), "America/New_York");
}

#[test]
fn bad_schedules_are_refused_naming_the_field_and_the_problem() {
    assert_eq!(
        refusal("R/2024-01-01T00:00:00Z/PT0S", ""),
        "schedule: R/2024-01-01T00:00:00Z/PT0S: the period must be longer than zero"
    );
    assert_eq!(refusal("61 * * * *", ""), "schedule: 61 * * * *: minute 61 is out of range 0-59");
    assert_eq!(refusal("0 24 * * *", ""), "schedule: 0 24 * * *: hour 24 is out of range 0-23");
    assert_eq!(refusal("0 0 0 * *", ""), "schedule: 0 0 0 * *: day-of-month 0 is out of range 1-31");
    assert_eq!(refusal("0 0 1 1-13 *", ""), "schedule: 0 0 1 1-13 *: month 13 is out of range 1-12");
    assert_eq!(refusal("0 0 * * 8", ""), "schedule: 0 0 * * 8: day-of-week 8 is out of range 0-7");
    assert_eq!(refusal("*/0 * * * *", ""), "schedule: */0 * * * *: minute step 0 must be at least 1");
    assert_eq!(refusal("0 0 30 2 *", ""), "schedule: 0 0 30 2 *: the expression matches no date (such as February 30)");
    assert!(
        refusal("0 0 * * FOO", "").starts_with("schedule: 0 0 * * FOO: day-of-week FOO: "),
        "{}",
        refusal("0 0 * * FOO", "")
    );
    assert!(refusal("* * * *", "").ends_with("found 4 fields"));
    assert!(refusal("every day", "").ends_with("found 2 fields"));
    assert!(refusal("@reboot", "").starts_with("schedule: @reboot: unknown name"));
    assert_eq!(refusal("  ", ""), "schedule:   : the schedule is empty");
    assert_eq!(
        refusal("R/yesterday/P1D", ""),
        "schedule: R/yesterday/P1D: the start yesterday is not an ISO 8601 date-time"
    );
    assert_eq!(
        refusal("R/2024-01-01T00:00:00Z/1D", ""),
        "schedule: R/2024-01-01T00:00:00Z/1D: the period 1D is not an ISO 8601 duration"
    );
    assert_eq!(
        refusal("R/2024-01-01T00:00:00Z/1 day", ""),
        "schedule: R/2024-01-01T00:00:00Z/1 day: the period 1 day is not an ISO 8601 duration"
    );
    assert_eq!(
        refusal("R/2024-01-01T00:00:00Z/-P1D", ""),
        "schedule: R/2024-01-01T00:00:00Z/-P1D: the period must be longer than zero"
    );
    assert_eq!(
        refusal("R/2024-01-01T00:00:00Z/PT0.5S", ""),
        "schedule: R/2024-01-01T00:00:00Z/PT0.5S: the period must be a whole number of seconds"
    );
    assert!(refusal("R/2024-01-01/P1D/x", "").contains("three parts"));
    assert!(refusal(&"1".repeat(300), "").contains("longer than 256 characters"));
}

#[test]
fn unknown_time_zones_are_refused_naming_the_field() {
    assert_eq!(refusal("0 0 * * *", "Mars/Base"), "scheduleTimeZone: Mars/Base: unknown time zone");
    let e = Schedule::parse("0 0 * * *", Some("Mars/Base"), at("2024-01-01T00:00:00Z")).expect_err("refused");
    assert_eq!(e.field(), "scheduleTimeZone");
    let e = Schedule::parse("61 * * * *", None, at("2024-01-01T00:00:00Z")).expect_err("refused");
    assert_eq!(e.field(), "schedule");
}
