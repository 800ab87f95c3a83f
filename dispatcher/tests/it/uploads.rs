//! Uploads are streamed to the blob store and hashed on the way; the size
//! limit holds whether or not the client declares a length, and a refused
//! or empty upload leaves nothing behind.

use protocol::Tier;
use sha2::{Digest, Sha256};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::harness::{expect_problem, Dispatcher, TestEnv};

fn files_under(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut files = Vec::new();
    for path in entries.map(|entry| entry.unwrap().path()) {
        if path.is_dir() {
            files.extend(files_under(&path));
        } else {
            files.push(path);
        }
    }
    files
}

#[tokio::test]
async fn uploads_stream_to_the_blob_store_within_the_limit() {
    let env = TestEnv::new().await;
    let config = env.dispatcher_config();
    let max = config.max_upload_bytes;
    let dispatcher = Dispatcher::start(config).await;
    let key = env.api_key("uploader", Tier::Free).await;
    let http = reqwest::Client::new();
    let upload = |body: Vec<u8>| {
        http.post(dispatcher.url("/v1/uploads"))
            .bearer_auth(&key)
            .body(body)
            .send()
    };

    let content: Vec<u8> = (0..max - 3).map(|i| (i % 253) as u8).collect();
    let response = upload(content.clone()).await.unwrap();
    assert_eq!(response.status(), 201);
    let view: serde_json::Value = response.json().await.unwrap();
    assert_eq!(view["size_bytes"], content.len());
    assert_eq!(view["sha256"], hex::encode(Sha256::digest(&content)));
    let stored = files_under(&env.blob_dir);
    assert_eq!(stored.len(), 1);
    assert!(stored[0].ends_with(view["id"].as_str().unwrap()));
    assert_eq!(
        std::fs::read(&stored[0]).unwrap(),
        content,
        "the blob is the upload, byte for byte"
    );

    // Over the limit by declared length: refused before reading.
    expect_problem(
        upload(vec![1; max + 1]).await.unwrap(),
        413,
        "payload_too_large",
    )
    .await;
    expect_problem(upload(Vec::new()).await.unwrap(), 400, "empty_upload").await;

    // Over the limit with no declared length (chunked): refused once the
    // limit is passed, and the part written so far is dropped.
    let addr = dispatcher
        .base_url
        .trim_start_matches("http://")
        .to_string();
    let mut stream = tokio::net::TcpStream::connect(&addr).await.unwrap();
    let head = format!(
        "POST /v1/uploads HTTP/1.1\r\nhost: {addr}\r\nauthorization: Bearer {key}\r\ntransfer-encoding: chunked\r\n\r\n"
    );
    stream.write_all(head.as_bytes()).await.unwrap();
    let chunk = vec![b'z'; 64 * 1024];
    let mut answer = Vec::new();
    for _ in 0..(max / chunk.len() + 2) {
        let framed = [
            format!("{:x}\r\n", chunk.len()).into_bytes(),
            chunk.clone(),
            b"\r\n".to_vec(),
        ]
        .concat();
        if stream.write_all(&framed).await.is_err() {
            break; // the server answered and closed
        }
    }
    let _ = stream.write_all(b"0\r\n\r\n").await;
    let _ = tokio::time::timeout(crate::harness::PATIENCE, stream.read_to_end(&mut answer)).await;
    let answer = String::from_utf8_lossy(&answer);
    assert!(answer.starts_with("HTTP/1.1 413"), "{answer}");
    assert!(
        answer.contains("\"code\":\"payload_too_large\""),
        "{answer}"
    );

    assert_eq!(
        files_under(&env.blob_dir).len(),
        1,
        "refused uploads leave no blob or temporary file"
    );
    let rows: i64 = sqlx::query_scalar("SELECT count(*) FROM uploads")
        .fetch_one(&env.pool)
        .await
        .unwrap();
    assert_eq!(rows, 1);
    dispatcher.stop().await;
    env.cleanup().await;
}

/// One limit per input kind: an upload may be as large as the largest kind
/// takes (a video), but an `item_crop` naming one over the photo limit is
/// refused at submit, with the limit in the answer, not later by a worker.
#[tokio::test]
async fn an_upload_over_its_scan_kinds_limit_is_refused_at_submit() {
    let env = TestEnv::new().await;
    let mut config = env.dispatcher_config();
    config.max_upload_bytes = protocol::MAX_VIDEO_BYTES as usize;
    let dispatcher = Dispatcher::start(config).await;
    let key = env.api_key("photographer", Tier::Free).await;
    let http = reqwest::Client::new();
    let over_photo_limit = vec![0u8; protocol::MAX_PHOTO_BYTES as usize + 1];
    let response = http
        .post(dispatcher.url("/v1/uploads"))
        .bearer_auth(&key)
        .body(over_photo_limit)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 201, "a video may be this large");
    let upload: serde_json::Value = response.json().await.unwrap();
    let submit = |kind: &str| {
        http.post(dispatcher.url("/v1/scans"))
            .bearer_auth(&key)
            .json(&serde_json::json!({"kind": kind, "upload_id": upload["id"]}))
            .send()
    };
    let problem = expect_problem(submit("item_crop").await.unwrap(), 422, "input_too_large").await;
    assert!(
        problem["detail"].as_str().unwrap().contains(&format!(
            "item_crop scans take at most {}",
            protocol::MAX_PHOTO_BYTES
        )),
        "{problem}"
    );
    assert_eq!(submit("video_scan").await.unwrap().status(), 202);
    let stored: i64 = sqlx::query_scalar("SELECT count(*) FROM scans")
        .fetch_one(&env.pool)
        .await
        .unwrap();
    assert_eq!(stored, 1, "the refused scan left nothing behind");
    dispatcher.stop().await;
    env.cleanup().await;
}
