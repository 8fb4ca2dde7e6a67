//! The `export_sink!` glue, called through the descriptor exactly as the host calls it: config
//! parsed with serde, records passed through, panics caught and turned into a status.

use std::ffi::c_void;

use tickflow_sdk::abi::*;
use tickflow_sdk::records::{Quote, RecordKind, SymbolId, Trade};
use tickflow_sdk::{Batch, HostHandle, Sink, SinkError};

#[derive(Debug, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct ProbeConfig {
    panic_on_batch: bool,
    #[serde(default)]
    fail_on_batch: bool,
    /// States this bound (MiB) through `memory_bound`; 0 is refused as invalid.
    #[serde(default)]
    memory_bound_mib: Option<u64>,
}

struct ProbeSink {
    config: ProbeConfig,
    quotes_seen: u64,
    symbol_sum: u64,
}

impl Sink for ProbeSink {
    type Config = ProbeConfig;
    const NAME: &'static str = "probe";
    const VERSION: &'static str = "9.9.9";
    const RECORD_KINDS: &'static [RecordKind] = &[RecordKind::Quote, RecordKind::Gap];

    fn create(_host: HostHandle, config: ProbeConfig) -> Result<ProbeSink, SinkError> {
        Ok(ProbeSink {
            config,
            quotes_seen: 0,
            symbol_sum: 0,
        })
    }

    fn on_batch(&mut self, batch: Batch<'_>) -> Result<(), SinkError> {
        if self.config.panic_on_batch {
            panic!("probe panics on purpose");
        }
        if self.config.fail_on_batch {
            return Err(SinkError::failed("probe fails on purpose"));
        }
        if let Batch::Quotes(quotes) = batch {
            self.quotes_seen += quotes.len() as u64;
            self.symbol_sum += quotes
                .iter()
                .map(|quote| u64::from(quote.symbol_id.0))
                .sum::<u64>();
        }
        Ok(())
    }

    fn stats(&self) -> PluginStats {
        PluginStats {
            records_written: self.quotes_seen,
            bytes_written: self.symbol_sum,
            ..PluginStats::default()
        }
    }

    fn memory_bound_bytes(config: &ProbeConfig) -> Result<Option<u64>, SinkError> {
        match config.memory_bound_mib {
            Some(0) => Err(SinkError::config("memory_bound_mib must be at least 1")),
            Some(mib) => Ok(Some(mib << 20)),
            None => Ok(None),
        }
    }
}

/// A sink that keeps the trait's default `memory_bound_bytes`.
struct Unbounded;

impl Sink for Unbounded {
    type Config = tickflow_sdk::NoConfig;
    const NAME: &'static str = "unbounded";
    const VERSION: &'static str = "1.0.0";
    const RECORD_KINDS: &'static [RecordKind] = &[RecordKind::Quote];

    fn create(_host: HostHandle, _config: tickflow_sdk::NoConfig) -> Result<Unbounded, SinkError> {
        Ok(Unbounded)
    }
    fn on_batch(&mut self, _batch: Batch<'_>) -> Result<(), SinkError> {
        Ok(())
    }
}

tickflow_sdk::export_sink!(ProbeSink);

fn descriptor() -> &'static Descriptor {
    // SAFETY: the macro's entry returns a pointer to a static descriptor.
    unsafe { &*tickflow_sink_entry_v1() }
}

fn create(config: &str) -> Result<*mut c_void, Status> {
    let mut instance: *mut c_void = std::ptr::null_mut();
    let create = descriptor().create.expect("create is exported");
    // SAFETY: a null host is allowed (callbacks become no-ops); the config is valid for the call.
    let status = unsafe {
        create(
            std::ptr::null(),
            config.as_ptr(),
            config.len(),
            &mut instance,
        )
    };
    if status == STATUS_OK {
        Ok(instance)
    } else {
        Err(status)
    }
}

fn destroy(instance: *mut c_void) {
    // SAFETY: `instance` came from create and is destroyed once.
    unsafe { descriptor().destroy.expect("destroy is exported")(instance) }
}

#[test]
fn descriptor_describes_the_sink() {
    let descriptor = descriptor();
    assert_eq!(descriptor.magic, MAGIC);
    assert_eq!(
        (descriptor.abi_major, descriptor.abi_minor),
        (ABI_MAJOR, ABI_MINOR)
    );
    assert_eq!(descriptor.struct_size, DESCRIPTOR_SIZE_V1_2);
    assert!(
        descriptor.memory_bound.is_some(),
        "export_sink! wires memory_bound"
    );
    assert_eq!(descriptor.record_kinds, 0b10001);
    assert_eq!(descriptor.build_flags & BUILD_RUST_SDK, BUILD_RUST_SDK);
    // SAFETY: the name points at a static str.
    let name = unsafe { std::slice::from_raw_parts(descriptor.name.ptr, descriptor.name.len) };
    assert_eq!(name, b"probe");
}

#[test]
fn records_pass_through_and_stats_come_back() {
    let instance = create("panic_on_batch = false").expect("valid config creates");
    let quotes: Vec<Quote> = (1..=5)
        .map(|symbol| Quote {
            symbol_id: SymbolId(symbol),
            ..Quote::default()
        })
        .collect();
    let (kind, records, len) = Batch::Quotes(&quotes).as_raw();
    let on_batch = descriptor().on_batch.expect("on_batch is exported");
    // SAFETY: `records` holds `len` quotes for the call; the instance is live.
    assert_eq!(unsafe { on_batch(instance, kind, records, len) }, STATUS_OK);
    let mut stats = PluginStats {
        struct_size: std::mem::size_of::<PluginStats>() as u32,
        ..PluginStats::default()
    };
    // SAFETY: live instance, whole stats table.
    assert_eq!(
        unsafe { descriptor().stats.expect("stats is exported")(instance, &mut stats) },
        STATUS_OK
    );
    assert_eq!((stats.records_written, stats.bytes_written), (5, 15));
    // A shorter (older) stats table: only the fields that fit are written.
    let mut short = [0u64; 3];
    short[0] = 16; // struct_size = 16 in the low 32 bits
    // SAFETY: `short` is 24 writable bytes; struct_size says 16, so nothing past it is written.
    let status = unsafe {
        descriptor().stats.expect("stats is exported")(instance, short.as_mut_ptr().cast())
    };
    assert_eq!(status, STATUS_OK);
    assert_eq!(short[1], 5);
    assert_eq!(short[2], 0, "nothing written beyond struct_size");
    destroy(instance);
}

#[test]
fn panics_become_a_status() {
    let instance = create("panic_on_batch = true").expect("valid config creates");
    let trades = [Trade::default(); 2];
    let (kind, records, len) = Batch::Trades(&trades).as_raw();
    let on_batch = descriptor().on_batch.expect("on_batch is exported");
    // SAFETY: as above.
    assert_eq!(
        unsafe { on_batch(instance, kind, records, len) },
        STATUS_PANIC
    );
    // The instance is still usable (the host would restart it, but nothing is corrupt).
    // SAFETY: as above.
    assert_eq!(
        unsafe { on_batch(instance, kind, records, len) },
        STATUS_PANIC
    );
    destroy(instance);
}

#[test]
fn errors_and_bad_input_become_statuses() {
    let instance = create("panic_on_batch = false\nfail_on_batch = true").expect("valid config");
    let on_batch = descriptor().on_batch.expect("on_batch is exported");
    // SAFETY: an empty batch with a null pointer is allowed.
    assert_eq!(
        unsafe { on_batch(instance, 0, std::ptr::null(), 0) },
        STATUS_ERROR
    );
    // SAFETY: as above; kind 99 does not exist.
    assert_eq!(
        unsafe { on_batch(instance, 99, std::ptr::null(), 0) },
        STATUS_UNSUPPORTED_KIND
    );
    // SAFETY: a null pointer with len > 0 is a broken call the glue must refuse, not read.
    assert_eq!(
        unsafe { on_batch(instance, 0, std::ptr::null(), 3) },
        STATUS_INVALID_ARGUMENT
    );
    destroy(instance);
    assert_eq!(
        create("panic_on_batch = \"yes\"").err(),
        Some(STATUS_INVALID_CONFIG)
    );
    assert_eq!(create("unknown_key = 1").err(), Some(STATUS_INVALID_CONFIG));
    assert_eq!(
        create("").err(),
        Some(STATUS_INVALID_CONFIG),
        "panic_on_batch is required"
    );
}

/// Calls a descriptor's `memory_bound` as the host does.
fn memory_bound_of(memory_bound: MemoryBoundFn, config: &str) -> (Status, u64) {
    let mut bytes = 0u64;
    // SAFETY: the config is valid for the call and `bytes` is writable.
    let status = unsafe { memory_bound(config.as_ptr(), config.len(), &mut bytes) };
    (status, bytes)
}

#[test]
fn memory_bound_states_the_sinks_bound_from_its_config() {
    let memory_bound = descriptor().memory_bound.expect("memory_bound is exported");
    assert_eq!(
        memory_bound_of(
            memory_bound,
            "panic_on_batch = false\nmemory_bound_mib = 48"
        ),
        (STATUS_OK, 48 << 20)
    );
    assert_eq!(
        memory_bound_of(memory_bound, "panic_on_batch = false"),
        (STATUS_OK, MEMORY_BOUND_NOT_STATED)
    );
    // The sink's own check and a config serde refuses are both an invalid config.
    assert_eq!(
        memory_bound_of(memory_bound, "panic_on_batch = false\nmemory_bound_mib = 0").0,
        STATUS_INVALID_CONFIG
    );
    assert_eq!(
        memory_bound_of(memory_bound, "no_such_key = 1").0,
        STATUS_INVALID_CONFIG
    );
    // SAFETY: a null out pointer is refused before anything is written.
    let status = unsafe { memory_bound(b"".as_ptr(), 0, std::ptr::null_mut()) };
    assert_eq!(status, STATUS_INVALID_ARGUMENT);
}

#[test]
fn the_default_memory_bound_states_none() {
    let descriptor = tickflow_sdk::sink::descriptor::<Unbounded>();
    let memory_bound = descriptor.memory_bound.expect("memory_bound is exported");
    assert_eq!(
        memory_bound_of(memory_bound, ""),
        (STATUS_OK, MEMORY_BOUND_NOT_STATED)
    );
}
