//! The full verified mirror as the toolkit's [`Directory`]: what `grant-node app` uses unless
//! asked for light look-ups, for an application that wants the whole registry replayed and
//! checked, not single names proven. The mirror lives in its own SQLite file.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use grant_toolkit::{Answer, ClientError, Directory, DirectoryMaker};

use super::mirror::Mirror;
use super::source::Source;
use crate::carte::{KeyAt, KeyResolver};
use crate::clock::Clock;
use crate::name::Name;
use crate::registry::NameRecord;
use crate::store::Local;

struct MirrorDirectory(Arc<Mirror>);

fn registry(e: impl std::fmt::Display) -> ClientError {
    ClientError::Registry(e.to_string())
}

impl MirrorDirectory {
    /// Brings the mirror up to date first when a fresh answer is asked for.
    async fn sync_if(&self, fresh: bool) -> Result<(), ClientError> {
        if fresh {
            self.0.sync().await.map_err(registry)?;
        }
        Ok(())
    }
}

impl Directory for MirrorDirectory {
    fn record<'a>(&'a self, name: &'a Name, fresh: bool) -> Answer<'a, Option<NameRecord>> {
        Box::pin(async move {
            self.sync_if(fresh).await?;
            self.0.record_or_sync(name).await.map_err(registry)
        })
    }

    fn key_at<'a>(&'a self, name: &'a Name, time: u64, fresh: bool) -> Answer<'a, KeyAt> {
        Box::pin(async move {
            self.sync_if(fresh).await?;
            Ok(self.0.keys().key_at(name, time))
        })
    }
}

/// A full verified mirror of the registry kept in the SQLite file at `path`.
pub fn mirror_at(path: &Path) -> DirectoryMaker {
    let path: PathBuf = path.to_owned();
    Arc::new(move |url, key, http| {
        let db = Local::open(&path).map_err(|e| ClientError::Storage(e.to_string()))?;
        let source = Source::remote_with(url, http.clone());
        let mirror = Mirror::new(db, *key, source, Clock::system())
            .map_err(|e| ClientError::Storage(e.to_string()))?;
        Ok(Arc::new(MirrorDirectory(Arc::new(mirror))) as Arc<dyn Directory>)
    })
}
