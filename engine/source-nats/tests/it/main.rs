//! The NATS source against a real `nats-server` (JetStream, started by each test on a loopback
//! port chosen by the OS, killed on drop): records published with the wire codec reach the
//! shards (spreads), duplicates and redeliveries are applied once, a collector's silence
//! becomes `GAP_DISCONNECT`.

mod cluster;
mod server;
mod source;
