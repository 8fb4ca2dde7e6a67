//! Loading a plugin library and checking its descriptor, in the order the ABI promises: entry
//! symbol, magic, ABI major, ABI minor, struct size, required functions, build flags (then name,
//! version and record kinds). Each refusal is one line naming the plugin, the field, what it has
//! and what the engine expects.
//!
//! The descriptor the host keeps is a copy of the plugin's holding only the fields its
//! `struct_size` covers (later fields read as absent), so a 1.0 or 1.1 plugin's shorter table is
//! never read past its end. A 1.2 plugin's `memory_bound` states its worst-case memory for a
//! config ([`LoadedPlugin::memory_bound`]).
//!
//! Libraries are loaded with `RTLD_NOW | RTLD_LOCAL` (an unresolved symbol is a refusal, not a
//! crash at first call) and never unloaded: once a library is open (its initializers ran), its
//! handle is leaked on purpose, refused or not, so no code or static a plugin handed out can
//! disappear while the process runs (instances, threads a plugin started, the descriptor).

use std::path::{Path, PathBuf};
use std::sync::Mutex;

use tickflow_sdk::abi::{
    self, ABI_MAJOR, ABI_MINOR, BUILD_MUST_MATCH_MASK, Descriptor, EntryFn, MAGIC,
    MEMORY_BOUND_NOT_STATED, STATUS_OK, descriptor_size_for_minor,
};
use tickflow_sdk::records::RecordKind;

/// Longest plugin name or version string accepted.
const MAX_LABEL_BYTES: usize = 256;

/// Why the engine will not use a plugin.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("plugin {plugin}: {field} is {has}, the engine expects {expects}")]
pub struct Refusal {
    /// The sink name and path (`"name" (path)`) or the path alone.
    pub plugin: String,
    pub field: &'static str,
    pub has: String,
    pub expects: String,
}

/// Which optional and required entries a descriptor fills in.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FunctionsPresent {
    pub create: bool,
    pub on_batch: bool,
    pub flush: bool,
    pub on_tick: bool,
    pub stats: bool,
    pub destroy: bool,
    /// ABI 1.2: the plugin states its memory bound.
    pub memory_bound: bool,
}

/// What a plugin says about its worst-case memory for one config (ABI 1.2 `memory_bound`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MemoryBound {
    /// The plugin states this many bytes.
    Stated(u64),
    /// The plugin has no `memory_bound` (ABI 1.0/1.1, or a NULL entry) or states none for this
    /// config.
    NotStated,
    /// `memory_bound` returned this status (the config is invalid, or the plugin failed).
    Failed(abi::Status),
}

/// A plugin whose descriptor passed every check.
#[derive(Clone, Copy, Debug)]
pub struct LoadedPlugin {
    /// Lives as long as the process: the library is never unloaded.
    pub descriptor: &'static Descriptor,
    pub name: &'static str,
    pub version: &'static str,
}

impl LoadedPlugin {
    pub fn functions(&self) -> FunctionsPresent {
        functions_of(self.descriptor)
    }
    pub fn record_kinds(&self) -> u32 {
        self.descriptor.record_kinds
    }
}

fn functions_of(descriptor: &Descriptor) -> FunctionsPresent {
    FunctionsPresent {
        create: descriptor.create.is_some(),
        on_batch: descriptor.on_batch.is_some(),
        flush: descriptor.flush.is_some(),
        on_tick: descriptor.on_tick.is_some(),
        stats: descriptor.stats.is_some(),
        destroy: descriptor.destroy.is_some(),
        memory_bound: descriptor.memory_bound.is_some(),
    }
}

impl LoadedPlugin {
    /// Asks the plugin's `memory_bound` (ABI 1.2) for its worst-case memory with `config_text`
    /// (the TOML of the sink's `config` table, as `create` receives it). No instance is needed.
    pub fn memory_bound(&self, config_text: &str) -> MemoryBound {
        let Some(memory_bound) = self.descriptor.memory_bound else {
            return MemoryBound::NotStated;
        };
        let mut bytes = MEMORY_BOUND_NOT_STATED;
        // SAFETY: the entry comes from a descriptor whose struct_size covers it (the copy holds
        // None otherwise) in a never-unloaded library; the text and `bytes` outlive the call.
        let status = unsafe { memory_bound(config_text.as_ptr(), config_text.len(), &mut bytes) };
        match (status, bytes) {
            (STATUS_OK, MEMORY_BOUND_NOT_STATED) => MemoryBound::NotStated,
            (STATUS_OK, bytes) => MemoryBound::Stated(bytes),
            (status, _) => MemoryBound::Failed(status),
        }
    }
}

/// The names of the kinds in a record-kind mask (`quote, trade`).
pub fn record_kind_names(mask: u32) -> String {
    let names: Vec<&str> = RecordKind::ALL
        .iter()
        .filter(|kind| mask & kind.mask_bit() != 0)
        .map(|kind| kind.name())
        .collect();
    if names.is_empty() {
        "none".to_string()
    } else {
        names.join(", ")
    }
}

/// Describes build flags for a refusal (`0x3 (little-endian, 64-bit)`).
pub fn build_flag_names(flags: u64) -> String {
    let mut names = Vec::new();
    if flags & abi::BUILD_LITTLE_ENDIAN != 0 {
        names.push("little-endian");
    }
    if flags & abi::BUILD_POINTER_64 != 0 {
        names.push("64-bit");
    }
    if flags & abi::BUILD_DEBUG != 0 {
        names.push("debug");
    }
    if flags & abi::BUILD_RUST_SDK != 0 {
        names.push("rust-sdk");
    }
    format!("{flags:#x} ({})", names.join(", "))
}

/// Loads `path` for the sink named `sink_name` and checks its descriptor.
pub fn load(sink_name: &str, path: &Path) -> Result<LoadedPlugin, Refusal> {
    load_labelled(format!("{sink_name:?} ({})", path.display()), path)
}

/// Loads `path` and checks its descriptor (for `tickflow plugin inspect`).
pub fn inspect(path: &Path) -> Result<LoadedPlugin, Refusal> {
    load_labelled(path.display().to_string(), path)
}

fn refusal(
    plugin: &str,
    field: &'static str,
    has: impl Into<String>,
    expects: impl Into<String>,
) -> Refusal {
    Refusal {
        plugin: plugin.to_string(),
        field,
        has: has.into(),
        expects: expects.into(),
    }
}

fn load_labelled(plugin: String, path: &Path) -> Result<LoadedPlugin, Refusal> {
    // A bare file name would make dlopen search the library path; a plugin is always a file.
    let path: PathBuf = if path.components().count() == 1 {
        Path::new(".").join(path)
    } else {
        path.to_path_buf()
    };
    // SAFETY: loading a library runs its initializers. Naming a library in `[[sinks]]` (or to
    // `plugin inspect`) is the operator's statement that it is a tickflow plugin, whose
    // initializers follow the ABI rules (sdk/README.md); that is the trust the ABI rests on.
    // RTLD_NOW resolves every symbol now, so a library referencing a function nothing defines is
    // refused here (dlerror names it) instead of killing the engine at its first call;
    // RTLD_LOCAL keeps its symbols from resolving other plugins' references.
    let opened = unsafe {
        libloading::os::unix::Library::open(
            Some(&path),
            libloading::os::unix::RTLD_NOW | libloading::os::unix::RTLD_LOCAL,
        )
    };
    let library = match opened {
        Ok(library) => library,
        Err(error) => {
            // libloading's message is generic ("dlopen failed"); dlerror's reason is its source.
            let reason = std::error::Error::source(&error)
                .map(|source| source.to_string())
                .unwrap_or_else(|| error.to_string());
            return Err(refusal(
                &plugin,
                "library",
                format!("not loadable ({reason})"),
                "a shared library exporting tickflow_sink_entry_v1 with every symbol resolved",
            ));
        }
    };
    // The library's initializers have run: leak the handle on purpose so it stays loaded for the
    // process lifetime, even when it is refused below (unloading would run its finalizers, and
    // a refused library may have started threads or registered handlers pointing into it). The
    // descriptor, instances and any threads a plugin started point into it too. Loading the same
    // path again reuses the loader's handle, so this leaks at most one handle per library.
    let library: &'static libloading::os::unix::Library = Box::leak(Box::new(library));
    let entry: EntryFn = {
        let symbol_name = format!("{}\0", abi::ENTRY_SYMBOL);
        // SAFETY: the symbol's type is the one the ABI fixes for this versioned name.
        match unsafe { library.get::<EntryFn>(symbol_name.as_bytes()) } {
            Ok(symbol) => *symbol,
            Err(_) => {
                return Err(refusal(
                    &plugin,
                    "entry symbol",
                    format!("absent (no {})", abi::ENTRY_SYMBOL),
                    format!("an exported function {}", abi::ENTRY_SYMBOL),
                ));
            }
        }
    };

    // SAFETY: the entry function takes nothing and returns a pointer (ABI contract).
    let descriptor_ptr = unsafe { entry() };
    if descriptor_ptr.is_null() {
        return Err(refusal(
            &plugin,
            "descriptor",
            "a null pointer",
            "a pointer to a static descriptor",
        ));
    }
    // The header (magic, versions, struct_size: 16 bytes) exists in every version of the ABI,
    // so it is read before anything else; nothing beyond it is read until struct_size is checked.
    // SAFETY: non-null, and the ABI requires at least the 16-byte header behind it.
    let (magic, abi_major, abi_minor, struct_size) = unsafe {
        let header = descriptor_ptr.cast::<u8>();
        (
            header.cast::<u64>().read_unaligned(),
            header.add(8).cast::<u16>().read_unaligned(),
            header.add(10).cast::<u16>().read_unaligned(),
            header.add(12).cast::<u32>().read_unaligned(),
        )
    };
    if magic != MAGIC {
        return Err(refusal(
            &plugin,
            "magic",
            format!("{magic:#018x}"),
            format!("{MAGIC:#018x} (\"TKFLSINK\")"),
        ));
    }
    if abi_major != ABI_MAJOR {
        return Err(refusal(
            &plugin,
            "abi_major",
            abi_major.to_string(),
            ABI_MAJOR.to_string(),
        ));
    }
    if abi_minor > ABI_MINOR {
        return Err(refusal(
            &plugin,
            "abi_minor",
            abi_minor.to_string(),
            format!(
                "at most {ABI_MINOR} (the plugin was built against a newer SDK than this engine)"
            ),
        ));
    }
    // Each minor's table is the previous one with fields appended.
    let expected_size = descriptor_size_for_minor(abi_minor);
    if struct_size < expected_size {
        return Err(refusal(
            &plugin,
            "struct_size",
            format!("{struct_size} bytes"),
            format!("at least {expected_size} bytes for ABI {abi_major}.{abi_minor}"),
        ));
    }
    // SAFETY: struct_size says the plugin provides at least the table of the minor it claims,
    // which lives as long as the (never unloaded) library; only `struct_size` bytes are read.
    let descriptor = unsafe { covered_copy(descriptor_ptr, struct_size) };
    let functions = functions_of(descriptor);
    let missing: Vec<&str> = [
        ("create", functions.create),
        ("on_batch", functions.on_batch),
        ("destroy", functions.destroy),
    ]
    .iter()
    .filter(|(_, present)| !present)
    .map(|(name, _)| *name)
    .collect();
    if !missing.is_empty() {
        return Err(refusal(
            &plugin,
            "required functions",
            format!("missing {}", missing.join(", ")),
            "create, on_batch and destroy present",
        ));
    }
    let host_flags = abi::native_build_flags();
    if descriptor.build_flags & BUILD_MUST_MATCH_MASK != host_flags & BUILD_MUST_MATCH_MASK {
        return Err(refusal(
            &plugin,
            "build_flags",
            build_flag_names(descriptor.build_flags),
            format!(
                "{:#x} in the low byte ({})",
                host_flags & BUILD_MUST_MATCH_MASK,
                build_flag_names(host_flags & BUILD_MUST_MATCH_MASK)
            ),
        ));
    }
    let name = label(&plugin, "name", descriptor.name)?;
    let version = label(&plugin, "version", descriptor.version)?;
    // A kind exists from the minor that added it: a plugin claiming an older minor cannot ask
    // for a newer kind (a 1.0–1.2 plugin never sees `VenueStatus`).
    let known_kinds = RecordKind::ALL
        .iter()
        .filter(|kind| abi_minor >= kind_added_in_minor(**kind))
        .fold(0u32, |mask, kind| mask | kind.mask_bit());
    if descriptor.record_kinds == 0 || descriptor.record_kinds & !known_kinds != 0 {
        return Err(refusal(
            &plugin,
            "record_kinds",
            format!("{:#x}", descriptor.record_kinds),
            format!(
                "a non-empty subset of {known_kinds:#x} ({})",
                record_kind_names(known_kinds)
            ),
        ));
    }
    Ok(LoadedPlugin {
        descriptor,
        name,
        version,
    })
}

/// Copies of plugin descriptors, one per descriptor address (so per library): loading a library
/// again (check-config, then start) reuses its copy, and the copies live as long as the process,
/// like the libraries.
static DESCRIPTOR_COPIES: Mutex<Vec<(usize, &'static Descriptor)>> = Mutex::new(Vec::new());

/// The plugin's descriptor with only the bytes its `struct_size` covers; every field beyond reads
/// as zero (absent functions), so a shorter (older) table is never read past its end.
///
/// # Safety
/// `descriptor_ptr` points at `struct_size` readable bytes that stay unchanged for the process.
unsafe fn covered_copy(descriptor_ptr: *const Descriptor, struct_size: u32) -> &'static Descriptor {
    let mut copies = DESCRIPTOR_COPIES
        .lock()
        .unwrap_or_else(|poison| poison.into_inner());
    let address = descriptor_ptr as usize;
    if let Some((_, copy)) = copies.iter().find(|(known, _)| *known == address) {
        return copy;
    }
    let covered = (struct_size as usize).min(size_of::<Descriptor>());
    let mut copy = std::mem::MaybeUninit::<Descriptor>::zeroed();
    // SAFETY: `covered` bytes are readable at the source (caller) and writable in `copy`; an
    // all-zero Descriptor is valid (null pointers, None functions, zero integers), and the
    // copied prefix holds the plugin's own valid values.
    let copy: &'static Descriptor = unsafe {
        std::ptr::copy_nonoverlapping(
            descriptor_ptr.cast::<u8>(),
            copy.as_mut_ptr().cast::<u8>(),
            covered,
        );
        Box::leak(Box::new(copy.assume_init()))
    };
    copies.push((address, copy));
    copy
}

/// Reads a `(ptr, len)` string of the descriptor.
fn label(plugin: &str, field: &'static str, text: abi::StrRef) -> Result<&'static str, Refusal> {
    if text.len == 0 || text.ptr.is_null() || text.len > MAX_LABEL_BYTES {
        return Err(refusal(
            plugin,
            field,
            format!("{} bytes", text.len),
            format!("1 to {MAX_LABEL_BYTES} bytes of UTF-8"),
        ));
    }
    // SAFETY: the descriptor promises `len` readable bytes in the never-unloaded library.
    let bytes: &'static [u8] = unsafe { std::slice::from_raw_parts(text.ptr, text.len) };
    std::str::from_utf8(bytes).map_err(|_| refusal(plugin, field, "not UTF-8", "UTF-8 text"))
}

/// The ABI minor version that added `kind`.
fn kind_added_in_minor(kind: RecordKind) -> u16 {
    match kind {
        RecordKind::VenueStatus => 3,
        _ => 0,
    }
}
