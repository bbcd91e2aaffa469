//! The command line: one file per subcommand; `main.rs` only dispatches and
//! maps outcomes to exit codes.

pub mod check;
pub mod probe;
pub mod replay;
pub mod run;
pub mod test;

/// Exit codes shared by subcommands.
pub const EXIT_OK: i32 = 0;
pub const EXIT_FAIL: i32 = 1;
