//! `lspacket`: list and check packets, named or waiting in the storage bays.

use std::path::PathBuf;

use shipping::bay::{Bay, BayStore, DirStore};
use shipping::ShippingOrder;
use syncreplica::cli::{self, lspacket::Args};
use syncreplica::listing::{self, LocalView};
use syncreplica::packets;
use syncreplica::replica::{self, Replica};
use syncreplica::ship::Shipping;
use syncreplica::ship_trust::ReplicaMembers;

const NAME: &str = "lspacket";

fn main() {
    let args: Args = cli::parse_args();
    cli::run(NAME, || run(&args))
}

/// A packet file to list, and where it sits when it is in a bay.
struct Entry {
    file: PathBuf,
    bay: Option<(String, Bay)>,
    order: Option<ShippingOrder>,
}

fn run(args: &Args) -> anyhow::Result<()> {
    // Inside a replica, check signatures against the family's keys and
    // mark the local target; outside one, list all the same.
    let replica = match replica::discover(args.replica.as_deref()) {
        Ok(root) => Some(Replica::open(&root)?),
        Err(syncreplica::Error::NoReplica { .. }) if args.replica.is_none() => None,
        Err(err) => return Err(err.into()),
    };
    let (mut keys, view): (Vec<[u8; 32]>, _) = match &replica {
        Some(replica) => (
            replica.members()?.iter().map(|m| m.public_key).collect(),
            Some(LocalView::of(replica)?),
        ),
        None => (Vec::new(), None),
    };
    let entries = if args.packets.is_empty() {
        let shipping = Shipping::load(args.shipconf.as_deref())?;
        match shipping::trust::trusted_keys(&shipping.config, &ReplicaMembers) {
            Ok(trusted) => keys.extend(trusted),
            Err(err) => eprintln!("{NAME}: warning: {err}"),
        }
        bay_entries(&shipping, args.sclass.as_deref())?
    } else {
        if args.sclass.is_some() {
            anyhow::bail!(
                "-sclass selects storage bays to list; it cannot be combined with PACKET_OR_DIR"
            );
        }
        packets::collect_packet_files(&args.packets)?
            .into_iter()
            .map(|file| Entry {
                file,
                bay: None,
                order: None,
            })
            .collect()
    };
    if entries.is_empty() {
        println!("No packets found.");
        return Ok(());
    }
    let mut problems = 0;
    let mut json = Vec::new();
    for entry in &entries {
        let exam = packet_format::examine_packet(&entry.file, &keys);
        if listing::is_problem(&exam) {
            problems += 1;
        }
        let returned = matches!(entry.bay, Some((_, Bay::Return)));
        if args.fmt == "json" {
            let mut value = listing::render_json(&exam, view.as_ref());
            if let Some((class, bay)) = &entry.bay {
                value["storage_class"] = serde_json::json!(class);
                value["bay"] = serde_json::json!(bay.name());
            }
            if let Some(order) = &entry.order {
                value["order"] = listing::render_order_json(order);
            }
            json.push(value);
        } else if args.short {
            println!("{}", entry.file.display());
        } else {
            print!("{}", listing::render_text(&exam, args.long, view.as_ref()));
            if let Some((class, bay)) = &entry.bay {
                println!("Storage bay: {} (class {class})", bay.name());
            }
            if let Some(order) = &entry.order {
                print!("{}", listing::render_order_text(order, returned));
            }
            println!();
        }
    }
    if args.fmt == "json" {
        println!("{}", serde_json::to_string_pretty(&json)?);
    }
    if problems > 0 {
        anyhow::bail!(
            "{problems} of {} packet{} damaged or not signed by a known family member",
            entries.len(),
            if entries.len() == 1 { " is" } else { "s are" }
        );
    }
    Ok(())
}

/// Every packet in the bays of the classes selected, with its order.
fn bay_entries(shipping: &Shipping, sclass: Option<&str>) -> anyhow::Result<Vec<Entry>> {
    let mut entries = Vec::new();
    for class_name in shipping.classes(sclass)? {
        let class = shipping.config.class(&class_name)?;
        for (bay, dir) in [
            (Bay::Outgoing, class.outgoing_dir()),
            (Bay::Incoming, class.incoming_dir()),
            (Bay::Return, class.return_dir()),
        ] {
            if !dir.is_dir() {
                continue;
            }
            let store = DirStore::new(&dir);
            for file in packets::collect_packet_files(std::slice::from_ref(&dir))? {
                let name = file
                    .file_name()
                    .and_then(|n| n.to_str())
                    .unwrap_or_default()
                    .to_string();
                let order = match store.exists(&shipping::order::order_name(&name)) {
                    Ok(true) => match ShippingOrder::load(&store, &name) {
                        Ok(order) => Some(order),
                        Err(err) => {
                            eprintln!("{NAME}: warning: {err}");
                            None
                        }
                    },
                    _ => None,
                };
                entries.push(Entry {
                    file,
                    bay: Some((class_name.clone(), bay)),
                    order,
                });
            }
        }
    }
    Ok(entries)
}
