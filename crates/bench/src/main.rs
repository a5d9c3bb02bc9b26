//! `buildpolicy-bench`: the operator benchmark behind `hack/bench.sh`, and
//! the Markdown tables of its results.
//!
//! ```text
//! buildpolicy-bench run --sizes 100 --out DIR --work-dir DIR --log-dir DIR \
//!     --cluster-dir DIR --operator BIN [--gate --max-requests-per-policy 10.5] ...
//! buildpolicy-bench report docs/bench/results.json [--markdown results.md] [--update-doc BENCHMARKS.md]
//! ```
//!
//! `run` writes results.json and results.md into `--out` after each N and
//! prints the tables at the end; with `--gate` it exits 1 when the operator
//! sent a write request in steady state, a policy did not become Ready, or
//! converging took more write requests per policy than
//! `--max-requests-per-policy`. hack/bench/plot.py draws the plot from the
//! same results.json.

use std::process::ExitCode;

use anyhow::Context as _;
use clap::Parser as _;

mod admission;
mod baseline;
mod cli;
mod cluster;
mod drift;
mod gate;
mod logging;
mod operator;
mod perf;
mod procfs;
mod pyfmt;
mod pyjson;
mod reconciles;
mod report;
mod requests;
mod results;
mod run;
mod scene;
mod tracker;
mod watches;

use cli::{Cli, Command, ReportArgs, RunArgs};
use results::Results;

fn main() -> ExitCode {
    let cli = Cli::parse();
    let outcome = match cli.command {
        Command::Run(args) => tokio::runtime::Runtime::new()
            .context("starting the tokio runtime")
            .and_then(|runtime| runtime.block_on(run(&args))),
        Command::Report(args) => report(&args).map(|()| ExitCode::SUCCESS),
    };
    outcome.unwrap_or_else(|e| {
        eprintln!("[bench] ERROR: {e:#}");
        ExitCode::FAILURE
    })
}

async fn run(args: &RunArgs) -> anyhow::Result<ExitCode> {
    let results = run::run(args).await?;
    println!("{}", report::markdown(&results));
    if !args.gate {
        return Ok(ExitCode::SUCCESS);
    }
    let verdict = gate::evaluate(&results, args.max_requests_per_policy);
    if !verdict.failures.is_empty() {
        for failure in &verdict.failures {
            eprintln!("{failure}");
        }
        return Ok(ExitCode::FAILURE);
    }
    for line in gate::passed(&verdict, args.max_requests_per_policy) {
        println!("{line}");
    }
    Ok(ExitCode::SUCCESS)
}

fn report(args: &ReportArgs) -> anyhow::Result<()> {
    let path = &args.results;
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    let results: Results =
        pyjson::from_str(&text).with_context(|| format!("reading {}", path.display()))?;
    if let Some(doc) = &args.update_doc {
        report::update_doc_file(&results, doc)?;
    }
    if let Some(markdown) = &args.markdown {
        std::fs::write(markdown, report::markdown(&results))
            .with_context(|| format!("writing {}", markdown.display()))?;
    }
    if args.markdown.is_none() && args.update_doc.is_none() {
        print!("{}", report::markdown(&results));
    }
    Ok(())
}
