//! Command-line definitions of `tablectl` (clap). Parsing only; `commands` does the work.

use clap::{Args, Parser, Subcommand};
use std::path::PathBuf;

/// Operate batchstore tables from the shell: write and read partitions, inspect history, roll
/// back, tag versions, pin and collect garbage.
///
/// Partitions are given with -p, repeated for multi-key partitions: `-p ds=20161031 -p region=eu`,
/// or bare values in the table's key order: `-p 20161031`.
#[derive(Debug, Parser)]
#[command(name = "tablectl", version, about, long_about = None)]
pub struct Cli {
    /// Metastore address (default: $BATCHSTORE_ENDPOINT, else http://127.0.0.1:50051 when a
    /// metastore listens there, else a local one in $BATCHSTORE_HOME or ~/.local/share/batchstore,
    /// started on demand and stopped when idle).
    #[arg(long, global = true, env = "BATCHSTORE_ENDPOINT")]
    pub endpoint: Option<String>,

    /// Bearer token proving who you are (default: $BATCHSTORE_TOKEN, else the first line of
    /// $BATCHSTORE_TOKEN_FILE). Prefer the variables: a --token shows in the process list.
    #[arg(long, global = true, hide_env_values = true)]
    pub token: Option<String>,

    /// A file holding the token (its first line).
    #[arg(long, global = true)]
    pub token_file: Option<PathBuf>,

    /// CA certificates (PEM) that signed the metastore's TLS certificate, for https://
    /// endpoints (default: $BATCHSTORE_CA_FILE; the system's roots are trusted too).
    #[arg(long, global = true)]
    pub ca_file: Option<PathBuf>,

    /// A client certificate (PEM) for a metastore that requires one (default:
    /// $BATCHSTORE_CLIENT_CERT); needs --client-key.
    #[arg(long, global = true, requires = "client_key")]
    pub client_cert: Option<PathBuf>,

    /// The client certificate's private key (PEM) (default: $BATCHSTORE_CLIENT_KEY).
    #[arg(long, global = true, requires = "client_cert")]
    pub client_key: Option<PathBuf>,

    /// Print one JSON document instead of tables.
    #[arg(long, global = true)]
    pub json: bool,

    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Create, list or drop namespaces.
    #[command(subcommand)]
    Namespace(NamespaceCommand),
    /// Create, list, describe or drop tables.
    #[command(subcommand)]
    Table(TableCommand),
    /// Write a .parquet or .csv file as a new version of a partition.
    Write(WriteArgs),
    /// Read partitions: print the first rows, or save them with -o.
    Read(ReadArgs),
    /// List the exact Parquet files of a selection (with sizes, rows, partition values, batch
    /// ids and the schema), for Spark, DuckDB or any engine that reads Parquet itself. Files are
    /// pinned against garbage collection only while tablectl runs: pin them for longer with
    /// `tablectl lease acquire`.
    Manifest(SelectionArgs),
    /// List a table's partitions with their current batch.
    Partitions(TableArg),
    /// Show a partition's history, newest first.
    History(PartitionArgs),
    /// Point a partition back at an earlier version or batch (recorded as a new version).
    Rollback(RollbackArgs),
    /// Name a batch with a tag (pins it), list or delete tags.
    #[command(subcommand)]
    Tag(TagCommand),
    /// Show a batch and where it stands (pending, committed, aborted, abandoned): how to
    /// settle a write whose commit outcome was reported unknown.
    Batch {
        /// The batch id (as printed by write, history or an error).
        batch_id: String,
    },
    /// Show a batch's lineage: the batches it was computed from (given with `write --input`)
    /// and the batches computed from it.
    Lineage {
        /// The batch id.
        batch_id: String,
    },
    /// Give a principal or group read, write or admin on a namespace (`*`: every namespace):
    /// `tablectl grant write sales alice`, `tablectl grant read sales group:analysts`.
    /// Replaces the grantee's earlier grant there. Needs admin on the namespace.
    Grant {
        /// read (resolve, list, history), write (also begin, commit, rollback, tags) or admin
        /// (also create and drop tables, grants).
        permission: String,
        /// A namespace, or `*` for every namespace.
        namespace: String,
        /// A principal, or `group:NAME`.
        grantee: String,
    },
    /// Take a grant away: `tablectl revoke sales alice`.
    Revoke {
        namespace: String,
        /// A principal, or `group:NAME`.
        grantee: String,
    },
    /// List grants, of one namespace or of every namespace you administer.
    Grants { namespace: Option<String> },
    /// The audit trail: every call, with principal, method, target and outcome, oldest first.
    Audit(AuditArgs),
    /// Show who the metastore takes you for, and your groups.
    Whoami,
    /// Pin a selection against garbage collection under a name (a job's lease), renew it or
    /// release it.
    #[command(subcommand)]
    Lease(LeaseCommand),
    /// List live leases: who pins what, until when (named ones; --reads adds reads' own).
    Leases {
        /// NAMESPACE or NAMESPACE.TABLE (default: every namespace you may read).
        scope: Option<String>,
        /// Include the leases reads in progress hold.
        #[arg(long)]
        reads: bool,
    },
    /// Delete the files of batches nobody may read any more (beyond retention, aborted or
    /// abandoned writes, tables dropped past their grace period), exactly and resumably; or
    /// with --orphans, find what the warehouse holds that no batch owns.
    ///
    /// Never touches a current, tagged or leased batch. An interrupted run resumes when run
    /// again. Needs admin on the namespace (on every namespace without --table).
    Gc(GcArgs),
}

#[derive(Debug, Args)]
pub struct GcArgs {
    /// Only this NAMESPACE or NAMESPACE.TABLE (default: the whole catalog).
    #[arg(long, value_name = "SCOPE")]
    pub table: Option<String>,
    /// Show what a run would delete; change nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// List everything under the warehouse that is not part of a known batch (nothing is
    /// deleted unless --delete is given too).
    #[arg(long, conflicts_with_all = ["table", "dry_run"])]
    pub orphans: bool,
    /// With --orphans: delete the orphans found (each is checked again first).
    #[arg(long, requires = "orphans")]
    pub delete: bool,
    /// With --orphans: list at most this many.
    #[arg(long, default_value_t = 1000, requires = "orphans")]
    pub limit: usize,
}

#[derive(Debug, Subcommand)]
pub enum LeaseCommand {
    /// Pin a selection (default: the current version of every partition) under NAME:
    /// `tablectl lease acquire sales.items training-run-42 --ttl 7d`.
    Acquire {
        /// NAMESPACE.TABLE
        table: String,
        /// The lease's name, unique among the table's live leases.
        name: String,
        /// Partitions to pin (repeat -p for each key); none = every partition.
        #[arg(short = 'p', long = "partition")]
        partition: Vec<String>,
        #[arg(long, group = "selector")]
        version: Option<i64>,
        #[arg(long, group = "selector", value_name = "ID")]
        batch: Option<String>,
        #[arg(long, group = "selector", value_name = "NAME")]
        tag: Option<String>,
        #[arg(long, group = "selector", value_name = "TIME")]
        as_of: Option<String>,
        /// How long it lasts unless renewed: 7d, 36h, 90m (default: the metastore's, 1 day).
        #[arg(long, value_name = "DURATION")]
        ttl: Option<String>,
    },
    /// Extend a lease to TTL from now.
    Renew {
        /// NAMESPACE.TABLE
        table: String,
        name: String,
        #[arg(long, value_name = "DURATION")]
        ttl: Option<String>,
    },
    /// Release a lease (its batches are no longer pinned by it).
    Release {
        /// NAMESPACE.TABLE
        table: String,
        name: String,
    },
}

#[derive(Debug, Args)]
pub struct AuditArgs {
    /// Only events at or after this time (RFC 3339, a date, or microseconds since the epoch).
    #[arg(long)]
    pub since: Option<String>,
    /// Only calls by this principal.
    #[arg(long)]
    pub principal: Option<String>,
    /// Only calls on this namespace, or NAMESPACE.TABLE for one table.
    #[arg(long)]
    pub table: Option<String>,
    /// Show at most this many events.
    #[arg(long)]
    pub limit: Option<usize>,
}

#[derive(Debug, Subcommand)]
pub enum NamespaceCommand {
    /// Create a namespace.
    Create {
        name: String,
        /// Succeed when it exists already.
        #[arg(long)]
        if_not_exists: bool,
    },
    /// List namespaces.
    List,
    /// Drop an empty namespace.
    Drop { name: String },
}

#[derive(Debug, Subcommand)]
pub enum TableCommand {
    /// Create a table: `tablectl table create sales.items --partition-key ds:date`.
    Create {
        /// NAMESPACE.TABLE
        table: String,
        /// Partition key as NAME or NAME:TYPE (string, int64, date); repeat for several.
        #[arg(long = "partition-key", short = 'k')]
        partition_keys: Vec<String>,
        /// Succeed when it exists already with the same keys.
        #[arg(long)]
        if_not_exists: bool,
        /// What later writes may change in the schema: strict (nothing) or additive (add
        /// nullable columns, leave out nullable ones, widen types).
        #[arg(long, value_name = "POLICY")]
        schema_policy: Option<String>,
    },
    /// List tables, in one namespace or all.
    List {
        namespace: Option<String>,
        /// List dropped tables that can still be undropped, and until when.
        #[arg(long)]
        dropped: bool,
    },
    /// Show a table's keys, columns, retention and location.
    Describe { table: String },
    /// Drop a table. It can be undropped until garbage collection frees it, at the earliest
    /// after the metastore's grace period (7 days by default).
    Drop { table: String },
    /// Bring back the most recently dropped table of this name, with its data and history.
    Undrop { table: String },
    /// Set how many old versions garbage collection keeps, for a table or (given a namespace)
    /// as the namespace's default: `tablectl table set-retention sales.items --keep-versions 5
    /// --keep-for 30d`. A version is kept when any rule keeps it; the current version, tagged
    /// and leased batches are always kept. Without rules (--clear), every version is kept.
    SetRetention {
        /// NAMESPACE.TABLE, or NAMESPACE for its default.
        target: String,
        /// Keep the last N versions of each partition (1 = only the current one).
        #[arg(long, value_name = "N")]
        keep_versions: Option<i64>,
        /// Keep every version that was current within this long (7d, 36h, 90m), so as-of
        /// reads of that window keep working.
        #[arg(long, value_name = "DURATION")]
        keep_for: Option<String>,
        /// Remove the rules (keep every version, or fall back to the namespace's default).
        #[arg(long, conflicts_with_all = ["keep_versions", "keep_for"])]
        clear: bool,
    },
    /// Show a table's schema (its columns now), or with --history every schema it has had and
    /// what changed.
    Schema {
        /// NAMESPACE.TABLE
        table: String,
        #[arg(long)]
        history: bool,
    },
    /// Set what later writes may change in a table's schema: `strict` (writes match it) or
    /// `additive` (add nullable columns, leave out nullable ones, widen int8→…→int64 and
    /// float32→float64; never drop, rename or narrow). Reads of batches written under an older
    /// schema see it as the current one: added columns are null, widened ones widened.
    SetSchemaPolicy {
        /// NAMESPACE.TABLE
        table: String,
        /// strict or additive
        policy: String,
    },
}

#[derive(Debug, Args)]
pub struct TableArg {
    /// NAMESPACE.TABLE
    pub table: String,
}

#[derive(Debug, Args)]
pub struct PartitionArgs {
    /// NAMESPACE.TABLE
    pub table: String,
    /// Partition: KEY=VALUE, or a bare VALUE matched to the keys in order; repeat for several keys.
    #[arg(short = 'p', long = "partition")]
    pub partition: Vec<String>,
}

#[derive(Debug, Args)]
pub struct WriteArgs {
    #[command(flatten)]
    pub target: PartitionArgs,
    /// The data: a .parquet or .csv file (CSV with a header row; types are inferred).
    pub file: PathBuf,
    /// Refuse the write unless the partition's current batch is ID ("-" = never written).
    #[arg(long, value_name = "ID")]
    pub expect_batch: Option<String>,
    /// A message for the history.
    #[arg(short = 'm', long, default_value = "")]
    pub message: String,
    /// A batch this data was computed from (lineage; repeat for each). Each must be committed.
    #[arg(long = "input", value_name = "ID")]
    pub inputs: Vec<String>,
    /// Most rows per Parquet file in the batch.
    #[arg(long, default_value_t = 1 << 20)]
    pub rows_per_file: usize,
}

/// What a read or a manifest selects: partitions, a version selector, columns, a filter.
#[derive(Debug, Args)]
pub struct SelectionArgs {
    /// NAMESPACE.TABLE
    pub table: String,
    /// Partition to read (repeat -p for each key); none = every partition.
    #[arg(short = 'p', long = "partition")]
    pub partition: Vec<String>,
    /// Read this version of the partition.
    #[arg(long, group = "selector")]
    pub version: Option<i64>,
    /// Read this batch.
    #[arg(long, group = "selector", value_name = "ID")]
    pub batch: Option<String>,
    /// Read the batch this tag names.
    #[arg(long, group = "selector", value_name = "NAME")]
    pub tag: Option<String>,
    /// Read the partitions as they were at TIME (RFC 3339, "YYYY-MM-DD HH:MM:SS" UTC, or a date).
    #[arg(long, group = "selector", value_name = "TIME")]
    pub as_of: Option<String>,
    /// Only these columns: a,b,c
    #[arg(long, value_delimiter = ',')]
    pub columns: Option<Vec<String>>,
    /// Only partitions whose keys satisfy CONDITION, resolved by the metastore: "ds >= 2024-01-01",
    /// "region in (eu, us)" (=, !=, <, <=, >, >=, in; compared as the key's type). Repeat: all must hold.
    #[arg(short = 'w', long = "where", value_name = "CONDITION")]
    pub filter: Vec<String>,
}

#[derive(Debug, Args)]
pub struct ReadArgs {
    #[command(flatten)]
    pub selection: SelectionArgs,
    /// Save to FILE.parquet or FILE.csv instead of printing.
    #[arg(short = 'o', long, value_name = "FILE")]
    pub output: Option<PathBuf>,
    /// Rows to print when not saving.
    #[arg(long, default_value_t = 20)]
    pub limit: usize,
}

#[derive(Debug, Args)]
pub struct RollbackArgs {
    #[command(flatten)]
    pub target: PartitionArgs,
    /// Return to this version.
    #[arg(long, group = "to", required = true)]
    pub to_version: Option<i64>,
    /// Return to this batch.
    #[arg(long, group = "to", required = true, value_name = "ID")]
    pub to_batch: Option<String>,
    /// Refuse unless the partition's current batch is ID.
    #[arg(long, value_name = "ID")]
    pub expect_batch: Option<String>,
    /// A message for the history.
    #[arg(short = 'm', long, default_value = "")]
    pub message: String,
}

#[derive(Debug, Subcommand)]
pub enum TagCommand {
    /// Tag a partition's version (-p … [--version N], default current) or a batch (--batch ID).
    Create {
        /// NAMESPACE.TABLE
        table: String,
        /// Tag name: letters, digits, '.', '_', '-'.
        name: String,
        #[arg(short = 'p', long = "partition")]
        partition: Vec<String>,
        #[arg(long, conflicts_with = "batch")]
        version: Option<i64>,
        #[arg(long, value_name = "ID")]
        batch: Option<String>,
    },
    /// List a table's tags.
    List { table: String },
    /// Delete a tag (the batch stays).
    Delete { table: String, name: String },
}
