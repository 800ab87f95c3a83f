# Sourced by scripts/demo: grade a synthetic card video (rendered with known
# defects by `worker synth`), uploaded once and scanned on both queues.
log "rendering a synthetic card scan and uploading it"
"$BIN/worker" synth --out "$DEMO_DIR/synth" --frames 8 >/dev/null
upload_id() { # key → upload id
  curl -sf -H "Authorization: Bearer $1" -H 'content-type: video/x-msvideo' \
    --data-binary "@$DEMO_DIR/synth/scan.avi" "$API/v1/uploads" | python3 -c 'import json,sys; print(json.load(sys.stdin)["id"])'
}
scan_ids+=("$(submit "$FREE_KEY" "{\"kind\":\"video_scan\",\"upload_id\":\"$(upload_id "$FREE_KEY")\",\"item_type\":\"trading_card\"}")"); scan_keys+=("$FREE_KEY")
scan_ids+=("$(submit "$PREMIUM_KEY" "{\"kind\":\"video_scan\",\"upload_id\":\"$(upload_id "$PREMIUM_KEY")\",\"item_type\":\"trading_card\"}")"); scan_keys+=("$PREMIUM_KEY")
