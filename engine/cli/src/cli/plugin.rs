//! `tickflow plugin ...`: inspect sink plugins.

use tickflow_host::loader;

#[derive(clap::Subcommand, Debug)]
pub enum PluginCommand {
    /// Print a plugin's descriptor, or the exact reason the engine would refuse it.
    Inspect { path: std::path::PathBuf },
}

pub fn run(command: PluginCommand) -> anyhow::Result<u8> {
    match command {
        PluginCommand::Inspect { path } => inspect(&path),
    }
}

fn inspect(path: &std::path::Path) -> anyhow::Result<u8> {
    let plugin = match loader::inspect(path) {
        Ok(plugin) => plugin,
        Err(refusal) => {
            eprintln!("refused: {refusal}");
            return Ok(1);
        }
    };
    let descriptor = plugin.descriptor;
    let functions = plugin.functions();
    let present = |present: bool| if present { "present" } else { "absent" };
    println!("plugin       {}", path.display());
    println!("name         {}", plugin.name);
    println!("version      {}", plugin.version);
    println!(
        "abi          {}.{} (engine {}.{})",
        descriptor.abi_major,
        descriptor.abi_minor,
        tickflow_sdk::abi::ABI_MAJOR,
        tickflow_sdk::abi::ABI_MINOR
    );
    println!("struct_size  {} bytes", descriptor.struct_size);
    println!(
        "build_flags  {}",
        loader::build_flag_names(descriptor.build_flags)
    );
    println!(
        "record_kinds {:#x} ({})",
        descriptor.record_kinds,
        loader::record_kind_names(descriptor.record_kinds)
    );
    println!("create       {}", present(functions.create));
    println!("on_batch     {}", present(functions.on_batch));
    println!("flush        {}", present(functions.flush));
    println!("on_tick      {}", present(functions.on_tick));
    println!("stats        {}", present(functions.stats));
    println!("destroy      {}", present(functions.destroy));
    println!("accepted: the engine would load this plugin");
    Ok(0)
}
