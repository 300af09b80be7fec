//! Command-line definitions of `tablectl` (clap). Parsing only; `commands` does the work.

use clap::{Args, Parser, Subcommand};
use std::path::PathBuf;

/// Operate batchstore tables from the shell: write and read partitions, inspect history, roll
/// back, tag versions.
///
/// Partitions are given with -p, repeated for multi-key partitions: `-p ds=20161031 -p region=eu`,
/// or bare values in the table's key order: `-p 20161031`.
#[derive(Debug, Parser)]
#[command(name = "tablectl", version, about, long_about = None)]
pub struct Cli {
    /// Metastore address (default: $BATCHSTORE_ENDPOINT, else http://127.0.0.1:50051).
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
    },
    /// List tables, in one namespace or all.
    List { namespace: Option<String> },
    /// Show a table's keys, columns and location.
    Describe { table: String },
    /// Drop a table (its data stays until garbage collection).
    Drop { table: String },
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

#[derive(Debug, Args)]
pub struct ReadArgs {
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
