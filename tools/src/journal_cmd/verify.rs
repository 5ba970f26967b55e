//! `strata journal verify`: every batch CRC and every index entry; exit 1 on any error.

use std::path::Path;
use std::process::ExitCode;

use serde_json::json;
use strata_journal::offline::{self, Severity};

/// Verifies the journal and prints each problem with its file and position.
pub fn run(dir: &Path, json: bool) -> anyhow::Result<ExitCode> {
    let dir = offline::journal_dir(dir)?;
    let report = offline::verify(&dir)?;
    let label = |s: Severity| match s {
        Severity::Error => "error",
        Severity::Warning => "warning",
    };
    if json {
        let problems: Vec<_> = report
            .problems
            .iter()
            .map(|p| json!({ "severity": label(p.severity), "file": p.file, "position": p.position, "message": p.message }))
            .collect();
        let out = json!({
            "clean": report.is_clean(),
            "batches": report.batches,
            "bytes": report.bytes,
            "index_entries": report.index_entries,
            "problems": problems,
        });
        println!("{}", serde_json::to_string_pretty(&out)?);
    } else {
        for p in &report.problems {
            println!(
                "{}: {} at byte {}: {}",
                label(p.severity),
                p.file.display(),
                p.position,
                p.message
            );
        }
        let errors = report
            .problems
            .iter()
            .filter(|p| p.severity == Severity::Error)
            .count();
        println!(
            "checked {} batches ({} bytes) and {} index entries: {errors} error(s), {} warning(s)",
            report.batches,
            report.bytes,
            report.index_entries,
            report.problems.len() - errors
        );
    }
    Ok(if report.is_clean() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}
