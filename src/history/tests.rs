//! Tests of the public surface, on real SQLite files in temporary
//! directories, and on the memory and none backends.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use super::clock::Clock;
use super::*;

const HOUR: Duration = Duration::from_secs(3600);

fn config(backend: Backend) -> HistoryConfig {
    HistoryConfig {
        backend,
        max_messages_per_room: 10_000,
        max_age: None,
        commit_interval: Duration::from_millis(5),
        cache_per_room: 1_000,
        max_bytes: DEFAULT_MAX_BYTES,
    }
}

fn db(dir: &tempfile::TempDir) -> PathBuf {
    dir.path().join("history.db")
}

fn sqlite(path: &Path) -> HistoryConfig {
    config(Backend::Sqlite(path.to_path_buf()))
}

fn open(config: HistoryConfig) -> History {
    History::open(config).expect("history opens")
}

/// A history whose clock the test moves, and the hand that moves it.
fn open_at(config: HistoryConfig, start: i64) -> (History, Arc<AtomicI64>) {
    let now = Arc::new(AtomicI64::new(start));
    let history = History::open_with_clock(config, Clock::Manual(Arc::clone(&now))).expect("history opens");
    (history, now)
}

fn ids(entries: &[Entry]) -> Vec<u64> {
    entries.iter().map(|e| e.id).collect()
}

fn range(ids: std::ops::RangeInclusive<u64>) -> Vec<u64> {
    ids.collect()
}

fn fill(history: &History, room: &str, n: usize) {
    for i in 0..n {
        history.append(room, "nick", &format!("message {i}"));
    }
}

/// Rows of `room` in the file, seen by an independent connection: what a
/// restart would find.
fn rows(path: &Path, room: &str) -> Vec<u64> {
    let conn = rusqlite::Connection::open(path).expect("test connection");
    let mut stmt = conn
        .prepare("SELECT id FROM messages WHERE room = ?1 ORDER BY id")
        .expect("prepare");
    let ids = stmt
        .query_map([room], |row| row.get::<_, i64>(0))
        .expect("query")
        .map(|id| id.expect("row") as u64)
        .collect();
    ids
}

fn backends(dir: &tempfile::TempDir) -> Vec<HistoryConfig> {
    vec![sqlite(&db(dir)), config(Backend::Memory), config(Backend::None)]
}

#[test]
fn ids_increase_per_room_and_independently_across_rooms() {
    let dir = tempfile::tempdir().expect("tempdir");
    for config in backends(&dir) {
        let history = open(config);
        let name = history.backend_name();
        assert_eq!(history.last_id("a"), 0, "{name}");
        let a: Vec<u64> = (0..3).map(|_| history.append("a", "n", "t").id).collect();
        let b: Vec<u64> = (0..2).map(|_| history.append("b", "n", "t").id).collect();
        assert_eq!(history.append("a", "n", "t").id, 4, "{name}");
        assert_eq!(a, vec![1, 2, 3], "{name}");
        assert_eq!(b, vec![1, 2], "{name}");
        assert_eq!(history.last_id("a"), 4, "{name}");
        assert_eq!(history.last_id("b"), 2, "{name}");
        assert_eq!(history.last_id("c"), 0, "{name}");
    }
}

#[test]
fn append_returns_the_stored_entry() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (history, _) = open_at(sqlite(&db(&dir)), 1_234);
    let entry = history.append("r", "ann", "hello");
    assert_eq!(entry.ts, 1_234);
    assert_eq!((&*entry.nick, &*entry.text), ("ann", "hello"));
    history.flush();
    drop(history);
    let history = open(sqlite(&db(&dir)));
    assert_eq!(history.recent("r", 1), vec![entry]);
}

#[test]
fn timestamps_never_go_backwards_within_a_room() {
    let (history, now) = open_at(config(Backend::Memory), 5_000);
    history.append("r", "n", "t");
    now.store(1_000, Ordering::SeqCst);
    let entry = history.append("r", "n", "t");
    assert_eq!(entry.ts, 5_000);
}

#[test]
fn recent_is_oldest_first_and_limited() {
    let dir = tempfile::tempdir().expect("tempdir");
    for mut config in backends(&dir) {
        // A small cache: the sqlite backend merges database and cache.
        config.cache_per_room = 3;
        let history = open(config);
        let name = history.backend_name();
        fill(&history, "r", 10);
        let expect = |v: Vec<u64>| if name == "none" { vec![] } else { v };
        assert_eq!(ids(&history.recent("r", 4)), expect(range(7..=10)), "{name}");
        assert_eq!(ids(&history.recent("r", 2)), expect(range(9..=10)), "{name}");
        assert_eq!(ids(&history.recent("r", 100)), expect(range(1..=10)), "{name}");
        assert_eq!(history.recent("r", 0), vec![], "{name}");
        assert_eq!(history.recent("empty", 10), vec![], "{name}");
        let texts: Vec<String> = history.recent("r", 2).iter().map(|e| e.text.to_string()).collect();
        assert_eq!(texts, expect_texts(name, &["message 8", "message 9"]));
    }
}

fn expect_texts(backend: &str, texts: &[&str]) -> Vec<String> {
    if backend == "none" {
        return vec![];
    }
    texts.iter().map(|t| t.to_string()).collect()
}

#[test]
fn since_is_ordered_limited_and_pages_without_gaps_or_duplicates() {
    let dir = tempfile::tempdir().expect("tempdir");
    for cache in [1_000, 3] {
        let mut sqlite_config = sqlite(&db(&dir));
        sqlite_config.cache_per_room = cache;
        let mut memory_config = config(Backend::Memory);
        memory_config.cache_per_room = cache;
        for config in [sqlite_config, memory_config] {
            let history = open(config);
            let room = format!("r{cache}");
            fill(&history, &room, 10);
            let mut seen = Vec::new();
            let mut after = 0;
            loop {
                let Since::Complete(page) = history.since(&room, after, 3) else {
                    panic!("nothing was dropped");
                };
                let Some(last) = page.last() else { break };
                after = last.id;
                seen.extend(ids(&page));
            }
            assert_eq!(seen, range(1..=10));
            assert_eq!(
                history.since(&room, 2, 5),
                Since::Complete(history.recent(&room, 8)[..5].to_vec())
            );
            assert_eq!(history.since(&room, 10, 5), Since::Complete(vec![]));
            assert_eq!(history.since(&room, 99, 5), Since::Complete(vec![]));
            assert_eq!(history.since(&room, u64::MAX, 5), Since::Complete(vec![]));
            assert_eq!(ids(history.since(&room, 7, 0).entries()), Vec::<u64>::new());
            drop(history);
            let _ = std::fs::remove_file(db(&dir));
        }
    }
}

#[test]
fn since_and_recent_see_uncommitted_entries() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = db(&dir);
    let mut config = sqlite(&path);
    config.commit_interval = HOUR;
    let history = open(config);
    fill(&history, "r", 5);
    assert_eq!(rows(&path, "r"), Vec::<u64>::new(), "nothing committed yet");
    assert_eq!(ids(history.since("r", 2, 10).entries()), range(3..=5));
    assert_eq!(ids(&history.recent("r", 10)), range(1..=5));
    assert_eq!(rows(&path, "r"), Vec::<u64>::new(), "served from memory");
}

#[test]
fn entries_that_left_a_small_cache_are_read_back_before_commit() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = db(&dir);
    let mut config = sqlite(&path);
    config.commit_interval = HOUR;
    config.cache_per_room = 2;
    let history = open(config);
    fill(&history, "r", 6);
    // 1..=4 are neither cached nor committed: the read waits for them.
    assert_eq!(history.since("r", 0, 10), Since::Complete(history.recent("r", 6)));
    assert_eq!(ids(&history.recent("r", 6)), range(1..=6));
}

#[test]
fn retention_by_count() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = db(&dir);
    for cache in [1_000, 2] {
        let mut sqlite_config = sqlite(&path);
        sqlite_config.cache_per_room = cache;
        for mut config in [sqlite_config, config(Backend::Memory)] {
            config.max_messages_per_room = 5;
            let history = open(config);
            let name = history.backend_name();
            fill(&history, "r", 12);
            assert_eq!(ids(&history.recent("r", 100)), range(8..=12), "{name}");
            match history.since("r", 0, 100) {
                Since::Truncated {
                    first_available,
                    entries,
                } => {
                    assert_eq!(first_available, 8, "{name}");
                    assert_eq!(ids(&entries), range(8..=12), "{name}");
                }
                other => panic!("{name}: expected Truncated, got {other:?}"),
            }
            assert!(matches!(
                history.since("r", 6, 100),
                Since::Truncated { first_available: 8, .. }
            ));
            assert_eq!(ids(history.since("r", 7, 100).entries()), range(8..=12));
            assert!(matches!(history.since("r", 7, 100), Since::Complete(_)));
            history.flush();
            if name == "sqlite" {
                assert_eq!(rows(&path, "r"), range(8..=12), "deleted in the database too");
            }
            drop(history);
            let _ = std::fs::remove_file(&path);
        }
    }
}

#[test]
fn truncated_with_a_limit_of_zero_still_says_where_history_starts() {
    let mut config = config(Backend::Memory);
    config.max_messages_per_room = 3;
    let history = open(config);
    fill(&history, "r", 10);
    assert_eq!(
        history.since("r", 2, 0),
        Since::Truncated {
            first_available: 8,
            entries: vec![]
        }
    );
}

#[test]
fn retention_by_age() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = db(&dir);
    for cache in [1_000, 1] {
        let mut sqlite_config = sqlite(&path);
        sqlite_config.cache_per_room = cache;
        for mut config in [sqlite_config, config(Backend::Memory)] {
            config.max_age = Some(Duration::from_millis(1_000));
            config.commit_interval = HOUR;
            let (history, now) = open_at(config, 10_000);
            let name = history.backend_name();
            fill(&history, "r", 2); // ts 10 000
            now.store(10_500, Ordering::SeqCst);
            fill(&history, "r", 2); // ts 10 500
            assert_eq!(ids(&history.recent("r", 10)), range(1..=4), "{name}");
            now.store(11_200, Ordering::SeqCst); // the first two expire
            assert_eq!(ids(&history.recent("r", 10)), range(3..=4), "{name}");
            assert_eq!(
                history.since("r", 0, 10),
                Since::Truncated {
                    first_available: 3,
                    entries: history.recent("r", 10)
                },
                "{name}"
            );
            assert!(matches!(history.since("r", 2, 10), Since::Complete(_)), "{name}");
            history.flush();
            if name == "sqlite" {
                assert_eq!(rows(&path, "r"), range(3..=4), "deleted in the database too");
            }
            now.store(20_000, Ordering::SeqCst); // all expired
            assert_eq!(history.recent("r", 10), vec![], "{name}");
            assert_eq!(
                history.since("r", 1, 10),
                Since::Truncated {
                    first_available: 5,
                    entries: vec![]
                },
                "{name}"
            );
            assert_eq!(history.since("r", 4, 10), Since::Complete(vec![]), "{name}");
            assert_eq!(history.append("r", "n", "t").id, 5, "{name}");
            drop(history);
            let _ = std::fs::remove_file(&path);
        }
    }
}

#[test]
fn expired_entries_in_the_database_are_not_returned_after_a_restart() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = db(&dir);
    let mut config = sqlite(&path);
    config.max_age = Some(Duration::from_millis(1_000));
    let (history, _) = open_at(config.clone(), 10_000);
    fill(&history, "r", 3);
    drop(history);
    // Restarted much later: the rows are still there until the writer's
    // next sweep, but reads never show them.
    let (history, _) = open_at(config, 50_000);
    assert_eq!(history.recent("r", 10), vec![]);
    assert_eq!(
        history.since("r", 0, 10),
        Since::Truncated {
            first_available: 4,
            entries: vec![]
        }
    );
    assert_eq!(history.append("r", "n", "t").id, 4);
}

#[test]
fn survives_close_and_reopen_of_the_same_file() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = db(&dir);
    let mut config = sqlite(&path);
    config.commit_interval = HOUR;
    let history = open(config.clone());
    fill(&history, "a", 5);
    fill(&history, "b", 2);
    let before = history.recent("a", 10);
    // No flush: dropping the last handle commits.
    drop(history);
    let history = open(config.clone());
    assert_eq!(history.last_id("a"), 5);
    assert_eq!(history.last_id("b"), 2);
    assert_eq!(history.recent("a", 10), before);
    assert_eq!(history.append("a", "n", "after restart").id, 6);
    assert_eq!(ids(history.since("a", 3, 10).entries()), range(4..=6));
    history.close();
    let history = open(config);
    assert_eq!(history.last_id("a"), 6);
    assert_eq!(&*history.recent("a", 1)[0].text, "after restart");
}

#[test]
fn flush_commits_everything_appended() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = db(&dir);
    let mut config = sqlite(&path);
    config.commit_interval = HOUR;
    let history = open(config);
    fill(&history, "r", 3);
    assert_eq!(rows(&path, "r"), Vec::<u64>::new());
    assert_eq!(history.stats().pending, 3);
    history.flush();
    assert_eq!(rows(&path, "r"), range(1..=3));
    let stats = history.stats();
    assert_eq!((stats.appended, stats.committed, stats.pending), (3, 3, 0));
    assert_eq!(stats.commits, 1, "one transaction for the batch");
}

#[test]
fn commits_happen_by_themselves_within_the_interval() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = db(&dir);
    let history = open(sqlite(&path));
    fill(&history, "r", 3);
    for _ in 0..500 {
        if rows(&path, "r").len() == 3 {
            return;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    panic!("not committed within 5 s at a 5 ms interval");
}

#[test]
fn memory_backend_keeps_history_until_dropped() {
    let history = open(config(Backend::Memory));
    assert_eq!(history.backend_name(), "memory");
    fill(&history, "r", 3);
    history.evict_cache("r"); // the cache is the store: kept
    history.flush(); // nothing to do
    assert_eq!(ids(&history.recent("r", 10)), range(1..=3));
    assert_eq!(history.append("r", "n", "t").id, 4);
    assert_eq!(history.stats().committed, 0);
}

#[test]
fn none_backend_counts_ids_but_keeps_nothing() {
    let history = open(config(Backend::None));
    assert_eq!(history.backend_name(), "none");
    fill(&history, "r", 3);
    history.evict_cache("r"); // the counter must survive
    assert_eq!(history.append("r", "n", "t").id, 4);
    assert_eq!(history.recent("r", 10), vec![]);
    assert_eq!(
        history.since("r", 1, 10),
        Since::Truncated {
            first_available: 5,
            entries: vec![]
        }
    );
    assert_eq!(history.since("r", 4, 10), Since::Complete(vec![]));
    assert_eq!(history.since("other", 0, 10), Since::Complete(vec![]));
}

#[test]
fn an_unopenable_path_gives_an_error_naming_the_file() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("no such dir").join("history.db");
    let err = History::open(sqlite(&path)).expect_err("parent directory is missing");
    assert!(matches!(err, HistoryError::Open { .. }), "{err:?}");
    assert!(err.to_string().contains(&path.display().to_string()), "{err}");

    let garbage = dir.path().join("not-a-database.db");
    std::fs::write(&garbage, vec![b'x'; 4096]).expect("write");
    let err = History::open(sqlite(&garbage)).expect_err("not a database");
    assert!(err.to_string().contains(&garbage.display().to_string()), "{err}");
}

#[test]
fn a_newer_schema_is_refused_and_left_alone() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = db(&dir);
    rusqlite::Connection::open(&path)
        .and_then(|c| c.execute_batch("PRAGMA user_version = 99"))
        .expect("prepare file");
    let err = History::open(sqlite(&path)).expect_err("newer schema");
    assert!(matches!(err, HistoryError::NewerSchema { found: 99, .. }), "{err:?}");
}

#[test]
fn append_does_not_block_while_the_writer_is_busy() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = db(&dir);
    let mut config = sqlite(&path);
    config.commit_interval = Duration::from_millis(1);
    let history = open(config);
    history.append("r", "n", "first");
    // Another connection takes the write lock: the writer's next commit
    // waits on it (busy timeout), holding its batch.
    let blocker = rusqlite::Connection::open(&path).expect("blocker");
    blocker.execute_batch("BEGIN IMMEDIATE").expect("lock");
    history.append("r", "n", "second");
    std::thread::sleep(Duration::from_millis(50)); // let the writer block
    for i in 0..2_000 {
        history.append("r", "n", &format!("while blocked {i}"));
    }
    assert_eq!(history.last_id("r"), 2_002);
    // The writer could not commit them: they all completed regardless.
    assert!(history.stats().pending >= 2_001, "{:?}", history.stats());
    assert_eq!(ids(history.since("r", 1_990, 100).entries()), range(1_991..=2_002));
    blocker.execute_batch("COMMIT").expect("unlock");
    history.flush();
    assert_eq!(rows(&path, "r"), range(1..=2_002));
    assert_eq!(history.stats().dropped, 0);
}

#[test]
fn evicted_rooms_reload_from_the_database_and_keep_counting() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = db(&dir);
    let history = open(sqlite(&path));
    fill(&history, "r", 5);
    history.flush();
    history.evict_cache("r");
    assert_eq!(ids(&history.recent("r", 10)), range(1..=5));
    assert_eq!(history.append("r", "n", "t").id, 6);

    // Evicted before its entries were committed: ids still continue.
    let mut config = sqlite(&dir.path().join("slow.db"));
    config.commit_interval = HOUR;
    let history = open(config);
    fill(&history, "r", 3);
    history.evict_cache("r");
    assert_eq!(history.append("r", "n", "t").id, 4);
    assert_eq!(ids(&history.recent("r", 10)), range(1..=4));
    history.evict_cache("r");
    assert_eq!(ids(history.since("r", 1, 10).entries()), range(2..=4));
}

#[test]
fn concurrent_appends_get_unique_contiguous_ids() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = db(&dir);
    let history = open(sqlite(&path));
    let threads: Vec<_> = (0..4)
        .map(|_| {
            let history = history.clone();
            std::thread::spawn(move || (0..250).map(|_| history.append("r", "n", "t").id).collect::<Vec<_>>())
        })
        .collect();
    let mut all: Vec<u64> = threads.into_iter().flat_map(|t| t.join().expect("thread")).collect();
    all.sort_unstable();
    assert_eq!(all, range(1..=1_000));
    history.flush();
    assert_eq!(rows(&path, "r"), range(1..=1_000));
}

#[test]
fn entries_serialize_as_plain_json() {
    let entry = Entry {
        id: 7,
        ts: 1_700_000_000_000,
        nick: "ann".into(),
        user: None,
        text: "hi \"there\"".into(),
        event: None,
    };
    let json = serde_json::to_string(&entry).expect("serializes");
    assert_eq!(
        json,
        r#"{"id":7,"ts":1700000000000,"nick":"ann","text":"hi \"there\""}"#
    );
    let entry = Entry {
        user: Some("u-1".into()),
        ..entry
    };
    let json = serde_json::to_string(&entry).expect("serializes");
    assert_eq!(
        json,
        r#"{"id":7,"ts":1700000000000,"nick":"ann","user":"u-1","text":"hi \"there\""}"#
    );
}

#[test]
fn the_handle_is_send_sync_and_cheap_to_clone() {
    fn assert_send_sync<T: Send + Sync + Clone>() {}
    assert_send_sync::<History>();
}

/// The `room_seq` row of `room`: (last_id, reserved_upto, run_base).
fn seq_row(path: &Path, room: &str) -> Option<(u64, u64, u64)> {
    let conn = rusqlite::Connection::open(path).expect("test connection");
    conn.query_row(
        "SELECT last_id, reserved_upto, run_base FROM room_seq WHERE room = ?1",
        [room],
        |row| {
            Ok((
                row.get::<_, i64>(0)? as u64,
                row.get::<_, i64>(1)? as u64,
                row.get::<_, i64>(2)? as u64,
            ))
        },
    )
    .ok()
}

#[test]
fn ids_are_never_reused_after_a_crash() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = db(&dir);
    let mut config = sqlite(&path);
    config.commit_interval = HOUR;
    let history = open(config.clone());
    fill(&history, "r", 10);
    history.flush();
    // Handed out (clients saw them), never committed: the crash loses them.
    fill(&history, "r", 20);
    assert_eq!(history.last_id("r"), 30);
    history.abandon();
    drop(history);
    assert_eq!(rows(&path, "r"), range(1..=10), "the tail was lost");

    let history = open(config.clone());
    let next = history.append("r", "n", "after the crash");
    assert!(next.id > 30, "id {} was already handed out before the crash", next.id);
    // The skipped ids are not reported as dropped by retention.
    assert_eq!(history.since("r", 10, 10), Since::Complete(vec![next.clone()]));
    assert_eq!(history.since("r", 25, 10), Since::Complete(vec![next.clone()]));
    let mut all = range(1..=10);
    all.push(next.id);
    assert_eq!(ids(history.since("r", 0, 100).entries()), all);
    assert!(matches!(history.since("r", 0, 100), Since::Complete(_)));

    // A second crash, right after the restart, before any commit: the
    // block reserved at open already covers these ids.
    fill(&history, "r", 5);
    let before = history.last_id("r");
    history.abandon();
    drop(history);
    let history = open(config);
    let again = history.append("r", "n", "after the second crash");
    assert!(again.id > before, "id {} <= {before}", again.id);
    history.flush();
    assert_eq!(rows(&path, "r"), [range(1..=10), vec![again.id]].concat());
}

#[test]
fn a_crash_after_a_clean_restart_reuses_no_id() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = db(&dir);
    let mut config = sqlite(&path);
    config.commit_interval = HOUR;
    let history = open(config.clone());
    fill(&history, "r", 5);
    history.close();
    drop(history);
    let history = open(config.clone());
    assert_eq!(history.append("r", "n", "t").id, 6, "no gap after a clean close");
    fill(&history, "r", 3); // 7..=9, none committed
    history.abandon();
    drop(history);
    let history = open(config);
    assert!(history.append("r", "n", "t").id > 9);
}

#[test]
fn reservations_stay_ahead_of_busy_rooms_without_blocking_them() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = db(&dir);
    let history = open(sqlite(&path));
    fill(&history, "r", 2_500);
    history.flush();
    let (last, reserved, _) = seq_row(&path, "r").expect("a row for the room");
    assert_eq!(last, 2_500);
    assert!(
        reserved >= 2_500 + sqlite::RESERVE_BLOCK / 2,
        "reserved up to {reserved}: not half a block ahead"
    );
    // Crash with the whole tail uncommitted but reserved: no reuse.
    let mut config = sqlite(&path);
    config.commit_interval = HOUR;
    drop(history);
    let history = open(config.clone());
    fill(&history, "r", 400);
    history.abandon();
    drop(history);
    let history = open(config);
    assert!(history.append("r", "n", "t").id > 2_900);
}

#[test]
fn ids_continue_after_age_retention_deleted_every_row() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = db(&dir);
    let mut config = sqlite(&path);
    config.max_age = Some(Duration::from_millis(1_000));
    let (history, now) = open_at(config.clone(), 10_000);
    fill(&history, "r", 3);
    history.flush();
    now.store(50_000, Ordering::SeqCst);
    history.flush(); // the sweep deletes the expired rows
    assert_eq!(rows(&path, "r"), Vec::<u64>::new());
    drop(history);
    let (history, _) = open_at(config, 50_000);
    assert_eq!(history.append("r", "n", "t").id, 4, "not back to 1");
}

#[test]
fn an_old_file_without_reservations_is_upgraded_and_ids_continue() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = db(&dir);
    rusqlite::Connection::open(&path)
        .and_then(|c| {
            c.execute_batch(
                "CREATE TABLE messages (
                     room TEXT NOT NULL, id INTEGER NOT NULL, ts INTEGER NOT NULL,
                     nick TEXT NOT NULL, text TEXT NOT NULL,
                     PRIMARY KEY (room, id)
                 ) WITHOUT ROWID;
                 CREATE INDEX messages_by_ts ON messages (ts);
                 INSERT INTO messages VALUES ('r', 1, 1, 'n', 'a'), ('r', 2, 2, 'n', 'b');
                 PRAGMA user_version = 1;",
            )
        })
        .expect("a version 1 file");
    let history = open(sqlite(&path));
    assert_eq!(ids(&history.recent("r", 10)), range(1..=2));
    assert_eq!(history.append("r", "n", "c").id, 3);
    history.close();
    let version: i64 = rusqlite::Connection::open(&path)
        .and_then(|c| c.query_row("PRAGMA user_version", [], |row| row.get(0)))
        .expect("version");
    assert_eq!(version, 4);
    assert_eq!(seq_row(&path, "r").map(|row| row.0), Some(3));
}

#[test]
fn a_file_without_user_ids_gets_the_column_and_keeps_its_messages() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = db(&dir);
    let history = open(sqlite(&path));
    history.append("r", "n", "before");
    history.close();
    // What a version 2 file looks like: `messages` without `user`.
    rusqlite::Connection::open(&path)
        .and_then(|c| {
            c.execute_batch(
                "CREATE TABLE old (
                     room TEXT NOT NULL, id INTEGER NOT NULL, ts INTEGER NOT NULL,
                     nick TEXT NOT NULL, text TEXT NOT NULL,
                     PRIMARY KEY (room, id)
                 ) WITHOUT ROWID;
                 INSERT INTO old SELECT room, id, ts, nick, text FROM messages;
                 DROP TABLE messages;
                 ALTER TABLE old RENAME TO messages;
                 CREATE INDEX messages_by_ts ON messages (ts);
                 PRAGMA user_version = 2;",
            )
        })
        .expect("a version 2 file");
    let history = open(sqlite(&path));
    let dana: Arc<str> = Arc::from("u-dana");
    history.append_by("r", "Dana", Some(&dana), "after");
    history.close();
    let history = open(sqlite(&path));
    let users: Vec<(String, Option<String>)> = history
        .recent("r", 10)
        .iter()
        .map(|e| (e.text.to_string(), e.user.as_deref().map(str::to_owned)))
        .collect();
    assert_eq!(
        users,
        [
            ("before".to_owned(), None),
            ("after".to_owned(), Some("u-dana".to_owned()))
        ]
    );
    let version: i64 = rusqlite::Connection::open(&path)
        .and_then(|c| c.query_row("PRAGMA user_version", [], |row| row.get(0)))
        .expect("version");
    assert_eq!(version, 4);
}

#[test]
fn event_names_are_kept_by_every_store_and_an_old_file_gets_the_column() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = db(&dir);
    let history = open(sqlite(&path));
    history.append("r", "n", "before");
    history.close();
    // A version 3 file: `messages` without `event`.
    rusqlite::Connection::open(&path)
        .and_then(|c| c.execute_batch("ALTER TABLE messages DROP COLUMN event; PRAGMA user_version = 3;"))
        .expect("a version 3 file");
    let greet: Arc<str> = Arc::from("greet");
    for (name, config) in [("memory", config(Backend::Memory)), ("sqlite", sqlite(&path))] {
        let history = open(config);
        let entry = history.append_event("r", "app", None, Some(&greet), r#"{"a":1}"#);
        assert_eq!(entry.event.as_deref(), Some("greet"), "{name}");
        history.append("r", "ann", "hi");
        history.close();
    }
    let history = open(sqlite(&path));
    let events: Vec<(String, Option<String>)> = match history.since("r", 0, 10) {
        Since::Complete(entries) => entries
            .iter()
            .map(|e| (e.text.to_string(), e.event.as_deref().map(str::to_owned)))
            .collect(),
        other => panic!("{other:?}"),
    };
    let want = [
        ("before".to_owned(), None),
        (r#"{"a":1}"#.to_owned(), Some("greet".to_owned())),
        ("hi".to_owned(), None),
    ];
    assert_eq!(events, want);
}

#[test]
fn user_ids_are_kept_by_every_store() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = db(&dir);
    let dana: Arc<str> = Arc::from("u-dana");
    for (name, config) in [("memory", config(Backend::Memory)), ("sqlite", sqlite(&path))] {
        let history = open(config);
        let entry = history.append_by("r", "Dana", Some(&dana), "hi");
        assert_eq!(entry.user.as_deref(), Some("u-dana"), "{name}");
        history.append("r", "guest-1", "hello");
        let recent = history.recent("r", 10);
        let users: Vec<Option<&str>> = recent.iter().map(|e| e.user.as_deref()).collect();
        assert_eq!(users, [Some("u-dana"), None], "{name}");
        history.close();
    }
    // After a restart, from the file (not the in-memory tail).
    let history = open(sqlite(&path));
    let since: Vec<Option<String>> = match history.since("r", 0, 10) {
        Since::Complete(entries) => entries.iter().map(|e| e.user.as_deref().map(str::to_owned)).collect(),
        other => panic!("{other:?}"),
    };
    assert_eq!(since, [Some("u-dana".to_owned()), None]);
}

/// What `n` entries of `text_len` bytes from nick "n" cost the memory cap.
fn cost_of(n: usize, text_len: usize) -> u64 {
    (n * (text_len + 1 + budget::ENTRY_OVERHEAD)) as u64
}

/// A 1,000-byte text that says which message it is.
fn big(i: usize) -> String {
    format!("{i:>1000}")
}

#[test]
fn the_memory_cap_bounds_all_rooms_together_and_ids_keep_counting() {
    let mut config = config(Backend::Memory);
    let max = cost_of(20, 1_000) as usize;
    config.max_bytes = max;
    let history = open(config);
    let rooms = ["a", "b", "c", "d", "e"];
    for round in 1..=40u64 {
        for room in rooms {
            let entry = history.append(room, "n", &big(round as usize));
            assert_eq!(entry.id, round, "ids still count up in {room}");
            let held = history.stats().memory_bytes;
            assert!(held <= max as u64, "{held} bytes held, cap {max}");
        }
    }
    let stats = history.stats();
    assert!(stats.memory_dropped >= 5 * 40 - 20, "{stats:?}");
    // Equal rooms share the cap equally; each keeps its newest entries,
    // contiguous, and reports the rest as truncated.
    let mut kept = 0;
    for room in rooms {
        let recent = history.recent(room, 100);
        let first = recent[0].id;
        assert_eq!(ids(&recent), range(first..=40), "{room}");
        assert_eq!(recent.last().map(|e| e.text.trim()), Some("40"));
        assert!(recent.len() <= 4, "{room} kept {} of a fair 4", recent.len());
        kept += recent.len();
        assert_eq!(
            history.since(room, 0, 100),
            Since::Truncated {
                first_available: first,
                entries: recent.clone()
            },
            "{room}"
        );
    }
    assert_eq!(history.stats().memory_bytes, cost_of(kept, 1_000));
}

#[test]
fn the_rooms_that_hold_the_most_give_back_first_oldest_first() {
    let mut config = config(Backend::Memory);
    config.max_bytes = cost_of(10, 1_000) as usize;
    let history = open(config);
    fill(&history, "quiet", 3);
    for i in 0..100 {
        history.append("loud", "n", &big(i));
    }
    assert_eq!(
        ids(&history.recent("quiet", 10)),
        range(1..=3),
        "the quiet room keeps all it has"
    );
    let loud = history.recent("loud", 100);
    assert_eq!(loud.last().map(|e| e.id), Some(100));
    assert_eq!(ids(&loud), range(loud[0].id..=100), "the loud room keeps its newest");
    assert!(loud.len() >= 8, "and the rest of the cap: {}", loud.len());
    assert!(history.stats().memory_bytes <= cost_of(10, 1_000));
}

#[test]
fn a_message_larger_than_the_cap_is_not_kept_but_counted() {
    let mut config = config(Backend::Memory);
    config.max_bytes = 500;
    let history = open(config);
    history.append("r", "n", "small");
    let entry = history.append("r", "n", &big(1));
    assert_eq!(entry.id, 2);
    assert!(history.stats().memory_bytes <= 500);
    assert_eq!(ids(&history.recent("r", 10)), Vec::<u64>::new());
    assert_eq!(
        history.since("r", 1, 10),
        Since::Truncated {
            first_available: 3,
            entries: vec![]
        }
    );
    assert_eq!(history.append("r", "n", "t").id, 3);
}

#[test]
fn memory_accounting_follows_retention_and_eviction() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut memory = config(Backend::Memory);
    memory.max_messages_per_room = 5;
    let history = open(memory);
    for i in 0..100 {
        history.append("r", "n", &format!("{i:>10}"));
    }
    assert_eq!(history.stats().memory_bytes, cost_of(5, 10), "count retention frees");

    let (history, now) = open_at(
        HistoryConfig {
            max_age: Some(Duration::from_secs(1)),
            ..config(Backend::Memory)
        },
        0,
    );
    fill(&history, "r", 3);
    now.store(5_000, Ordering::SeqCst);
    assert_eq!(history.recent("r", 10), vec![]);
    assert_eq!(history.stats().memory_bytes, 0, "age retention frees");

    let history = open(sqlite(&db(&dir)));
    history.append("r", "n", &big(1));
    assert_eq!(history.stats().memory_bytes, cost_of(1, 1_000));
    history.flush();
    history.evict_cache("r");
    assert_eq!(history.stats().memory_bytes, 0, "a freed room frees its tail");
    assert_eq!(ids(&history.recent("r", 10)), vec![1]);
}

#[test]
fn the_sqlite_tail_keeps_uncommitted_entries_and_replays_the_rest_from_the_file() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = db(&dir);
    let mut config = sqlite(&path);
    config.commit_interval = HOUR;
    let max = cost_of(10, 1_000);
    config.max_bytes = max as usize;
    let history = open(config);
    for room in ["a", "b"] {
        for i in 1..=30 {
            history.append(room, "n", &big(i));
        }
    }
    // Nothing is committed: the tail must keep it all, over the cap,
    // since a replay can read it nowhere else.
    assert_eq!(rows(&path, "a"), Vec::<u64>::new());
    assert_eq!(history.stats().memory_bytes, cost_of(60, 1_000));
    assert_eq!(history.stats().memory_dropped, 0);
    assert_eq!(ids(history.since("a", 0, 100).entries()), range(1..=30));
    assert_eq!(rows(&path, "a"), Vec::<u64>::new(), "served from memory");

    // Once committed, the tail sheds by itself (no append needed) ...
    history.flush();
    let stats = history.stats();
    assert!(stats.memory_bytes <= max, "{stats:?}");
    assert!(stats.memory_dropped >= 50, "{stats:?}");
    // ... and replays reach back into the file, with no gap.
    for room in ["a", "b"] {
        let all = history.since(room, 0, 100);
        assert!(matches!(all, Since::Complete(_)), "{room}: {all:?}");
        assert_eq!(ids(all.entries()), range(1..=30), "{room}");
        let texts: Vec<String> = all.entries().iter().map(|e| e.text.trim().to_owned()).collect();
        assert_eq!(texts, (1..=30).map(|i| i.to_string()).collect::<Vec<_>>(), "{room}");
        assert_eq!(ids(history.since(room, 12, 5).entries()), range(13..=17), "{room}");
        assert_eq!(ids(&history.recent(room, 25)), range(6..=30), "{room}");
    }
    // New entries on top of a shed tail continue the ids.
    assert_eq!(history.append("a", "n", &big(31)).id, 31);
    assert_eq!(ids(history.since("a", 0, 100).entries()), range(1..=31));
}

#[test]
fn appends_readers_and_the_writer_shed_concurrently_without_deadlock() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = db(&dir);
    let mut config = sqlite(&path);
    config.commit_interval = Duration::from_millis(1);
    config.max_bytes = cost_of(20, 1_000) as usize;
    let history = open(config);
    let threads: Vec<_> = (0..4)
        .map(|t| {
            let history = history.clone();
            std::thread::spawn(move || {
                let room = format!("room {t}");
                for i in 1..=200 {
                    assert_eq!(history.append(&room, "n", &big(i)).id, i as u64);
                    if i % 50 == 0 {
                        assert_eq!(ids(history.since(&room, 0, 1_000).entries()), range(1..=i as u64));
                    }
                }
            })
        })
        .collect();
    for thread in threads {
        thread.join().expect("thread");
    }
    history.flush();
    assert!(
        history.stats().memory_bytes <= cost_of(20, 1_000),
        "{:?}",
        history.stats()
    );
    for t in 0..4 {
        assert_eq!(rows(&path, &format!("room {t}")), range(1..=200));
    }
}

/// What a deferred read hands its callback, on a channel the test reads.
fn deferred<T: Send + 'static>(answer: Answer<T>) -> std::sync::mpsc::Receiver<T> {
    let Answer::Later(deferred) = answer else {
        panic!("expected a read for the reader thread");
    };
    let (tx, rx) = std::sync::mpsc::channel();
    deferred
        .then(move |found| tx.send(found).expect("the test waits"))
        .unwrap_or_else(|_| panic!("refused"));
    rx
}

#[test]
fn a_read_that_needs_the_file_is_deferred_and_answers_as_of_when_it_was_asked() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut config = sqlite(&db(&dir));
    config.cache_per_room = 3;
    let history = open(config);
    fill(&history, "r", 10);
    // The cache has 8-10: enough for these, answered at once.
    match history.recent_or_later("r", 3) {
        Answer::Now(entries) => assert_eq!(ids(&entries), range(8..=10)),
        Answer::Later(_) => panic!("the cache has it"),
    }
    assert!(matches!(history.since_or_later("r", 8, 10), Answer::Now(Since::Complete(e)) if ids(&e) == range(9..=10)));
    // These need the file.
    let recent = deferred(history.recent_or_later("r", 5));
    let since = deferred(history.since_or_later("r", 2, 100));
    let mapped = deferred(history.since_or_later("r", 0, 4).map(|since| ids(since.entries())));
    history.append("r", "nick", "after the question");
    let wait = Duration::from_secs(10);
    assert_eq!(ids(&recent.recv_timeout(wait).expect("answered")), range(6..=10));
    assert_eq!(
        since.recv_timeout(wait).expect("answered"),
        history.since("r", 2, 8),
        "3-10, and not 11"
    );
    assert_eq!(mapped.recv_timeout(wait).expect("answered"), range(1..=4));
    assert_eq!(ids(history.recent("r", 5).as_slice()), range(7..=11));
}

#[test]
fn deferred_reads_past_the_bound_are_refused_and_the_rest_answered() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = db(&dir);
    let mut config = sqlite(&path);
    config.cache_per_room = 2;
    config.commit_interval = Duration::from_millis(1);
    let history = open(config);
    fill(&history, "r", 5);
    history.flush();
    // The writer cannot commit what leaves the cache next, so the reader
    // thread's first read waits, and the rest queue behind it.
    let blocker = rusqlite::Connection::open(&path).expect("blocker");
    blocker.execute_batch("BEGIN IMMEDIATE").expect("lock");
    fill(&history, "r", 5);
    let (tx, rx) = std::sync::mpsc::channel();
    let mut refused = 0;
    for _ in 0..=DEFERRED_READS + 10 {
        let Answer::Later(deferred) = history.recent_or_later("r", 8) else {
            panic!("needs the file");
        };
        let tx = tx.clone();
        if deferred
            .then(move |entries| tx.send(ids(&entries)).expect("the test waits"))
            .is_err()
        {
            refused += 1;
        }
    }
    // One taken by the thread (or none yet), the bound's worth waiting.
    assert!((10..=11).contains(&refused), "{refused}");
    blocker.execute_batch("COMMIT").expect("unlock");
    let answered = DEFERRED_READS + 11 - refused;
    for _ in 0..answered {
        assert_eq!(
            rx.recv_timeout(Duration::from_secs(10)).expect("answered"),
            range(3..=10)
        );
    }
}

#[test]
fn a_room_whose_state_cannot_be_read_gives_no_id_until_it_can() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = db(&dir);
    {
        let history = open(sqlite(&path));
        fill(&history, "b", 5);
        history.close();
    }
    let history = open(sqlite(&path));
    // Another connection takes away a table the first touch reads.
    let other = rusqlite::Connection::open(&path).expect("other connection");
    other
        .execute_batch("ALTER TABLE room_seq RENAME TO hidden")
        .expect("rename");
    let unread = history.append("b", "n", "while unreadable");
    assert_eq!(unread.id, 0, "no id: 1 would repeat a stored one");
    assert_eq!(&*unread.text, "while unreadable");
    other
        .execute_batch("ALTER TABLE hidden RENAME TO room_seq")
        .expect("rename back");
    let read = history.append("b", "n", "readable again");
    assert!(read.id > 5, "{}", read.id);
    history.flush();
    let stored = rows(&path, "b");
    assert_eq!(stored, [1, 2, 3, 4, 5, read.id], "the unnumbered one was not stored");
    assert_eq!(history.stats().dropped, 1, "{:?}", history.stats());
}

/// Rooms in memory now, over every shard.
fn rooms_held(history: &History) -> usize {
    history
        .inner
        .rooms
        .shards
        .iter()
        .map(|shard| lock(shard).rooms.len())
        .sum()
}

#[test]
fn the_memory_and_none_stores_forget_closed_rooms_that_keep_nothing_and_never_repeat_an_id() {
    for backend in [Backend::Memory, Backend::None] {
        let history = open(config(backend.clone()));
        // A flood of joins to new names, each left at once.
        for n in 0..10_000 {
            let room = format!("r{n}");
            assert!(history.recent(&room, 5).is_empty());
            history.evict_cache(&room);
        }
        assert_eq!(rooms_held(&history), 0, "{backend:?}: nothing kept for them");
        fill(&history, "talk", 3);
        history.evict_cache("talk");
        let kept = usize::from(backend == Backend::Memory);
        assert_eq!(
            rooms_held(&history),
            kept,
            "{backend:?}: a room with messages kept stays"
        );
        if backend == Backend::Memory {
            assert_eq!(ids(&history.recent("talk", 10)), range(1..=3));
            continue;
        }
        // The none store forgot it: its ids go on, and so do a new room's.
        assert_eq!(history.append("talk", "n", "again").id, 4);
        assert_eq!(
            history.since("fresh", 0, 10),
            Since::Complete(vec![]),
            "nothing lost there"
        );
        assert_eq!(history.append("fresh", "n", "first").id, 4);
        assert_eq!(
            history.since("fresh", 0, 10),
            Since::Truncated {
                first_available: 5,
                entries: vec![]
            },
            "its one message is not kept"
        );
    }
}

/// As the HTTP API can: `text` into each of `rooms` channels `c0`, `c1`...
/// that nobody is subscribed to, each closing at once, keeping its event.
fn one_event_each(history: &History, rooms: usize, text: &str) {
    for n in 0..rooms {
        let room = format!("c{n}");
        history.append(&room, "app", text);
        history.evict_cache(&room);
    }
}

#[test]
fn closed_memory_rooms_are_forgotten_once_the_cap_sheds_their_entries() {
    let mut config = config(Backend::Memory);
    config.max_bytes = 20_000;
    let history = open(config);
    one_event_each(&history, 200, &"x".repeat(500));
    let held = rooms_held(&history);
    assert!(held < 50, "the rooms the cap emptied are forgotten: {held} left");
    // Above every id forgotten: rooms made since counted on too.
    let back = history.append("c0", "n", "back").id;
    assert!(back > 1, "ids go on: {back}");
    assert_eq!(
        history.since("c0", 1, 10),
        Since::Complete(history.recent("c0", 1)),
        "nothing reported lost after what was seen"
    );
}

#[test]
fn rooms_count_against_the_memory_cap_not_only_their_entries() {
    let mut config = config(Backend::Memory);
    config.max_bytes = 200_000;
    let history = open(config);
    // The entries alone are far below the cap, the rooms are not.
    one_event_each(&history, 5_000, "1");
    let held = rooms_held(&history);
    assert!(held <= 200_000 / budget::SLOT_COST, "{held} rooms kept");
}
