//! Black-box tests: the real server on port 0 with a temporary store, driven over HTTP through
//! `bitacora-client` (and, for the command line, through the `bitacora` executable).

#[path = "../common/mod.rs"]
mod common;

mod archive_s3;
mod bad_inputs;
mod capture;
mod cli;
mod delivery;
mod delivery_kinds;
mod demo;
mod export;
mod ingest;
mod integrity;
mod lifecycle;
mod ops;
mod origin;
mod pagination;
mod read;
mod search;
mod tail;
mod tlog;
mod witness;
