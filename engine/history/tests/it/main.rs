//! `tickflow-history` against real history: files written by the real Parquet sink
//! (`tickflow-parquet`, driven in process with a detached host), then read back.

mod read;
mod recent;
