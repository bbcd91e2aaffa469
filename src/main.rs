//! The `zkalert` binary: parse the command line, dispatch, map outcomes to
//! exit codes. Everything else lives in the library.
// One audited FFI call configures the allocator (`return_freed_memory_at_once`).
#![deny(unsafe_code)]

use clap::{CommandFactory, Parser, Subcommand};
use std::path::PathBuf;
use std::time::Duration;
use zkalert::cli;

/// mimalloc rather than the system allocator: the intake allocates and
/// frees many small strings across threads, where glibc's per-thread arenas
/// fragment (BENCHMARKS.md, "Alert intake side by side").
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Memory freed is given back to the OS at once, not a second later:
/// mimalloc purges only when a later free comes along, so a zkalert gone
/// quiet after a burst of posts kept the burst's transients resident (at
/// 10,000 posted alerts ~0.15 KiB per alert; BENCHMARKS.md, "Alert intake
/// side by side"). `MIMALLOC_PURGE_DELAY` in the environment still decides.
#[allow(unsafe_code)]
fn return_freed_memory_at_once() {
    if std::env::var_os("MIMALLOC_PURGE_DELAY").is_none() {
        // SAFETY: mi_option_set stores one option value; it reads or
        // writes no memory of ours and may be called at any time.
        unsafe { libmimalloc_sys::mi_option_set(MI_OPTION_PURGE_DELAY, 0) }
    }
}

/// `mi_option_purge_delay` in mimalloc 3's `mimalloc.h` (the Rust bindings
/// leave it out); a test checks it is the option whose default is 1000 ms.
const MI_OPTION_PURGE_DELAY: libmimalloc_sys::mi_option_t = 15;

/// `zkalert --version`: the version and the commit it was built from
/// (build.rs; `unknown commit` outside a git checkout).
const VERSION: &str = concat!(env!("CARGO_PKG_VERSION"), " (", env!("ZKALERT_COMMIT"), ")");

#[derive(Parser)]
#[command(name = "zkalert", version = VERSION, about = "Rule-driven alerting for Apache ZooKeeper")]
struct Cli {
    #[command(subcommand)]
    command: Command,
    /// Log format on stderr.
    #[arg(long, global = true, value_enum, default_value_t = LogFormat::Text)]
    log_format: LogFormat,
}

#[derive(Clone, Copy, clap::ValueEnum)]
enum LogFormat {
    Text,
    Json,
}

#[derive(Subcommand)]
enum Command {
    /// The main job: poll sources, evaluate rules, notify. Without a config:
    /// watch 127.0.0.1:2181 with the built-in rules, alerts to the console,
    /// the API on 127.0.0.1:9097 (its token in zkalert-data/api-token).
    Run {
        /// Config file (zkalert.yaml).
        #[arg(short, long, env = "ZKALERT_CONFIG")]
        config: Option<PathBuf>,
        /// Without a config: the ZooKeeper nodes to watch, HOST:PORT[,HOST:PORT...].
        #[arg(long, value_name = "NODES", conflicts_with = "config")]
        zookeeper: Option<String>,
        /// Without a config: where the API listens (loopback by default).
        #[arg(long, value_name = "ADDR", conflicts_with = "config")]
        listen: Option<std::net::SocketAddr>,
    },
    /// One health check of an ensemble: a table per node and verdicts; exit
    /// 0 healthy, 1 warning, 2 critical.
    Probe {
        /// HOST:PORT[,HOST:PORT...]
        nodes: String,
        /// Per command: connect + read.
        #[arg(long, default_value = "3s", value_parser = parse_duration)]
        timeout: Duration,
        /// Machine-readable output.
        #[arg(long)]
        json: bool,
    },
    /// Validate rule files, scripts, runbooks and rule tests; report every problem.
    Check {
        /// Rule files or directories (default: rules/).
        paths: Vec<PathBuf>,
        /// One JSON object: counts, errors and warnings with their positions.
        #[arg(long)]
        json: bool,
    },
    /// Run rule unit tests (promtool `test rules` format).
    Test {
        /// Test files (*.test.yaml) or directories holding them.
        #[arg(required = true)]
        files: Vec<PathBuf>,
        /// Also write JUnit XML here.
        #[arg(long, value_name = "FILE")]
        junit: Option<PathBuf>,
        /// One JSON object: counts and each file's groups with their failures.
        #[arg(long)]
        json: bool,
    },
    /// Run rules over recorded samples and print the firing timeline.
    Replay {
        /// Rule files or directories.
        #[arg(long, required = true, num_args = 1..)]
        rules: Vec<PathBuf>,
        /// Recorded samples: JSON lines or Prometheus text with timestamps.
        #[arg(long)]
        input: PathBuf,
        /// Evaluation interval for groups without their own.
        #[arg(long, default_value = "15s", value_parser = parse_duration)]
        eval_interval: Duration,
        /// One JSON object per firing span.
        #[arg(long)]
        json: bool,
    },
    /// List the alerts of a running zkalert (its HTTP API).
    Alerts(cli::client::AlertsArgs),
    /// List the notification groups of a running zkalert.
    Groups(cli::client::GroupsArgs),
    /// Add, list or expire silences on a running zkalert.
    Silence {
        #[command(subcommand)]
        command: cli::client::SilenceCommand,
    },
    /// Acknowledge a notification group (stops escalation) on a running zkalert.
    Ack(cli::client::AckArgs),
    /// Print a cluster's inspection report now (nodes, elections, alerts,
    /// silences, delivery failures), from a running zkalert.
    Report(cli::client::ReportArgs),
    /// Notifier tools.
    Notify {
        #[command(subcommand)]
        command: NotifyCommand,
    },
    /// Print a shell's completion script for zkalert (the package installs
    /// them; by hand: `zkalert completions bash > /etc/bash_completion.d/zkalert`).
    Completions {
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
    /// Print the manual page (roff; `zkalert man | man -l -`).
    Man,
}

#[derive(Subcommand)]
enum NotifyCommand {
    /// Send a sample message through one configured notifier, for real, and
    /// report the outcome (exit 0 delivered, 1 failed).
    Test {
        /// Config file (zkalert.yaml).
        #[arg(short, long, env = "ZKALERT_CONFIG")]
        config: PathBuf,
        /// The notifier's name in the config.
        #[arg(long)]
        notifier: String,
        /// The sample message's tier.
        #[arg(long, default_value = "P1")]
        tier: zkalert::model::Severity,
    },
}

/// Writes `bytes` to stdout; a reader that stopped early (`| head`) is not an error.
fn print(bytes: &[u8]) -> anyhow::Result<i32> {
    use std::io::Write;
    match std::io::stdout().lock().write_all(bytes) {
        Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => Err(anyhow::anyhow!("cannot write to stdout: {e}")),
        _ => Ok(0),
    }
}

fn parse_duration(s: &str) -> Result<Duration, String> {
    zkalert::duration::parse_duration(s).map_err(|e| e.to_string())
}

fn block_on<T>(f: impl std::future::Future<Output = anyhow::Result<T>>) -> anyhow::Result<T> {
    tokio::runtime::Builder::new_multi_thread().enable_all().build()?.block_on(f)
}

fn main() {
    return_freed_memory_at_once();
    let args = Cli::parse();
    let default_level = if matches!(args.command, Command::Run { .. }) { "info" } else { "warn" };
    let filter = tracing_subscriber::EnvFilter::try_from_env("ZKALERT_LOG").unwrap_or_else(|_| default_level.into());
    // Colour only for a terminal: escape codes in a log file or journald are noise.
    let logs = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()));
    match args.log_format {
        LogFormat::Text => logs.init(),
        LogFormat::Json => logs.json().init(),
    }
    let code = match args.command {
        Command::Run { config, zookeeper, listen } => {
            block_on(cli::run::main(config.as_deref(), cli::run::Defaults { zookeeper, listen }))
        }
        Command::Probe { nodes, timeout, json } => block_on(cli::probe::main(&nodes, timeout, json)),
        Command::Check { mut paths, json } => {
            if paths.is_empty() {
                paths.push(PathBuf::from("rules"));
            }
            Ok(cli::check::run(&paths, json))
        }
        Command::Test { files, junit, json } => cli::test::run(&files, junit.as_deref(), json),
        Command::Replay { rules, input, eval_interval, json } => cli::replay::run(&rules, &input, eval_interval, json),
        Command::Alerts(args) => block_on(cli::client::alerts(args)),
        Command::Groups(args) => block_on(cli::client::groups(args)),
        Command::Silence { command } => block_on(cli::client::silence(command)),
        Command::Ack(args) => block_on(cli::client::ack(args)),
        Command::Report(args) => block_on(cli::client::report(args)),
        Command::Notify { command: NotifyCommand::Test { config, notifier, tier } } => {
            block_on(cli::notify::test(&config, &notifier, tier))
        }
        Command::Completions { shell } => {
            let mut script = Vec::new();
            clap_complete::generate(shell, &mut Cli::command(), "zkalert", &mut script);
            print(&script)
        }
        Command::Man => {
            let mut page = Vec::new();
            clap_mangen::Man::new(Cli::command())
                .render(&mut page)
                .map_or_else(|e| Err(anyhow::anyhow!("cannot render the manual page: {e}")), |()| print(&page))
        }
    };
    match code {
        Ok(code) => std::process::exit(code),
        Err(e) => {
            eprintln!("zkalert: {e:#}");
            std::process::exit(2);
        }
    }
}

#[cfg(test)]
mod tests {
    /// The index named purge delay holds mimalloc 3's purge delay default.
    #[test]
    #[allow(unsafe_code)]
    fn the_purge_delay_option_is_the_one_set() {
        if std::env::var_os("MIMALLOC_PURGE_DELAY").is_some() {
            return;
        }
        // SAFETY: reads one option value.
        let delay = unsafe { libmimalloc_sys::mi_option_get(super::MI_OPTION_PURGE_DELAY) };
        assert_eq!(delay, 1000, "mimalloc's option {} is not its purge delay", super::MI_OPTION_PURGE_DELAY);
    }
}
