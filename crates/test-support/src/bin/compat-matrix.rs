//! Renders the compatibility matrix that `tests/compat.rs` recorded under
//! `target/compat-matrix/` into a markdown document's generated section.
//!
//! ```text
//! compat-matrix --print            the table
//! compat-matrix --check README.md  fail when README.md's table differs
//! compat-matrix --write README.md  replace README.md's table
//! ```

use std::process::ExitCode;

use buildpolicy_test_support::matrix::{matrix_dir, read_rows, render, splice};

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let (mode, file) = match args.as_slice() {
        [mode] if mode == "--print" => (mode.as_str(), None),
        [mode, file] if mode == "--check" || mode == "--write" => (mode.as_str(), Some(file)),
        _ => {
            eprintln!("usage: compat-matrix --print | --check FILE | --write FILE");
            return ExitCode::from(2);
        }
    };
    let rows = match read_rows(&matrix_dir()) {
        Ok(rows) if rows.is_empty() => {
            eprintln!(
                "no rows in {}: run the compat tests first (cargo nextest run --test compat)",
                matrix_dir().display()
            );
            return ExitCode::FAILURE;
        }
        Ok(rows) => rows,
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::FAILURE;
        }
    };
    let table = render(&rows);
    let Some(file) = file else {
        print!("{table}");
        return ExitCode::SUCCESS;
    };
    let document = match std::fs::read_to_string(file) {
        Ok(text) => text,
        Err(e) => {
            eprintln!("{file}: {e}");
            return ExitCode::FAILURE;
        }
    };
    let spliced = match splice(&document, &table) {
        Ok(text) => text,
        Err(e) => {
            eprintln!("{file}: {e}");
            return ExitCode::FAILURE;
        }
    };
    if mode == "--write" {
        if let Err(e) = std::fs::write(file, spliced) {
            eprintln!("{file}: {e}");
            return ExitCode::FAILURE;
        }
        return ExitCode::SUCCESS;
    }
    if spliced == document {
        println!(
            "{file}: the compatibility table matches the {} rows recorded",
            rows.len()
        );
        ExitCode::SUCCESS
    } else {
        eprintln!(
            "{file}: the compatibility table differs from what the compat tests recorded in {}:\n{table}\nrun: cargo run -q -p buildpolicy-test-support --bin compat-matrix -- --write {file}",
            matrix_dir().display()
        );
        ExitCode::FAILURE
    }
}
