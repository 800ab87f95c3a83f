//! Blob storage for uploads and artifacts: a local directory by default, any
//! S3-compatible store by URL (`s3://bucket/prefix`, credentials from the
//! usual `AWS_*` environment variables).

use std::sync::Arc;

use bytes::Bytes;
use object_store::local::LocalFileSystem;
use object_store::path::Path;
use object_store::{ObjectStore, PutPayload};

#[derive(Debug, thiserror::Error)]
pub enum BlobError {
    #[error("invalid blob store location {location:?}: {reason}")]
    Location { location: String, reason: String },
    #[error("object {path:?} not found")]
    NotFound { path: String },
    #[error("blob store error: {0}")]
    Store(#[from] object_store::Error),
}

#[derive(Clone)]
pub struct BlobStore {
    store: Arc<dyn ObjectStore>,
    location: String,
}

impl std::fmt::Debug for BlobStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BlobStore").field("location", &self.location).finish()
    }
}

impl BlobStore {
    /// `location` is a directory path, a `file://` URL or an object store URL.
    pub fn open(location: &str) -> Result<Self, BlobError> {
        let invalid = |reason: String| BlobError::Location {
            location: location.to_string(),
            reason,
        };
        let store: Arc<dyn ObjectStore> = match location.split_once("://") {
            None | Some(("file", _)) => {
                let dir = location.strip_prefix("file://").unwrap_or(location);
                std::fs::create_dir_all(dir).map_err(|e| invalid(e.to_string()))?;
                Arc::new(LocalFileSystem::new_with_prefix(dir)?)
            }
            Some(_) => {
                let url = url::Url::parse(location).map_err(|e| invalid(e.to_string()))?;
                // object_store's config keys are the lower-cased AWS_* names.
                let options = std::env::vars()
                    .filter(|(key, _)| key.starts_with("AWS_"))
                    .map(|(key, value)| (key.to_ascii_lowercase(), value));
                let (store, prefix) = object_store::parse_url_opts(&url, options)?;
                if !prefix.as_ref().is_empty() {
                    Arc::new(object_store::prefix::PrefixStore::new(store, prefix))
                } else {
                    Arc::from(store)
                }
            }
        };
        Ok(BlobStore {
            store,
            location: location.to_string(),
        })
    }

    pub fn location(&self) -> &str {
        &self.location
    }

    pub async fn put(&self, path: &str, bytes: Bytes) -> Result<(), BlobError> {
        self.store
            .put(&Path::from(path), PutPayload::from_bytes(bytes))
            .await?;
        Ok(())
    }

    pub async fn get(&self, path: &str) -> Result<Bytes, BlobError> {
        match self.store.get(&Path::from(path)).await {
            Ok(object) => Ok(object.bytes().await?),
            Err(object_store::Error::NotFound { .. }) => Err(BlobError::NotFound {
                path: path.to_string(),
            }),
            Err(other) => Err(other.into()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn local_store_round_trips_and_reports_missing_objects() {
        let dir = std::env::temp_dir().join(format!("scanfleet-blob-{}", uuid::Uuid::new_v4()));
        let store = BlobStore::open(dir.to_str().unwrap()).unwrap();
        store.put("a/b.bin", Bytes::from_static(b"hello")).await.unwrap();
        assert_eq!(store.get("a/b.bin").await.unwrap(), Bytes::from_static(b"hello"));
        assert!(matches!(
            store.get("a/missing").await,
            Err(BlobError::NotFound { .. })
        ));
        std::fs::remove_dir_all(dir).unwrap();
    }
}
