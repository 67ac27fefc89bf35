//! Garbage collection of a store holding about 1,000,000 blocks, 10% of them garbage, while
//! a writer keeps adding blocks: time for roots, mark and sweep, and the longest time one of
//! the writer's puts took (its stall).
//!
//! `cargo bench --bench gc [-- --work DIR] [-- --blocks N]`. The store is built once in the
//! work directory (about 1 GiB and a minute) and copied for each run.

use std::{
    path::{Path, PathBuf},
    sync::atomic::{AtomicBool, Ordering},
    time::{Duration, Instant},
};

use cairn_gc::{collect, pins, GcOptions};
use cairn_store::{Cid, HashAlg, Store};
use cairn_unixfs::{
    import::{file::import_reader, AddOptions},
    Metadata,
};

/// A deterministic stream of bytes (xorshift), so that leaves are distinct.
struct Noise(u64, u64);

impl std::io::Read for Noise {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = buf.len().min(self.1 as usize);
        for chunk in buf[..n].chunks_mut(8) {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            let b = self.0.to_le_bytes();
            chunk.copy_from_slice(&b[..chunk.len()]);
        }
        self.1 -= n as u64;
        Ok(n)
    }
}

fn build(dir: &Path, blocks: u64) -> (Cid, Cid) {
    let store = Store::init(dir).unwrap();
    let opts = AddOptions {
        chunk_size: 1024,
        ..AddOptions::default()
    }
    .resolve(Some(1), None)
    .unwrap();
    let live_bytes = blocks * 9 / 10 * 1024;
    let dead_bytes = blocks / 10 * 1024;
    let t = Instant::now();
    let file = |seed: u64, bytes: u64| {
        import_reader(
            &store,
            &opts,
            &mut Noise(seed, bytes),
            &Metadata::default(),
            &(),
        )
        .unwrap()
        .cid
    };
    let live = file(1, live_bytes);
    let dead = file(2, dead_bytes);
    store.flush().unwrap();
    pins::add(store.layout(), "bench", "bench", &live).unwrap();
    store.release();
    eprintln!("built the store in {:.0?}", t.elapsed());
    (live, dead)
}

/// The process's peak resident set (`VmHWM`), in KiB.
fn peak_rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("VmHWM:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        })
        .unwrap_or(0)
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let arg = |name: &str| {
        args.iter()
            .position(|a| a == name)
            .and_then(|i| args.get(i + 1).cloned())
    };
    let work =
        PathBuf::from(arg("--work").unwrap_or_else(|| {
            format!("{}/.cache/cairn-bench/gc", std::env::var("HOME").unwrap())
        }));
    let blocks: u64 = arg("--blocks").map_or(1_000_000, |b| b.parse().unwrap());
    let template = work.join(format!("template-{blocks}"));
    if !template.join("blocks").is_dir() {
        let _ = std::fs::remove_dir_all(&template);
        build(&template, blocks);
    }
    let run = work.join("run");
    let _ = std::fs::remove_dir_all(&run);
    let st = std::process::Command::new("cp")
        .arg("-a")
        .arg(&template)
        .arg(&run)
        .status()
        .unwrap();
    assert!(st.success());
    let _ = std::process::Command::new("sync").status();

    let store = Store::open(&run).unwrap();
    let total = store.blocks().iter().unwrap().count();
    let rss_before = peak_rss_kib();
    // A writer adding small blocks throughout, timing each put.
    let stop = AtomicBool::new(false);
    let (report, worst, puts) = std::thread::scope(|s| {
        let writer = s.spawn(|| {
            let w = Store::open(&run).unwrap();
            let (mut worst, mut n) = (Duration::ZERO, 0u64);
            while !stop.load(Ordering::Relaxed) {
                let data = format!("writer block {n}").into_bytes();
                let cid = Cid::new_v1(0x55, HashAlg::Sha2_256.digest(&data));
                let t = Instant::now();
                w.put_hashed(&cid, &[&data], Some(&[])).unwrap();
                worst = worst.max(t.elapsed());
                n += 1;
                std::thread::sleep(Duration::from_micros(200));
            }
            (worst, n)
        });
        let t = Instant::now();
        let report = collect(&store, &GcOptions::default()).unwrap();
        let elapsed = t.elapsed();
        stop.store(true, Ordering::Relaxed);
        let (worst, n) = writer.join().unwrap();
        eprintln!("collection took {elapsed:.2?} in all");
        (report, worst, n)
    });
    println!(
        "blocks in the store: {total} ({} pinned live, {} garbage freed)",
        report.marked, report.freed_blocks
    );
    println!(
        "peak resident memory: {:.0} MiB before the collection, {:.0} MiB after",
        rss_before as f64 / 1024.0,
        peak_rss_kib() as f64 / 1024.0
    );
    println!(
        "| roots + index load | mark | sweep | total | lock held at most | longest put stall ({puts} puts during gc) |"
    );
    println!("|---|---|---|---|---|---|");
    println!(
        "| {:.2} s | {:.2} s | {:.2} s | {:.2} s | {:.1} ms | {:.1} ms |",
        report.roots_time.as_secs_f64(),
        report.mark_time.as_secs_f64(),
        report.sweep_time.as_secs_f64(),
        (report.roots_time + report.mark_time + report.sweep_time).as_secs_f64(),
        report.longest_hold.as_secs_f64() * 1000.0,
        worst.as_secs_f64() * 1000.0
    );
    let _ = std::fs::remove_dir_all(&run);
}
