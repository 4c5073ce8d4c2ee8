//! Writes an update packet of N small operations for a benchmark
//! (`bench/import_memory.sh`): operations of SENDER's origin, numbered
//! after what TARGET has of it, sealed and signed by SENDER, as an honest
//! but very long-disconnected sibling would send.
//!
//! Usage: `forge_ops SENDER_ROOT TARGET_ROOT OUT_DIR N KIND`, KIND one of
//! `one` (N versions of one directory), `deleted` (N tombstones of paths
//! never made), `dirs` (N directories), `files` (N small files), `spread`
//! (N/2 folders with a directory in each), `deep` (a chain of N
//! directories) or `conflicts` (the paths of `dirs`, mode 0700); see
//! `test_support::ManyOps`.
//! Prints the packet file's path.

use packet_format::Named;
use syncreplica::replica::Replica;
use test_support::{write_many_ops, ManyOps, ManyOpsPacket};

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let [_, sender, target, out, count, kind] = &args[..] else {
        eprintln!(
            "usage: forge_ops SENDER_ROOT TARGET_ROOT OUT_DIR N one|deleted|dirs|files|spread|deep|conflicts"
        );
        std::process::exit(2);
    };
    let from = Replica::open(std::path::Path::new(sender)).expect("SENDER_ROOT is a replica");
    let to = Replica::open(std::path::Path::new(target)).expect("TARGET_ROOT is a replica");
    let origin = from.identity.replica_id;
    let file = write_many_ops(&ManyOpsPacket {
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
        have: to.state().epoch(&to.identity.replica_id, &origin).unwrap(),
        count: count.parse().expect("N is a number"),
        kind: ManyOps::parse(kind)
            .expect("KIND is one, deleted, dirs, files, spread, deep or conflicts"),
        out_dir: std::path::Path::new(out),
    });
    println!("{}", file.display());
}
