//! `strata journal inspect | dump | verify` against real journal directories, clean,
//! damaged and torn.

use std::path::{Path, PathBuf};

use strata_journal::{
    BatchBuilder, FsyncPolicy, Journal, JournalConfig, JournalOptions, StorageClass,
};

use crate::common::strata;

/// Writes stream `seg` (2 partitions, small segments) and stream `kv` (rocksdb class).
fn build(dir: &Path) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let journal = Journal::open(JournalOptions::new(
            dir.to_path_buf(),
            JournalConfig::default(),
            prometheus::Registry::new(),
        ))
        .unwrap();
        let mut c = journal.stream_config("seg", 2);
        c.segment.segment_bytes = 4096;
        c.segment.index_interval_bytes = 256;
        c.fsync = FsyncPolicy::Never;
        let seg = journal.create_stream(c).await.unwrap();
        let mut c = journal.stream_config("kv", 1);
        c.class = StorageClass::Rocksdb;
        let kv = journal.create_stream(c).await.unwrap();
        for i in 0..300u32 {
            let mut b = BatchBuilder::new();
            for r in 0..2 {
                let v = format!("value-{i}-{r}");
                b.push(
                    1_700_000_000_000 + i64::from(i),
                    Some(b"key"),
                    Some(v.as_bytes()),
                    &[("h", Some(b"1"))],
                );
            }
            seg.append(i % 2, b.build().unwrap()).await.unwrap();
        }
        let mut b = BatchBuilder::new();
        b.push(5, None, Some(&[0u8, 1, 2, 255]), &[]);
        kv.append(0, b.build().unwrap()).await.unwrap();
        drop((seg, kv));
        journal.close().await.unwrap();
    });
}

fn run(dir: &Path, args: &[&str]) -> (i32, String) {
    let out = strata(dir).args(args).output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    (
        out.status.code().unwrap_or(-1),
        stdout + &String::from_utf8_lossy(&out.stderr),
    )
}

fn segments(dir: &Path, partition: u32) -> Vec<PathBuf> {
    let pdir = dir.join("streams/seg").join(partition.to_string());
    let mut v: Vec<PathBuf> = std::fs::read_dir(pdir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "log"))
        .collect();
    v.sort();
    v
}

#[test]
fn inspect_lists_streams_partitions_and_segments() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("journal");
    build(&dir);
    // A node data directory (holding journal/) works as well as the journal directory.
    let (code, out) = run(
        tmp.path(),
        &["journal", "inspect", tmp.path().to_str().unwrap()],
    );
    assert_eq!(code, 0, "{out}");
    assert!(
        out.contains("stream seg  class=segment partitions=2"),
        "{out}"
    );
    assert!(out.contains("stream kv  class=rocksdb"), "{out}");
    assert!(out.contains("partition 1  offsets [0, 300)"), "{out}");
    assert!(
        out.contains("2023-11-14T22:13:20"),
        "time ranges are shown: {out}"
    );
    let (code, out) = run(
        tmp.path(),
        &["journal", "inspect", dir.to_str().unwrap(), "--json"],
    );
    assert_eq!(code, 0, "{out}");
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    let seg = v
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["stream"] == "seg")
        .unwrap();
    let segs = seg["partitions"][0]["segments"].as_array().unwrap();
    assert!(segs.len() > 2);
    let records: u64 = segs.iter().map(|s| s["records"].as_u64().unwrap()).sum();
    assert_eq!(records, 300);
}

#[test]
fn dump_prints_records_with_previews() {
    let tmp = tempfile::tempdir().unwrap();
    build(tmp.path());
    let d = tmp.path().to_str().unwrap();
    let args = [
        "journal",
        "dump",
        d,
        "--stream",
        "seg",
        "--partition",
        "1",
        "--from",
        "5",
        "--count",
        "3",
        "--json",
    ];
    let (code, out) = run(tmp.path(), &args);
    assert_eq!(code, 0, "{out}");
    let lines: Vec<serde_json::Value> = out
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 3);
    assert_eq!(lines[0]["offset"], 5);
    assert_eq!(lines[0]["value"], "\"value-5-1\"");
    assert_eq!(lines[2]["offset"], 7);
    assert_eq!(lines[0]["headers"][0]["key"], "h");
    let (code, out) = run(tmp.path(), &["journal", "dump", d, "--stream", "kv"]);
    assert_eq!(code, 0, "{out}");
    assert!(
        out.contains("value=0x000102ff"),
        "binary values print as hex: {out}"
    );
    let (code, out) = run(tmp.path(), &["journal", "dump", d, "--stream", "nope"]);
    assert_eq!(code, 1);
    assert!(out.contains("unknown stream"), "{out}");
}

#[test]
fn verify_is_clean_then_names_damaged_files_and_positions() {
    let tmp = tempfile::tempdir().unwrap();
    build(tmp.path());
    let d = tmp.path().to_str().unwrap();
    let (code, out) = run(tmp.path(), &["journal", "verify", d]);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains(" 0 error(s), 0 warning(s)"), "{out}");

    // A torn tail on the last segment is a warning (recovery cuts it), not an error.
    let last = segments(tmp.path(), 0).pop().unwrap();
    let mut bytes = std::fs::read(&last).unwrap();
    bytes.extend_from_slice(&[7u8; 30]);
    std::fs::write(&last, &bytes).unwrap();
    let (code, out) = run(tmp.path(), &["journal", "verify", d]);
    assert_eq!(code, 0, "{out}");
    assert!(
        out.contains("warning:") && out.contains(&last.display().to_string()),
        "{out}"
    );

    // Flipped bytes in a sealed segment: an error naming the file and the batch position.
    let victim = segments(tmp.path(), 1)[1].clone();
    let mut bytes = std::fs::read(&victim).unwrap();
    let at = bytes.len() / 2;
    bytes[at] ^= 0x10;
    std::fs::write(&victim, &bytes).unwrap();
    // And a broken index entry in another sealed segment.
    let index = segments(tmp.path(), 0)[0].with_extension("index");
    let mut idx = std::fs::read(&index).unwrap();
    let n = idx.len();
    idx[n - 1] ^= 0x01;
    std::fs::write(&index, &idx).unwrap();

    let (code, out) = run(tmp.path(), &["journal", "verify", d]);
    assert_eq!(code, 1, "{out}");
    let line = out
        .lines()
        .find(|l| l.starts_with("error:") && l.contains(&victim.display().to_string()))
        .unwrap_or_else(|| panic!("no error names {}: {out}", victim.display()));
    let pos: u64 = line
        .split(" at byte ")
        .nth(1)
        .unwrap()
        .split(':')
        .next()
        .unwrap()
        .parse()
        .unwrap();
    assert!(pos <= at as u64 && pos > 0, "{line}");
    assert!(
        out.lines()
            .any(|l| l.starts_with("error:") && l.contains(&index.display().to_string())),
        "{out}"
    );
    let (code, out) = run(tmp.path(), &["journal", "verify", d, "--json"]);
    assert_eq!(code, 1);
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["clean"], false);
}
