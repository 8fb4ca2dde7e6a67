//! `tickflow check-config FILE`: validate a config and print its memory budget.

use std::io::Write;

pub fn run(file: &std::path::Path) -> anyhow::Result<u8> {
    let config = tickflow::config::Config::from_file(file)?;
    let budget = tickflow::budget::memory_budget(&config);
    let mut stdout = std::io::stdout().lock();
    let written = writeln!(stdout, "config {} is valid", file.display())
        .and_then(|()| write!(stdout, "{budget}"))
        .and_then(|()| stdout.flush());
    match written {
        // A closed pipe (`| head`) is the reader's choice, not an error of ours.
        Err(error) if error.kind() != std::io::ErrorKind::BrokenPipe => Err(error.into()),
        _ => Ok(0),
    }
}
