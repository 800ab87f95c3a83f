//! Blob storage for uploads and artifacts: a local directory by default, any
//! S3-compatible store by URL (`s3://bucket/prefix`, credentials from the
//! usual `AWS_*` environment variables).

use std::sync::Arc;

use bytes::Bytes;
use object_store::local::LocalFileSystem;
use object_store::path::Path;
use object_store::{ObjectStore, PutPayload, WriteMultipart};

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
        f.debug_struct("BlobStore")
            .field("location", &self.location)
            .finish()
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

    /// Starts writing an object in parts, for input too large to hold whole.
    pub async fn writer(&self, path: &str) -> Result<BlobWriter, BlobError> {
        let upload = self.store.put_multipart(&Path::from(path)).await?;
        Ok(BlobWriter {
            parts: WriteMultipart::new(upload),
        })
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

/// Parts being written at once by one [`BlobWriter`]: memory per writer is
/// bounded by this many 5 MiB parts plus the one being filled.
const MAX_PARTS_IN_FLIGHT: usize = 2;

/// An object written as its bytes arrive (a multipart upload; a temporary
/// file renamed on `finish` in a local directory). Nothing is visible under
/// the path until `finish`; `abort` leaves nothing behind.
pub struct BlobWriter {
    parts: WriteMultipart,
}

impl BlobWriter {
    /// Appends `bytes`, waiting first while `MAX_PARTS_IN_FLIGHT` parts are
    /// still being written (back pressure on whoever produces the bytes).
    pub async fn write(&mut self, bytes: Bytes) -> Result<(), BlobError> {
        self.parts.wait_for_capacity(MAX_PARTS_IN_FLIGHT).await?;
        self.parts.put(bytes);
        Ok(())
    }

    pub async fn finish(self) -> Result<(), BlobError> {
        self.parts.finish().await?;
        Ok(())
    }

    pub async fn abort(self) -> Result<(), BlobError> {
        self.parts.abort().await?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn local_store_round_trips_and_reports_missing_objects() {
        let dir = std::env::temp_dir().join(format!("scanfleet-blob-{}", uuid::Uuid::new_v4()));
        let store = BlobStore::open(dir.to_str().unwrap()).unwrap();
        store
            .put("a/b.bin", Bytes::from_static(b"hello"))
            .await
            .unwrap();
        assert_eq!(
            store.get("a/b.bin").await.unwrap(),
            Bytes::from_static(b"hello")
        );
        assert!(matches!(
            store.get("a/missing").await,
            Err(BlobError::NotFound { .. })
        ));
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[tokio::test]
    async fn a_written_object_appears_on_finish_and_an_aborted_one_never() {
        let dir = std::env::temp_dir().join(format!("scanfleet-blob-{}", uuid::Uuid::new_v4()));
        let store = BlobStore::open(dir.to_str().unwrap()).unwrap();
        // Larger than one 5 MiB part, written in odd-sized pieces.
        let content: Vec<u8> = (0..12 * 1024 * 1024 + 7).map(|i| (i % 251) as u8).collect();
        let mut writer = store.writer("up/whole.bin").await.unwrap();
        for piece in content.chunks(1_000_003) {
            writer.write(Bytes::copy_from_slice(piece)).await.unwrap();
        }
        assert!(
            matches!(
                store.get("up/whole.bin").await,
                Err(BlobError::NotFound { .. })
            ),
            "not before finish"
        );
        writer.finish().await.unwrap();
        assert_eq!(
            store.get("up/whole.bin").await.unwrap(),
            Bytes::from(content)
        );

        let mut writer = store.writer("up/aborted.bin").await.unwrap();
        writer.write(Bytes::from_static(b"partial")).await.unwrap();
        writer.abort().await.unwrap();
        assert!(matches!(
            store.get("up/aborted.bin").await,
            Err(BlobError::NotFound { .. })
        ));
        let left: Vec<_> = walk(&dir);
        assert_eq!(
            left,
            [dir.join("up/whole.bin")],
            "no temporary file is left behind"
        );
        std::fs::remove_dir_all(dir).unwrap();
    }

    fn walk(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
        let mut files = Vec::new();
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                files.extend(walk(&path));
            } else {
                files.push(path);
            }
        }
        files
    }
}
