//! CLI transcripts: every `tests/cmd/*.md` runs against the real binaries.
//!
//! Each transcript with a `NAME.out/` folder runs in a sandbox: a fresh
//! copy of `NAME.in/` that every command of the transcript shares. Refresh
//! the expected outputs with `TRYCMD=overwrite cargo test --test cli`, then
//! read the diff: what is frozen there is what users see.

#[test]
fn cli_transcripts() {
    // shipping.toml wants absolute bay paths, so the configuration is
    // written here, outside the sandboxes, one storage class per transcript.
    let bays = tempfile::tempdir().unwrap();
    let conf = bays.path().join("shipping.toml");
    // Every destination goes to a directory hop, as a USB stick would.
    let mut text = format!(
        "default_route = \"usb\"\n\n[destinations.usb]\ndir = {:?}\n\n",
        bays.path().join("usb")
    );
    for class in ["mkorder", "shipping_server"] {
        let dir = bays.path().join(class);
        text += &format!(
            "[classes.{class}]\nstorage_bay = {:?}\nreturn_bay = {:?}\n",
            dir.join("bay"),
            dir.join("return"),
        );
    }
    std::fs::write(&conf, text).unwrap();

    let cases = trycmd::TestCases::new();
    cases
        .env("SYNCREPLICA_SHIPPING_CONF", conf.display().to_string())
        // Passphrase-encrypted creation packets at a low scrypt work factor.
        .env("SYNCREPLICA_TEST_SCRYPT_LOG_N", "10")
        .env(
            "XDG_DATA_HOME",
            concat!(env!("CARGO_TARGET_TMPDIR"), "/data-home"),
        )
        .insert_var("[BAYS]", bays.path().display().to_string())
        .unwrap()
        .case("tests/cmd/*.md")
        .case("tests/cmd/*.toml");
    for (name, path) in [
        ("syncreplica", trycmd::cargo::cargo_bin!("syncreplica")),
        ("mkreplica", trycmd::cargo::cargo_bin!("mkreplica")),
        ("lspacket", trycmd::cargo::cargo_bin!("lspacket")),
        ("lsreplica", trycmd::cargo::cargo_bin!("lsreplica")),
        ("lsepoch", trycmd::cargo::cargo_bin!("lsepoch")),
        ("chepoch", trycmd::cargo::cargo_bin!("chepoch")),
        ("rmreplica", trycmd::cargo::cargo_bin!("rmreplica")),
        ("mkorder", trycmd::cargo::cargo_bin!("mkorder")),
        (
            "shipping_server",
            trycmd::cargo::cargo_bin!("shipping_server"),
        ),
    ] {
        cases.register_bin(name, path.to_path_buf());
    }
    cases.run();
}
