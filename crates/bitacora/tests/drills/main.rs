//! Failure drills (issue 7), the fast versions of the scripts in `drills/`: each spawns the
//! real `bitacora serve` binary, breaks something the way production does (`kill -9`, a full
//! disk, hostile clients), and checks the promises: nothing acknowledged is lost, `bitacora
//! verify` passes, errors are clear JSON, memory stays bounded, service recovers.
//!
//! `drills/README.md` lists the longer scripts (20 kills, PostgreSQL restarts) and what each
//! proves. Server logs are silent unless `TEST_LOG` is set.

#[path = "../common/mod.rs"]
mod common;

mod disk_full;
mod kill9;
mod pg_restart;
mod slow_clients;
mod support;
