//! `mkreplica`: create a replica family or a new member of one.

use std::path::{Path, PathBuf};

use packet_format::{verify_packet, LogicalPacket, PacketKind};
use syncreplica::cli::{self, mkreplica::Args};
use syncreplica::replica::{self, Replica};
use syncreplica::sync::creation;
use syncreplica::sync::packets;

const NAME: &str = "mkreplica";

fn main() {
    let args: Args = cli::parse_args();
    cli::run(NAME, || {
        if args.init {
            init(&args)
        } else if args.export {
            export(&args)
        } else {
            import(&args)
        }
    })
}

fn single_name(args: &Args) -> anyhow::Result<&str> {
    match args.names.as_slice() {
        [name] => Ok(name),
        _ => anyhow::bail!("expected one replica NAME, got {}", args.names.len()),
    }
}

fn init(args: &Args) -> anyhow::Result<()> {
    let name = single_name(args)?;
    let family = args.family.as_deref().expect("clap requires -family");
    let dir = match &args.replica {
        Some(dir) => dir.clone(),
        None => std::env::current_dir()?,
    };
    let report = replica::init(&dir, family, name)?;
    cli::print_warnings(NAME, &report.scan.warnings);
    let replica = &report.replica;
    println!(
        "Created replica \"{}\" of new family \"{}\" at {}.",
        replica.identity.replica_name,
        replica.identity.family_name,
        replica.root.display()
    );
    println!("  family id:       {}", replica.identity.family_id);
    println!("  replica id:      {}", replica.identity.replica_id);
    println!("  key fingerprint: {}", report.fingerprint);
    match report.record.epochs {
        Some((first, last)) => println!(
            "Recorded the initial content ({} entries) as epochs {first}-{last}.",
            report.scan.changes.len()
        ),
        None => println!("The directory was empty; nothing recorded yet."),
    }
    Ok(())
}

fn export(args: &Args) -> anyhow::Result<()> {
    let name = single_name(args)?;
    let out = args.out.as_deref().expect("clap requires -out");
    let max_size = cli::parse_size(&args.maxsize)?;
    let mut replica = Replica::open(&replica::discover(args.replica.as_deref())?)?;
    let lock = replica.lock("mkreplica -export")?;
    cli::print_lock_takeover(NAME, &lock);
    let (outcome, _) = replica.record_local_changes()?;
    cli::print_warnings(NAME, &outcome.warnings);
    let made = creation::export_creation(&mut replica, name, out, max_size, &args.comment)?;
    println!(
        "Wrote the replica-creation packet for new member \"{name}\" of family \"{}\" ({} files, {} bytes of content):",
        replica.identity.family_name, made.files, made.chunk_bytes
    );
    for part in &made.parts {
        println!("  {} ({} bytes)", part.path.display(), part.size);
    }
    println!(
        "New member's signing key: {} (mode 0600)",
        made.key_file.display()
    );
    println!("  Carry it separately from the packet, or by a trusted route.");
    println!("Packet signed by key with fingerprint {}", made.fingerprint);
    println!(
        "  At the new site, check it with: mkreplica -import -fingerprint {} ...",
        made.fingerprint
    );
    Ok(())
}

fn import(args: &Args) -> anyhow::Result<()> {
    if args.family.is_some() || args.out.is_some() {
        anyhow::bail!("-family and -out do not apply to -import");
    }
    let paths: Vec<PathBuf> = args.names.iter().map(PathBuf::from).collect();
    let files = packets::collect_packet_files(&paths)?;
    if files.is_empty() {
        anyhow::bail!(
            "no packet files (repl_*) found in {}",
            args.names.join(", ")
        );
    }
    // The first part tells who signed; that key is trusted only if it
    // matches -fingerprint or, without it, as printed for checking.
    let first = packet_format::examine_packet(&files[0], &[]);
    let header = first.header.as_ref().ok_or_else(|| {
        anyhow::anyhow!(
            "{}: {}",
            files[0].display(),
            first
                .error
                .as_ref()
                .map(|e| e.to_string())
                .unwrap_or_default()
        )
    })?;
    if header.kind != PacketKind::ReplicaCreation {
        anyhow::bail!("{} is not a replica-creation packet", files[0].display());
    }
    let fingerprint = header.signer_fingerprint();
    if let Some(expected) = &args.fingerprint {
        if !expected.trim().eq_ignore_ascii_case(&fingerprint) {
            anyhow::bail!(
                "{} is signed by key {fingerprint}, not by the expected {}; nothing was created",
                files[0].display(),
                expected.trim()
            );
        }
    }
    let signer = header.signer_key;
    let packet_id = header.packet_id;
    let mut parts = Vec::new();
    for file in &files {
        let part = verify_packet(file, &[signer])?;
        if part.header().packet_id == packet_id {
            parts.push(part);
        }
    }
    let packet = LogicalPacket::assemble(parts)?;
    let new_name = packet.parts()[0]
        .creation()
        .map(|c| c.new_replica.name.clone())
        .unwrap_or_default();
    // A name from a packet is hostile until checked: it becomes a file name.
    syncreplica::store::identity::validate_name(&new_name)?;
    let key_file = match &args.key {
        Some(key) => key.clone(),
        None => files[0]
            .parent()
            .unwrap_or(Path::new("."))
            .join(format!("{new_name}.key")),
    };
    let dir = match &args.replica {
        Some(dir) => dir.clone(),
        None => std::env::current_dir()?,
    };
    let made = creation::import_creation(&packet, &dir, &key_file)?;
    println!(
        "Created replica \"{}\" of family \"{}\" at {} from {}'s creation packet ({} files).",
        made.replica.identity.replica_name,
        made.replica.identity.family_name,
        made.replica.root.display(),
        made.sender,
        made.files
    );
    if args.fingerprint.is_some() {
        println!(
            "The packet's signing key matched the expected fingerprint {}.",
            made.fingerprint
        );
    } else {
        println!(
            "The packet was signed by key fingerprint {}.",
            made.fingerprint
        );
        println!("  Compare it with the one mkreplica -export printed at the sender.");
    }
    Ok(())
}
