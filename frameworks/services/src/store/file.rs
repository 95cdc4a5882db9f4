//! [`FileStore`]: services' state in one redb file (`--work-dir/services.redb`). Every
//! `apply` is one write transaction, committed with an fsync before it returns; redb's
//! copy-on-write pages mean a crash leaves the previous commit or this one, never a mix.

use std::path::Path;
use std::sync::Arc;

use redb::{Database, ReadableDatabase, ReadableTable, TableDefinition};

use super::{Loader, StoreError, Table, Write, storage, writes};
use crate::core::{Recovered, StoreOp};

fn definition(table: Table) -> TableDefinition<'static, &'static str, &'static [u8]> {
    TableDefinition::new(table.name())
}

/// The embedded store.
#[derive(Debug, Clone)]
pub struct FileStore {
    /// Shared with the blocking threads commits run on, so that an fsync never stalls a
    /// tokio worker.
    db: Arc<Database>,
}

impl FileStore {
    /// Opens the file, creating it and its tables when new. redb locks the file: a second
    /// process opening it gets an error.
    pub fn open(path: &Path) -> Result<FileStore, StoreError> {
        let open = |reason: String| StoreError::Open { path: path.display().to_string(), reason };
        let db = Database::create(path).map_err(|e| open(e.to_string()))?;
        let txn = db.begin_write().map_err(storage)?;
        for table in Table::ALL {
            txn.open_table(definition(table)).map_err(storage)?;
        }
        txn.commit().map_err(storage)?;
        Ok(FileStore { db: Arc::new(db) })
    }

    pub async fn load(&self) -> Result<Recovered, StoreError> {
        let db = self.db.clone();
        tokio::task::spawn_blocking(move || load(&db)).await.map_err(storage)?
    }

    pub async fn apply(&self, batch: &[StoreOp]) -> Result<(), StoreError> {
        // Encoded here, so that only the commit itself runs on the blocking thread.
        let writes = writes(batch)?;
        let db = self.db.clone();
        tokio::task::spawn_blocking(move || commit(&db, writes)).await.map_err(storage)?
    }
}

fn load(db: &Database) -> Result<Recovered, StoreError> {
    let txn = db.begin_read().map_err(storage)?;
    let mut loader = Loader::default();
    for table in Table::ALL {
        for entry in txn.open_table(definition(table)).map_err(storage)?.iter().map_err(storage)? {
            let (key, value) = entry.map_err(storage)?;
            loader.record(table, key.value(), value.value())?;
        }
    }
    Ok(loader.finish())
}

fn commit(db: &Database, writes: Vec<Write>) -> Result<(), StoreError> {
    let txn = db.begin_write().map_err(storage)?;
    {
        let mut tables = Vec::with_capacity(Table::ALL.len());
        for table in Table::ALL {
            tables.push(txn.open_table(definition(table)).map_err(storage)?);
        }
        let index = |table: Table| Table::ALL.iter().position(|t| *t == table).expect("every table is in ALL");
        for write in &writes {
            match write {
                Write::Put(table, key, value) => {
                    tables[index(*table)].insert(key.as_str(), value.as_slice()).map_err(storage)?;
                }
                Write::Delete(table, key) => {
                    tables[index(*table)].remove(key.as_str()).map_err(storage)?;
                }
                Write::DeletePrefix(table, prefix) => {
                    let table = &mut tables[index(*table)];
                    let mut doomed = Vec::new();
                    for entry in table.range(prefix.as_str()..).map_err(storage)? {
                        let (key, _) = entry.map_err(storage)?;
                        if !key.value().starts_with(prefix.as_str()) {
                            break;
                        }
                        doomed.push(key.value().to_owned());
                    }
                    for key in doomed {
                        table.remove(key.as_str()).map_err(storage)?;
                    }
                }
            }
        }
    }
    txn.commit().map_err(storage)
}
