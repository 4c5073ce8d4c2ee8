//! Nothing a user made is ever lost, and no interruption leaves a replica
//! stuck: commands killed at named points (the test hook
//! `SYNCREPLICA_TEST_CRASH_AT`) and commands that fail.

use crate::helpers::*;

#[test]
fn an_import_killed_after_its_commit_has_raised_the_senders_estimate() {
    let fam = family(&["alpha", "beta"], &[("base.txt", "base")]);
    let (a, b) = (fam.root("alpha"), fam.root("beta"));
    write(&a, "new.txt", "made at alpha");
    let out = fam.packet_dir("ab");
    export_to(&a, &out, &["beta"], &[]).ok();
    let killed = run_crashing_at(
        &b,
        "syncreplica",
        ["-import".as_ref(), out.as_os_str()],
        "import-after-commit",
    );
    assert_crashed(&killed);
    let again = import_from(&b, &[&out]).ok();
    assert!(again.stdout.contains("Already applied"), "{}", again.stdout);
    // beta knows alpha has its own operations: nothing goes back.
    let back = export_to(&b, &fam.packet_dir("ba"), &["alpha"], &[]).ok();
    assert!(
        back.stdout.contains("alpha lacks nothing"),
        "{}",
        back.stdout
    );
    let log = run(&b, "lspacket", [out.as_os_str()]).ok().stdout;
    assert!(log.contains("already applied"), "{log}");
}
