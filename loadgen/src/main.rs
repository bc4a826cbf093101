//! The `loadgen` command: parse, run (or merge), report, and map the outcome to the exit
//! status: 0 passed, 1 data errors / lost data / connection failures, 2 usage errors.

use std::path::Path;
use std::process::ExitCode;

use clap::Parser;
use hdrhistogram::Histogram;
use loadgen::config::{Cli, Command, OutputArgs};
use loadgen::{export, Error, Report};

fn main() -> ExitCode {
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("warn")).init();
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            // --help and --version are not errors.
            let code = if e.use_stderr() { 2 } else { 0 };
            let _ = e.print();
            return ExitCode::from(code);
        }
    };
    let outcome = match cli.command {
        Some(Command::Merge(m)) => loadgen::merge::merge_files(&m.files).map(|r| (r, m.output)),
        None => {
            let output = cli.run.output.clone();
            cli.run
                .into_config()
                .map_err(Error::from)
                .and_then(|cfg| loadgen::run(&cfg))
                .map(|r| (r, output))
        }
    };
    match outcome.and_then(|(report, output)| emit(&report, &output).map(|()| report)) {
        Ok(report) if report.passed() => ExitCode::SUCCESS,
        Ok(_) => ExitCode::from(1),
        Err(e) => {
            eprintln!("loadgen: error: {e}");
            ExitCode::from(e.exit_code() as u8)
        }
    }
}

/// Prints the report and writes the requested files.
fn emit(report: &Report, output: &OutputArgs) -> Result<(), Error> {
    if output.json {
        println!(
            "{}",
            serde_json::to_string_pretty(&report.to_json()).expect("a Value serialises")
        );
    } else {
        print!("{}", report.to_text());
    }
    if let Some(path) = &output.hgrm {
        write(path, &export::hgrm(&report.histogram))?;
    }
    if let Some(path) = &output.plot {
        write(
            path,
            &export::svg(&report.histogram, &title(report, &report.histogram)),
        )?;
    }
    Ok(())
}

fn title(report: &Report, h: &Histogram<u64>) -> String {
    match &report.settings {
        Some(s) => format!(
            "{:?} {} x{} {}B: {} messages",
            s.protocol,
            s.target,
            s.connections,
            s.size,
            h.len()
        ),
        None => format!("merged: {} messages", h.len()),
    }
}

fn write(path: &Path, text: &str) -> Result<(), Error> {
    std::fs::write(path, text).map_err(|source| Error::Output {
        path: path.to_path_buf(),
        source,
    })
}
