//! Issue 19, round three: does hashing a warm file from a memory mapping beat
//! keel's `pread` leaves once the page faults are gone? Hashes FILE along
//! BLAKE3's tree on every core (rayon, `blake3::hazmat`), the leaves either
//! read with `pread` into a thread buffer or hashed in place from a
//! read-only shared mapping of the whole file:
//!
//!     mapped_hash pread FILE LEAF_KIB [SKEW_BYTES [both|read|hash]]
//!         keel's way; the buffer starts SKEW bytes after a page boundary;
//!         `read` only reads (the kernel's copy, no hash), `hash` only
//!         hashes (each thread's buffer over and over, never read: BLAKE3's
//!         cost from cache; the digest is then not the file's)
//!     mapped_hash map FILE REGION_KIB POPULATE UNMAP [FLAGS]
//!         POPULATE 1: each thread calls madvise(MADV_POPULATE_READ) on its
//!         region (one leaf) before hashing it, 0: page faults instead;
//!         UNMAP 0: one munmap of the whole file at the end, 1: munmap of
//!         each region by its thread once hashed, 2: MADV_DONTNEED of each
//!         region instead; FLAGS: `a` map at a 2 MiB-aligned address, `h`
//!         MADV_HUGEPAGE, `s` MADV_SEQUENTIAL, `r` one mmap per region
//!         (mapped, populated, hashed, unmapped by its thread)
//!
//!     mapped_hash sigbus DIR
//!         what the kernel does at a mapping's end: MADV_POPULATE_READ of
//!         a range past end of file, and a read of a populated page after
//!         the file was truncated below it (the process then dies of SIGBUS)
//!
//! Prints the digest, wall seconds and CPU seconds of the process so far.
//! Measurement only: it dies of SIGBUS if FILE shrinks while mapped.

use std::cell::RefCell;
use std::fs::File;
use std::os::fd::AsRawFd;
use std::os::unix::fs::FileExt;
use std::time::Instant;

use blake3::hazmat::{self, ChainingValue, HasherExt, Mode};

#[derive(Clone, Copy)]
struct Mapped {
    base: usize,
    region: u64,
    populate: bool,
    unmap: u8,
    per_region: bool,
}

thread_local! {
    static BUFFER: RefCell<Vec<u8>> = const { RefCell::new(Vec::new()) };
}

#[derive(Clone, Copy, PartialEq)]
enum Work {
    Both,
    Read,
    Hash,
}

fn pread_subtree(
    file: &File,
    offset: u64,
    len: u64,
    leaf: u64,
    skew: usize,
    work: Work,
) -> ChainingValue {
    if len <= leaf {
        return BUFFER.with(|buffer| {
            let mut buffer = buffer.borrow_mut();
            if buffer.len() < leaf as usize + 8192 {
                buffer.resize(leaf as usize + 8192, 0);
            }
            let start = (4096 - buffer.as_ptr() as usize % 4096) % 4096 + skew;
            let bytes = &mut buffer[start..start + len as usize];
            if work != Work::Hash {
                file.read_exact_at(bytes, offset).expect("pread");
            }
            if work == Work::Read {
                return [0; 32];
            }
            blake3::Hasher::new()
                .set_input_offset(offset)
                .update(bytes)
                .finalize_non_root()
        });
    }
    let left = hazmat::left_subtree_len(len);
    let (l, r) = rayon::join(
        || pread_subtree(file, offset, left, leaf, skew, work),
        || pread_subtree(file, offset + left, len - left, leaf, skew, work),
    );
    hazmat::merge_subtrees_non_root(&l, &r, Mode::Hash)
}

fn mapped_region(file: &File, m: Mapped, offset: u64, len: u64) -> ChainingValue {
    // SAFETY (measurement only): the mapping covers offset..offset + len of a
    // file that nothing truncates during the measurement.
    unsafe {
        let ptr = if m.per_region {
            let p = libc::mmap(
                std::ptr::null_mut(),
                len as usize,
                libc::PROT_READ,
                libc::MAP_SHARED,
                file.as_raw_fd(),
                offset as libc::off_t,
            );
            assert!(
                p != libc::MAP_FAILED,
                "mmap: {}",
                std::io::Error::last_os_error()
            );
            p as *mut u8
        } else {
            (m.base + offset as usize) as *mut u8
        };
        if m.populate {
            let r = libc::madvise(ptr.cast(), len as usize, libc::MADV_POPULATE_READ);
            assert!(r == 0, "populate: {}", std::io::Error::last_os_error());
        }
        let bytes = std::slice::from_raw_parts(ptr, len as usize);
        let cv = blake3::Hasher::new()
            .set_input_offset(offset)
            .update(bytes)
            .finalize_non_root();
        if m.per_region || m.unmap == 1 {
            libc::munmap(ptr.cast(), len as usize);
        } else if m.unmap == 2 {
            libc::madvise(ptr.cast(), len as usize, libc::MADV_DONTNEED);
        }
        cv
    }
}

fn mapped_subtree(file: &File, m: Mapped, offset: u64, len: u64) -> ChainingValue {
    if len <= m.region {
        return mapped_region(file, m, offset, len);
    }
    let left = hazmat::left_subtree_len(len);
    let (l, r) = rayon::join(
        || mapped_subtree(file, m, offset, left),
        || mapped_subtree(file, m, offset + left, len - left),
    );
    hazmat::merge_subtrees_non_root(&l, &r, Mode::Hash)
}

fn map_whole(file: &File, len: usize, flags: &str) -> usize {
    // SAFETY: see mapped_region.
    unsafe {
        let p = if flags.contains('a') {
            let align = 2 << 20;
            let probe = libc::mmap(
                std::ptr::null_mut(),
                len + align,
                libc::PROT_NONE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_NORESERVE,
                -1,
                0,
            );
            assert!(probe != libc::MAP_FAILED);
            let aligned = (probe as usize).next_multiple_of(align);
            libc::munmap(probe, len + align);
            libc::mmap(
                aligned as *mut libc::c_void,
                len,
                libc::PROT_READ,
                libc::MAP_SHARED | libc::MAP_FIXED_NOREPLACE,
                file.as_raw_fd(),
                0,
            )
        } else {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ,
                libc::MAP_SHARED,
                file.as_raw_fd(),
                0,
            )
        };
        assert!(
            p != libc::MAP_FAILED,
            "mmap: {}",
            std::io::Error::last_os_error()
        );
        if flags.contains('h') {
            assert_eq!(
                libc::madvise(p, len, libc::MADV_HUGEPAGE),
                0,
                "MADV_HUGEPAGE"
            );
        }
        if flags.contains('s') {
            assert_eq!(
                libc::madvise(p, len, libc::MADV_SEQUENTIAL),
                0,
                "MADV_SEQUENTIAL"
            );
        }
        p as usize
    }
}

fn sigbus_demo(dir: &str) {
    let path = std::path::Path::new(dir).join("mapped_hash-sigbus.bin");
    std::fs::write(&path, vec![7u8; 1 << 20]).expect("write");
    let file = File::open(&path).expect("open");
    let len = 4 << 20;
    // SAFETY: this is the demonstration of what is unsafe about it.
    unsafe {
        let p = libc::mmap(
            std::ptr::null_mut(),
            len,
            libc::PROT_READ,
            libc::MAP_SHARED,
            file.as_raw_fd(),
            0,
        );
        assert!(p != libc::MAP_FAILED);
        let r = libc::madvise(p, 1 << 20, libc::MADV_POPULATE_READ);
        println!("MADV_POPULATE_READ of the 1 MiB file: {r}");
        let r = libc::madvise(p, len, libc::MADV_POPULATE_READ);
        println!(
            "MADV_POPULATE_READ of 4 MiB (past the end): {r} ({})",
            std::io::Error::last_os_error()
        );
        let r = libc::madvise(p, 1 << 20, libc::MADV_POPULATE_READ);
        println!("populated again: {r}; truncating the file to 4 KiB");
        std::fs::OpenOptions::new()
            .write(true)
            .open(&path)
            .expect("open")
            .set_len(4096)
            .expect("truncate");
        let r = libc::madvise(p, 1 << 20, libc::MADV_POPULATE_READ);
        println!(
            "MADV_POPULATE_READ after the truncation: {r} ({})",
            std::io::Error::last_os_error()
        );
        println!("reading the populated page at 512 KiB ...");
        let _ = std::fs::remove_file(&path);
        let byte = std::ptr::read_volatile((p as *const u8).add(512 << 10));
        println!("read {byte}: no SIGBUS");
    }
}

fn cpu_seconds() -> f64 {
    // SAFETY: getrusage fills the struct it is given.
    let usage = unsafe {
        let mut usage: libc::rusage = std::mem::zeroed();
        libc::getrusage(libc::RUSAGE_SELF, &mut usage);
        usage
    };
    let seconds = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
    seconds(usage.ru_utime) + seconds(usage.ru_stime)
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.get(1).map(String::as_str) == Some("sigbus") {
        return sigbus_demo(args.get(2).map_or(".", String::as_str));
    }
    let usage = "usage: mapped_hash pread FILE LEAF_KIB [SKEW [both|read|hash]] | map FILE REGION_KIB POPULATE UNMAP [FLAGS] | sigbus DIR";
    let arg = |i: usize| args.get(i).unwrap_or_else(|| panic!("{usage}"));
    let number = |i: usize| arg(i).parse::<u64>().unwrap_or_else(|_| panic!("{usage}"));
    let file = File::open(arg(2)).expect("open");
    let len = file.metadata().expect("stat").len();
    assert!(len > 1 << 20, "FILE must be larger than 1 MiB");
    let started = Instant::now();
    let left = hazmat::left_subtree_len(len);
    let root = match arg(1).as_str() {
        "pread" => {
            let (leaf, skew) = (
                number(3) << 10,
                args.get(4).map_or(0, |_| number(4) as usize),
            );
            let work = match args.get(5).map(String::as_str) {
                None | Some("both") => Work::Both,
                Some("read") => Work::Read,
                Some("hash") => Work::Hash,
                Some(_) => panic!("{usage}"),
            };
            let (l, r) = rayon::join(
                || pread_subtree(&file, 0, left, leaf, skew, work),
                || pread_subtree(&file, left, len - left, leaf, skew, work),
            );
            hazmat::merge_subtrees_root(&l, &r, Mode::Hash)
        }
        "map" => {
            let flags = args.get(6).cloned().unwrap_or_default();
            let per_region = flags.contains('r');
            let m = Mapped {
                base: if per_region {
                    0
                } else {
                    map_whole(&file, len as usize, &flags)
                },
                region: number(3) << 10,
                populate: number(4) == 1,
                unmap: number(5) as u8,
                per_region,
            };
            let (l, r) = rayon::join(
                || mapped_subtree(&file, m, 0, left),
                || mapped_subtree(&file, m, left, len - left),
            );
            if !per_region && m.unmap != 1 {
                // SAFETY: nothing refers to the mapping any more.
                unsafe { libc::munmap(m.base as *mut libc::c_void, len as usize) };
            }
            hazmat::merge_subtrees_root(&l, &r, Mode::Hash)
        }
        _ => panic!("{usage}"),
    };
    println!(
        "{}  {:.3} s  {:.3} CPU-s",
        root.to_hex(),
        started.elapsed().as_secs_f64(),
        cpu_seconds()
    );
}
