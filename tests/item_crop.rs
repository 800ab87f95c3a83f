//! `item_crop` through the fleet: a photo uploaded, items found, crops
//! stored in the blob store; a non-image fails at once with a code.

use harness::{Api, Dispatcher, TestEnv, Worker};
use protocol::Tier;
use serde_json::json;
use vision::synth_photo::{self, PhotoSpec};
use worker::config::QueueChoice;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_item_crop_upload_returns_boxes_and_stored_crops() {
    let env = TestEnv::new().await;
    let dispatcher = Dispatcher::start(env.dispatcher_config()).await;
    let worker = Worker::start(env.worker_config(QueueChoice::Cpu, "cpu-1")).await;
    let api = Api::new(
        &dispatcher.base_url,
        &env.api_key("collector", Tier::Free).await,
    );
    let (photo, truth) = synth_photo::render(&PhotoSpec {
        seed: 2,
        items: Some(3),
        allow_contact: false,
        ..PhotoSpec::default()
    })
    .unwrap();
    let (empty_table, _) = synth_photo::render(&PhotoSpec {
        seed: 2,
        items: Some(0),
        ..PhotoSpec::default()
    })
    .unwrap();

    let photo_bytes = photo.clone();
    let cropped = api.submit(json!({"kind": "item_crop", "upload_id": api.upload(photo).await, "item_type": "trading_card"})).await;
    let empty = api
        .submit(json!({"kind": "item_crop", "upload_id": api.upload(empty_table).await}))
        .await;
    let not_image = api.submit(json!({"kind": "item_crop", "upload_id": api.upload(b"plain text, not a photo".to_vec()).await})).await;

    let scan = api.finished(&env, &cropped).await;
    assert_eq!(scan["status"], "succeeded", "{scan}");
    let result = &scan["result"];
    assert_eq!(result["kind"], "item_crop");
    assert_eq!(result["backend"], "cpu-ndarray");
    let items = result["report"]["items"].as_array().unwrap();
    assert_eq!(items.len(), truth.items.len(), "{result}");
    assert_eq!(result["summary"]["items"], truth.items.len());
    let crops = result["artifacts"]["crops"].as_array().unwrap();
    assert_eq!(crops.len(), items.len());
    for (item, crop) in items.iter().zip(crops) {
        assert_eq!(crop["item"], item["index"]);
        assert_eq!(crop["size"], item["crop_size"]);
        assert!(item["confidence"].as_f64().unwrap() > 0.5, "{item}");
        assert_eq!(item["quad"].as_array().unwrap().len(), 4);
        let jpeg = std::fs::read(env.blob_dir.join(crop["path"].as_str().unwrap())).unwrap();
        assert_eq!(&jpeg[..2], b"\xff\xd8", "crops are JPEGs in the blob store");
    }
    // Every true item is covered by a reported box.
    for truth_item in &truth.items {
        let c = [
            (truth_item.bbox[0] + truth_item.bbox[2]) / 2.0,
            (truth_item.bbox[1] + truth_item.bbox[3]) / 2.0,
        ];
        assert!(
            items.iter().any(|i| {
                let b: Vec<f64> = i["bbox"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|v| v.as_f64().unwrap())
                    .collect();
                (b[0]..b[2]).contains(&c[0]) && (b[1]..b[3]).contains(&c[1])
            }),
            "no box around {:?}",
            truth_item.bbox
        );
    }

    // The same photo again: served from the result cache, same items.
    let repeat = api
        .submit(json!({"kind": "item_crop", "upload_id": api.upload(photo_bytes).await}))
        .await;
    let repeat = api.finished(&env, &repeat).await;
    assert_eq!(repeat["result"]["cached"], true, "{repeat}");
    assert_eq!(repeat["result"]["cached_from"], cropped.as_str());
    assert_eq!(
        repeat["result"]["report"]["items"],
        result["report"]["items"]
    );

    let scan = api.finished(&env, &empty).await;
    assert_eq!(
        scan["status"], "succeeded",
        "a photo with no item is not an error: {scan}"
    );
    assert_eq!(scan["result"]["summary"]["items"], 0);

    let scan = api.finished(&env, &not_image).await;
    assert_eq!(scan["status"], "failed", "{scan}");
    assert_eq!(scan["attempts"], 1, "bad input is not retried");
    assert_eq!(scan["error"]["code"], "input_not_image");

    worker.stop().await;
    dispatcher.stop().await;
    env.cleanup().await;
}
