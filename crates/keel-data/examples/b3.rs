//! BLAKE3 throughput of keel's hashing code on one file, for the benchmark's
//! "machine ceiling" rows: `b3 single FILE` hashes on one thread with 1 MiB
//! reads; `b3 multi FILE` uses `keel_data::hash::hash_file` (memory-mapped,
//! multi-threaded tree hashing); `b3 memory1 FILE` / `b3 memoryN FILE` read
//! the file into memory first and time the hash alone (one thread / every
//! core): BLAKE3's own speed on this CPU, without the kernel's copy.
//! Prints the digest and GiB/s (of the timed part).

use std::io::Read;
use std::time::Instant;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().collect();
    let (Some(mode), Some(path)) = (args.get(1), args.get(2)) else {
        return Err("usage: b3 single|multi|memory1|memoryN FILE".into());
    };
    let mut started = Instant::now();
    let (digest, bytes) = match mode.as_str() {
        "memory1" | "memoryN" => {
            let data = std::fs::read(path)?;
            started = Instant::now();
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
        other => return Err(format!("unknown mode `{other}`").into()),
    };
    let seconds = started.elapsed().as_secs_f64();
    println!(
        "{digest}  {path}  {:.3} s  {:.2} GiB/s",
        seconds,
        bytes as f64 / seconds / (1u64 << 30) as f64
    );
    Ok(())
}
