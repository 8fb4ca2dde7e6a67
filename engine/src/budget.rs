//! Worst-case memory budget computed from the configuration (being written).
use crate::config::Config;
#[derive(Debug)]
pub struct MemoryBudget { pub total_bytes: usize }
impl MemoryBudget { pub fn from_config(_config: &Config) -> MemoryBudget { MemoryBudget { total_bytes: 0 } } }
impl std::fmt::Display for MemoryBudget { fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result { write!(f, "memory budget: {} bytes", self.total_bytes) } }
