//! Sluice's fault-injection suite, in the manner of Jepsen.
//!
//! A run records every client operation and every nemesis event as a
//! [`history::History`]; the [`checker`]s are pure functions over that history,
//! so a history kept from a failing run can be re-checked offline
//! (`jepsen-tests check history.jsonl`) and every checker can be unit-tested
//! with a small hand-written history. See `README.md` for the history format.

pub mod campaign;
pub mod checker;
pub mod history;
pub mod run;
pub mod summary;

pub use checker::{CheckOptions, CheckResult, Validity, check, check_with};
pub use history::{History, HistoryError};
