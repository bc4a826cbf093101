//! The `loadgen` command: parse, run (or merge, or only `--check` the flags), report, and
//! map the outcome to the exit status: 0 passed (a merge: every shard passed), 1 data
//! errors / lost data / connection failures / a failed, missing or cut-short shard / a
//! file that cannot be written or read, 2 usage errors.

#![forbid(unsafe_code)]

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::Parser;
use hdrhistogram::Histogram;
use loadgen::cli::{Cli, Command, OutputArgs};
use loadgen::{export, Error, Report};

fn main() -> ExitCode {
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("warn")).init();
    // Every connection is a descriptor: use what the administrator allows (ulimit -Hn).
    loadgen::raise_open_files_limit();
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
        Some(Command::Merge(m)) => OutputFiles::open(&m.output).and_then(|files| {
            let merged = loadgen::merge::merge_files(&m.files);
            files.finish(merged, &m.output)
        }),
        None if cli.run.check => {
            return match loadgen::cli::check_args(std::env::args_os()) {
                Ok(line) => {
                    println!("{line}");
                    ExitCode::SUCCESS
                }
                Err(e) => {
                    eprintln!("loadgen: error: {e}");
                    ExitCode::from(2)
                }
            };
        }
        None => {
            let output = cli.run.output.clone();
            // Usage errors first (exit 2), then the output files (before any traffic), then
            // the run, which opens --hlog before it starts.
            cli.run
                .into_config()
                .map_err(Error::from)
                .and_then(|cfg| OutputFiles::open(&output).map(|files| (cfg, files)))
                .and_then(|(cfg, files)| files.finish(loadgen::run(&cfg), &output))
        }
    };
    match outcome {
        Ok(report) if report.verdict() != Some(false) => ExitCode::SUCCESS,
        Ok(_) => ExitCode::from(1),
        Err(e) => {
            eprintln!("loadgen: error: {e}");
            ExitCode::from(e.exit_code() as u8)
        }
    }
}

/// One `--hgrm` or `--plot` file, opened (and given a write of zero bytes) before the run
/// so that a bad path (a directory, a missing directory, no permission, a file that opens
/// but refuses writes) fails at once rather than after the measured time.
/// It is not truncated until the report is written: a failed run leaves an existing file
/// as it was, and removes one it created.
struct OutputFile {
    path: PathBuf,
    file: File,
    created: bool,
}

impl OutputFile {
    fn open(path: &Path) -> Result<Self, Error> {
        let created = !path.exists();
        let file = OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(false)
            .open(path)
            .and_then(|file| loadgen::probe_write(&file).map(|()| file))
            .map_err(|source| output_err(path, source))?;
        Ok(OutputFile {
            path: path.to_path_buf(),
            file,
            created,
        })
    }

    fn write(mut self, text: &str) -> Result<(), Error> {
        self.file
            .set_len(0)
            .and_then(|()| self.file.write_all(text.as_bytes()))
            .map_err(|source| output_err(&self.path, source))
    }

    /// No report to write: leave no empty file behind.
    fn discard(self) {
        if self.created {
            let _ = std::fs::remove_file(&self.path);
        }
    }
}

fn output_err(path: &Path, source: std::io::Error) -> Error {
    Error::Output {
        path: path.to_path_buf(),
        source,
    }
}

/// The report's files, opened up front.
struct OutputFiles {
    hgrm: Option<OutputFile>,
    plot: Option<OutputFile>,
}

impl OutputFiles {
    fn open(output: &OutputArgs) -> Result<Self, Error> {
        let hgrm = output.hgrm.as_deref().map(OutputFile::open).transpose()?;
        let plot = match output.plot.as_deref().map(OutputFile::open).transpose() {
            Ok(plot) => plot,
            Err(e) => {
                hgrm.into_iter().for_each(OutputFile::discard);
                return Err(e);
            }
        };
        Ok(OutputFiles { hgrm, plot })
    }

    /// Prints the report and writes the files, or discards them when there is no report.
    fn finish(self, report: Result<Report, Error>, output: &OutputArgs) -> Result<Report, Error> {
        match report {
            Ok(mut report) => {
                report.outputs = loadgen::Outputs {
                    json: output.json,
                    hgrm: output.hgrm.clone(),
                    plot: output.plot.clone(),
                };
                self.emit(&report, output).map(|()| report)
            }
            Err(e) => {
                self.hgrm.into_iter().for_each(OutputFile::discard);
                self.plot.into_iter().for_each(OutputFile::discard);
                Err(e)
            }
        }
    }

    /// Prints the report (stdout: text, or JSON alone) and writes the requested files.
    fn emit(self, report: &Report, output: &OutputArgs) -> Result<(), Error> {
        if output.json {
            println!(
                "{}",
                serde_json::to_string_pretty(&report.to_json()).expect("a Value serialises")
            );
            // The text report carries this warning; with --json, stdout stays pure JSON.
            if let Some(warning) = report.schedule_warning() {
                eprintln!("WARNING {warning}");
                eprintln!("        {}", loadgen::report::SCHEDULE_HINT);
            }
        } else {
            print!("{}", report.to_text());
        }
        if let Some(file) = self.hgrm {
            file.write(&export::hgrm(&report.histogram))?;
        }
        if let Some(file) = self.plot {
            file.write(&export::svg(
                &report.histogram,
                &title(report, &report.histogram),
            ))?;
        }
        Ok(())
    }
}

fn title(report: &Report, h: &Histogram<u64>) -> String {
    match &report.config {
        Some(s) => format!(
            "{} {} x{} {}B: {} messages",
            s.protocol,
            s.target,
            s.connections,
            s.size,
            h.len()
        ),
        None => format!("merged: {} messages", h.len()),
    }
}
