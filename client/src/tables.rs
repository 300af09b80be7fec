//! Namespaces and tables: create, describe, list, drop; a table's schema policy and history.

use crate::client::{Client, all_pages, missing};
use crate::error::Result;
use crate::types::{PartitionKey, SchemaVersionInfo, TableInfo, TableName, from_micros};
use crate::wire::{columns, key_to_pb, table_info, table_ref};
use batchstore_proto::v1 as pb;

impl Client {
    /// Creates a namespace; returns false when it already existed and `if_not_exists` is set.
    ///
    /// # Errors
    /// `InvalidArgument` for a bad name; `AlreadyExists` unless `if_not_exists`.
    pub async fn create_namespace(&self, name: &str, if_not_exists: bool) -> Result<bool> {
        let response = self
            .rpc
            .clone()
            .create_namespace(pb::CreateNamespaceRequest {
                name: name.into(),
                if_not_exists,
            })
            .await?;
        Ok(response.into_inner().created)
    }

    /// Every namespace, by name.
    ///
    /// # Errors
    /// When the metastore cannot be reached.
    pub async fn list_namespaces(&self) -> Result<Vec<(String, chrono::DateTime<chrono::Utc>)>> {
        all_pages(|page_token| {
            let mut rpc = self.rpc.clone();
            async move {
                let page = rpc
                    .list_namespaces(pb::ListNamespacesRequest {
                        page_size: 0,
                        page_token,
                    })
                    .await?
                    .into_inner();
                let items = page
                    .namespaces
                    .into_iter()
                    .map(|n| (n.name, from_micros(n.created_at_micros)))
                    .collect();
                Ok((items, page.next_page_token))
            }
        })
        .await
    }

    /// Drops an empty namespace.
    ///
    /// # Errors
    /// `NotFound`; `FailedPrecondition` while it has tables.
    pub async fn drop_namespace(&self, name: &str) -> Result<()> {
        self.rpc
            .clone()
            .drop_namespace(pb::DropNamespaceRequest { name: name.into() })
            .await?;
        Ok(())
    }

    /// Creates a table with partition keys and, optionally, its schema.
    ///
    /// # Errors
    /// `NotFound` for a missing namespace; `AlreadyExists`; `InvalidArgument`.
    pub async fn create_table(
        &self,
        table: &TableName,
        keys: &[PartitionKey],
        schema: Option<&arrow_schema::Schema>,
        if_not_exists: bool,
    ) -> Result<(TableInfo, bool)> {
        let response = self
            .rpc
            .clone()
            .create_table(pb::CreateTableRequest {
                table: Some(table_ref(table)),
                partition_keys: keys.iter().map(key_to_pb).collect(),
                arrow_schema: schema.map(crate::schema::encode).unwrap_or_default(),
                if_not_exists,
                schema_policy: String::new(),
            })
            .await?
            .into_inner();
        let info = table_info(response.table.ok_or_else(|| missing("table"))?)?;
        Ok((info, response.created))
    }

    /// Describes a table.
    ///
    /// # Errors
    /// `NotFound` naming the missing namespace or table.
    pub async fn get_table(&self, table: &TableName) -> Result<TableInfo> {
        let response = self
            .rpc
            .clone()
            .get_table(pb::GetTableRequest {
                table: Some(table_ref(table)),
            })
            .await?
            .into_inner();
        table_info(response.table.ok_or_else(|| missing("table"))?)
    }

    /// Tables, in one namespace or all.
    ///
    /// # Errors
    /// `NotFound` for a missing namespace.
    pub async fn list_tables(&self, namespace: Option<&str>) -> Result<Vec<TableInfo>> {
        let namespace = namespace.unwrap_or_default().to_owned();
        all_pages(|page_token| {
            let mut rpc = self.rpc.clone();
            let namespace = namespace.clone();
            async move {
                let page = rpc
                    .list_tables(pb::ListTablesRequest {
                        namespace,
                        page_size: 0,
                        page_token,
                        dropped: false,
                    })
                    .await?
                    .into_inner();
                let items = page
                    .tables
                    .into_iter()
                    .map(table_info)
                    .collect::<Result<_>>()?;
                Ok((items, page.next_page_token))
            }
        })
        .await
    }

    /// Drops a table. It can be undropped ([`Client::undrop_table`]) until garbage collection
    /// frees its storage, at the earliest after the metastore's grace period.
    ///
    /// # Errors
    /// `NotFound`.
    pub async fn drop_table(&self, table: &TableName) -> Result<()> {
        self.rpc
            .clone()
            .drop_table(pb::DropTableRequest {
                table: Some(table_ref(table)),
            })
            .await?;
        Ok(())
    }

    /// Sets what later writes may change in a table's schema: "strict" (nothing) or
    /// "additive" (add nullable columns, leave out nullable ones, widen types).
    ///
    /// # Errors
    /// `InvalidArgument` for another policy; `NotFound`; `PermissionDenied` without admin.
    pub async fn set_schema_policy(&self, table: &TableName, policy: &str) -> Result<TableInfo> {
        let response = self
            .rpc
            .clone()
            .set_schema_policy(pb::SetSchemaPolicyRequest {
                table: Some(table_ref(table)),
                schema_policy: policy.to_owned(),
            })
            .await?
            .into_inner();
        table_info(response.table.ok_or_else(|| missing("table"))?)
    }

    /// Every schema a table has had, oldest first (the last is its schema now).
    ///
    /// # Errors
    /// `NotFound`.
    pub async fn schema_history(&self, table: &TableName) -> Result<Vec<SchemaVersionInfo>> {
        let response = self
            .rpc
            .clone()
            .get_schema_history(pb::GetSchemaHistoryRequest {
                table: Some(table_ref(table)),
            })
            .await?
            .into_inner();
        response
            .versions
            .into_iter()
            .map(|v| {
                Ok(SchemaVersionInfo {
                    version: v.version,
                    columns: columns(&v.arrow_schema)?,
                    changed_at: from_micros(v.changed_at_micros),
                    change: v.change,
                })
            })
            .collect()
    }
}
