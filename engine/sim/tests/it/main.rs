//! The simulated venues over real sockets: each venue's instrument-list REST endpoint (format,
//! contents, trading status), listing churn, REST faults, and WebSocket data for every listing
//! in the venue's spelling (and none once delisted).

mod churn;
mod client;
mod rest;
mod ws;
