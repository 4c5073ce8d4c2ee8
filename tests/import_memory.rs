//! An import's memory grows with the paths it leaves changed, not with
//! the operations it carries (issue 11; packet SPEC.md §13): a packet of
//! many versions of one path is imported with about the same peak heap
//! whatever their number.
//!
//! A test binary of its own: it counts every allocation of the process
//! (a global allocator) around an in-process import. SQLite's own cache
//! (bounded by its settings) is not counted.

use std::alloc::{GlobalAlloc, Layout, System};
use std::path::Path;
use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering::Relaxed};

use packet_format::Named;
use syncreplica::replica::Replica;
use syncreplica::sync::import::{import, ImportRequest, PacketOutcome};
use test_support::{write_many_ops, ManyOps, ManyOpsPacket};

struct Counting;

static CURRENT: AtomicUsize = AtomicUsize::new(0);
static PEAK: AtomicUsize = AtomicUsize::new(0);

fn grew(by: usize) {
    let now = CURRENT.fetch_add(by, Relaxed) + by;
    PEAK.fetch_max(now, Relaxed);
}

// SAFETY: every call is passed on to the system allocator unchanged; the
// counters only watch.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let ptr = unsafe { System.alloc(layout) };
        if !ptr.is_null() {
            grew(layout.size());
        }
        ptr
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        unsafe { System.dealloc(ptr, layout) };
        CURRENT.fetch_sub(layout.size(), Relaxed);
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        let new = unsafe { System.realloc(ptr, layout, new_size) };
        if !new.is_null() {
            CURRENT.fetch_sub(layout.size(), Relaxed);
            grew(new_size);
        }
        new
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

fn run(bin: &str, args: &[&std::ffi::OsStr]) {
    let out = Command::new(bin).args(args).output().unwrap();
    assert!(
        out.status.success(),
        "{bin} {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Two replicas `a` and `b` of one family under `dir`.
fn pair(dir: &Path) {
    let mk = env!("CARGO_BIN_EXE_mkreplica");
    let (a, b, bay) = (dir.join("a"), dir.join("b"), dir.join("bay"));
    std::fs::create_dir_all(&a).unwrap();
    std::fs::create_dir_all(&bay).unwrap();
    run(
        mk,
        &[
            "-init".as_ref(),
            "-family".as_ref(),
            "f".as_ref(),
            "-replica".as_ref(),
            a.as_os_str(),
            "a".as_ref(),
        ],
    );
    run(
        mk,
        &[
            "-export".as_ref(),
            "-out".as_ref(),
            bay.as_os_str(),
            "-replica".as_ref(),
            a.as_os_str(),
            "b".as_ref(),
        ],
    );
    run(
        mk,
        &[
            "-import".as_ref(),
            "-replica".as_ref(),
            b.as_os_str(),
            bay.as_os_str(),
        ],
    );
    std::fs::remove_dir_all(&bay).unwrap();
}

/// The peak heap (bytes above what was allocated before) of importing a
/// packet of `count` operations of `kind` from `a` into `b`.
fn peak_heap_of_import(count: u64, kind: ManyOps) -> usize {
    let dir = tempfile::tempdir().unwrap();
    pair(dir.path());
    let from = Replica::open(&dir.path().join("a")).unwrap();
    let to = Replica::open(&dir.path().join("b")).unwrap();
    let origin = from.identity.replica_id;
    let bay = dir.path().join("bay");
    std::fs::create_dir_all(&bay).unwrap();
    let have = to.state().epoch(&to.identity.replica_id, &origin).unwrap();
    let packet = write_many_ops(&ManyOpsPacket {
        family: Named {
            id: from.identity.family_id,
            name: from.identity.family_name.clone(),
        },
        sender: Named {
            id: origin,
            name: from.identity.replica_name.clone(),
        },
        secret: from.signing_key().unwrap().to_bytes(),
        target: Named {
            id: to.identity.replica_id,
            name: to.identity.replica_name.clone(),
        },
        have,
        count,
        kind,
        out_dir: &bay,
    });
    drop(from);
    let mut to = to.lock("test").unwrap();
    let base = CURRENT.load(Relaxed);
    PEAK.store(base, Relaxed);
    let outcomes = import(
        &mut to,
        &ImportRequest {
            sources: vec![packet],
            remove: false,
        },
    )
    .unwrap();
    let peak = PEAK.load(Relaxed) - base;
    assert!(
        matches!(outcomes.as_slice(), [PacketOutcome::Applied { .. }]),
        "{outcomes:?}"
    );
    let epoch = to.state().epoch(&to.identity.replica_id, &origin).unwrap();
    assert_eq!(epoch, have + count, "every operation logged");
    peak
}

#[test]
fn an_import_holds_about_the_same_memory_for_5k_and_50k_operations_on_one_path() {
    let small = peak_heap_of_import(5_000, ManyOps::OnePath);
    let large = peak_heap_of_import(50_000, ManyOps::OnePath);
    eprintln!("peak heap: {small} bytes for 5,000 operations, {large} for 50,000");
    // Held per operation before: about 1.5 KB, so some 65 MB more for the
    // larger packet. Allowed now: 2 MiB more (bits per operation, and
    // noise), for ten times the operations.
    assert!(
        large <= small + (2 << 20),
        "peak heap grew from {small} to {large} bytes with ten times the operations"
    );
}
