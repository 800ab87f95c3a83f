//! Render a synthetic scan and analyse it on the CPU backend:
//! `cargo run -p scanfleet-vision --example synth_scan -- OUT_DIR [SEED]`.
//! Prints the report JSON; the video and ground truth stay in OUT_DIR.

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let out = std::path::PathBuf::from(args.get(1).map(String::as_str).unwrap_or("synth-out"));
    let seed = args.get(2).and_then(|s| s.parse().ok()).unwrap_or(7);
    let base = match args.get(3).map(String::as_str) {
        Some("small") => vision::synth::SynthSpec::small(),
        _ => vision::synth::SynthSpec::default(),
    };
    let w: u32 = args
        .get(4)
        .and_then(|s| s.parse().ok())
        .unwrap_or(base.width);
    let spec = vision::synth::SynthSpec {
        seed,
        width: w,
        height: w * 3 / 4,
        ..base
    };
    let gt = vision::synth::generate(&spec, &out).expect("generate");
    let res =
        vision::analyze_video::<vision::Cpu>(&gt.video, &Default::default(), &Default::default())
            .expect("analyze");
    let mut report = res.report.clone();
    report.frame_stats.truncate(0);
    println!("{}", serde_json::to_string_pretty(&report).unwrap());
    std::fs::write(out.join("defect_mask.png"), &res.artifacts.defect_mask_png).unwrap();
    for (i, jpg) in &res.artifacts.golden_jpegs {
        std::fs::write(out.join(format!("golden_{i}.jpg")), jpg).unwrap();
    }
}
