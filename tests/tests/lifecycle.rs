//! Lifecycle: retention, leases, garbage collection, dropped tables and orphans, against the
//! real metastore on SQLite and PostgreSQL, on local disk and on S3 (moto).
//!
//! What is checked is the promise, from outside: after GC, every batch that is current,
//! tagged, leased (by a job or by a read in progress) or pending within its lease still has
//! all its files and reads exactly; every other batch beyond retention has none left, is
//! refused with when and why, and stays in history marked expired. A run killed at any point
//! converges when run again; a dry run changes nothing; orphans are found exactly and deleted
//! only when asked.

// The S3 scenario helpers are used by lifecycle_s3.rs only.
#[allow(dead_code)]
#[path = "lifecycle/scenarios.rs"]
mod scenarios;

use batchstore_tests::on_both_backends;
use scenarios::*;

on_both_backends!(
    gc_deletes_exactly_what_retention_allows,
    orphans_are_found_exactly,
    a_read_in_progress_is_never_collected,
    client_clock_skew_changes_nothing,
    gc_killed_at_random_converges,
    dropped_tables_come_back_until_purged,
    gc_runs_on_a_schedule,
    keep_for_keeps_the_as_of_window,
    tablectl_runs_the_lifecycle,
    schema_evolves_additively,
    gc_goes_on_past_a_batch_it_cannot_delete,
    named_leases_are_bounded_per_holder,
    lease_listings_are_paged,
);
