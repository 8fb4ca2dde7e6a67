//! `tickflow check-config FILE`: validate a config and print its memory budget.

pub fn run(file: &std::path::Path) -> anyhow::Result<u8> {
    let config = tickflow::config::Config::from_file(file)?;
    let budget = tickflow::budget::MemoryBudget::from_config(&config);
    println!("config {} is valid", file.display());
    println!("{budget}");
    Ok(0)
}
