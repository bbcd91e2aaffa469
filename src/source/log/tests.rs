use super::*;
use proptest::prelude::*;
use std::io::Write;

fn pattern(name: &str, regex: &str) -> PatternConfig {
    PatternConfig { name: name.into(), regex: regex.into() }
}

fn config(paths: Vec<PathBuf>, patterns: Vec<PatternConfig>) -> LogSourceConfig {
    LogSourceConfig {
        cluster: "prod".into(),
        instance: "zk1:2181".into(),
        paths,
        interval: Duration::from_secs(5),
        patterns,
        from_start: false,
        labels: Labels::default(),
    }
}

fn append(path: &Path, text: &[u8]) {
    std::fs::OpenOptions::new().create(true).append(true).open(path).unwrap().write_all(text).unwrap();
}

/// The value of `metric` for `pattern` in a poll.
fn value(batch: &PollBatch, metric: &str, pattern: &str) -> Option<f64> {
    batch
        .series
        .iter()
        .filter(|s| s.labels.get("pattern") == Some(pattern))
        .flat_map(|s| &s.values)
        .find(|(name, _)| name == metric)
        .map(|(_, v)| *v)
}

fn matches(batch: &PollBatch, pattern: &str) -> f64 {
    value(batch, "zk_log_matches_total", pattern).expect("a count for every pattern")
}

const NO_SPACE: &str = "2026-12-06 04:00:00,000 [myid:1] - ERROR [SyncThread:1:o.a.z.s.SyncRequestProcessor@202] - Severe unrecoverable error, exiting\njava.io.IOException: No space left on device\n";

struct Fixture {
    dir: tempfile::TempDir,
    log: PathBuf,
}

impl Fixture {
    fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("zookeeper.log");
        Self { dir, log }
    }

    fn source(&self, patterns: Vec<PatternConfig>) -> LogSource {
        LogSource::new(config(vec![self.log.clone()], patterns), &self.dir.path().join("state")).unwrap()
    }

    fn zookeeper_source(&self) -> LogSource {
        self.source(zookeeper_patterns())
    }
}

fn at(s: i64) -> Timestamp {
    Timestamp::from_millis(1_800_000_000_000 + s * 1000)
}

#[test]
fn a_first_start_reads_from_the_end_then_counts_what_is_appended() {
    let f = Fixture::new();
    append(&f.log, NO_SPACE.as_bytes());
    let source = f.zookeeper_source();
    assert_eq!(matches(&source.collect(at(0)), "no_space_left"), 0.0, "what was there before is not news");
    append(&f.log, format!("{NO_SPACE}INFO all well\n{NO_SPACE}").as_bytes());
    let batch = source.collect(at(5));
    assert_eq!(matches(&batch, "no_space_left"), 2.0);
    assert_eq!(matches(&batch, "out_of_memory"), 0.0);
    let target = batch.series.iter().find(|s| s.labels.get("pattern") == Some("no_space_left")).unwrap();
    assert_eq!((target.labels.get("cluster"), target.labels.get("instance")), (Some("prod"), Some("zk1:2181")));
    assert_eq!(matches(&source.collect(at(10)), "no_space_left"), 2.0, "nothing new, nothing counted");
}

#[test]
fn from_start_reads_a_first_start_whole() {
    let f = Fixture::new();
    append(&f.log, NO_SPACE.as_bytes());
    let mut c = config(vec![f.log.clone()], zookeeper_patterns());
    c.from_start = true;
    let source = LogSource::new(c, &f.dir.path().join("state")).unwrap();
    assert_eq!(matches(&source.collect(at(0)), "no_space_left"), 1.0);
}

#[test]
fn a_file_renamed_by_rotation_is_read_to_its_end_and_the_new_one_from_its_start() {
    let f = Fixture::new();
    append(&f.log, b"start\n");
    let source = f.zookeeper_source();
    source.collect(at(0));
    append(&f.log, b"LOOKING\n");
    // Rotation: renamed, one more line written to it (the writer still has
    // it open), and a new file at the name.
    std::fs::rename(&f.log, f.dir.path().join("zookeeper.log.1")).unwrap();
    append(&f.dir.path().join("zookeeper.log.1"), b"LOOKING\n");
    append(&f.log, b"LOOKING\nLOOKING\n");
    assert_eq!(matches(&source.collect(at(5)), "looking"), 4.0, "two from the old file, two from the new");
    append(&f.log, b"LOOKING\n");
    assert_eq!(matches(&source.collect(at(10)), "looking"), 5.0);
}

#[test]
fn a_file_truncated_in_place_is_read_again_from_its_start() {
    let f = Fixture::new();
    append(&f.log, b"header line that is long enough\n");
    let source = f.zookeeper_source();
    source.collect(at(0));
    append(&f.log, b"LOOKING\n");
    assert_eq!(matches(&source.collect(at(5)), "looking"), 1.0);
    // copytruncate: emptied, then written again (shorter than before).
    std::fs::write(&f.log, b"").unwrap();
    append(&f.log, b"04:00:01 LOOKING\n");
    assert_eq!(matches(&source.collect(at(10)), "looking"), 2.0);
    // Emptied and written again past where it was read: its first bytes
    // (a log line's time) tell.
    std::fs::write(&f.log, b"").unwrap();
    append(&f.log, "04:00:02 LOOKING\n".repeat(20).as_bytes());
    assert_eq!(matches(&source.collect(at(15)), "looking"), 22.0);
}

#[test]
fn after_a_restart_reading_resumes_where_it_stopped_and_counts_go_on() {
    let f = Fixture::new();
    append(&f.log, b"old\n");
    let first = f.zookeeper_source();
    first.collect(at(0));
    append(&f.log, b"LOOKING\n");
    assert_eq!(matches(&first.collect(at(5)), "looking"), 1.0);
    drop(first);
    // Written while zkalert was down: counted once, after the restart.
    append(&f.log, b"LOOKING\nLOOKING\n");
    let second = f.zookeeper_source();
    assert_eq!(matches(&second.collect(at(10)), "looking"), 3.0, "no line twice, none missed");
    // A file that appeared while it was down is new: read from its start.
    let other = f.dir.path().join("gc.log");
    append(&other, b"[1.000s][info][gc] GC(1) Pause Young (Normal) (G1 Evacuation Pause) 24M->4M(256M) 612.5ms\n");
    let paths = vec![f.log.clone(), f.dir.path().join("*.log")];
    let third = LogSource::new(config(paths.clone(), zookeeper_patterns()), &f.dir.path().join("state")).unwrap();
    // Another set of paths is another source: its first start reads from the end.
    assert_eq!(value(&third.collect(at(15)), "zk_log_max_value", "gc_pause_ms"), None);
    append(&other, b"[2.000s][info][gc] GC(2) Pause Young (Normal) (G1 Evacuation Pause) 24M->4M(256M) 1500.25ms\n");
    let batch = third.collect(at(20));
    assert_eq!(value(&batch, "zk_log_max_value", "gc_pause_ms"), Some(1500.25));
}

#[test]
fn a_line_without_its_newline_waits_and_is_counted_once() {
    let f = Fixture::new();
    std::fs::write(&f.log, b"").unwrap();
    let source = f.zookeeper_source();
    source.collect(at(0));
    append(&f.log, b"java.lang.OutOfMemory");
    assert_eq!(matches(&source.collect(at(5)), "out_of_memory"), 0.0, "half a line is not matched yet");
    append(&f.log, b"Error: Java heap space\n");
    assert_eq!(matches(&source.collect(at(10)), "out_of_memory"), 1.0);
    assert_eq!(matches(&source.collect(at(15)), "out_of_memory"), 1.0);
}

#[test]
fn an_overlong_line_is_matched_once_on_its_start_and_its_rest_skipped() {
    let f = Fixture::new();
    std::fs::write(&f.log, b"").unwrap();
    let source = f.zookeeper_source();
    source.collect(at(0));
    let mut long = b"Too many open files ".to_vec();
    long.extend(std::iter::repeat_n(b'x', 3 * MAX_LINE));
    long.extend_from_slice(b" No space left on device"); // past MAX_LINE: not seen
    append(&f.log, &long);
    let batch = source.collect(at(5));
    assert_eq!((matches(&batch, "too_many_open_files"), matches(&batch, "no_space_left")), (1.0, 0.0));
    // Its newline ends it; the next line counts.
    append(&f.log, b"\nToo many open files\n");
    assert_eq!(matches(&source.collect(at(10)), "too_many_open_files"), 2.0);
}

#[test]
fn a_captured_number_gives_the_last_and_the_largest_of_a_poll() {
    let f = Fixture::new();
    std::fs::write(&f.log, b"").unwrap();
    let source = f.zookeeper_source();
    source.collect(at(0));
    let fsync = |ms: u32| {
        format!(
            "2026-12-06 04:00:00,000 [myid:1] - WARN  [SyncThread:1:o.a.z.s.p.FileTxnLog@380] - fsync-ing the write ahead log in SyncThread:1 took {ms}ms which will adversely effect operation latency.File size is 67108880 bytes. See the ZooKeeper troubleshooting guide\n"
        )
    };
    append(&f.log, format!("{}{}", fsync(1200), fsync(40)).as_bytes());
    let batch = source.collect(at(5));
    assert_eq!(matches(&batch, "fsync_slow_ms"), 2.0);
    assert_eq!(value(&batch, "zk_log_last_value", "fsync_slow_ms"), Some(40.0));
    assert_eq!(value(&batch, "zk_log_max_value", "fsync_slow_ms"), Some(1200.0));
    let quiet = source.collect(at(10));
    assert_eq!(value(&quiet, "zk_log_last_value", "fsync_slow_ms"), Some(40.0), "the last stays");
    assert_eq!(value(&quiet, "zk_log_max_value", "fsync_slow_ms"), None, "the largest is of a poll's lines");
}

#[test]
fn bytes_that_are_not_text_are_read_without_harm() {
    let f = Fixture::new();
    std::fs::write(&f.log, b"").unwrap();
    let source = f.zookeeper_source();
    source.collect(at(0));
    append(&f.log, b"\xff\xfe\x00LOOKING\x00\x80\n\xc3\x28 No space left on device\n");
    let batch = source.collect(at(5));
    assert_eq!((matches(&batch, "looking"), matches(&batch, "no_space_left")), (1.0, 1.0));
}

#[test]
fn a_missing_file_is_followed_once_it_appears() {
    let f = Fixture::new();
    let source = f.zookeeper_source();
    let batch = source.collect(at(0));
    assert_eq!(value(&batch, "zk_log_files_followed", "looking"), None);
    assert!(batch.series.iter().any(|s| s.values.contains(&("zk_log_files_followed".into(), 0.0))));
    append(&f.log, b"LOOKING\n");
    assert_eq!(matches(&source.collect(at(5)), "looking"), 1.0, "a file that appears later is new: read whole");
}

#[test]
fn bad_patterns_are_refused_by_name() {
    let err = LogSource::new(config(vec![], vec![pattern("broken", "(unclosed")]), Path::new("/nonexistent")).err();
    assert!(matches!(err, Some(LogSourceError::Pattern { name, .. }) if name == "broken"));
    let many = (0..=MAX_PATTERNS).map(|i| pattern(&format!("p{i}"), "x")).collect();
    assert!(matches!(
        LogSource::new(config(vec![], many), Path::new("/nonexistent")).err(),
        Some(LogSourceError::TooManyPatterns(_))
    ));
    let huge = pattern("huge", "(a{1000}){1000}");
    assert!(check_pattern(&huge).is_err(), "compiled size is bounded");
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    /// Whatever is written, in whatever pieces between polls, each complete
    /// line is counted once: the count is that of the lines holding the
    /// pattern (lines are short here; overlong ones are tested above).
    #[test]
    fn lines_written_in_any_pieces_are_each_counted_once(
        lines in proptest::collection::vec(proptest::collection::vec(prop_oneof![Just(b'a'), Just(b'x'), Just(0xffu8), Just(b' ')], 0..40), 0..60),
        cuts in proptest::collection::vec(0usize..2000, 0..8),
    ) {
        let f = Fixture::new();
        std::fs::write(&f.log, b"").unwrap();
        let source = f.source(vec![pattern("xx", "xx")]);
        source.collect(at(0));
        let text: Vec<u8> = lines.iter().flat_map(|l| l.iter().copied().chain([b'\n'])).collect();
        let mut cuts: Vec<usize> = cuts.into_iter().map(|c| c.min(text.len())).chain([text.len()]).collect();
        cuts.sort();
        let mut from = 0;
        for (i, cut) in cuts.into_iter().enumerate() {
            append(&f.log, &text[from..cut]);
            from = cut;
            source.collect(at(i as i64 + 1));
        }
        let want = lines.iter().filter(|l| l.windows(2).any(|w| w == b"xx")).count();
        prop_assert_eq!(matches(&source.collect(at(100)), "xx"), want as f64);
    }

    /// Any bytes at all, any length of line: no panic, and memory for a
    /// line stays within MAX_LINE (the reader never holds more).
    #[test]
    fn any_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..4096), repeat in 0usize..40) {
        let f = Fixture::new();
        std::fs::write(&f.log, b"").unwrap();
        let source = f.zookeeper_source();
        source.collect(at(0));
        for _ in 0..repeat {
            append(&f.log, &bytes);
        }
        source.collect(at(1));
    }
}

#[test]
fn a_state_file_that_cannot_be_written_is_said_and_retried() {
    let f = Fixture::new();
    std::fs::write(&f.log, b"").unwrap();
    // Its directory is a file: nothing can be saved there.
    let blocked = f.dir.path().join("blocked");
    std::fs::write(&blocked, b"").unwrap();
    let source = LogSource::new(config(vec![f.log.clone()], zookeeper_patterns()), &blocked).unwrap();
    let failed = |b: &PollBatch| {
        b.series.iter().flat_map(|s| &s.values).find(|(n, _)| n == "zk_log_state_save_failed").map(|(_, v)| *v)
    };
    assert_eq!(failed(&source.collect(at(0))), Some(1.0));
    append(&f.log, b"LOOKING\n");
    let batch = source.collect(at(5));
    assert_eq!((matches(&batch, "looking"), failed(&batch)), (1.0, Some(1.0)), "counting goes on");
    std::fs::remove_file(&blocked).unwrap();
    assert_eq!(failed(&source.collect(at(10))), Some(0.0), "saved at the next poll");
    drop(source);
    // The restart resumes where it was saved: the line is not counted again.
    let again = LogSource::new(config(vec![f.log.clone()], zookeeper_patterns()), &blocked).unwrap();
    assert_eq!(matches(&again.collect(at(15)), "looking"), 1.0);
}

#[test]
fn a_line_longer_than_several_polls_read_is_skipped_across_them_and_counted_once() {
    let f = Fixture::new();
    std::fs::write(&f.log, b"").unwrap();
    let source = f.zookeeper_source();
    source.collect(at(0));
    let mut huge = b"LOOKING ".to_vec();
    huge.resize(2 * MAX_READ_PER_POLL as usize + 1000, b'y');
    append(&f.log, &huge);
    append(&f.log, b"\nLOOKING\n");
    let counts: Vec<f64> = (1..=4).map(|i| matches(&source.collect(at(i)), "looking")).collect();
    // Poll 1 reads 16 MiB and counts the line on its first 64 KiB; polls 2
    // and 3 skip the rest to its newline and read the next line.
    assert_eq!(counts, [1.0, 1.0, 2.0, 2.0]);
}

#[test]
fn a_file_it_cannot_read_is_counted_as_a_problem_until_it_reads() {
    let f = Fixture::new();
    // A directory where a log file is named.
    std::fs::create_dir(&f.log).unwrap();
    let source = f.zookeeper_source();
    let problems = |b: &PollBatch| {
        b.series.iter().flat_map(|s| &s.values).find(|(n, _)| n == "zk_log_read_problems").map(|(_, v)| *v)
    };
    source.collect(at(0));
    assert_eq!(problems(&source.collect(at(5))), Some(1.0));
    std::fs::remove_dir(&f.log).unwrap();
    append(&f.log, b"LOOKING\n");
    let batch = source.collect(at(10));
    assert_eq!((problems(&batch), matches(&batch, "looking")), (Some(0.0), 1.0));
}

#[test]
fn a_glob_matching_more_files_than_followed_follows_the_first_by_name_and_says_so() {
    let f = Fixture::new();
    for i in 0..MAX_FILES + 5 {
        std::fs::write(f.dir.path().join(format!("zk-{i:03}.log")), b"").unwrap();
    }
    let source =
        LogSource::new(config(vec![f.dir.path().join("zk-*.log")], zookeeper_patterns()), &f.dir.path().join("state"))
            .unwrap();
    let batch = source.collect(at(0));
    let value = |name: &str| batch.series.iter().flat_map(|s| &s.values).find(|(n, _)| n == name).map(|(_, v)| *v);
    assert_eq!(value("zk_log_files_followed"), Some(MAX_FILES as f64));
    assert_eq!(value("zk_log_read_problems"), Some(1.0));
}
