//! The cron core's tests, one binary: exact schedule times, the evaluator's outcomes and
//! seeded property checks against brute force.

mod core {
    pub mod evaluator;
    pub mod properties;
    pub mod schedule;
    pub mod support;
}
