//! Behaviour of the store as its callers see it: digests, the stat cache, put / materialise round
//! trips, corruption, records, gc and the lock. Each test works in its own temp workspace.

use std::collections::{BTreeMap, BTreeSet};
use std::fs::{self, File};
use std::os::unix::fs::{PermissionsExt, symlink};
use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::time::{Duration, Instant, SystemTime};

use crate::*;

/// A temp workspace with an open store.
struct Ws {
    dir: tempfile::TempDir,
    store: Store,
}

impl Ws {
    fn new() -> Ws {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        Ws { dir, store }
    }

    fn path(&self, rel: &str) -> PathBuf {
        self.dir.path().join(rel)
    }

    /// Writes a file an hour old, so that the stat cache may trust it.
    fn write(&self, rel: &str, content: &[u8]) {
        let path = self.path(rel);
        fs::create_dir_all(path.parent().unwrap()).unwrap();
        fs::write(&path, content).unwrap();
        set_mtime(&path, 3600);
    }

    fn mkdir(&self, rel: &str) {
        fs::create_dir_all(self.path(rel)).unwrap();
    }

    fn chmod(&self, rel: &str, mode: u32) {
        fs::set_permissions(self.path(rel), fs::Permissions::from_mode(mode)).unwrap();
    }

    fn hash(&self, rel: &str) -> Artifact {
        self.store.hash_path(Path::new(rel)).unwrap()
    }

    fn put(&self, rel: &str) -> Artifact {
        self.store.put_path(Path::new(rel)).unwrap()
    }

    /// How many files `f` hashed for real.
    fn hashed(&self, f: impl FnOnce()) -> u64 {
        let before = self.store.hash_stats().files;
        f();
        self.store.hash_stats().files - before
    }

    /// The object file of a digest.
    fn object(&self, digest: &Digest) -> PathBuf {
        self.dir.path().join(crate::store::object_key(digest))
    }

    /// Every object digest present.
    fn objects(&self) -> BTreeSet<Digest> {
        self.store
            .objects
            .list()
            .unwrap()
            .into_iter()
            .map(|(d, _)| d)
            .collect()
    }

    /// The names in a directory of the workspace, hidden ones included.
    fn names(&self, rel: &str) -> Vec<String> {
        let mut names: Vec<String> = fs::read_dir(self.path(rel))
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        names.sort();
        names
    }
}

/// Sets a file's mtime to `secs_ago` seconds before now.
fn set_mtime(path: &Path, secs_ago: u64) {
    let file = File::options().write(true).open(path).unwrap();
    file.set_modified(SystemTime::now() - Duration::from_secs(secs_ago))
        .unwrap();
}

fn mode(path: &Path) -> u32 {
    fs::metadata(path).unwrap().permissions().mode() & 0o777
}

/// Flips the first byte of a (read-only) object file.
fn corrupt(path: &Path) {
    fs::set_permissions(path, fs::Permissions::from_mode(0o644)).unwrap();
    let mut bytes = fs::read(path).unwrap();
    bytes[0] ^= 0xff;
    fs::write(path, bytes).unwrap();
    fs::set_permissions(path, fs::Permissions::from_mode(0o444)).unwrap();
}

/// A small tree under `root`: nested dirs, an empty dir, an empty file, an executable.
fn sample_tree(ws: &Ws, root: &str) {
    ws.write(&format!("{root}/a.txt"), b"alpha\n");
    ws.write(&format!("{root}/bin/run.sh"), b"#!/bin/sh\necho hi\n");
    ws.chmod(&format!("{root}/bin/run.sh"), 0o755);
    ws.write(&format!("{root}/nested/deep/x.bin"), &[0, 1, 2, 255]);
    ws.write(&format!("{root}/nested/empty.txt"), b"");
    ws.write(&format!("{root}/nested/same.txt"), b"alpha\n");
    ws.mkdir(&format!("{root}/empty"));
}

fn copy_tree(from: &Path, to: &Path) {
    for entry in walkdir::WalkDir::new(from) {
        let entry = entry.unwrap();
        let target = to.join(entry.path().strip_prefix(from).unwrap());
        if entry.file_type().is_dir() {
            fs::create_dir_all(&target).unwrap();
        } else {
            fs::copy(entry.path(), &target).unwrap();
        }
    }
}

#[test]
fn store_is_send_and_sync() {
    fn check<T: Send + Sync>() {}
    check::<Store>();
}

#[test]
fn open_creates_the_layout() {
    let ws = Ws::new();
    assert_eq!(ws.store.dir(), ws.store.workspace().join(".sluice"));
    assert!(ws.store.workspace().is_absolute());
    for name in ["objects", "tmp", "state.db"] {
        assert!(ws.store.dir().join(name).exists(), "{name}");
    }
    let missing = ws.path("nope");
    assert!(matches!(
        Store::open(&missing),
        Err(StoreError::NotFound { .. })
    ));
}

#[test]
fn file_digest_is_the_blake3_of_its_bytes() {
    let ws = Ws::new();
    for (rel, content) in [
        ("empty", &b""[..]),
        ("hello", b"hello"),
        ("big", &vec![7u8; 3 << 20]),
    ] {
        ws.write(rel, content);
        let expected = Artifact {
            kind: ArtifactKind::File,
            digest: Digest::of_bytes(content),
            size: content.len() as u64,
        };
        assert_eq!(ws.hash(rel), expected, "{rel}");
        assert_eq!(ws.put(rel), expected, "{rel}");
        assert_eq!(fs::read(ws.object(&expected.digest)).unwrap(), content);
        assert_eq!(mode(&ws.object(&expected.digest)), 0o444);
    }
}

#[test]
fn digests_do_not_depend_on_where_the_workspace_is() {
    let a = Ws::new();
    sample_tree(&a, "data");
    let b = Ws::new();
    copy_tree(&a.path("data"), &b.path("deeper/down/data"));
    let dir = a.hash("data");
    assert_eq!(dir.kind, ArtifactKind::Dir);
    assert_eq!(dir.size, 6 + 18 + 4 + 6);
    assert_eq!(b.hash("deeper/down/data"), dir);
    assert_eq!(a.hash("data/nested"), b.hash("deeper/down/data/nested"));
    assert_eq!(a.hash("data/a.txt"), b.hash("deeper/down/data/a.txt"));
    // Spelling of the relative path does not matter either.
    assert_eq!(a.hash("./data/"), dir);
    assert_eq!(a.put("data"), dir);
    assert_eq!(b.put("deeper/down/data"), dir);
    assert_eq!(a.objects(), b.objects());
}

#[test]
fn directory_digest_covers_names_contents_modes_and_shape() {
    type Change = fn(&Ws);
    let changes: [(&str, Change); 8] = [
        ("nothing", |_| {}),
        ("rename a file", |ws| {
            fs::rename(ws.path("d/a.txt"), ws.path("d/b.txt")).unwrap()
        }),
        ("edit a nested file", |ws| {
            ws.write("d/nested/deep/x.bin", &[0, 1, 2, 254])
        }),
        ("set an exec bit", |ws| ws.chmod("d/a.txt", 0o744)),
        ("clear an exec bit", |ws| ws.chmod("d/bin/run.sh", 0o644)),
        ("add an empty dir", |ws| ws.mkdir("d/nested/new")),
        ("add an empty file", |ws| ws.write("d/empty/new", b"")),
        ("move a file down", |ws| {
            fs::rename(ws.path("d/a.txt"), ws.path("d/empty/a.txt")).unwrap()
        }),
    ];
    let mut seen = BTreeMap::new();
    for (label, change) in changes {
        let ws = Ws::new();
        sample_tree(&ws, "d");
        change(&ws);
        let digest = ws.hash("d").digest;
        if let Some(other) = seen.insert(digest, label) {
            panic!("`{label}` and `{other}` give the same digest");
        }
    }
    // Permission bits other than exec do not count.
    let ws = Ws::new();
    sample_tree(&ws, "d");
    let before = ws.hash("d");
    ws.chmod("d/a.txt", 0o600);
    assert_eq!(ws.hash("d"), before);
}

#[test]
fn put_then_materialise_round_trips_over_whatever_is_there() {
    let ws = Ws::new();
    sample_tree(&ws, "src");
    let artifacts = [
        ("dir", ws.put("src")),
        ("file", ws.put("src/a.txt")),
        ("empty dir", ws.put("src/empty")),
        ("empty file", ws.put("src/nested/empty.txt")),
    ];
    type Before = fn(&Ws, &str);
    let befores: [(&str, Before); 5] = [
        ("nothing", |_, _| {}),
        ("a file", |ws, rel| ws.write(rel, b"old")),
        ("a dir", |ws, rel| {
            sample_tree(ws, rel);
            ws.write(&format!("{rel}/old-only"), b"old");
        }),
        ("a symlink", |ws, rel| {
            ws.mkdir("elsewhere");
            symlink(ws.path("elsewhere"), ws.path(rel)).unwrap();
        }),
        ("an empty dir", |ws, rel| ws.mkdir(rel)),
    ];
    for (i, (what, artifact)) in artifacts.iter().enumerate() {
        for (j, (before, prepare)) in befores.iter().enumerate() {
            let rel = format!("out/{i}/{j}/target");
            fs::create_dir_all(ws.path(&format!("out/{i}/{j}"))).unwrap();
            prepare(&ws, &rel);
            ws.store.materialise(artifact, Path::new(&rel)).unwrap();
            assert_eq!(ws.hash(&rel), *artifact, "{what} over {before}");
            assert_eq!(
                ws.names(&format!("out/{i}/{j}")),
                ["target"],
                "{what} over {before}"
            );
        }
    }

    // Modes and empty directories come back, into a path whose parents do not exist yet.
    ws.store
        .materialise(&artifacts[0].1, Path::new("fresh/copy"))
        .unwrap();
    assert_eq!(mode(&ws.path("fresh/copy/bin/run.sh")), 0o755);
    assert_eq!(mode(&ws.path("fresh/copy/a.txt")), 0o644);
    assert!(ws.path("fresh/copy/empty").is_dir());
    assert_eq!(ws.names("fresh/copy/empty"), Vec::<String>::new());
    assert_eq!(
        fs::read(ws.path("fresh/copy/nested/deep/x.bin")).unwrap(),
        [0, 1, 2, 255]
    );
    assert!(ws.store.contains(&artifacts[0].1));
    ws.store.verify(&artifacts[0].1).unwrap();
}

#[test]
fn a_corrupt_object_is_reported_and_never_materialised() {
    let ws = Ws::new();
    sample_tree(&ws, "src");
    let dir = ws.put("src");
    let file = ws.put("src/nested/deep/x.bin");
    ws.write("dest/keep", b"precious");
    ws.write("dest-file", b"precious");
    corrupt(&ws.object(&file.digest));

    let expected_path = PathBuf::from(crate::store::object_key(&file.digest));
    for artifact in [&dir, &file] {
        match ws.store.verify(artifact) {
            Err(StoreError::Corrupt { digest, path }) => {
                assert_eq!(digest, file.digest);
                assert_eq!(path, expected_path);
            }
            other => panic!("expected corruption, got {other:?}"),
        }
        for rel in ["dest", "dest-file", "dest-new"] {
            let err = ws.store.materialise(artifact, Path::new(rel)).unwrap_err();
            assert!(matches!(err, StoreError::Corrupt { .. }), "{err:?}");
        }
        assert_eq!(fs::read(ws.path("dest/keep")).unwrap(), b"precious");
        assert_eq!(fs::read(ws.path("dest-file")).unwrap(), b"precious");
        assert_eq!(ws.names("dest"), ["keep"]);
        assert_eq!(ws.names(""), [".sluice", "dest", "dest-file", "src"]);
    }
    let message = ws.store.verify(&file).unwrap_err().to_string();
    assert_eq!(
        message,
        format!(
            "object {} is corrupt: its content does not match its digest ({})",
            file.digest.short(),
            expected_path.display()
        )
    );

    // Removing the bad object makes it missing; storing the source again repairs it.
    ws.store.remove_object(&file.digest).unwrap();
    assert!(!ws.store.contains(&dir));
    assert!(
        matches!(ws.store.verify(&dir), Err(StoreError::Missing { digest }) if digest == file.digest)
    );
    assert!(matches!(
        ws.store.materialise(&dir, Path::new("dest")),
        Err(StoreError::Missing { .. })
    ));
    assert_eq!(ws.put("src"), dir);
    ws.store.verify(&dir).unwrap();

    // A corrupt tree object is caught the same way.
    corrupt(&ws.object(&dir.digest));
    assert!(
        matches!(ws.store.verify(&dir), Err(StoreError::Corrupt { digest, .. }) if digest == dir.digest)
    );
    assert!(ws.store.materialise(&dir, Path::new("dest")).is_err());
    assert_eq!(ws.names("dest"), ["keep"]);
}

#[test]
fn unchanged_files_are_not_hashed_again() {
    let ws = Ws::new();
    for i in 0..200 {
        ws.write(&format!("d/{}/f{i}", i % 7), format!("file {i}").as_bytes());
    }
    let first = ws.hash("d");
    assert_eq!(
        ws.store.hash_stats(),
        HashStats {
            files: 200,
            bytes: ws.hash("d").size
        }
    );
    assert_eq!(ws.hashed(|| assert_eq!(ws.hash("d"), first)), 0);
    assert_eq!(ws.hashed(|| assert_eq!(ws.hash("d/3/f3").size, 6)), 0);

    // Touched but identical: hashed once, then trusted again.
    set_mtime(&ws.path("d/3/f10"), 1800);
    assert_eq!(ws.hashed(|| assert_eq!(ws.hash("d"), first)), 1);
    assert_eq!(ws.hashed(|| assert_eq!(ws.hash("d"), first)), 0);

    // Changed content with the same size and an old mtime: the ctime and mtime give it away.
    fs::write(ws.path("d/3/f10"), b"file X10").unwrap();
    set_mtime(&ws.path("d/3/f10"), 900);
    let changed = ws.hash("d");
    assert_ne!(changed, first);
    assert_eq!(ws.hashed(|| assert_eq!(ws.hash("d"), changed)), 0);

    // Replaced by a new file (new inode): hashed again.
    fs::remove_file(ws.path("d/0/f0")).unwrap();
    ws.write("d/0/f0", b"file 0");
    assert_eq!(ws.hashed(|| assert_eq!(ws.hash("d"), changed)), 1);
}

#[test]
fn racy_files_are_hashed_until_their_mtime_is_safely_past() {
    let ws = Ws::new();
    ws.write("f", b"x");
    // An mtime in the future stays racy: every call hashes again rather than trust it.
    let file = File::options().write(true).open(ws.path("f")).unwrap();
    file.set_modified(SystemTime::now() + Duration::from_secs(3600))
        .unwrap();
    for _ in 0..3 {
        assert_eq!(
            ws.hashed(|| {
                ws.hash("f");
            }),
            1
        );
    }
    set_mtime(&ws.path("f"), 60);
    assert_eq!(
        ws.hashed(|| {
            ws.hash("f");
        }),
        1
    );
    assert_eq!(
        ws.hashed(|| {
            ws.hash("f");
        }),
        0
    );
}

#[test]
fn the_stat_cache_survives_reopening() {
    let ws = Ws::new();
    sample_tree(&ws, "d");
    let dir = ws.put("d");
    ws.store.flush().unwrap();
    ws.store.flush().unwrap();

    let again = Store::open(ws.dir.path()).unwrap();
    assert_eq!(again.hash_path(Path::new("d")).unwrap(), dir);
    // Objects written by put_path carry their source's mtime, so they are trusted too.
    again.verify(&dir).unwrap();
    again.materialise(&dir, Path::new("copy")).unwrap();
    assert_eq!(again.hash_stats(), HashStats::default());
    drop(again);

    // Drop flushes as well.
    let third = Store::open(ws.dir.path()).unwrap();
    ws.write("d/new", b"new");
    third.hash_path(Path::new("d")).unwrap();
    drop(third);
    let fourth = Store::open(ws.dir.path()).unwrap();
    fourth.hash_path(Path::new("d")).unwrap();
    assert_eq!(fourth.hash_stats().files, 0);
}

#[test]
fn symbolic_links_are_followed() {
    let ws = Ws::new();
    ws.write("target/file", b"content");
    ws.mkdir("d");
    symlink("../target/file", ws.path("d/link")).unwrap();
    symlink("../target", ws.path("d/dirlink")).unwrap();

    let plain = Ws::new();
    plain.write("d/link", b"content");
    plain.write("d/dirlink/file", b"content");
    assert_eq!(ws.hash("d"), plain.hash("d"));
    assert_eq!(ws.hash("d/link"), plain.hash("d/link"));
    let stored = ws.put("d");
    ws.store.materialise(&stored, Path::new("copy")).unwrap();
    assert!(
        !fs::symlink_metadata(ws.path("copy/link"))
            .unwrap()
            .is_symlink()
    );

    symlink("nowhere", ws.path("d/dangling")).unwrap();
    let check_err = |rel: &str, expected: &str| {
        let err = ws.store.hash_path(Path::new(rel)).unwrap_err();
        assert_eq!(err.to_string(), expected, "{rel}");
    };
    check_err(
        "d",
        "`d/dangling` is a symbolic link to a path that does not exist",
    );
    check_err(
        "d/dangling",
        "`d/dangling` is a symbolic link to a path that does not exist",
    );
    fs::remove_file(ws.path("d/dangling")).unwrap();
    ws.mkdir("target/sub");
    symlink("..", ws.path("target/sub/up")).unwrap();
    check_err(
        "target",
        "`target/sub/up` is a symbolic link that loops back into its own parent directory",
    );
}

#[test]
fn bad_paths_are_refused() {
    let ws = Ws::new();
    let check = |rel: &str, expected: &str| {
        let err = ws.store.hash_path(Path::new(rel)).unwrap_err();
        assert_eq!(err.to_string(), expected, "{rel}");
        let artifact = Artifact {
            kind: ArtifactKind::File,
            digest: Digest::of_bytes(b""),
            size: 0,
        };
        assert!(
            ws.store.materialise(&artifact, Path::new(rel)).is_err(),
            "{rel}"
        );
    };
    check("missing", "`missing` does not exist");
    check(
        "/etc/passwd",
        "invalid workspace path `/etc/passwd`: it is absolute",
    );
    check(
        "../x",
        "invalid workspace path `../x`: it leads out of the workspace",
    );
    check(
        "a/../../x",
        "invalid workspace path `a/../../x`: it leads out of the workspace",
    );
    check(
        "",
        "invalid workspace path ``: it names the workspace root itself",
    );
    check(
        ".",
        "invalid workspace path `.`: it names the workspace root itself",
    );
    check(
        ".sluice",
        "invalid workspace path `.sluice`: it is inside .sluice, which sluice manages",
    );
    check(
        "./.sluice/objects",
        "invalid workspace path `./.sluice/objects`: it is inside .sluice, which sluice manages",
    );
}

#[test]
fn records_round_trip_and_garbage_reads_as_absent() {
    let ws = Ws::new();
    ws.write("out", b"result");
    let key = Digest::of_bytes(b"stage key");
    let record = StageRecord {
        outputs: BTreeMap::from([("out".to_owned(), ws.put("out"))]),
        duration_ms: Some(42),
        device: None,
        metrics: BTreeMap::new(),
        unstable: Vec::new(),
    };
    assert_eq!(ws.store.record(&key).unwrap(), None);
    ws.store.put_record(&key, &record).unwrap();
    assert_eq!(ws.store.record(&key).unwrap(), Some(record.clone()));
    ws.store.put_record(&key, &record).unwrap();
    ws.store.remove_record(&key).unwrap();
    assert_eq!(ws.store.record(&key).unwrap(), None);
    ws.store.remove_record(&key).unwrap();
}

#[test]
fn gc_keeps_what_is_live_and_removes_the_rest() {
    let ws = Ws::new();
    sample_tree(&ws, "keep");
    ws.write("drop/only-here", b"doomed bytes");
    ws.write("drop/shared", b"alpha\n");
    ws.write("loose", b"a loose file");
    let keep = ws.put("keep");
    let drop_dir = ws.put("drop");
    let loose = ws.put("loose");
    let keep_file = ws.put("keep/a.txt");
    let (k1, k2) = (Digest::of_bytes(b"k1"), Digest::of_bytes(b"k2"));
    ws.store.put_record(&k1, &StageRecord::default()).unwrap();
    ws.store.put_record(&k2, &StageRecord::default()).unwrap();

    let doomed = [
        Digest::of_bytes(b"doomed bytes"),
        drop_dir.digest,
        loose.digest,
    ];
    let doomed_bytes: u64 = doomed
        .iter()
        .map(|d| fs::metadata(ws.object(d)).unwrap().len())
        .sum();
    let before = ws.objects();

    let report = ws
        .store
        .gc(&[keep, keep_file], &BTreeSet::from([k1]))
        .unwrap();
    assert_eq!(
        report,
        GcReport {
            objects_removed: 3,
            bytes_freed: doomed_bytes,
            records_removed: 1
        }
    );
    let expected: BTreeSet<Digest> = before.difference(&doomed.into()).copied().collect();
    assert_eq!(ws.objects(), expected);
    ws.store.verify(&keep).unwrap();
    assert!(!ws.store.contains(&drop_dir));
    assert!(ws.store.record(&k1).unwrap().is_some());
    assert!(ws.store.record(&k2).unwrap().is_none());

    assert_eq!(
        ws.store.gc(&[keep], &BTreeSet::from([k1])).unwrap(),
        GcReport::default()
    );
    let report = ws.store.gc(&[], &BTreeSet::new()).unwrap();
    assert_eq!(report.records_removed, 1);
    assert!(ws.objects().is_empty());
    assert_eq!(ws.names(".sluice/objects"), Vec::<String>::new());
}

#[test]
fn the_lock_makes_a_second_holder_wait() {
    let ws = Ws::new();
    let other = Store::open(ws.dir.path()).unwrap();
    let guard = ws.store.lock(|_| panic!("the lock is free")).unwrap();
    assert_eq!(
        fs::read_to_string(guard.path()).unwrap(),
        format!("{}\n", std::process::id())
    );
    let (waiting_tx, waiting) = mpsc::channel();
    let (acquired_tx, acquired) = mpsc::channel();
    std::thread::scope(|scope| {
        scope.spawn(|| {
            let lock = other
                .lock(|holder| waiting_tx.send(holder).unwrap())
                .unwrap();
            acquired_tx.send(()).unwrap();
            drop(lock);
        });
        let holder = waiting.recv_timeout(Duration::from_secs(10)).unwrap();
        assert_eq!(holder, Some(std::process::id()));
        assert!(acquired.recv_timeout(Duration::from_millis(200)).is_err());
        drop(guard);
        acquired.recv_timeout(Duration::from_secs(10)).unwrap();
    });
    drop(ws.store.lock(|_| panic!("the lock is free again")).unwrap());
}

#[test]
fn clean_tmp_removes_leftovers() {
    let ws = Ws::new();
    ws.write(".sluice/tmp/half-object", b"x");
    ws.mkdir(".sluice/tmp/half-dir/inner");
    ws.store.clean_tmp().unwrap();
    assert_eq!(ws.names(".sluice/tmp"), Vec::<String>::new());
}

/// `cargo test -p sluice-store --release -- --ignored` checks the speed target.
#[test]
#[ignore = "timing; run in release"]
fn ten_thousand_unchanged_files_hash_in_under_100ms() {
    let ws = Ws::new();
    for i in 0..10_000 {
        ws.write(
            &format!("d/{}/f{i}", i % 100),
            format!("small file {i}").as_bytes(),
        );
    }
    let first = ws.hash("d");
    ws.store.flush().unwrap();
    let store = Store::open(ws.dir.path()).unwrap();
    let start = Instant::now();
    assert_eq!(store.hash_path(Path::new("d")).unwrap(), first);
    let took = start.elapsed();
    assert_eq!(store.hash_stats().files, 0);
    eprintln!("10,000 unchanged files: {took:?}");
    assert!(took < Duration::from_millis(100), "{took:?}");
}

fn inode(path: &Path) -> u64 {
    use std::os::unix::fs::MetadataExt;
    fs::metadata(path).unwrap().ino()
}

/// A linked put makes the workspace file itself the object: one inode, read-only, nothing copied,
/// and the stat cache still answers for both (the link changed their ctime).
#[test]
fn a_linked_put_makes_the_file_the_object() {
    let ws = Ws::new();
    sample_tree(&ws, "out");
    let linked = ws.store.put_path_linked(Path::new("out")).unwrap();
    assert_eq!(linked, ws.hash("out"));
    for file in ["out/nested/deep/x.bin", "out/nested/empty.txt"] {
        let digest = Digest::of_bytes(&fs::read(ws.path(file)).unwrap());
        assert_eq!(inode(&ws.path(file)), inode(&ws.object(&digest)), "{file}");
        assert_eq!(mode(&ws.path(file)), 0o444, "{file}");
    }
    // Two files with the same bytes: the first one walked became the object, the second found it
    // there and stayed as it was.
    let mut modes = [
        mode(&ws.path("out/a.txt")),
        mode(&ws.path("out/nested/same.txt")),
    ];
    modes.sort();
    assert_eq!(modes, [0o444, 0o644]);
    assert_eq!(
        ws.hashed(|| {
            ws.hash("out");
        }),
        0
    );
    ws.store.verify(&linked).unwrap();
    // The object outlives the workspace file, and restores it.
    fs::remove_dir_all(ws.path("out")).unwrap();
    ws.store.materialise(&linked, Path::new("out")).unwrap();
    assert_eq!(fs::read(ws.path("out/a.txt")).unwrap(), b"alpha\n");
    assert_eq!(mode(&ws.path("out/a.txt")), 0o644);
}

/// What a link cannot keep is copied: an executable keeps its mode (objects are read-only), and a
/// symbolic link's target is stored, never the link.
#[test]
fn a_linked_put_copies_executables_and_symlink_targets() {
    let ws = Ws::new();
    sample_tree(&ws, "out");
    ws.write("elsewhere/target.txt", b"target\n");
    symlink(ws.path("elsewhere/target.txt"), ws.path("out/link.txt")).unwrap();
    let linked = ws.store.put_path_linked(Path::new("out")).unwrap();
    let run = ws.path("out/bin/run.sh");
    assert_eq!(mode(&run), 0o755);
    let digest = Digest::of_bytes(&fs::read(&run).unwrap());
    assert_ne!(inode(&run), inode(&ws.object(&digest)));
    let digest = Digest::of_bytes(b"target\n");
    let object = ws.object(&digest);
    assert!(fs::symlink_metadata(&object).unwrap().is_file());
    assert_ne!(inode(&object), inode(&ws.path("elsewhere/target.txt")));
    assert_eq!(mode(&ws.path("elsewhere/target.txt")), 0o644);
    ws.store.verify(&linked).unwrap();
}

/// A linked file written to in place (after a chmod, or by root) changes the object with it: the
/// object is then found corrupt, never used as it is.
#[test]
fn a_linked_file_written_in_place_makes_its_object_corrupt() {
    let ws = Ws::new();
    ws.write("out.txt", b"original\n");
    let linked = ws.store.put_path_linked(Path::new("out.txt")).unwrap();
    ws.chmod("out.txt", 0o644);
    fs::write(ws.path("out.txt"), b"edited!!\n").unwrap();
    assert!(matches!(
        ws.store.verify(&linked),
        Err(StoreError::Corrupt { .. })
    ));
}
