//! The log against a fake map: compaction under concurrent appends, a
//! dropped writer, slow batches, appends during a compaction's sync, and
//! torn tails.

use super::writer::SLOW_WRITE;
use super::*;
use crate::store::portable::Portable;
use ropc_core::{TokenKey, TokenKind};
use std::collections::HashMap;

fn now() -> u64 {
    crate::clock::now()
}

fn options(mode: Sync, compact_min: u64) -> Options {
    Options { compact_min, ..Options::new(mode) }
}

fn portable(expires_at: u64) -> Portable {
    Portable {
        family: 9,
        kind: TokenKind::Refresh,
        retired_at: 0,
        issued_at: 1,
        expires_at,
        client: "legacy".into(),
        scope: "read".into(),
        owner: Some(crate::store::Owner::named("alice")),
    }
}

/// The durable state of a fake store, kept in step with the log the way
/// the app keeps its map: change first, then append.
#[derive(Default)]
struct Fake {
    records: parking_lot::Mutex<HashMap<[u8; 16], Portable>>,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn compaction_under_concurrent_appends_keeps_exactly_the_live_state() {
    for mode in [Sync::Always, Sync::Interval(std::time::Duration::from_millis(5))] {
        compaction_keeps_the_live_state(mode).await;
    }
}

/// The first appender of a batch becomes its writer and yields before
/// writing. A request dropped in that yield (its client hung up) must
/// not leave the log without a writer: every later append would wait
/// for ever, and with it every grant.
#[tokio::test(flavor = "current_thread")]
async fn a_writer_dropped_before_it_writes_does_not_stall_the_log() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("tokens.wal");
    let snapshot: SnapshotFn = Box::new(Vec::new);
    let wal = Wal::open(
        &path,
        now(),
        |_| {},
        snapshot,
        options(Sync::Interval(std::time::Duration::from_millis(5)), 1 << 20),
    )
    .unwrap();
    let entry = || [Entry::Put(TokenKey([1; 16]), portable(now() + 3600))];
    {
        let first = entry();
        let mut lead = Box::pin(wal.append(&first));
        // One poll: it becomes the writer and yields; then it is dropped.
        let polled =
            std::future::poll_fn(|cx| std::task::Poll::Ready(std::future::Future::poll(lead.as_mut(), cx))).await;
        assert!(polled.is_pending(), "the writer yields before it writes");
    }
    let next = entry();
    tokio::time::timeout(std::time::Duration::from_secs(5), wal.append(&next))
        .await
        .expect("an append after a dropped writer completes")
        .unwrap();
    assert_eq!(wal.stats().entries.load(Ordering::Relaxed), 2, "the dropped writer's entry was written too");
}

/// A batch whose grants waited 50 ms or more says so in the log, and
/// where the time went; a quick one says nothing.
#[tokio::test(flavor = "current_thread")]
async fn a_slow_batch_is_logged_with_where_its_time_went() {
    use crate::test_log::Capture;
    let logs = Capture::default();
    let writer = logs.clone();
    let subscriber = tracing_subscriber::fmt().with_ansi(false).with_writer(move || writer.clone()).finish();
    let _guard = tracing::subscriber::set_default(subscriber);
    let dir = tempfile::tempdir().unwrap();
    let snapshot: SnapshotFn = Box::new(Vec::new);
    let wal = Wal::open(
        &dir.path().join("tokens.wal"),
        now(),
        |_| {},
        snapshot,
        options(Sync::Interval(std::time::Duration::from_secs(1)), 1 << 20),
    )
    .unwrap();
    let entry = |b: u8| [Entry::Put(TokenKey([b; 16]), portable(now() + 3600))];
    let started = std::time::Instant::now();
    wal.append(&entry(1)).await.unwrap();
    let quick = started.elapsed() < SLOW_WRITE;
    let warning = "grants waited long for the token log";
    let count = |logs: &Capture| logs.text().matches(warning).count();
    // (Unless this machine held the test up that long itself.)
    let before = count(&logs);
    if quick {
        assert_eq!(before, 0, "a quick write is not logged");
    }
    // Something (a compaction, a stuck disk) holds the log for 300 ms.
    let (locked_tx, locked) = std::sync::mpsc::channel();
    let inner = Arc::clone(&wal.inner);
    let holder = std::thread::spawn(move || {
        let _held = inner.lock();
        locked_tx.send(()).unwrap();
        std::thread::sleep(std::time::Duration::from_millis(300));
    });
    locked.recv().unwrap();
    wal.append(&entry(2)).await.unwrap();
    holder.join().unwrap();
    let text = logs.text();
    assert_eq!(text.matches(warning).count(), before + 1, "{text}");
    let field = |name: &str| -> u64 {
        // The last warning's fields.
        let at = text.rfind(&format!("{name}=")).unwrap_or_else(|| panic!("{name} in {text}")) + name.len() + 1;
        text[at..].split(|c: char| !c.is_ascii_digit()).next().unwrap().parse().unwrap()
    };
    // The time went to the lock, and the parts add up to the whole
    // (each rounded down to a millisecond).
    assert!(field("lock_wait_ms") >= 250, "{text}");
    let parts = field("before_write_ms") + field("lock_wait_ms") + field("write_ms");
    assert!(parts <= field("waited_ms") && parts + 2 >= field("waited_ms"), "{text}");
}

/// A compaction syncs its copy of the log without holding the log's
/// lock: appends go on while that sync waits for the disk (which, under
/// someone else's heavy writeback, can take seconds), and the ones made
/// meanwhile end up in the compacted log.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn appends_go_on_while_a_compaction_syncs() {
    let interval = Sync::Interval(std::time::Duration::from_millis(5));
    // A few appends during the sync: one round, and they are the tail.
    appends_go_on_while_a_compaction_syncs_in(Sync::Always, 20, 1).await;
    appends_go_on_while_a_compaction_syncs_in(interval, 20, 1).await;
    // More than SMALL_TAIL (~78 KB) during the sync: a second round
    // takes them, so that little is written under the lock.
    appends_go_on_while_a_compaction_syncs_in(interval, 600, 2).await;
}

/// Appends `during` entries while the compaction's first sync is held,
/// and expects `rounds` rounds of step 2.
async fn appends_go_on_while_a_compaction_syncs_in(mode: Sync, during: u16, rounds: usize) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("tokens.wal");
    // The compaction's sync of the appends it copied waits until the test
    // lets it go, as a disk under someone else's writeback would.
    let (paused_tx, paused) = std::sync::mpsc::channel::<()>();
    let (resume, resume_rx) = std::sync::mpsc::channel::<()>();
    let resume_rx = parking_lot::Mutex::new(resume_rx);
    let released = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let hook_released = Arc::clone(&released);
    let held_sync: SyncFn = Arc::new(move |file: &File| {
        let _ = paused_tx.send(());
        let _ = resume_rx.lock().recv_timeout(std::time::Duration::from_secs(10));
        hook_released.store(true, Ordering::SeqCst);
        file.sync_data()
    });
    // Opens the log with `fake` as the map it snapshots and restores.
    let open = |fake: &Arc<Fake>, sync_copy: SyncFn| {
        let (f1, f2) = (Arc::clone(fake), Arc::clone(fake));
        let restore = move |state: Replayed| *f1.records.lock() = state.records;
        let snapshot: SnapshotFn = Box::new(move || {
            let records = f2.records.lock().clone();
            records.into_iter().flat_map(|(k, p)| Entry::Put(TokenKey(k), p).frame()).collect()
        });
        Wal::open(&path, now(), restore, snapshot, Options { sync_copy, ..options(mode, 4096) })
    };
    let fake = Arc::new(Fake::default());
    let wal = open(&fake, held_sync).unwrap();
    let far = now() + 3600;
    // As the app does: the map first, then the log.
    let put = |i: u16| {
        let mut key = [7; 16];
        key[..2].copy_from_slice(&i.to_le_bytes());
        fake.records.lock().insert(key, portable(far));
        [Entry::Put(TokenKey(key), portable(far))]
    };
    // About 130 bytes each: the 32nd or so crosses 4096 (the log began
    // as an empty snapshot) and starts a compaction.
    let mut i = 0;
    while wal.stats().bytes.load(Ordering::Relaxed) < 8192 {
        wal.append(&put(i)).await.unwrap();
        i += 1;
    }
    tokio::task::block_in_place(|| paused.recv_timeout(std::time::Duration::from_secs(5)))
        .expect("a compaction began and reached its sync");
    for _ in 0..during {
        wal.append(&put(i)).await.unwrap();
        i += 1;
    }
    assert!(!released.load(Ordering::SeqCst), "appends waited for the compaction's sync");
    resume.send(()).unwrap();
    let mut seen = 1;
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    while wal.stats().compactions.load(Ordering::Relaxed) == 0 {
        assert!(std::time::Instant::now() < deadline, "the compaction finished");
        if paused.try_recv().is_ok() {
            // Another round of step 2.
            seen += 1;
            resume.send(()).unwrap();
        }
        tokio::time::sleep(std::time::Duration::from_millis(1)).await;
    }
    assert_eq!(seen, rounds, "rounds of syncing the copied appends");
    // Appends after it go to the new file.
    wal.append(&put(i)).await.unwrap();
    i += 1;
    drop(wal);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    let reopened = Arc::new(Fake::default());
    loop {
        // The sync thread lets go of the log's lock soon after the drop.
        match open(&reopened, Options::new(mode).sync_copy) {
            Ok(_) => break,
            Err(e) if std::time::Instant::now() < deadline && e.to_string().contains("another ropc") => {
                std::thread::sleep(std::time::Duration::from_millis(10));
            }
            Err(e) => panic!("{e}"),
        }
    }
    assert_eq!(reopened.records.lock().len(), usize::from(i), "every append survived the compaction");
    assert_eq!(*reopened.records.lock(), *fake.records.lock());
}

async fn compaction_keeps_the_live_state(mode: Sync) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("tokens.wal");
    let fake = Arc::new(Fake::default());
    let open = |fake: &Arc<Fake>| {
        // The previous handle's threads let go of the log's lock soon
        // after it is dropped.
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
        loop {
            let (f1, f2) = (Arc::clone(fake), Arc::clone(fake));
            let restore = move |state: Replayed| *f1.records.lock() = state.records;
            let snapshot: SnapshotFn = Box::new(move || {
                let records = f2.records.lock().clone();
                records.into_iter().flat_map(|(k, p)| Entry::Put(TokenKey(k), p).frame()).collect()
            });
            match Wal::open(&path, now(), restore, snapshot, options(mode, 4096)) {
                Ok(wal) => break wal,
                Err(e) if std::time::Instant::now() < deadline && e.to_string().contains("another ropc") => {
                    std::thread::sleep(std::time::Duration::from_millis(10));
                }
                Err(e) => panic!("{e}"),
            }
        }
    };
    let wal = Arc::new(open(&fake));
    let far = now() + 3600;
    let mut tasks = Vec::new();
    for t in 0..4u8 {
        let (wal, fake) = (Arc::clone(&wal), Arc::clone(&fake));
        tasks.push(tokio::spawn(async move {
            for i in 0..400u16 {
                let mut key = [t; 16];
                key[..2].copy_from_slice(&i.to_le_bytes());
                let entry = if i % 3 == 2 {
                    // Delete the one put just before.
                    key[..2].copy_from_slice(&(i - 1).to_le_bytes());
                    fake.records.lock().remove(&key);
                    Entry::Delete(TokenKey(key))
                } else {
                    let p = portable(far);
                    fake.records.lock().insert(key, p.clone());
                    Entry::Put(TokenKey(key), p)
                };
                wal.append(&[entry]).await.unwrap();
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    assert!(wal.stats().compactions.load(Ordering::Relaxed) > 0, "the log was compacted meanwhile");
    let expected = fake.records.lock().clone();
    assert_eq!(expected.len(), 4 * (400 - 2 * 133));
    drop(wal);
    // A restart sees exactly the state the appends left.
    let again = Arc::new(Fake::default());
    let _wal = open(&again);
    assert_eq!(*again.records.lock(), expected);
}

#[test]
fn entries_round_trip_and_a_torn_tail_is_cut_off() {
    let entries = vec![
        Entry::Put(TokenKey([1; 16]), portable(100)),
        Entry::Retire(TokenKey([1; 16]), 50),
        Entry::Put(TokenKey([2; 16]), portable(200)),
        Entry::Delete(TokenKey([2; 16])),
        Entry::RevokeFamily(9, 300),
    ];
    let mut bytes: Vec<u8> = entries.iter().flat_map(Entry::frame).collect();
    let whole = bytes.len();
    assert_eq!(read_entries(&bytes), (entries.clone(), whole));
    // Torn mid-entry: everything before it survives.
    bytes.extend_from_slice(&Entry::Put(TokenKey([3; 16]), portable(100)).frame()[..20]);
    assert_eq!(read_entries(&bytes), (entries.clone(), whole));
    // A flipped bit fails the checksum.
    let mut corrupt: Vec<u8> = entries.iter().flat_map(Entry::frame).collect();
    corrupt[12] ^= 1;
    assert_eq!(read_entries(&corrupt).0, vec![]);
    // A huge length is not believed.
    assert_eq!(read_entries(&[0xff, 0xff, 0xff, 0x7f, 0, 0, 0, 0]).0, vec![]);
    // Zeros (a length of 0 with the checksum of nothing, 0) end the
    // log: what follows them is not replayed.
    let mut zeroed: Vec<u8> = entries[..1].iter().flat_map(Entry::frame).collect();
    let first = zeroed.len();
    zeroed.extend_from_slice(&[0; 4096]);
    zeroed.extend(entries[2..].iter().flat_map(Entry::frame));
    assert_eq!(read_entries(&zeroed), (entries[..1].to_vec(), first));

    let mut state = Replayed::default();
    state.apply(entries);
    assert_eq!(state.records.len(), 1);
    assert_eq!(state.records[&[1; 16]].retired_at, 50);
    assert_eq!(state.families[&9], 300);
    state.expire(100);
    assert!(state.records.is_empty(), "expired at 100");
    assert_eq!(state.families.len(), 1);
}
