//! The NATS sink against real `nats-server` processes (JetStream, 2.9): the sink runs through its
//! Rust API with a real ABI host table; the tests read the stream back with their own client and
//! decode it with `tickflow_formats::wire`.

mod cluster;
mod outage;
mod publish;
mod support;
