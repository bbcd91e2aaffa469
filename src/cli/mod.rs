//! The command line: one file per subcommand; `main.rs` only dispatches and
//! maps outcomes to exit codes.

pub mod check;
pub mod client;
pub mod notify;
pub mod probe;
pub mod replay;
pub mod run;
pub mod test;

/// Writes a line to standard output. A closed pipe (`zkalert probe | head`)
/// ends the program quietly, as `cat` does, instead of panicking like
/// `println!`.
pub fn write_line(args: std::fmt::Arguments) {
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    if let Err(e) = writeln!(out, "{args}") {
        if e.kind() == std::io::ErrorKind::BrokenPipe {
            std::process::exit(0);
        }
        eprintln!("zkalert: cannot write to standard output: {e}");
        std::process::exit(2);
    }
}

/// `println!` for command output: see [`write_line`].
macro_rules! outln {
    () => { $crate::cli::write_line(format_args!("")) };
    ($($arg:tt)*) => { $crate::cli::write_line(format_args!($($arg)*)) };
}
pub(crate) use outln;

/// Exit codes shared by subcommands.
pub const EXIT_OK: i32 = 0;
pub const EXIT_FAIL: i32 = 1;
