//! BLAKE3 throughput of keel's hashing code on one file, for the benchmark's
//! "machine ceiling" rows: `b3 single FILE` hashes on one thread with 1 MiB
//! reads; `b3 multi FILE` uses `keel_data::hash::hash_file` (on every core,
//! leaf by leaf with `pread`); `b3 mmap FILE` the blake3 crate's own
//! memory-mapped multi-threaded hashing (what `hash_file` used before issue
//! 19's change); `b3 leafN FILE` is `hash_file`'s tree hash with leaves of
//! N KiB instead of keel's (`leaf64`, `leaf1024`: for comparing leaf
//! sizes); `b3 memory1 FILE` / `b3 memoryN FILE` read
//! the file into memory first and time the hash alone (one thread / every
//! core): BLAKE3's own speed on this CPU, without the kernel's copy.
//! Prints the digest, the timed part's wall seconds and GiB/s, and its CPU
//! seconds (all threads; what counts on a loaded machine).

use std::io::Read;
use std::time::Instant;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().collect();
    let (Some(mode), Some(path)) = (args.get(1), args.get(2)) else {
        return Err("usage: b3 single|multi|leafN|mmap|memory1|memoryN FILE".into());
    };
    let mut started = Instant::now();
    let mut cpu_started = cpu_seconds();
    let (digest, bytes) = match mode.as_str() {
        "memory1" | "memoryN" => {
            let data = std::fs::read(path)?;
            started = Instant::now();
            cpu_started = cpu_seconds();
            let mut hasher = blake3::Hasher::new();
            if mode == "memory1" {
                hasher.update(&data);
            } else {
                hasher.update_rayon(&data);
            }
            (hasher.finalize().to_hex().to_string(), data.len() as u64)
        }
        "single" => {
            let mut file = std::fs::File::open(path)?;
            let mut hasher = blake3::Hasher::new();
            let mut buffer = vec![0u8; 1 << 20];
            let mut total = 0u64;
            loop {
                let read = file.read(&mut buffer)?;
                if read == 0 {
                    break;
                }
                hasher.update(&buffer[..read]);
                total += read as u64;
            }
            (hasher.finalize().to_hex().to_string(), total)
        }
        "multi" => {
            let (digest, total) = keel_data::hash::hash_file(std::path::Path::new(path))?;
            (digest.to_hex(), total)
        }
        leaf if leaf.starts_with("leaf") => {
            let kib: u64 = leaf["leaf".len()..]
                .parse()
                .map_err(|_| format!("`{leaf}`: leafN takes a size in KiB, e.g. leaf64"))?;
            let file = std::fs::File::open(path)?;
            let len = file.metadata()?.len();
            let digest = keel_data::hash::hash_in_leaves(&file, len, kib << 10)?;
            (digest.to_hex(), len)
        }
        "mmap" => {
            let mut hasher = blake3::Hasher::new();
            hasher.update_mmap_rayon(path)?;
            (hasher.finalize().to_hex().to_string(), hasher.count())
        }
        other => return Err(format!("unknown mode `{other}`").into()),
    };
    let seconds = started.elapsed().as_secs_f64();
    println!(
        "{digest}  {path}  {:.3} s  {:.2} GiB/s  {:.2} CPU-s",
        seconds,
        bytes as f64 / seconds / (1u64 << 30) as f64,
        cpu_seconds() - cpu_started
    );
    Ok(())
}

/// This process's user + system CPU time so far (from /proc/self/stat, in
/// clock ticks of 10 ms), so a loaded machine's wall time can be told apart
/// from the hash's own cost; NaN where /proc is not readable.
fn cpu_seconds() -> f64 {
    let Ok(stat) = std::fs::read_to_string("/proc/self/stat") else {
        return f64::NAN;
    };
    // Fields after the command name (which is in parentheses): utime and
    // stime are the 12th and 13th.
    let after = stat.rsplit_once(')').map_or("", |(_, rest)| rest);
    let ticks: Vec<f64> = after
        .split_whitespace()
        .skip(11)
        .take(2)
        .filter_map(|field| field.parse().ok())
        .collect();
    ticks.iter().sum::<f64>() / 100.0
}
