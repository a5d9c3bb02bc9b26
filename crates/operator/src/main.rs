//! `buildpolicy-operator`: the controller and its offline tools in one binary.

mod admin;
mod cli;
mod offline;
mod run;

use clap::Parser;

#[tokio::main]
async fn main() -> std::process::ExitCode {
    let cli = cli::Cli::parse();
    match cli.command {
        cli::Command::Run(args) => run::run(args).await,
        cli::Command::Crdgen => {
            print!("{}", buildpolicy_api::crd_yaml());
            std::process::ExitCode::SUCCESS
        }
        cli::Command::Render(args) => offline::render(&args),
        cli::Command::Check(args) => offline::check(&args),
    }
}
