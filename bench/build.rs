//! Records how the benchmarks were built, so each one can print it: a
//! benchmark of unoptimised code measures the compiler's settings.
fn main() {
    for (var, name) in [
        ("PROFILE", "BENCH_PROFILE"),
        ("OPT_LEVEL", "BENCH_OPT_LEVEL"),
    ] {
        let value = std::env::var(var).unwrap_or_else(|_| "unknown".into());
        println!("cargo:rustc-env={name}={value}");
    }
}
